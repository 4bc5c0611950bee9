//! Evaluation on the held-out prompts: `kl` (k1 estimate of KL(pi_theta || pi_ref) on fresh
//! policy samples), `high_reward_fraction`, `reward/mean` and the reward histogram.

use anyhow::{Context, Result, bail};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::messages::Event;
use super::pipeline::Pipeline;
use super::stages::generate_server::{Sampling, complete_all, completion_request, request_seed};
use super::stages::update_command::EVAL_SALT;
use crate::external::trainer::EvalSamplesRow;
use crate::model::generate::generate_suppressing;
use crate::model::load::host;
use crate::model::sampling::SamplingParams;
use crate::ranker::{RankRequest, score_all_checked};
use crate::run::read_if_present;
use crate::run::records::{
    EvalFigures, EvalRecord, HISTOGRAM_BINS, IterationSummary, MetricsRecord,
};
use crate::selm::logprobs::sequence_logps;

impl<B: AutodiffBackend> Pipeline<B> {
    /// Samples the policy on every held-out prompt, scores the samples, appends the eval row
    /// to the metrics and returns the iteration's summary row.
    pub(super) fn evaluate(
        &mut self,
        iteration: usize,
        cand_mean: f64,
        pairs: usize,
        mean_loss: f64,
        emit: &mut dyn FnMut(Event),
    ) -> Result<IterationSummary> {
        let (kl_sum, samples) = match self.trainer {
            Some(_) => self.sample_held_out(iteration)?,
            None => self.held_out_external(iteration, emit)?,
        };
        let requests: Vec<RankRequest> = (self.sets.eval.iter().zip(&samples))
            .map(|(prompt, texts)| RankRequest {
                prompt: &prompt.text,
                task: prompt.task.as_ref(),
                reference: prompt.reference_answer(),
                candidates: texts,
            })
            .collect();
        let mut watch = self.watch(emit);
        let rewards: Vec<f64> = score_all_checked(self.ranker.as_mut(), &requests, &mut watch)
            .context("scoring held-out samples")?
            .into_iter()
            .flatten()
            .collect();
        let n = rewards.len().max(1) as f64;
        let threshold = self.config.rank.high_reward_threshold;
        let range = self.config.rank.score_range;
        let figures = EvalFigures {
            kl: kl_sum / n,
            high_reward_fraction: rewards.iter().filter(|&&r| r >= threshold).count() as f64 / n,
            reward_mean: rewards.iter().sum::<f64>() / n,
        };
        let summary = IterationSummary {
            iteration,
            eval: figures,
            reward_histogram: histogram(&rewards, range),
            histogram_range: range,
            candidate_reward_mean: cand_mean,
            pairs,
            mean_loss,
            eval_prompts: self.sets.eval.len(),
            eval_samples: rewards.len(),
            wall_s: if iteration == 0 {
                0.0
            } else {
                self.started.elapsed().as_secs_f64()
            },
        };
        self.run.push_metrics(&MetricsRecord::Eval(EvalRecord {
            iteration,
            step: self.global_step,
            figures,
            alpha: self.params.alpha,
            beta: self.params.beta,
        }))?;
        Ok(summary)
    }

    /// Evaluates the iteration just updated; its summary row carries the iteration's mean
    /// candidate score, pairs and mean loss.
    pub(super) fn evaluate_iteration(
        &mut self,
        emit: &mut dyn FnMut(Event),
    ) -> Result<IterationSummary> {
        let (score, pairs, loss) = (
            self.state.mean_score(),
            self.state.triples.len(),
            self.state.mean_loss(),
        );
        self.evaluate(self.iteration, score, pairs, loss, emit)
    }

    /// An evaluation's summary row: to the front end, then into `summary.json`.
    pub(super) fn publish_summary(
        &mut self,
        summary: IterationSummary,
        emit: &mut dyn FnMut(Event),
    ) -> Result<()> {
        emit(Event::Iteration(summary.clone()));
        self.summaries.push(summary);
        self.run.write_summary(&self.summaries)
    }

    /// `eval.samples` policy samples per held-out prompt (decoded, grouped by prompt) and
    /// the sum over them of log pi_theta(y|x) - log pi_ref(y|x).
    fn sample_held_out(&self, iteration: usize) -> Result<(f64, Vec<Vec<String>>)> {
        let trainer = self.burn()?;
        let policy = trainer.policy().valid();
        let e = &self.config.eval;
        let params = SamplingParams {
            temperature: e.temperature,
            top_p: 1.0,
            top_k: 0,
        };
        let mut rng =
            StdRng::seed_from_u64(self.config.run.seed ^ 0xe7a1 ^ (iteration as u64) << 24);
        let jobs: Vec<usize> = (0..self.sets.eval.len())
            .flat_map(|i| std::iter::repeat_n(i, e.samples))
            .collect();
        let mut kl_sum = 0.0;
        let mut samples: Vec<Vec<String>> = vec![vec![]; self.sets.eval.len()];
        let suppressed = self.tokenizer.suppressed_ids();
        for chunk in jobs.chunks(self.config.generate.batch_size) {
            let prompts: Vec<Vec<u32>> = chunk.iter().map(|&i| self.eval_ids[i].clone()).collect();
            let out = generate_suppressing(
                &policy,
                &prompts,
                self.config.generate.max_new_tokens,
                &params,
                &suppressed,
                &mut rng,
            );
            let rows: Vec<(&[u32], &[u32])> = prompts
                .iter()
                .zip(&out)
                .map(|(p, g)| (p.as_slice(), g.tokens.as_slice()))
                .collect();
            // log pi_theta(y|x) was recorded while pi_theta sampled y. Before the first
            // update pi_theta is pi_ref: kl is 0 by definition, with no forward pass.
            if iteration > 0 {
                let lp = out
                    .iter()
                    .map(|g| g.logps.iter().map(|&x| x as f64).sum::<f64>());
                let lr = host(sequence_logps(trainer.reference(), &rows)).data;
                kl_sum += lp.zip(&lr).map(|(a, &b)| a - b as f64).sum::<f64>();
            }
            for (&i, g) in chunk.iter().zip(&out) {
                samples[i].push(self.tokenizer.decode(&g.tokens)?);
            }
        }
        Ok((kl_sum, samples))
    }
}

impl<B: AutodiffBackend> Pipeline<B> {
    /// Held-out samples and their kl sum with an external trainer: after an update, those
    /// the trainer drew from the updated policy and scored under both models
    /// (`eval_samples.jsonl`); for the starting model, or a trainer that wrote none, samples
    /// from the generation server serving pi_theta (kl is 0 at the start and after an
    /// iteration without pairs, else unmeasured).
    fn held_out_external(
        &mut self,
        iteration: usize,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(f64, Vec<Vec<String>>)> {
        if iteration > 0
            && let Some(found) = self.trainer_eval_samples(iteration)?
        {
            return Ok(found);
        }
        // With no update this iteration, pi_theta is still the model the server had.
        let unchanged = iteration == 0 || self.state.triples.is_empty();
        let (checkpoint, starting) = match iteration {
            0 | 1 if unchanged => (self.config.model_dir()?, true),
            n if unchanged => (self.run.checkpoint_dir(n - 1), false),
            n => (self.run.checkpoint_dir(n), false),
        };
        let config = (self.config.generate.server.clone())
            .context("an external trainer without a generation server")?;
        let e = &self.config.eval;
        let sampling = Sampling {
            temperature: e.temperature,
            top_p: 1.0,
            top_k: 0,
        };
        let mut requests = vec![];
        for (i, prompt) in self.sets.eval.iter().enumerate() {
            let text = prompt.render(&self.tokenizer, self.config.prompts.chat)?;
            for s in 0..e.samples {
                let seed = request_seed(self.config.run.seed ^ EVAL_SALT, iteration, i, s as u64);
                requests.push(completion_request(
                    config.api,
                    text.clone(),
                    self.config.generate.max_new_tokens,
                    sampling,
                    seed,
                    false,
                ));
            }
        }
        let mut watch = self.watch(emit);
        let server = self.server.as_mut().context("no generation server")?;
        server.serve(&checkpoint, starting, &mut watch)?;
        let texts: Vec<String> =
            complete_all(server.requester(), requests, config.concurrency, &mut watch)?
                .into_iter()
                .flatten()
                .map(|c| c.text)
                .collect();
        let samples = texts.chunks(e.samples.max(1)).map(<[_]>::to_vec).collect();
        // pi_theta = pi_ref when nothing moved, unless pi_ref stays the start while pi_theta
        // moved on in earlier iterations (`train.sync_reference = false`).
        let is_reference = unchanged && (iteration <= 1 || self.config.train.sync_reference);
        let kl = if is_reference { 0.0 } else { f64::NAN };
        Ok((kl, samples))
    }

    /// The trainer's held-out samples of `iteration`, decoded, with their kl sum; None when
    /// it wrote none.
    fn trainer_eval_samples(&self, iteration: usize) -> Result<Option<(f64, Vec<Vec<String>>)>> {
        let path = self.run.trainer_dir(iteration).join("eval_samples.jsonl");
        let Some(rows) = read_if_present::<EvalSamplesRow>(&path)? else {
            return Ok(None);
        };
        if rows.len() != self.sets.eval.len() {
            bail!(
                "{}: {} rows for {} held-out prompts",
                path.display(),
                rows.len(),
                self.sets.eval.len()
            );
        }
        let mut kl_sum = 0.0;
        let mut samples = vec![];
        for row in rows {
            let mut texts = vec![];
            for s in row.samples {
                kl_sum += s.policy_logp - s.reference_logp;
                texts.push(self.tokenizer.decode(&s.ids)?);
            }
            samples.push(texts);
        }
        Ok(Some((kl_sum, samples)))
    }
}

/// Counts of `rewards` in equal bins over `[lo, hi]`; values outside go to the end bins.
pub fn histogram(rewards: &[f64], [lo, hi]: [f64; 2]) -> [usize; HISTOGRAM_BINS] {
    let mut bins = [0usize; HISTOGRAM_BINS];
    let n = HISTOGRAM_BINS as f64;
    for r in rewards {
        let i = ((r.clamp(lo, hi) - lo) / (hi - lo) * n) as usize;
        bins[i.min(HISTOGRAM_BINS - 1)] += 1;
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::histogram;

    #[test]
    fn histogram_bins_over_the_score_range() {
        let h = histogram(&[-2.0, -1.0, 0.0, 0.05, 0.99, 1.0, 5.0], [-1.0, 1.0]);
        // -2 clamps to the first bin, 5 to the last; 0.0 and 0.05 share bin 5.
        assert_eq!(h, [2, 0, 0, 0, 0, 2, 0, 0, 0, 3]);
        assert_eq!(histogram(&[], [0.0, 1.0]).iter().sum::<usize>(), 0);
    }
}
