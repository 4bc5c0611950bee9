//! Stage 4: per prompt, the best-scored candidate is chosen and the worst rejected (prompts
//! whose candidates all score the same are dropped); `pairs.jsonl` is written and the
//! update's mini-batches and fresh optimizer are set up.

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::engine::messages::{Event, LogLine};
use crate::engine::pipeline::{Pipeline, Progress};
use crate::ranker::best_and_worst;
use crate::run::records::{Candidate, PairRecord};
use crate::selm::Triple;
use crate::train::CosineWithWarmup;

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn select_pairs(
        &mut self,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Progress> {
        let mut records = vec![];
        let mut triples = vec![];
        let mut triple_prompts = vec![];
        let s = &self.state;
        for (i, (((prompt, ids), cands), ranked_by)) in (s.prompts.iter())
            .zip(&s.prompt_ids)
            .zip(&s.candidates)
            .zip(&s.ranked_by)
            .enumerate()
        {
            let scores: Vec<f64> = cands.iter().map(|c| c.score.unwrap_or(f64::NAN)).collect();
            let Some((best, worst)) = best_and_worst(&scores) else {
                continue;
            };
            let y_ref = cands
                .iter()
                .find(|c| c.is_reference)
                .expect("y_ref generated");
            triple_prompts.push(i);
            triples.push(Triple {
                prompt: ids.clone(),
                chosen: cands[best].tokens.clone(),
                rejected: cands[worst].tokens.clone(),
                reference_response: y_ref.tokens.clone(),
                reference_logps: [&cands[best], &cands[worst], y_ref]
                    .map(|c| c.reference_logps.clone()),
            });
            records.push(PairRecord {
                prompt: prompt.text.clone(),
                chosen: cands[best].text.clone(),
                rejected: cands[worst].text.clone(),
                iteration: self.iteration,
                chosen_score: scores[best],
                rejected_score: scores[worst],
                y_ref: y_ref.text.clone(),
                y_ref_score: y_ref.score.unwrap_or(f64::NAN),
                // pi_ref's per-token log-probs stay in candidates.jsonl.
                candidates: cands
                    .iter()
                    .map(|c| Candidate {
                        reference_logps: None,
                        ..c.clone()
                    })
                    .collect(),
                ranker: (ranked_by.clone()).unwrap_or_else(|| self.ranker.name().to_string()),
            });
        }
        self.run.write_pairs(self.iteration, &records)?;
        emit(Event::Pairs {
            iteration: self.iteration,
            pairs: records,
        });
        // One epoch over the pairs in a seeded order; a fresh optimizer and schedule per
        // iteration, as the official recipe trains each iteration as its own run.
        let mut order: Vec<usize> = (0..triples.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(
            self.config.run.seed ^ (self.iteration as u64) << 40,
        ));
        self.state.batches = order
            .chunks(self.config.train.batch_size)
            .map(<[_]>::to_vec)
            .collect();
        self.state.triples = triples;
        self.state.triple_prompts = triple_prompts;
        let schedule = CosineWithWarmup::new(
            self.params.lr,
            self.config.train.warmup_ratio,
            self.state.batches.len(),
        );
        if schedule.warmup_swallows_all() {
            // Both engines schedule alike (transformers' warmup is ceil(ratio * steps)).
            emit(Event::Log(LogLine::warn(format!(
                "iteration {}: {} update step(s) with train.warmup_ratio {}: warmup takes \
                 all of them, the first at lr 0 and none at lr {}; lower the warmup ratio or \
                 train on more pairs per iteration",
                self.iteration,
                schedule.total_steps,
                self.config.train.warmup_ratio,
                self.params.lr
            ))));
        }
        if let Some(trainer) = self.trainer.as_mut() {
            trainer.reset_optimizer(schedule);
        }
        Ok((1, 1))
    }
}
