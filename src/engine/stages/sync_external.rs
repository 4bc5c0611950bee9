//! Stage 6 with `train.engine = "command"`: the trainer's model becomes the iteration's
//! checkpoint (and so pi_ref, which the generation server serves next), the pairs' log-probs
//! it measured go to the inspector, and the held-out evaluation runs on its samples.

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use std::path::Path;

use crate::engine::messages::{Event, LogLine};
use crate::engine::pipeline::{Pipeline, Progress};
use crate::external::trainer::{MeasuredPair, MeasuredResponse, TrainerParams, check_model_dir};
use crate::run::ADAPTER_DIR;
use crate::run::read_if_present;
use crate::run::records::{PairLogps, ResponseLogps};

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn sync_eval_external(
        &mut self,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Progress> {
        let params = self.trainer_params()?;
        let checkpoint = self.run.checkpoint_dir(self.iteration);
        // A resume may find the model moved already (a stop right after the move).
        if params.out.exists() || !self.run.has_checkpoint(self.iteration) {
            if self.state.triples.is_empty() {
                self.keep_unchanged(&params)?;
            }
            self.check_trainer_output(&params)?;
            self.run
                .adopt_checkpoint(self.iteration, &params.out, &self.tokenizer_files)?;
        }
        emit(Event::Log(LogLine::info(format!(
            "checkpoint {}",
            checkpoint.display()
        ))));
        match self.trainer_pair_logps(&params.pair_logps_out)? {
            Some(logps) => {
                self.run.write_pair_logps(self.iteration, &logps)?;
                emit(Event::PairLogps {
                    iteration: self.iteration,
                    logps,
                });
            }
            None if !self.state.triples.is_empty() => emit(Event::Log(LogLine::warn(format!(
                "the trainer wrote no {}: the inspector has no log-probs for iteration {}",
                params.pair_logps_out.display(),
                self.iteration
            )))),
            None => {}
        }
        if !params.eval_samples_out.exists() && !self.state.triples.is_empty() {
            emit(Event::Log(LogLine::warn(format!(
                "the trainer wrote no {}: held-out samples come from the server, and kl is \
                 not measured",
                params.eval_samples_out.display()
            ))));
        }
        let summary = self.evaluate_iteration(emit)?;
        self.publish_summary(summary, emit)?;
        Ok((1, 1))
    }

    /// No update ran: pi_theta is the model (and adapter) the iteration started from.
    fn keep_unchanged(&self, params: &TrainerParams) -> Result<()> {
        let Some(lora) = &params.lora else {
            return copy_dir(&params.model, &params.out);
        };
        if lora.merged {
            let last = match self.iteration {
                1 => self.config.model_dir()?,
                n => self.run.checkpoint_dir(n - 1),
            };
            copy_dir(&last, &params.out)?;
        }
        if self.iteration == 1 {
            // The first adapter is written with the trainer's inputs, which an iteration
            // with no pairs never wrote.
            let section = self.config.train.lora.as_ref().expect("a LoRA run");
            return crate::model::lora::save_fresh_adapter(
                &self.model_config()?,
                &section.shape(),
                crate::engine::start::lora_seed(&self.config),
                &self.base_model()?,
                &params.out.join(ADAPTER_DIR),
            );
        }
        copy_dir(&lora.adapter, &params.out.join(ADAPTER_DIR))
    }

    /// The trainer left what this iteration's checkpoint needs: a model directory, or with
    /// LoRA an adapter of the configured shape (and the merged model unless adapter-only).
    pub(in crate::engine) fn check_trainer_output(&self, params: &TrainerParams) -> Result<()> {
        let Some(lora) = &params.lora else {
            return check_model_dir(&params.out);
        };
        if lora.merged {
            check_model_dir(&params.out)?;
        }
        let dir = params.out.join(ADAPTER_DIR);
        let shape = crate::model::lora::read_shape(&dir)
            .with_context(|| format!("the trainer's adapter in {}", dir.display()))?;
        let want = self.config.train.lora.as_ref().expect("a LoRA run").shape();
        if shape != want {
            bail!(
                "{}: the trainer saved an adapter of rank {}, alpha {}, targets {:?}; \
                 [train.lora] says rank {}, alpha {}, targets {:?}",
                dir.display(),
                shape.rank,
                shape.alpha,
                shape.targets,
                want.rank,
                want.alpha,
                want.targets
            );
        }
        Ok(())
    }

    /// The trainer's `pair_logps.jsonl` (in its input's order, the mini-batches') as the
    /// run's pair log-probs (in `pairs.jsonl`'s order), each checked against its tokens.
    fn trainer_pair_logps(&self, path: &Path) -> Result<Option<Vec<PairLogps>>> {
        let Some(rows) = read_if_present::<MeasuredPair>(path)? else {
            return Ok(None);
        };
        let order: Vec<usize> = self.state.batches.iter().flatten().copied().collect();
        if rows.len() != order.len() {
            bail!(
                "{}: {} rows for {} pairs",
                path.display(),
                rows.len(),
                order.len()
            );
        }
        let mut out = vec![PairLogps::default(); order.len()];
        for (line, (row, &t)) in rows.into_iter().zip(&order).enumerate() {
            let triple = &self.state.triples[t];
            let response = |m: MeasuredResponse, ids: &[u32]| -> Result<ResponseLogps> {
                if m.policy.len() != ids.len() || m.reference.len() != ids.len() {
                    bail!(
                        "{} line {}: {} policy and {} reference log-probs for a response of \
                         {} tokens",
                        path.display(),
                        line + 1,
                        m.policy.len(),
                        m.reference.len(),
                        ids.len()
                    );
                }
                Ok(ResponseLogps {
                    tokens: (ids.iter().map(|&id| self.tokenizer.token_piece(id)))
                        .collect::<Result<_>>()?,
                    ids: ids.to_vec(),
                    policy: m.policy,
                    reference: m.reference,
                })
            };
            out[t] = PairLogps {
                beta: self.params.beta,
                chosen: response(row.chosen, &triple.chosen)?,
                rejected: response(row.rejected, &triple.rejected)?,
                y_ref: response(row.y_ref, &triple.reference_response)?,
            };
        }
        Ok(Some(out))
    }
}

/// Gives new directory `to` the files of model directory `from`: hard links (a 7B model's
/// weights are not copied), else copies.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_file() && !dest.exists() {
            std::fs::hard_link(entry.path(), &dest)
                .or_else(|_| std::fs::copy(entry.path(), &dest).map(|_| ()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
