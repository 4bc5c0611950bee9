//! Stage 5: one SELM optimizer step on one mini-batch of triples per unit, with the live
//! alpha / beta; each step's metrics row is appended to the run's metrics.

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;

use crate::engine::messages::{Event, LogLine};
use crate::engine::pipeline::{Pipeline, Progress};
use crate::run::records::{MetricsRecord, TrainRecord};
use crate::selm::Triple;

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn update_batch(
        &mut self,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Progress> {
        let total = self.state.batches.len();
        if total == 0 {
            emit(Event::Log(LogLine::warn(format!(
                "iteration {}: no pairs with a preference; no update",
                self.iteration
            ))));
            return Ok((1, 1));
        }
        let batch: Vec<Triple> = self.state.batches[self.cursor]
            .iter()
            .map(|&i| self.state.triples[i].clone())
            .collect();
        let report = self
            .trainer
            .step(&batch, self.params.alpha, self.params.beta)?;
        self.global_step += 1;
        self.state.losses.push(report.metrics.loss);
        let record = TrainRecord {
            iteration: self.iteration,
            step: self.global_step,
            batch: self.cursor + 1,
            metrics: report.metrics,
            grad_norm: report.grad_norm,
            lr: report.lr,
        };
        self.run
            .push_metrics(&MetricsRecord::Train(record.clone()))?;
        emit(Event::Metrics(record));
        Ok((self.cursor + 1, total))
    }
}
