//! The body of each pipeline stage, a file each, as methods of [`Pipeline`]: each runs one
//! unit of its stage (the pipeline's `cursor`) and reports its progress.
//!
//! [`Pipeline`]: super::pipeline::Pipeline

mod generate;
pub(super) mod generate_server;
mod human;
mod rank;
mod sample;
mod select;
mod sync_eval;
mod sync_external;
mod update;
pub(super) mod update_command;

pub(super) use human::HumanDesk;

use crate::prompts::Prompt;
use crate::run::records::Candidate;
use crate::selm::Triple;

/// What the current iteration has produced so far.
#[derive(Default)]
pub(super) struct IterationState {
    pub prompts: Vec<Prompt>,
    pub prompt_ids: Vec<Vec<u32>>,
    /// Per prompt: K samples, then y_ref last.
    pub candidates: Vec<Vec<Candidate>>,
    /// Per prompt: the ranker that scored its candidates, once ranked.
    pub ranked_by: Vec<Option<String>>,
    /// Decode batches: (prompt index, is y_ref) per row.
    pub jobs: Vec<Vec<(usize, bool)>>,
    pub triples: Vec<Triple>,
    /// The prompt (index into `prompts`) of each triple.
    pub triple_prompts: Vec<usize>,
    /// Update mini-batches: indices into `triples`.
    pub batches: Vec<Vec<usize>>,
    pub losses: Vec<f64>,
}

impl IterationState {
    /// Mean ranker score of this iteration's candidates.
    pub fn mean_score(&self) -> f64 {
        let scores: Vec<f64> = self
            .candidates
            .iter()
            .flatten()
            .filter_map(|c| c.score)
            .collect();
        scores.iter().sum::<f64>() / scores.len().max(1) as f64
    }

    /// Mean update loss, NaN before any update.
    pub fn mean_loss(&self) -> f64 {
        if self.losses.is_empty() {
            f64::NAN
        } else {
            self.losses.iter().sum::<f64>() / self.losses.len() as f64
        }
    }
}
