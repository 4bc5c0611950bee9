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
    #[serde(default)]
    pub reference_logps: [Option<Vec<f32>>; 3],
}

impl Triple {
    /// Tokens in the longest of the three responses.
    pub fn longest_response(&self) -> usize {
        self.chosen
            .len()
            .max(self.rejected.len())
            .max(self.reference_response.len())
    }

    /// The three responses, chosen, rejected and y_ref.
    pub fn responses(&self) -> [&[u32]; 3] {
        [&self.chosen, &self.rejected, &self.reference_response].map(Vec::as_slice)
    }
}
