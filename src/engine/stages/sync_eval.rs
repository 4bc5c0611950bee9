//! Stage 6: measure this iteration's pairs under the updated policy and the reference (for
//! the inspector), evaluate on held-out prompts, then pi_ref <- pi_theta (unless
//! `train.sync_reference = false`) and checkpoint pi_theta.

use anyhow::{Result, bail};
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::engine::messages::{Event, LogLine};
use crate::engine::pipeline::{Pipeline, Progress};
use crate::model::CausalLm;
use crate::run::records::{PairLogps, ResponseLogps};
use crate::selm::Triple;
use crate::selm::logprobs::response_token_logps;

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn sync_eval(&mut self, emit: &mut dyn FnMut(Event)) -> Result<Progress> {
        if !self.burn()?.policy_is_finite() {
            bail!(
                "the policy's weights are not finite after the update: not syncing the \
                 reference or writing a checkpoint (the last good one is iteration {})",
                self.iteration - 1
            );
        }
        let logps = self.measure_pairs()?;
        self.run.write_pair_logps(self.iteration, &logps)?;
        emit(Event::PairLogps {
            iteration: self.iteration,
            logps,
        });
        let summary = self.evaluate_iteration(emit)?;
        if self.config.train.sync_reference {
            self.burn_mut()?.sync_reference();
        }
        let dir = self.run.save_checkpoint(
            self.iteration,
            &self.burn()?.policy().valid(),
            &self.tokenizer_files,
            &self.save_as()?,
        )?;
        emit(Event::Log(LogLine::info(format!(
            "checkpoint {}",
            dir.display()
        ))));
        self.publish_summary(summary, emit)?;
        Ok((1, 1))
    }

    /// Per-token log-probs of every pair's chosen, rejected and y_ref under the updated policy
    /// and the reference.
    fn measure_pairs(&self) -> Result<Vec<PairLogps>> {
        let trainer = self.burn()?;
        let policy = trainer.policy().valid();
        let reference = trainer.reference();
        let mut out = Vec::with_capacity(self.state.triples.len());
        // At most an update's micro-batch per pass: its memory is what the update was sized to.
        let triples = &self.state.triples;
        let per_pass = trainer.micro_batch(triples);
        for chunk in triples.chunks(per_pass.min(self.config.train.batch_size)) {
            let rows: Vec<(&[u32], &[u32])> = chunk
                .iter()
                .flat_map(|t| t.responses().map(|r| (t.prompt.as_slice(), r)))
                .collect();
            let pol = response_token_logps(&policy, &rows);
            let refs = reference_token_logps(reference, chunk, &rows);
            let mut responses = rows
                .iter()
                .zip(pol.into_iter().zip(refs))
                .map(|((_, r), (policy, reference))| {
                    let tokens = r
                        .iter()
                        .map(|&id| self.tokenizer.token_piece(id))
                        .collect::<Result<_>>()?;
                    Ok(ResponseLogps {
                        tokens,
                        ids: r.to_vec(),
                        policy,
                        reference,
                    })
                })
                .collect::<Result<Vec<_>>>()?
                .into_iter();
            while let (Some(chosen), Some(rejected), Some(y_ref)) =
                (responses.next(), responses.next(), responses.next())
            {
                out.push(PairLogps {
                    beta: self.params.beta,
                    chosen,
                    rejected,
                    y_ref,
                });
            }
        }
        Ok(out)
    }
}

/// pi_ref's per-token log-probs of each row (three per triple): as generation recorded them,
/// else from one pass of `reference` over the rows without.
fn reference_token_logps<B: Backend>(
    reference: &CausalLm<B>,
    triples: &[Triple],
    rows: &[(&[u32], &[u32])],
) -> Vec<Vec<f32>> {
    let carried: Vec<Option<Vec<f32>>> = triples
        .iter()
        .flat_map(|t| t.reference_logps.clone())
        .collect();
    let missing: Vec<(&[u32], &[u32])> = rows
        .iter()
        .zip(&carried)
        .filter(|(_, c)| c.is_none())
        .map(|(r, _)| *r)
        .collect();
    let mut computed = response_token_logps(reference, &missing).into_iter();
    carried
        .into_iter()
        .map(|c| c.unwrap_or_else(|| computed.next().expect("one per missing row")))
        .collect()
}
