//! Stage 5 with `train.engine = "command"`: the iteration's pairs go to an external trainer
//! (TRL + DeepSpeed, say) through files in `iter-NNN/train/`. A unit waits briefly for the
//! trainer's next metrics line, so the engine still answers the front end between its steps;
//! the stage ends when the trainer exits 0 with a model. A trainer that fails leaves the run
//! at the start of this stage: `resume` launches it again.

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::LoraCheckpoint;
use crate::engine::messages::{Event, LogLine, Stage};
use crate::engine::pipeline::{Pipeline, Progress};
use crate::external::process::expand;
use crate::external::trainer::{
    EvalPromptRow, PreferenceRow, RunningTrainer, TrainerLora, TrainerParams, TrainerPoll,
};

/// How long one unit waits for the trainer.
const POLL: Duration = Duration::from_millis(250);

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn update_with_command(
        &mut self,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Progress> {
        let total = self.state.batches.len();
        if total == 0 {
            return Ok(self.no_update(emit));
        }
        if self.running_trainer.is_none() {
            self.launch_trainer(emit)?;
        }
        let trainer = self.running_trainer.as_mut().expect("launched");
        // A failed trainer is dropped (its group stopped): a retry launches a new one.
        let polled = trainer.poll(POLL);
        let polled = polled.inspect_err(|_| self.running_trainer = None)?;
        match polled {
            TrainerPoll::Running => {}
            TrainerPoll::Metrics(m) => {
                if let Some(why) = m.non_finite() {
                    self.running_trainer = None;
                    bail!(
                        "the trainer reports {why} at step {} of iteration {}: it is stopped \
                         and no model of this iteration is taken (its output in {})",
                        self.state.losses.len() + 1,
                        self.iteration,
                        self.run.trainer_log().display()
                    );
                }
                self.record_step(m.metrics, m.grad_norm, m.lr, emit)?;
            }
            TrainerPoll::Finished => {
                self.running_trainer = None;
                // A trainer that never called the loss it was given (another TRL whose
                // hooks moved, say) may have trained something else: no step, no model.
                if self.state.losses.is_empty() {
                    bail!(
                        "the trainer exited 0 but reported no step for {} pairs: its update is \
                         not taken (a trainer prints one JSON metrics line per optimizer step; \
                         its output in {})",
                        self.state.triples.len(),
                        self.run.trainer_log().display()
                    );
                }
                self.check_trainer_output(&self.trainer_params()?)
                    .with_context(|| {
                        format!(
                            "the trainer exited 0 (its output in {})",
                            self.run.trainer_log().display()
                        )
                    })?;
                return Ok((total, total));
            }
        }
        // Done only when the trainer says so, however many lines it printed.
        Ok((self.state.losses.len().min(total - 1), total))
    }

    /// Writes the files an external trainer gets for this iteration's update (once its pairs
    /// are selected) and returns the path of their `params.json`. The command engine runs
    /// its trainer on them; the cross-engine check hands an in-process run's to one.
    pub fn write_trainer_inputs(&self) -> Result<PathBuf> {
        let params = self.trainer_params()?;
        let pairs = self.preference_rows()?;
        let eval_prompts = self.eval_prompt_rows()?;
        let path = self
            .run
            .write_trainer_inputs(&params, &pairs, &eval_prompts)?;
        if let (Some(lora), Some(section)) = (&params.lora, &self.config.train.lora)
            && self.iteration == 1
        {
            // The first adapter, as the in-process update draws it from the run's seed.
            crate::model::lora::save_fresh_adapter(
                &self.model_config()?,
                &section.shape(),
                crate::engine::start::lora_seed(&self.config),
                &self.base_model()?,
                &lora.adapter,
            )
            .context("writing the first adapter")?;
        }
        Ok(path)
    }

    /// Writes the update's inputs and starts `train.command` on them, from the stage's start:
    /// the steps of an earlier attempt (a retry after a failure) are cut from the metrics.
    fn launch_trainer(&mut self, emit: &mut dyn FnMut(Event)) -> Result<()> {
        if let Some(state) = self.run.read_state()?
            && state.iteration == self.iteration
            && state.stage == Stage::Update
        {
            self.run
                .truncate_metrics(state.metrics_jsonl_bytes, state.metrics_csv_bytes)?;
            self.global_step = state.global_step;
        }
        self.state.losses.clear();
        let params = self.trainer_params()?;
        // Absolute, as every path in it: the trainer may run from another directory.
        let params_path = std::path::absolute(self.write_trainer_inputs()?)?;
        let pairs = self.state.triples.len();
        let run_dir = std::path::absolute(&self.run.path)?;
        let template = self.config.train.command.as_deref().unwrap_or_default();
        let command = expand(template, &params.placeholders(&run_dir, &params_path));
        emit(Event::Log(LogLine::info(format!(
            "iteration {}: trainer `{command}` on {} pairs (its output in trainer.log)",
            self.iteration, pairs
        ))));
        self.running_trainer = Some(RunningTrainer::start(&command, &self.run.trainer_log())?);
        Ok(())
    }

    /// The parameters and paths of this iteration's update (absolute: a trainer may run
    /// elsewhere in the file system, or on another node of a shared one).
    pub(in crate::engine) fn trainer_params(&self) -> Result<TrainerParams> {
        let abs = |p: &Path| -> Result<PathBuf> {
            std::path::absolute(p).with_context(|| format!("the absolute path of {}", p.display()))
        };
        let start = abs(&self.config.model_dir()?)?;
        // The policy starts from pi_theta: the start, then the last checkpoint.
        let last = match self.iteration {
            1 => start.clone(),
            n => abs(&self.run.checkpoint_dir(n - 1))?,
        };
        let dir = abs(&self.run.trainer_dir(self.iteration))?;
        let t = &self.config.train;
        // A LoRA update trains the last adapter on the base (iteration 1: a fresh one).
        let lora = t.lora.as_ref().map(|l| TrainerLora {
            rank: l.rank,
            alpha: l.alpha,
            rslora: l.rslora,
            dropout: l.dropout,
            target_modules: l.target_modules.clone(),
            adapter: match self.iteration {
                1 => dir.join("first_adapter"),
                _ => last.join(crate::run::ADAPTER_DIR),
            },
            reference_adapter: t.sync_reference && self.iteration > 1,
            merged: l.checkpoint == LoraCheckpoint::Merged,
        });
        let model = match lora {
            Some(_) => start.clone(),
            None => last,
        };
        let ref_model = match t.sync_reference {
            true => model.clone(),
            false => start,
        };
        Ok(TrainerParams {
            iteration: self.iteration,
            objective: t.objective.name().to_string(),
            alpha: self.params.alpha,
            beta: self.params.beta,
            lr: self.params.lr,
            epochs: 1,
            batch_size: t.batch_size,
            micro_batch_size: t.micro_batch_size,
            warmup_ratio: t.warmup_ratio,
            max_grad_norm: t.max_grad_norm,
            weight_decay: t.weight_decay,
            seed: self.config.run.seed,
            model,
            ref_model,
            input: dir.join("pairs.jsonl"),
            out: dir.join("model"),
            eval_prompts: dir.join("eval_prompts.jsonl"),
            pair_logps_out: dir.join("pair_logps.jsonl"),
            eval_samples_out: dir.join("eval_samples.jsonl"),
            eval_samples: self.config.eval.samples,
            eval_temperature: self.config.eval.temperature,
            max_new_tokens: self.config.generate.max_new_tokens,
            eos_token_ids: self.tokenizer.eos_ids().to_vec(),
            pad_token_id: self.tokenizer.pad,
            suppress_token_ids: self.tokenizer.suppressed_ids(),
            lora,
        })
    }

    /// The pairs in the order of the in-process update's mini-batches (seeded per
    /// iteration), so that a trainer stepping through the file in order takes the same steps.
    fn preference_rows(&self) -> Result<Vec<PreferenceRow>> {
        let s = &self.state;
        s.batches
            .iter()
            .flatten()
            .map(|&t| {
                let triple = &s.triples[t];
                let prompt = &s.prompts[s.triple_prompts[t]];
                let text = |ids: &[u32]| self.tokenizer.decode(ids);
                Ok(PreferenceRow {
                    prompt: prompt.render(&self.tokenizer, self.config.prompts.chat)?,
                    chosen: text(&triple.chosen)?,
                    rejected: text(&triple.rejected)?,
                    reference_response: text(&triple.reference_response)?,
                    prompt_ids: triple.prompt.clone(),
                    chosen_ids: triple.chosen.clone(),
                    rejected_ids: triple.rejected.clone(),
                    reference_ids: triple.reference_response.clone(),
                })
            })
            .collect()
    }

    /// The held-out prompts, each with the seed of its samples this iteration.
    fn eval_prompt_rows(&self) -> Result<Vec<EvalPromptRow>> {
        (self.sets.eval.iter().zip(&self.eval_ids))
            .enumerate()
            .map(|(i, (prompt, ids))| {
                Ok(EvalPromptRow {
                    prompt: prompt.render(&self.tokenizer, self.config.prompts.chat)?,
                    prompt_ids: ids.clone(),
                    seed: super::generate_server::request_seed(
                        self.config.run.seed ^ EVAL_SALT,
                        self.iteration,
                        i,
                        0,
                    ),
                })
            })
            .collect()
    }
}

/// Sets the held-out samples' seeds apart from the training candidates'.
pub(in crate::engine) const EVAL_SALT: u64 = 0xe7a1;
