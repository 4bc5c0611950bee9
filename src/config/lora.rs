//! `[train.lora]`: low-rank adapters instead of full updates ([`crate::model::lora`]).

use serde::{Deserialize, Serialize};

use crate::model::lora::{LoraShape, TARGETS};

/// Each iteration's policy is the starting model (frozen) plus an adapter; pi_ref is the
/// base plus the previous iteration's adapter, frozen (with `train.sync_reference = false`,
/// the base alone), so no second copy of the model is held. Checkpoints hold the adapter in
/// PEFT's format, and the merged model unless `checkpoint = "adapter"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// The adapters' rank r.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// The scaling numerator: updates are scaled by alpha / r (alpha / sqrt(r) with rslora).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The projections that carry an adapter, by their HF names [default: all seven,
    /// q_proj k_proj v_proj o_proj gate_proj up_proj down_proj].
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
    /// rsLoRA scaling (alpha / sqrt(r)).
    #[serde(default)]
    pub rslora: bool,
    /// Dropout on the adapters' input while training (peft's `lora_dropout`).
    #[serde(default)]
    pub dropout: f64,
    /// What a checkpoint holds besides `adapter/`: the merged HF model (`merged`, the
    /// default: every tool that reads a model reads it) or nothing (`adapter`: a 7B run's
    /// checkpoints stay megabytes; `selm-tui export` merges one when wanted).
    #[serde(default)]
    pub checkpoint: LoraCheckpoint,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraCheckpoint {
    #[default]
    Merged,
    Adapter,
}

impl LoraSection {
    /// The adapters' shape, targets in the projections' order (as PEFT files read back).
    pub fn shape(&self) -> LoraShape {
        let mut targets = self.target_modules.clone();
        targets.sort_by_key(|t| TARGETS.iter().position(|x| x == t));
        targets.dedup();
        LoraShape {
            rank: self.rank,
            alpha: self.alpha,
            rslora: self.rslora,
            targets,
        }
    }
}

fn default_rank() -> usize {
    8
}

fn default_alpha() -> f64 {
    16.0
}

fn default_targets() -> Vec<String> {
    TARGETS.iter().map(|t| t.to_string()).collect()
}
