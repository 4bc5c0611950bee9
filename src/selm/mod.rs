//! SELM math as pure tensor functions: sequence log-probs, the loss, its metrics.

pub mod logprobs;
pub mod loss;

pub use loss::{HostTriples, SelmLoss, SelmMetrics, TripleLogps, preference_loss, selm_loss};

/// One preference triple as token ids: prompt x, chosen y_w, rejected y_l, and y_ref, the
/// reference policy's greedy response to x.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Triple {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    pub reference_response: Vec<u32>,
    /// log pi_ref of each token of chosen, rejected and y_ref, kept from the generation that
    /// sampled them from pi_ref; None (a dataset response, or another sampler) has a forward
    /// pass of pi_ref compute them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_logps: Option<[Vec<f32>; 3]>,
}

impl Triple {
    /// Tokens in the longest of the three responses.
    pub fn longest_response(&self) -> usize {
        self.chosen
            .len()
            .max(self.rejected.len())
            .max(self.reference_response.len())
    }

    /// Sequence log-probs under pi_ref of chosen, rejected and y_ref, when carried.
    pub fn reference_sums(&self) -> Option<[f32; 3]> {
        let sum = |v: &Vec<f32>| v.iter().map(|&x| x as f64).sum::<f64>() as f32;
        self.reference_logps.as_ref().map(|r| r.each_ref().map(sum))
    }
}
