//! Rankers score a prompt's candidate responses; the loop picks the best and worst.
//! Four exist, chosen by `rank.ranker`: `oracle`, the built-in tasks' exact reward;
//! `command`, an external process speaking JSON lines ([`process`]; scripts/ has a PairRM
//! reward model and a test ranker written for it); `reward_model`, an HF sequence
//! classifier run in-process on the run's backend ([`reward_model`]); and `embedding`, the
//! cosine similarity of a sentence embedding to the prompt's reference answer ([`embedding`]).

pub mod embedding;
pub mod process;
pub mod reward_model;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use std::time::Duration;

use crate::config::{Rank, RankerKind};
use crate::tasks::TaskPrompt;

/// The automatic ranker `rank` configures (`rank.ranker`, or for `human` its fallback); a
/// model (`reward_model`, `embedding`) is loaded onto `device` of backend `B` (the run's
/// inference backend, `B::InnerBackend` of the trainer's).
pub fn from_config<B: Backend>(rank: &Rank, device: &B::Device) -> Result<Box<dyn Ranker>> {
    let kind = rank
        .automatic_kind()
        .context("key `rank.fallback`: the `human` ranker needs an automatic fallback")?;
    Ok(match kind {
        RankerKind::Oracle => Box::new(OracleRanker),
        RankerKind::Command => Box::new(command_ranker(rank)?),
        RankerKind::RewardModel => {
            let path = rank.model.as_deref().context(
                "key `rank.model`: the `reward_model` ranker needs the reward model's directory",
            )?;
            let dir = crate::paths::resolve(path).context("key `rank.model`")?;
            Box::new(
                reward_model::RewardModelRanker::<B>::load(&dir, device)
                    .context("key `rank.model` (the reward model)")?,
            )
        }
        RankerKind::Embedding => {
            let path = rank.model.as_deref().unwrap_or(embedding::DEFAULT_MODEL);
            let dir = crate::paths::resolve(path).context("key `rank.model`")?;
            Box::new(
                embedding::EmbeddingRanker::<B>::load(&dir, device)
                    .context("key `rank.model` (the embedding ranker's sentence encoder)")?,
            )
        }
        RankerKind::Human => bail!("key `rank.fallback`: must be an automatic ranker"),
    })
}

/// The external process `rank.command` names, called after the script it runs
/// (`test_ranker`, `pairrm_ranker`), else the program.
fn command_ranker(rank: &Rank) -> Result<process::ProcessRanker> {
    let stem = |a: &String| {
        std::path::Path::new(a)
            .file_stem()
            .map_or(a.clone(), |s| s.to_string_lossy().into_owned())
    };
    let name = rank
        .command
        .iter()
        .skip(1)
        .find(|a| a.ends_with(".py") || a.ends_with(".sh"))
        .or(rank.command.first())
        .map(stem)
        .unwrap_or_else(|| RankerKind::Command.name().into());
    process::ProcessRanker::new(
        name,
        rank.command.clone(),
        Duration::from_secs_f64(rank.timeout_s),
    )
}

/// What a ranker sees of one prompt.
#[derive(Debug, Clone)]
pub struct RankRequest<'a> {
    pub prompt: &'a str,
    /// The task behind the prompt, when it is a built-in one (the oracle needs it).
    pub task: Option<&'a TaskPrompt>,
    /// The dataset's reference answer, when the prompts file has one (`reference`, else
    /// `chosen`).
    pub reference: Option<&'a str>,
    pub candidates: &'a [String],
}

pub trait Ranker: Send {
    /// A short name recorded with every pair: `oracle`, or for a command the script's or
    /// program's name (`pairrm_ranker`, `test_ranker`).
    fn name(&self) -> &str;

    /// One score per candidate, higher is better.
    fn score(&mut self, request: &RankRequest<'_>) -> Result<Vec<f64>>;
}

/// The exact reward of the built-in tasks.
#[derive(Debug, Default)]
pub struct OracleRanker;

impl Ranker for OracleRanker {
    fn name(&self) -> &str {
        RankerKind::Oracle.name()
    }

    fn score(&mut self, request: &RankRequest<'_>) -> Result<Vec<f64>> {
        let Some(task) = request.task else {
            bail!(
                "the oracle ranker only scores built-in task prompts; {:?} is not one",
                request.prompt
            );
        };
        Ok(request.candidates.iter().map(|c| task.reward(c)).collect())
    }
}

/// `ranker`'s scores for `request`, checked to be one per candidate.
pub fn score_checked(ranker: &mut dyn Ranker, request: &RankRequest<'_>) -> Result<Vec<f64>> {
    let scores = ranker.score(request)?;
    if scores.len() != request.candidates.len() {
        bail!(
            "ranker `{}` returned {} scores for {} candidates",
            ranker.name(),
            scores.len(),
            request.candidates.len()
        );
    }
    Ok(scores)
}

/// Indices of the best and worst candidates (first on ties), or None when all scores are
/// equal: such a prompt carries no preference.
pub fn best_and_worst(scores: &[f64]) -> Option<(usize, usize)> {
    if scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let best = (0..scores.len()).reduce(|a, b| if scores[b] > scores[a] { b } else { a })?;
    let worst = (0..scores.len()).reduce(|a, b| if scores[b] < scores[a] { b } else { a })?;
    (scores[best] > scores[worst]).then_some((best, worst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::TaskKind;

    #[test]
    fn picks_best_and_worst() {
        assert_eq!(best_and_worst(&[0.2, 0.9, 0.1, 0.9]), Some((1, 2)));
        assert_eq!(best_and_worst(&[0.5, 0.5]), None);
        assert_eq!(best_and_worst(&[]), None);
        assert_eq!(best_and_worst(&[0.1, f64::NAN]), None);
    }

    #[test]
    fn oracle_scores_with_the_task_reward() {
        let task = TaskPrompt {
            kind: TaskKind::Add,
            prompt: "1+2=".into(),
            answer: "3".into(),
        };
        let candidates = vec!["3".to_string(), "4".to_string()];
        let req = RankRequest {
            prompt: "1+2=",
            task: Some(&task),
            reference: None,
            candidates: &candidates,
        };
        assert_eq!(OracleRanker.score(&req).unwrap(), vec![1.0, 0.0]);
        let req = RankRequest {
            prompt: "hi",
            task: None,
            reference: None,
            candidates: &candidates,
        };
        assert!(OracleRanker.score(&req).is_err());
    }
}
