//! Rankers score a prompt's candidate responses; the loop picks the best and worst.
//! Five exist, chosen by `rank.ranker`: `oracle`, the built-in tasks' exact reward;
//! `command`, an external process speaking JSON lines ([`process`]; scripts/ has a PairRM
//! reward model and a test ranker written for it); `reward_model`, an HF sequence
//! classifier run in-process on the run's backend ([`reward_model`]); `embedding`, the
//! cosine similarity of a sentence embedding to the prompt's reference answer
//! ([`embedding`]); and `server`, a reward model on a server's pooling endpoint ([`server`]).

pub mod embedding;
pub mod process;
pub mod reward_model;
pub mod server;

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::backend::Backend;
use std::path::Path;
use std::time::Duration;

use crate::external::wait::Watch;

use crate::config::{Rank, RankerKind};
use crate::tasks::TaskPrompt;

/// The automatic ranker `rank` configures (`rank.ranker`, or for `human` its fallback); a
/// model (`reward_model`, `embedding`) is loaded onto `device` of backend `B` (the run's
/// inference backend, `B::InnerBackend` of the trainer's); a server started for `server`
/// writes its output to `ranker-server.log` in `run_dir`.
pub fn from_config<B: Backend>(
    rank: &Rank,
    device: &B::Device,
    run_dir: &Path,
) -> Result<Box<dyn Ranker>> {
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
        RankerKind::Server => {
            let config = rank
                .server
                .as_ref()
                .context("key `rank.server`: the `server` ranker needs a [rank.server] section")?;
            let model = match rank.model.as_deref() {
                Some(path) => Some(crate::paths::resolve(path).context("key `rank.model`")?),
                None => None,
            };
            let log = run_dir.join(SERVER_LOG);
            Box::new(server::ServerRanker::new(config, model.as_deref(), log)?)
        }
        RankerKind::Human => bail!("key `rank.fallback`: must be an automatic ranker"),
    })
}

/// Where a reward model's server started by the run writes its output (in the run directory).
pub const SERVER_LOG: &str = "ranker-server.log";

/// The external process `rank.command` names, called after the script it runs
/// (`test_ranker`, `pairrm_ranker`; also inside a `sh -c` line), else the program.
fn command_ranker(rank: &Rank) -> Result<process::ProcessRanker> {
    process::ProcessRanker::new(
        command_name(&rank.command),
        rank.command.clone(),
        Duration::from_secs_f64(rank.timeout_s),
    )
}

fn command_name(command: &[String]) -> String {
    let stem = |a: &str| {
        Path::new(a)
            .file_stem()
            .map_or(a.to_string(), |s| s.to_string_lossy().into_owned())
    };
    let script = command
        .iter()
        .skip(1)
        .flat_map(|a| a.split_whitespace())
        .find(|w| w.ends_with(".py") || w.ends_with(".sh"));
    script
        .or(command.first().map(String::as_str))
        .map(stem)
        .unwrap_or_else(|| RankerKind::Command.name().into())
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

    /// After a failed unit of work: drop what may be stuck (a server this ranker started
    /// stops; the next scores start it again). Others keep their state.
    fn reset(&mut self) {}

    /// The scores of several prompts. A ranker that waits on the outside (a server) shows
    /// the wait to `watch`, which may cut it short ([`crate::external::wait::Interrupted`]),
    /// and may score the prompts concurrently; the others score them one by one.
    fn score_all(
        &mut self,
        requests: &[RankRequest<'_>],
        _watch: &mut Watch,
    ) -> Result<Vec<Vec<f64>>> {
        requests.iter().map(|r| self.score(r)).collect()
    }
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

/// `ranker`'s scores for several prompts ([`Ranker::score_all`]), each checked to be one per
/// candidate.
pub fn score_all_checked(
    ranker: &mut dyn Ranker,
    requests: &[RankRequest<'_>],
    watch: &mut Watch,
) -> Result<Vec<Vec<f64>>> {
    let all = ranker.score_all(requests, watch)?;
    ensure!(
        all.len() == requests.len(),
        "ranker `{}` scored {} of {} prompts",
        ranker.name(),
        all.len(),
        requests.len()
    );
    for (k, (scores, r)) in all.iter().zip(requests).enumerate() {
        ensure!(
            scores.len() == r.candidates.len(),
            "ranker `{}` returned {} scores for the {} candidates of prompt {} of {}",
            ranker.name(),
            scores.len(),
            r.candidates.len(),
            k + 1,
            requests.len()
        );
    }
    Ok(all)
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
    fn a_command_ranker_is_named_after_its_script() {
        let name = |c: &[&str]| command_name(&c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(name(&["python3", "scripts/test_ranker.py"]), "test_ranker");
        let line = ". env/bin/activate && exec python scripts/pairrm_ranker.py --model m";
        assert_eq!(name(&["sh", "-c", line]), "pairrm_ranker");
        assert_eq!(name(&["/opt/judge", "--fast"]), "judge");
        assert_eq!(name(&[]), "command");
    }

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
