//! The six-stage pipeline as a state machine advanced one small unit of work at a time
//! (one decode batch, one ranking chunk, one update mini-batch), so that a front end can step,
//! pause and change parameters between units. Each stage's work is in `super::stages`.

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use std::time::Instant;

use super::interrupt::Interrupt;
use super::messages::{Event, LiveParams, Origin, Stage, StageSummary, Wait};
use super::stages::{HumanDesk, IterationState};
use super::start::{load_start, prompt_sets, start_models};
use crate::config::{Config, GenerateEngine};
use crate::external::server::{ModelServer, Role};
use crate::external::trainer::RunningTrainer;
use crate::model::CausalLm;
use crate::prompts::PromptSets;
use crate::ranker::Ranker;
use crate::run::records::RunState;
use crate::run::records::{EvalFigures, HistoryEntry, IterationSummary};
use crate::run::{RunDir, RunLock};
use crate::tokenizer::TextTokenizer;
use crate::train::{CosineWithWarmup, OptimConfig, SelmTrainer};

/// What one call to [`Pipeline::advance`] completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    Unit,
    /// The rank stage waits for the researcher's verdict on the prompt it asked about.
    AwaitingHuman,
    StageDone,
    IterationDone,
    RunDone,
}

/// Units of the current stage done, out of how many.
pub(super) type Progress = (usize, usize);

pub struct Pipeline<B: AutodiffBackend> {
    pub(super) config: Config,
    /// Policy, reference and optimizer in Burn; None with `train.engine = "command"`, where
    /// the weights live with the external trainer and the generation server.
    pub(super) trainer: Option<SelmTrainer<B>>,
    /// The external trainer while an update runs (`train.engine = "command"`).
    pub(super) running_trainer: Option<RunningTrainer>,
    pub(super) tokenizer: TextTokenizer,
    /// tokenizer.json and tokenizer_config.json, saved with every checkpoint.
    pub(super) tokenizer_files: Vec<(String, String)>,
    /// The automatic ranker: `rank.ranker`, or for `human` its fallback.
    pub(super) ranker: Box<dyn Ranker>,
    /// The generation server (`generate.engine = "server"`).
    pub(super) server: Option<ModelServer>,
    /// The researcher's side of a `human` rank stage; None for automatic rankers.
    pub(super) desk: Option<HumanDesk>,
    pub(super) sets: PromptSets,
    /// Token ids of the held-out prompts.
    pub(super) eval_ids: Vec<Vec<u32>>,
    pub(super) run: RunDir,
    /// Held while this process writes the run directory.
    _lock: RunLock,
    pub(super) params: LiveParams,
    pub(super) iteration: usize,
    pub(super) stage: Stage,
    /// The unit of the current stage to run next.
    pub(super) cursor: usize,
    pub(super) state: IterationState,
    pub(super) summaries: Vec<IterationSummary>,
    pub(super) started: Instant,
    /// When the current stage's first unit (in this process) began.
    stage_clock: Instant,
    pub(super) global_step: usize,
    pub(super) finished: bool,
    /// Raised by a command: a unit waiting on the outside gives up ([`Self::watch`]).
    interrupt: Interrupt,
}

impl<B: AutodiffBackend> Pipeline<B> {
    /// Loads the model (policy and reference), draws the prompt sets, creates the run dir.
    pub fn new(config: Config, device: &B::Device) -> Result<Self> {
        let (models, tokenizer) = load_start::<B>(&config, device)?;
        let models = models.map(|m| start_models(&config, m)).transpose()?;
        let run = RunDir::create(&config.run.out_dir, &config.run.name)?;
        let lock = RunLock::acquire(&run.path)?;
        run.write_config(&config)?;
        let params = config.live_params();
        let mut pipeline = Self::assemble(config, run, lock, models, tokenizer, device)?;
        pipeline.run.push_history(&HistoryEntry::Start {
            time: now(),
            iteration: 1,
            step: 0,
            params,
        })?;
        Ok(pipeline)
    }

    /// The pipeline of `run` at iteration 1, before its first stage, with `models`
    /// (policy, reference; None for an external trainer).
    pub(super) fn assemble(
        config: Config,
        run: RunDir,
        lock: RunLock,
        models: Option<(CausalLm<B>, CausalLm<B::InnerBackend>)>,
        tokenizer: TextTokenizer,
        device: &B::Device,
    ) -> Result<Self> {
        let tokenizer_files = vec![
            ("tokenizer.json".to_string(), tokenizer.to_json()?),
            (
                "tokenizer_config.json".to_string(),
                serde_json::to_string_pretty(&tokenizer.tokenizer_config_json())?,
            ),
        ];
        let sets = prompt_sets(&config)?;
        let eval_ids = sets
            .eval
            .iter()
            .map(|p| p.encode(&tokenizer, config.prompts.chat))
            .collect::<Result<_>>()?;
        let ranker =
            crate::ranker::from_config::<B::InnerBackend>(&config.rank, device, &run.path)?;
        let optim = OptimConfig {
            max_grad_norm: config.train.max_grad_norm,
            weight_decay: config.train.weight_decay,
            micro_batch: config.train.micro_batch_size,
            ..OptimConfig::default()
        };
        let trainer = models.map(|(policy, reference)| {
            SelmTrainer::new(
                policy,
                reference,
                optim,
                CosineWithWarmup::constant(config.train.lr),
            )
            .with_objective(config.train.objective)
        });
        let desk = config.rank.is_human().then(HumanDesk::default);
        let server = match (config.generate.engine, &config.generate.server) {
            (GenerateEngine::Server, Some(section)) => Some(
                ModelServer::new(Role::GENERATE, section, run.server_log())?
                    .with_lora_base(config.model_dir()?),
            ),
            _ => None,
        };
        Ok(Self {
            params: config.live_params(),
            config,
            trainer,
            running_trainer: None,
            tokenizer,
            tokenizer_files,
            ranker,
            server,
            desk,
            sets,
            eval_ids,
            run,
            _lock: lock,
            iteration: 1,
            stage: Stage::SamplePrompts,
            cursor: 0,
            state: IterationState::default(),
            summaries: vec![],
            started: Instant::now(),
            stage_clock: Instant::now(),
            global_step: 0,
            finished: false,
            interrupt: Interrupt::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn run(&self) -> &RunDir {
        &self.run
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn params(&self) -> LiveParams {
        self.params
    }

    /// The iteration and stage the next unit belongs to.
    pub fn position(&self) -> (usize, Stage) {
        (self.iteration, self.stage)
    }

    /// Units of the current stage already done.
    pub fn unit(&self) -> usize {
        self.cursor
    }

    /// Evaluations so far (iteration 0 is the starting model).
    pub fn summaries(&self) -> &[IterationSummary] {
        &self.summaries
    }

    /// The current policy pi_theta, when it is in-process.
    pub fn policy(&self) -> Option<&CausalLm<B>> {
        self.trainer.as_ref().map(SelmTrainer::policy)
    }

    /// The in-process models, which every in-process stage needs.
    pub(super) fn burn(&self) -> Result<&SelmTrainer<B>> {
        self.trainer
            .as_ref()
            .context("no in-process model with `train.engine = \"command\"`")
    }

    pub(super) fn burn_mut(&mut self) -> Result<&mut SelmTrainer<B>> {
        self.trainer
            .as_mut()
            .context("no in-process model with `train.engine = \"command\"`")
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Changes alpha / beta / lr from the next update on, and records it.
    pub fn set_params(
        &mut self,
        alpha: Option<f64>,
        beta: Option<f64>,
        lr: Option<f64>,
        origin: Origin,
    ) -> Result<LiveParams> {
        let next = LiveParams {
            alpha: alpha.unwrap_or(self.params.alpha),
            beta: beta.unwrap_or(self.params.beta),
            lr: lr.unwrap_or(self.params.lr),
        };
        next.validate()?;
        if let Some(trainer) = self.trainer.as_mut() {
            trainer.set_peak_lr(next.lr);
        }
        self.run.push_history(&HistoryEntry::Set {
            time: now(),
            iteration: self.iteration,
            step: self.global_step,
            old: self.params,
            new: next,
            source: Some(origin.to_string()),
        })?;
        self.params = next;
        Ok(next)
    }

    /// Evaluates the starting model (iteration 0) so that later iterations have a baseline.
    /// For crash tests it is stage `sync_eval` of iteration 0: unit 0 before it, unit 1 with
    /// its metrics row written and no summary or state yet.
    pub fn evaluate_start(&mut self, emit: &mut dyn FnMut(Event)) -> Result<()> {
        self.stall_if_at((0, Stage::SyncEval, 0), emit);
        let summary = self.evaluate(0, f64::NAN, 0, f64::NAN, emit)?;
        self.stall_if_at((0, Stage::SyncEval, 1), emit);
        self.publish_summary(summary, emit)?;
        self.write_state()
    }

    /// Does one unit of work.
    pub fn advance(&mut self, emit: &mut dyn FnMut(Event)) -> Result<Advance> {
        if self.finished {
            return Ok(Advance::RunDone);
        }
        if self.awaiting_human() {
            return Ok(Advance::AwaitingHuman);
        }
        if self.cursor == 0 && !self.asked_about(0) {
            self.stage_clock = Instant::now();
            emit(Event::StageStarted {
                iteration: self.iteration,
                stage: self.stage,
            });
        }
        self.stall_if_at((self.iteration, self.stage, self.cursor), emit);
        if let Some(query) = self.human_query() {
            emit(Event::RankQuery(query));
            return Ok(Advance::AwaitingHuman);
        }
        let (done, total) = self.run_unit(emit).with_context(|| {
            format!(
                "iteration {} stage `{}`",
                self.iteration,
                self.stage.label()
            )
        })?;
        self.cursor += 1;
        emit(Event::Progress {
            iteration: self.iteration,
            stage: self.stage,
            done,
            total,
        });
        if done < total {
            if matches!(self.stage, Stage::Generate | Stage::Rank) {
                // Decode batches and ranking chunks are worth keeping: a resume goes on
                // from the next one. (Update mini-batches are not: that would mean saving
                // the optimizer's moments at every step.)
                self.write_candidates()?;
                self.write_state()?;
            }
            return Ok(Advance::Unit);
        }
        let (iteration, stage, summary) = (self.iteration, self.stage, self.stage_summary());
        if stage == Stage::Generate {
            self.release_server(emit)?;
        }
        if let (Stage::Update, Some(trainer)) = (stage, &self.trainer) {
            // The only stage boundary where pi_theta differs from the last checkpoint (an
            // external trainer's model is in its directory).
            self.run
                .save_policy_state(trainer.policy(), &self.save_as()?)?;
        }
        self.cursor = 0;
        let advance = match stage.next() {
            Some(next) => {
                self.stage = next;
                Advance::StageDone
            }
            None if iteration == self.config.run.iterations => {
                self.finished = true;
                Advance::RunDone
            }
            None => {
                self.iteration += 1;
                self.stage = Stage::SamplePrompts;
                Advance::IterationDone
            }
        };
        // On disk before anyone hears of it: a kill after this resumes past the stage.
        self.write_state()?;
        emit(Event::StageFinished {
            iteration,
            stage,
            summary,
            seconds: self.stage_clock.elapsed().as_secs_f64(),
        });
        Ok(advance)
    }

    /// Records the boundary just reached (a stage's, or a unit's within it) in `state.json`.
    pub(super) fn write_state(&self) -> Result<()> {
        let (jsonl, csv) = self.run.metrics_lengths()?;
        self.run.write_state(&RunState {
            version: RunState::VERSION,
            iteration: self.iteration,
            stage: self.stage,
            unit: self.cursor,
            finished: self.finished,
            global_step: self.global_step,
            metrics_jsonl_bytes: jsonl,
            metrics_csv_bytes: csv,
        })
    }

    /// Runs unit number `self.cursor` of the current stage.
    fn run_unit(&mut self, emit: &mut dyn FnMut(Event)) -> Result<Progress> {
        match self.stage {
            Stage::SamplePrompts => self.sample_prompts(),
            Stage::Generate => self.generate_batch(emit),
            Stage::Rank => self.rank_chunk(emit),
            Stage::SelectPairs => self.select_pairs(emit),
            Stage::Update if self.trainer.is_none() => self.update_with_command(emit),
            Stage::Update => self.update_batch(emit),
            Stage::SyncEval if self.trainer.is_none() => self.sync_eval_external(emit),
            Stage::SyncEval => self.sync_eval(emit),
        }
    }

    fn stage_summary(&self) -> StageSummary {
        let s = &self.state;
        match self.stage {
            Stage::SamplePrompts => StageSummary::SamplePrompts {
                prompts: s.prompts.len(),
            },
            Stage::Generate => StageSummary::Generate {
                responses: s.candidates.iter().map(Vec::len).sum(),
            },
            Stage::Rank => StageSummary::Rank {
                mean_score: s.mean_score(),
            },
            Stage::SelectPairs => StageSummary::SelectPairs {
                pairs: s.triples.len(),
                without_preference: s.prompts.len() - s.triples.len(),
            },
            Stage::Update => StageSummary::Update {
                updates: s.losses.len(),
                mean_loss: s.mean_loss(),
            },
            Stage::SyncEval => {
                StageSummary::SyncEval(self.summaries.last().map_or(EvalFigures::NAN, |x| x.eval))
            }
        }
    }
}

impl<B: AutodiffBackend> Pipeline<B> {
    /// The interrupt the engine's commands raise; waits give up when it is.
    pub fn set_interrupt(&mut self, interrupt: Interrupt) {
        self.interrupt = interrupt;
    }

    /// What a wait on the outside reports to: the front ends hear of it once a second from
    /// its first second on, and it gives up when a pause or a quit has come.
    pub(super) fn watch<'a>(
        &self,
        emit: &'a mut dyn FnMut(Event),
    ) -> impl FnMut(&Wait) -> bool + use<'a, B> {
        let interrupt = self.interrupt.clone();
        // The starting evaluation runs paused (the run opens paused after it): only a quit
        // cuts its waits short.
        let quit_only = self.summaries.is_empty();
        let mut shown: Option<(String, u64)> = None;
        move |wait: &Wait| {
            let second = wait.elapsed_s as u64;
            // A wait under a second (most batches) is not worth a word.
            if second >= 1 && shown.as_ref() != Some(&(wait.what.clone(), second)) {
                shown = Some((wait.what.clone(), second));
                emit(Event::Waiting(wait.clone()));
            }
            !(interrupt.quitting() || (interrupt.is_raised() && !quit_only))
        }
    }
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}
