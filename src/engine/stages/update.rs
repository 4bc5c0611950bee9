//! Stage 5: one SELM optimizer step on one mini-batch of triples per unit, with the live
//! alpha / beta; each step's metrics row is appended to the run's metrics.

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;

use crate::engine::messages::{Event, LogLine};
use crate::engine::pipeline::{Pipeline, Progress};
use crate::run::records::{MetricsRecord, TrainRecord};
use crate::selm::{SelmMetrics, Triple};

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn update_batch(
        &mut self,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Progress> {
        let total = self.state.batches.len();
        if total == 0 {
            return Ok(self.no_update(emit));
        }
        let batch: Vec<Triple> = self.state.batches[self.cursor]
            .iter()
            .map(|&i| self.state.triples[i].clone())
            .collect();
        let (alpha, beta) = (self.params.alpha, self.params.beta);
        if self
            .config
            .train
            .lora
            .as_ref()
            .is_some_and(|l| l.dropout > 0.0)
        {
            // This step's dropout masks, the same when a resume takes it again.
            let seed = super::generate_server::request_seed(
                self.config.run.seed ^ DROPOUT_SALT,
                self.iteration,
                self.cursor,
                0,
            );
            B::seed(&self.burn()?.policy().device(), seed);
        }
        let report = self.burn_mut()?.step(&batch, alpha, beta)?;
        self.record_step(report.metrics, report.grad_norm, report.lr, emit)?;
        Ok((self.cursor + 1, total))
    }

    /// An iteration whose prompts all lacked a preference: nothing to train on.
    pub(in crate::engine) fn no_update(&self, emit: &mut dyn FnMut(Event)) -> Progress {
        emit(Event::Log(LogLine::warn(format!(
            "iteration {}: no pairs with a preference; no update",
            self.iteration
        ))));
        (1, 1)
    }

    /// One optimizer step's metrics row, whichever engine took it: appended to the run's
    /// metrics, and to the front end's panels.
    pub(in crate::engine) fn record_step(
        &mut self,
        metrics: SelmMetrics,
        grad_norm: f64,
        lr: f64,
        emit: &mut dyn FnMut(Event),
    ) -> Result<()> {
        self.global_step += 1;
        self.state.losses.push(metrics.loss);
        let record = TrainRecord {
            iteration: self.iteration,
            step: self.global_step,
            batch: self.state.losses.len(),
            metrics,
            grad_norm,
            lr,
        };
        self.run
            .push_metrics(&MetricsRecord::Train(record.clone()))?;
        emit(Event::Metrics(record));
        Ok(())
    }
}

/// Sets the adapters' dropout masks apart from every other draw of the run seed.
const DROPOUT_SALT: u64 = 0xd20f;
