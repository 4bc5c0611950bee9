//! One SELM update: policy and reference log-probs, the loss, backward, global-norm clipping,
//! AdamW with the warmup + cosine schedule.

pub mod grads;
pub mod schedule;

use anyhow::{Result, bail};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use crate::config::Objective;
use crate::model::CausalLm;
use crate::selm::logprobs::sequence_logps;
use crate::selm::{HostTriples, SelmMetrics, Triple, TripleLogps, preference_loss};
pub use schedule::CosineWithWarmup;

/// Optimizer settings (AdamW, as `torch.optim.AdamW`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimConfig {
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// None disables clipping.
    pub max_grad_norm: Option<f64>,
    /// Triples per forward/backward pass; their gradients add up to the batch's. None picks
    /// the most that keep one pass's activations near [`ACTIVATION_BUDGET`].
    pub micro_batch: Option<usize>,
}

/// Activation memory one forward/backward pass aims to stay within when the micro-batch is
/// chosen automatically (the estimate is [`activation_bytes_per_token`]).
pub const ACTIVATION_BUDGET: usize = 1 << 30;

/// Rough bytes of activations one token keeps for the backward pass, f32: per layer the
/// projections and MLP outputs (about 6 hidden + 2 intermediate widths) and its attention
/// scores over `seq` keys, plus the head's logits. Calibrated on a SmolLM2-135M update on
/// the flex backend (about 8k floats per token and layer).
pub fn activation_bytes_per_token(config: &crate::model::ModelConfig, seq: usize) -> usize {
    let per_layer = 6 * config.hidden_size + 2 * config.intermediate_size + config.num_heads * seq;
    4 * (config.num_layers * per_layer + config.vocab_size)
}

impl Default for OptimConfig {
    /// TRL's defaults.
    fn default() -> Self {
        Self {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            micro_batch: None,
        }
    }
}

/// What one update did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    #[serde(flatten)]
    pub metrics: SelmMetrics,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub lr: f64,
    #[serde(skip)]
    pub grad_norms: Vec<(String, f64)>,
    #[serde(skip)]
    pub triples: HostTriples,
}

/// Policy, frozen reference, optimizer state and schedule.
pub struct SelmTrainer<B: AutodiffBackend> {
    policy: Option<CausalLm<B>>,
    reference: CausalLm<B::InnerBackend>,
    optimizer: OptimizerAdaptor<AdamW, CausalLm<B>, B>,
    schedule: CosineWithWarmup,
    pub optim: OptimConfig,
    /// The loss minimized (SELM unless set).
    pub objective: Objective,
    /// Optimizer steps taken.
    pub step: usize,
}

impl<B: AutodiffBackend> SelmTrainer<B> {
    pub fn new(
        policy: CausalLm<B>,
        reference: CausalLm<B::InnerBackend>,
        optim: OptimConfig,
        schedule: CosineWithWarmup,
    ) -> Self {
        Self {
            policy: Some(policy),
            reference,
            optimizer: adamw(&optim),
            schedule,
            optim,
            objective: Objective::Selm,
            step: 0,
        }
    }

    /// Minimizes `objective`'s loss instead of SELM's.
    pub fn with_objective(mut self, objective: Objective) -> Self {
        self.objective = objective;
        self
    }

    /// A fresh AdamW state and a new schedule (each iteration trains as its own run).
    pub fn reset_optimizer(&mut self, schedule: CosineWithWarmup) {
        self.optimizer = adamw(&self.optim);
        self.schedule = schedule;
        self.step = 0;
    }

    /// Sets the schedule's peak learning rate, from the next step on.
    pub fn set_peak_lr(&mut self, lr: f64) {
        self.schedule.peak_lr = lr;
    }

    pub fn policy(&self) -> &CausalLm<B> {
        self.policy
            .as_ref()
            .expect("policy is only taken inside step")
    }

    pub fn reference(&self) -> &CausalLm<B::InnerBackend> {
        &self.reference
    }

    /// Whether the policy's weights are all finite.
    pub fn policy_is_finite(&self) -> bool {
        grads::params_finite(self.policy())
    }

    /// pi_ref <- pi_theta.
    pub fn sync_reference(&mut self) {
        self.reference = self.policy().valid();
    }

    /// Log-probs of the triples: policy with gradient, reference without.
    pub fn logps(&self, triples: &[Triple]) -> TripleLogps<B> {
        // The reference first: its activations are freed before the policy's graph is built.
        let reference = reference_logps(&self.reference, triples).map(Tensor::<B, 1>::from_inner);
        let policy = triple_logps(self.policy(), triples);
        TripleLogps::new(policy, reference)
    }

    /// One optimizer step on `triples`. A non-finite loss or gradient leaves the policy
    /// untouched and returns an error.
    ///
    /// The batch goes through forward and backward a micro-batch at a time: the loss is a mean
    /// of per-triple terms, so the micro-batches' gradients, each scaled by its share of the
    /// batch, add up to the whole batch's.
    pub fn step(&mut self, triples: &[Triple], alpha: f64, beta: f64) -> Result<StepReport> {
        if triples.is_empty() {
            bail!("an update needs at least one preference triple");
        }
        let micro = self.micro_batch(triples);
        let mut parts = vec![];
        let mut accumulated = GradientsAccumulator::<CausalLm<B>>::new();
        for chunk in triples.chunks(micro) {
            let logps = self.logps(chunk);
            let loss = preference_loss(&logps, self.objective, alpha, beta);
            let host = HostTriples::read(&logps, &loss);
            let chunk_loss = host.metrics(alpha, beta).loss;
            if !chunk_loss.is_finite() {
                bail!(
                    "loss is {chunk_loss} at step {}: update skipped, policy unchanged",
                    self.step
                );
            }
            parts.push(host);
            let share = chunk.len() as f64 / triples.len() as f64;
            let grads = (loss.loss * share).backward();
            accumulated.accumulate(
                self.policy(),
                GradientsParams::from_grads(grads, self.policy()),
            );
        }
        let host = HostTriples::concat(parts);
        let metrics = host.metrics(alpha, beta);
        let policy = self.policy.take().expect("policy present");
        let mut grads = accumulated.grads();
        let grad_norms = grads::grad_norms(&policy, &grads);
        let grad_norm = grads::total_norm(&grad_norms);
        if !grad_norm.is_finite() {
            self.policy = Some(policy);
            bail!(
                "gradient norm is {grad_norm} at step {}: update skipped",
                self.step
            );
        }
        if let Some(max) = self.optim.max_grad_norm {
            grads::clip_global_norm(&policy, &mut grads, grad_norm, max);
        }
        let lr = self.schedule.lr(self.step);
        self.policy = Some(self.optimizer.step(lr, policy, grads));
        self.step += 1;
        Ok(StepReport {
            metrics,
            grad_norm,
            lr,
            grad_norms,
            triples: host,
        })
    }

    /// Triples per forward/backward pass: the configured micro-batch, else as many as fit
    /// [`ACTIVATION_BUDGET`] at this batch's longest prompt and responses (at least one).
    pub fn micro_batch(&self, triples: &[Triple]) -> usize {
        if let Some(n) = self.optim.micro_batch {
            return n.max(1);
        }
        // The prompt runs once, then each of the three responses after it, padded to the
        // batch's longest prompt and longest response.
        let prompt = triples.iter().map(|t| t.prompt.len()).max().unwrap_or(1);
        let response = triples
            .iter()
            .map(Triple::longest_response)
            .max()
            .unwrap_or(1);
        let per_triple = (prompt + 3 * response)
            * activation_bytes_per_token(self.policy().config(), prompt + response);
        (ACTIVATION_BUDGET / per_triple.max(1)).clamp(1, triples.len().max(1))
    }

    /// Loss and metrics of `triples` without updating anything.
    pub fn evaluate(&self, triples: &[Triple], alpha: f64, beta: f64) -> HostTriples {
        let policy = self.policy().valid();
        let reference = reference_logps(&self.reference, triples);
        let logps = TripleLogps::new(triple_logps(&policy, triples), reference);
        HostTriples::read(
            &logps,
            &preference_loss(&logps, self.objective, alpha, beta),
        )
    }
}

fn adamw<B: AutodiffBackend>(optim: &OptimConfig) -> OptimizerAdaptor<AdamW, CausalLm<B>, B> {
    AdamWConfig::new()
        .with_beta_1(optim.betas.0 as f32)
        .with_beta_2(optim.betas.1 as f32)
        .with_epsilon(optim.eps as f32)
        .with_weight_decay(optim.weight_decay as f32)
        .init()
}

/// Chosen, rejected and y_ref log-probs under pi_ref (`reference`): what the triples carry
/// from generation, and one pass of `reference` over the responses that carry none.
fn reference_logps<B: Backend>(reference: &CausalLm<B>, triples: &[Triple]) -> [Tensor<B, 1>; 3] {
    let mut sums = vec![[0f32; 3]; triples.len()];
    let mut missing = vec![];
    for (i, t) in triples.iter().enumerate() {
        for (k, carried) in t.reference_logps.iter().enumerate() {
            match carried {
                Some(v) => sums[i][k] = v.iter().map(|&x| x as f64).sum::<f64>() as f32,
                None => missing.push((i, k)),
            }
        }
    }
    if missing.len() == 3 * triples.len() {
        return triple_logps(reference, triples);
    }
    if !missing.is_empty() {
        let pairs: Vec<(&[u32], &[u32])> = missing
            .iter()
            .map(|&(i, k)| (triples[i].prompt.as_slice(), triples[i].responses()[k]))
            .collect();
        let values = sequence_logps(reference, &pairs)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 data");
        for (&(i, k), v) in missing.iter().zip(values) {
            sums[i][k] = v;
        }
    }
    let device = reference.device();
    [0, 1, 2].map(|k| {
        let column: Vec<f32> = sums.iter().map(|s| s[k]).collect();
        Tensor::from_data(TensorData::new(column, [triples.len()]), &device)
    })
}

/// Chosen, rejected and y_ref log-probs of `triples` under `model`: each prompt runs once, then
/// its three responses after it ([`sequence_logps`]).
pub fn triple_logps<B: Backend>(model: &CausalLm<B>, triples: &[Triple]) -> [Tensor<B, 1>; 3] {
    let n = triples.len();
    let mut pairs: Vec<(&[u32], &[u32])> = Vec::with_capacity(3 * n);
    pairs.extend(
        triples
            .iter()
            .map(|t| (t.prompt.as_slice(), t.chosen.as_slice())),
    );
    pairs.extend(
        triples
            .iter()
            .map(|t| (t.prompt.as_slice(), t.rejected.as_slice())),
    );
    pairs.extend(
        triples
            .iter()
            .map(|t| (t.prompt.as_slice(), t.reference_response.as_slice())),
    );
    let all = sequence_logps(model, &pairs);
    [0, 1, 2].map(|i| all.clone().narrow(0, i * n, n))
}
