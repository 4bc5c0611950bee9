//! Continuing an interrupted run (`selm-tui resume`) from its last stage boundary, or within
//! generation and ranking from its last decode batch or ranking chunk: `state.json` says
//! which; the models come from the last checkpoint (and the saved policy between update and
//! sync), the iteration's cheap stages are replayed from their seeds and files, and metric
//! rows of the stage that did not finish are cut.

use anyhow::{Context, Result, bail};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use std::path::Path;

use super::messages::{Event, Stage};
use super::pipeline::{Pipeline, now};
use super::start::{load_start, start_models};
use crate::config::Config;
use crate::io::read_jsonl;
use crate::model::CausalLm;
use crate::model::load::load_hf_dir;
use crate::run::records::{HistoryEntry, IterationSummary, MetricsRecord, RunState};
use crate::run::{RunDir, RunLock};

impl<B: AutodiffBackend> Pipeline<B> {
    /// Opens the run in `dir` where it stopped. `emit` receives what the replayed stages
    /// report (the iteration's pairs, for the front end).
    pub fn resume(dir: &Path, device: &B::Device, emit: &mut dyn FnMut(Event)) -> Result<Self> {
        let run = RunDir::open(dir)?;
        let lock = RunLock::acquire(dir)?;
        let config = Config::from_file(&run.config_path()).with_context(|| {
            format!(
                "this version of selm-tui cannot read {}",
                run.config_path().display()
            )
        })?;
        let Some(state) = run.read_state()? else {
            return Self::restart(config, run, lock, device);
        };
        if state.finished {
            bail!(
                "{} is finished: all {} iterations ran (open it with `selm-tui inspect`)",
                dir.display(),
                config.run.iterations
            );
        }
        let (start, tokenizer) = load_start::<B>(&config, device)?;
        let models = match start {
            Some(start) => Some(resumed_models(&config, &run, &state, start, device)?),
            None => None,
        };
        run.truncate_metrics(state.metrics_jsonl_bytes, state.metrics_csv_bytes)?;
        let params = last_params(&run)?.unwrap_or_else(|| config.live_params());
        let summaries = read_summaries(&run, state.iteration)?;
        let mut p = Self::assemble(config, run, lock, models, tokenizer, device)?;
        p.params = params;
        if let Some(trainer) = p.trainer.as_mut() {
            trainer.set_peak_lr(params.lr);
        }
        p.summaries = summaries;
        p.global_step = state.global_step;
        p.iteration = state.iteration;
        p.restore_iteration(state.stage, state.unit, emit)?;
        p.stage = state.stage;
        p.cursor = state.unit;
        p.run.push_history(&HistoryEntry::Resume {
            time: now(),
            iteration: p.iteration,
            step: p.global_step,
            stage: p.stage,
            params,
        })?;
        Ok(p)
    }

    /// A run that stopped before its starting evaluation finished (no `state.json`): from
    /// its start, with the metrics it may have begun cut back to none. The engine then
    /// evaluates the starting model again, as for a new run ([`Pipeline::summaries`] is
    /// empty).
    fn restart(config: Config, run: RunDir, lock: RunLock, device: &B::Device) -> Result<Self> {
        // Past the start, a missing state cannot say where the run stopped: refuse rather
        // than write over its iterations.
        let progress = [run.iteration_dir(1), run.path.join("checkpoints")];
        if let Some(found) = progress.iter().find(|p| p.exists()) {
            bail!(
                "{} is missing, and the run went past its starting evaluation ({} exists): \
                 cannot tell where it stopped",
                run.state_path().display(),
                found.display()
            );
        }
        let (start, tokenizer) = load_start::<B>(&config, device)?;
        let models = start.map(|m| start_models(&config, m)).transpose()?;
        run.reset_metrics()?;
        let params = last_params(&run)?.unwrap_or_else(|| config.live_params());
        let mut p = Self::assemble(config, run, lock, models, tokenizer, device)?;
        p.params = params;
        if let Some(trainer) = p.trainer.as_mut() {
            trainer.set_peak_lr(params.lr);
        }
        p.run.push_history(&HistoryEntry::Resume {
            time: now(),
            iteration: 1,
            step: 0,
            stage: Stage::SamplePrompts,
            params,
        })?;
        Ok(p)
    }

    /// Rebuilds what the iteration's stages before `stage`, and its first `unit` units,
    /// left in memory.
    fn restore_iteration(
        &mut self,
        stage: Stage,
        unit: usize,
        emit: &mut dyn FnMut(Event),
    ) -> Result<()> {
        if stage == Stage::SamplePrompts {
            return Ok(());
        }
        self.sample_prompts()?;
        if stage.index() > Stage::Generate.index() || unit > 0 {
            self.load_candidates()?;
        }
        if stage.index() > Stage::SelectPairs.index() {
            self.select_pairs(emit)?;
        }
        if stage.index() > Stage::Update.index() {
            let metrics: Vec<MetricsRecord> = read_jsonl(&self.run.metrics_jsonl())?;
            self.state.losses = metrics
                .iter()
                .filter_map(|m| match m {
                    MetricsRecord::Train(t) if t.iteration == self.iteration => {
                        Some(t.metrics.loss)
                    }
                    _ => None,
                })
                .collect();
        }
        Ok(())
    }

    /// This iteration's candidates (and scores, once ranked) from `candidates.jsonl`.
    fn load_candidates(&mut self) -> Result<()> {
        let rows = self.run.read_candidates(self.iteration)?;
        let prompts = &self.state.prompts;
        let matches = rows.len() == prompts.len()
            && rows.iter().zip(prompts).all(|(r, p)| r.prompt == p.text);
        if !matches {
            bail!(
                "{}: {} rows that do not match this iteration's {} prompts",
                self.run.candidates_path(self.iteration).display(),
                rows.len(),
                prompts.len()
            );
        }
        (self.state.candidates, self.state.ranked_by) =
            rows.into_iter().map(|r| (r.candidates, r.ranker)).unzip();
        Ok(())
    }
}

/// Policy and reference in Burn where the run stopped: the checkpoints hold pi_theta; pi_ref
/// is the last one, or the start model when it is never synced. A LoRA run's checkpoints
/// are read as the start model with their adapters.
fn resumed_models<B: AutodiffBackend>(
    config: &Config,
    run: &RunDir,
    state: &RunState,
    start: CausalLm<B>,
    device: &B::Device,
) -> Result<(CausalLm<B>, CausalLm<B::InnerBackend>)> {
    let saved = |dir: &std::path::Path| match &config.train.lora {
        Some(lora) => {
            let adapter = dir.join(crate::run::ADAPTER_DIR);
            crate::model::lora::attach_from(start.clone(), &adapter)
                .map(|(model, _)| crate::model::lora::with_dropout(model, lora.dropout))
                .with_context(|| format!("the adapter in {}", adapter.display()))
        }
        None => load_hf_dir::<B>(dir, device),
    };
    let (fresh, start_reference) = start_models(config, start.clone())?;
    let last = match state.iteration {
        1 => fresh,
        n => saved(&run.checkpoint_dir(n - 1))?,
    };
    let policy = if state.stage == Stage::SyncEval {
        saved(&run.policy_state_dir())?
    } else {
        last.clone()
    };
    let reference = match config.train.sync_reference && state.iteration > 1 {
        true => last.valid(),
        false => start_reference,
    };
    Ok((policy, reference))
}

/// The parameters in force when the run stopped: the last history entry.
fn last_params(run: &RunDir) -> Result<Option<crate::config::LiveParams>> {
    let path = run.history_path();
    if !path.exists() {
        return Ok(None);
    }
    Ok(read_jsonl::<HistoryEntry>(&path)?
        .last()
        .map(HistoryEntry::params))
}

/// The evaluations of the iterations before `iteration` (0 is the starting model).
fn read_summaries(run: &RunDir, iteration: usize) -> Result<Vec<IterationSummary>> {
    let path = run.summary_path();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let all: Vec<IterationSummary> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a summary list", path.display()))?;
    Ok(all
        .into_iter()
        .filter(|s| s.iteration < iteration)
        .collect())
}
