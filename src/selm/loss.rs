//! The SELM objective and its metrics, as the official SELM trainer computes them
//! (Zhang et al. 2024, "Self-Exploring Language Models: Active Preference Elicitation for
//! Online Alignment", arXiv 2405.19332, section 4):
//! `loss_i = -log_sigmoid(beta * ((pc - pr) - (rc - rr))) + alpha * beta * (py - ry)`.
//! alpha = 0 gives plain DPO. [`preference_loss`] also gives the objectives SELM is compared
//! with: DPO, and XPO (Xie et al. 2024, "Exploratory Preference Optimization", arXiv
//! 2405.21046), whose exploration term is `alpha * log pi_theta(y_ref)` for a response of
//! pi_ref, as TRL's XPOTrainer computes it (no beta, no pi_ref term).

use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::config::Objective;

/// Sequence log-probs of a batch of triples under the policy (`p*`) and the reference (`r*`):
/// chosen, rejected, and the reference policy's greedy response y_ref. Each `[n]`.
#[derive(Debug, Clone)]
pub struct TripleLogps<B: Backend> {
    pub policy_chosen: Tensor<B, 1>,
    pub policy_rejected: Tensor<B, 1>,
    pub policy_response: Tensor<B, 1>,
    pub reference_chosen: Tensor<B, 1>,
    pub reference_rejected: Tensor<B, 1>,
    pub reference_response: Tensor<B, 1>,
}

impl<B: Backend> TripleLogps<B> {
    /// From `[chosen, rejected, y_ref]` log-probs under the policy and the reference.
    pub fn new(policy: [Tensor<B, 1>; 3], reference: [Tensor<B, 1>; 3]) -> Self {
        let [policy_chosen, policy_rejected, policy_response] = policy;
        let [reference_chosen, reference_rejected, reference_response] = reference;
        Self {
            policy_chosen,
            policy_rejected,
            policy_response,
            reference_chosen,
            reference_rejected,
            reference_response,
        }
    }
}

/// Per-triple terms and their mean.
#[derive(Debug, Clone)]
pub struct SelmLoss<B: Backend> {
    /// Mean over triples, shape `[1]`; backpropagate this.
    pub loss: Tensor<B, 1>,
    pub losses: Tensor<B, 1>,
    pub dpo_losses: Tensor<B, 1>,
    /// The exploration term per triple: SELM's `alpha * beta * (py - ry)`, XPO's
    /// `alpha * py`, DPO's 0.
    pub optimism_terms: Tensor<B, 1>,
}

/// The loss `objective` minimizes: the DPO loss plus its exploration term.
pub fn preference_loss<B: Backend>(
    l: &TripleLogps<B>,
    objective: Objective,
    alpha: f64,
    beta: f64,
) -> SelmLoss<B> {
    match objective {
        Objective::Selm => selm_loss(l, alpha, beta),
        Objective::Dpo => selm_loss(l, 0.0, beta),
        Objective::Xpo => {
            let dpo = selm_loss(l, 0.0, beta);
            let optimism_terms = l.policy_response.clone() * alpha;
            let losses = dpo.dpo_losses.clone() + optimism_terms.clone();
            SelmLoss {
                loss: losses.clone().mean(),
                losses,
                dpo_losses: dpo.dpo_losses,
                optimism_terms,
            }
        }
    }
}

pub fn selm_loss<B: Backend>(l: &TripleLogps<B>, alpha: f64, beta: f64) -> SelmLoss<B> {
    let logits = (l.policy_chosen.clone() - l.policy_rejected.clone())
        - (l.reference_chosen.clone() - l.reference_rejected.clone());
    let dpo_losses = log_sigmoid(logits * beta).neg();
    let optimism_terms =
        (l.policy_response.clone() - l.reference_response.clone()) * (alpha * beta);
    let losses = dpo_losses.clone() + optimism_terms.clone();
    SelmLoss {
        loss: losses.clone().mean(),
        losses,
        dpo_losses,
        optimism_terms,
    }
}

// A diverging step's NaN is written as null (serde_json): read back as NaN.
use crate::run::records::f64_or_nan;

/// One step's metrics under the names TRL and the official trainer log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SelmMetrics {
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
    #[serde(rename = "loss/dpo", deserialize_with = "f64_or_nan")]
    pub loss_dpo: f64,
    #[serde(rename = "loss/optimism", deserialize_with = "f64_or_nan")]
    pub loss_optimism: f64,
    #[serde(rename = "rewards/chosen", deserialize_with = "f64_or_nan")]
    pub rewards_chosen: f64,
    #[serde(rename = "rewards/rejected", deserialize_with = "f64_or_nan")]
    pub rewards_rejected: f64,
    #[serde(rename = "rewards/accuracies", deserialize_with = "f64_or_nan")]
    pub rewards_accuracies: f64,
    #[serde(rename = "rewards/margins", deserialize_with = "f64_or_nan")]
    pub rewards_margins: f64,
    #[serde(rename = "logps/chosen", deserialize_with = "f64_or_nan")]
    pub logps_chosen: f64,
    #[serde(rename = "logps/rejected", deserialize_with = "f64_or_nan")]
    pub logps_rejected: f64,
    #[serde(rename = "logps/pi_response", deserialize_with = "f64_or_nan")]
    pub logps_pi_response: f64,
    #[serde(rename = "logps/ref_response", deserialize_with = "f64_or_nan")]
    pub logps_ref_response: f64,
    pub alpha: f64,
    pub beta: f64,
}

/// Host copies of the per-triple values a step produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostTriples {
    pub policy_chosen: Vec<f32>,
    pub policy_rejected: Vec<f32>,
    pub policy_response: Vec<f32>,
    pub reference_chosen: Vec<f32>,
    pub reference_rejected: Vec<f32>,
    pub reference_response: Vec<f32>,
    pub losses: Vec<f32>,
    pub dpo_losses: Vec<f32>,
    pub optimism_terms: Vec<f32>,
}

impl HostTriples {
    pub fn read<B: Backend>(l: &TripleLogps<B>, loss: &SelmLoss<B>) -> Self {
        let v = |t: &Tensor<B, 1>| t.to_data().convert::<f32>().into_vec::<f32>().expect("f32");
        Self {
            policy_chosen: v(&l.policy_chosen),
            policy_rejected: v(&l.policy_rejected),
            policy_response: v(&l.policy_response),
            reference_chosen: v(&l.reference_chosen),
            reference_rejected: v(&l.reference_rejected),
            reference_response: v(&l.reference_response),
            losses: v(&loss.losses),
            dpo_losses: v(&loss.dpo_losses),
            optimism_terms: v(&loss.optimism_terms),
        }
    }

    /// The rows of `parts`, in order (one batch measured a micro-batch at a time).
    pub fn concat(parts: Vec<Self>) -> Self {
        let mut all = Self::default();
        for p in parts {
            all.policy_chosen.extend(p.policy_chosen);
            all.policy_rejected.extend(p.policy_rejected);
            all.policy_response.extend(p.policy_response);
            all.reference_chosen.extend(p.reference_chosen);
            all.reference_rejected.extend(p.reference_rejected);
            all.reference_response.extend(p.reference_response);
            all.losses.extend(p.losses);
            all.dpo_losses.extend(p.dpo_losses);
            all.optimism_terms.extend(p.optimism_terms);
        }
        all
    }

    /// Metrics of these triples (means over the batch).
    pub fn metrics(&self, alpha: f64, beta: f64) -> SelmMetrics {
        let n = self.losses.len().max(1) as f64;
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let chosen: Vec<f64> = self.reward(&self.policy_chosen, &self.reference_chosen, beta);
        let rejected: Vec<f64> = self.reward(&self.policy_rejected, &self.reference_rejected, beta);
        let accuracy = chosen.iter().zip(&rejected).filter(|(c, r)| c > r).count() as f64 / n;
        let rewards_chosen = chosen.iter().sum::<f64>() / n;
        let rewards_rejected = rejected.iter().sum::<f64>() / n;
        SelmMetrics {
            loss: mean(&self.losses),
            loss_dpo: mean(&self.dpo_losses),
            loss_optimism: mean(&self.optimism_terms),
            rewards_chosen,
            rewards_rejected,
            rewards_accuracies: accuracy,
            rewards_margins: rewards_chosen - rewards_rejected,
            logps_chosen: mean(&self.policy_chosen),
            logps_rejected: mean(&self.policy_rejected),
            logps_pi_response: mean(&self.policy_response),
            logps_ref_response: mean(&self.reference_response),
            alpha,
            beta,
        }
    }

    /// Implicit rewards `beta * (log pi_theta - log pi_ref)`.
    fn reward(&self, policy: &[f32], reference: &[f32], beta: f64) -> Vec<f64> {
        policy
            .iter()
            .zip(reference)
            .map(|(&p, &r)| beta * (p as f64 - r as f64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn t(v: &[f32]) -> Tensor<Flex, 1> {
        Tensor::from_floats(v, &Default::default())
    }

    fn logps(alpha_terms: (f32, f32)) -> TripleLogps<Flex> {
        TripleLogps {
            policy_chosen: t(&[-10.0, -20.0]),
            policy_rejected: t(&[-12.0, -18.0]),
            policy_response: t(&[-5.0, alpha_terms.0]),
            reference_chosen: t(&[-11.0, -20.0]),
            reference_rejected: t(&[-11.0, -19.0]),
            reference_response: t(&[-6.0, alpha_terms.1]),
        }
    }

    #[test]
    fn loss_matches_hand_computation() {
        let (alpha, beta) = (0.5, 0.1);
        let l = logps((-7.0, -4.0));
        let out = selm_loss(&l, alpha, beta);
        // Triple 0: logits = (-10+12) - (-11+11) = 2; triple 1: (-20+18) - (-20+19) = -1.
        let dpo = |z: f64| (1.0 + (-beta * z).exp()).ln();
        let opt = [alpha * beta * 1.0, alpha * beta * -3.0];
        let expect = [dpo(2.0) + opt[0], dpo(-1.0) + opt[1]];
        let losses = out.losses.to_data().into_vec::<f32>().unwrap();
        for (got, want) in losses.iter().zip(expect) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        let mean: f32 = out.loss.into_scalar();
        assert!((mean as f64 - (expect[0] + expect[1]) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn alpha_zero_is_dpo_and_metrics_follow_trl() {
        let l = logps((-7.0, -4.0));
        let out = selm_loss(&l, 0.0, 0.1);
        let host = HostTriples::read(&l, &out);
        assert_eq!(host.losses, host.dpo_losses);
        let m = host.metrics(0.0, 0.1);
        assert!((m.rewards_chosen - 0.05).abs() < 1e-6); // mean(0.1*1, 0.1*0)
        assert!(m.rewards_rejected.abs() < 1e-6); // mean(0.1*-1, 0.1*1)
        assert_eq!(m.rewards_accuracies, 0.5);
        assert!((m.logps_chosen + 15.0).abs() < 1e-9);
        assert!((m.logps_ref_response + 5.0).abs() < 1e-9);
        assert_eq!(m.loss_optimism, 0.0);
        let dpo = preference_loss(&l, Objective::Dpo, 0.5, 0.1);
        assert_eq!(HostTriples::read(&l, &dpo), host, "dpo ignores alpha");
        let json = serde_json::to_value(&m).unwrap();
        assert!(json.get("rewards/margins").is_some() && json.get("logps/pi_response").is_some());
    }

    #[test]
    fn xpo_adds_alpha_times_the_policy_log_prob_of_y_ref() {
        let (alpha, beta) = (0.05, 0.1);
        let l = logps((-7.0, -4.0));
        let out = preference_loss(&l, Objective::Xpo, alpha, beta);
        // TRL's XPO: dpo_losses + alpha * sum log pi_theta(ref completion); y_ref's policy
        // log-probs are -5 and -7.
        let dpo = |z: f64| (1.0 + (-beta * z).exp()).ln();
        let expect = [dpo(2.0) + alpha * -5.0, dpo(-1.0) + alpha * -7.0];
        let losses = out.losses.to_data().into_vec::<f32>().unwrap();
        for (got, want) in losses.iter().zip(expect) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        let mean: f32 = out.loss.into_scalar();
        assert!((mean as f64 - (expect[0] + expect[1]) / 2.0).abs() < 1e-6);
    }
}
