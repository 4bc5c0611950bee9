//! Stage 2: one decode batch of candidates from pi_ref per unit (K samples per prompt and
//! the greedy y_ref), in-process or on a server ([`super::generate_server`]); the candidates
//! go to disk after each batch, and whole when the last one is done.

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::borrow::Cow;

use crate::config::GenerateEngine;
use crate::engine::Event;
use crate::engine::pipeline::{Pipeline, Progress};
use crate::model::CausalLm;
use crate::model::generate::generate_suppressing;
use crate::model::sampling::SamplingParams;
use crate::run::records::{Candidate, CandidatesRecord, DatasetLabel};

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn generate_batch(
        &mut self,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Progress> {
        let total = self.state.jobs.len();
        let jobs = self.state.jobs[self.cursor].clone();
        let candidates = match self.config.generate.engine {
            GenerateEngine::InProcess => self.decode_in_process(&jobs)?,
            GenerateEngine::Server => self.decode_on_server(&jobs, emit)?,
        };
        for ((i, _), candidate) in jobs.iter().zip(candidates) {
            self.state.candidates[*i].push(candidate);
        }
        if self.cursor + 1 == total {
            self.add_dataset_candidates()?;
            self.write_candidates()?;
        }
        Ok((self.cursor + 1, total))
    }

    /// One decode batch of `jobs` (prompt index, is y_ref) on the run's backend.
    fn decode_in_process(&self, jobs: &[(usize, bool)]) -> Result<Vec<Candidate>> {
        let greedy = jobs[0].1;
        let g = &self.config.generate;
        let params = if greedy {
            SamplingParams::GREEDY
        } else {
            SamplingParams {
                temperature: g.temperature,
                top_p: g.top_p,
                top_k: g.top_k,
            }
        };
        // A seed per (iteration, batch): the same config gives the same samples, however
        // the run was stepped.
        let seed = self.config.run.seed ^ ((self.iteration as u64) << 32) ^ self.cursor as u64;
        let mut rng = StdRng::seed_from_u64(seed);
        let prompts: Vec<Vec<u32>> = jobs
            .iter()
            .map(|(i, _)| self.state.prompt_ids[*i].clone())
            .collect();
        let out = generate_suppressing(
            &*self.sampler()?,
            &prompts,
            g.max_new_tokens,
            &params,
            &self.tokenizer.suppressed_ids(),
            &mut rng,
        );
        let from_reference = self.config.train.sync_reference;
        jobs.iter()
            .zip(out)
            .map(|((_, is_ref), out)| {
                // The ids its text tokenizes back to: what is trained on is what pairs.jsonl
                // says.
                let (text, tokens) = self.tokenizer.response_text_and_ids(&out.tokens)?;
                // pi_ref's log-probs hold for exactly the tokens it sampled.
                let reference_logps = (from_reference && tokens == out.tokens).then_some(out.logps);
                Ok(Candidate::generated(text, tokens, *is_ref, reference_logps))
            })
            .collect()
    }

    /// The model candidates are sampled from: pi_ref, which after a sync is the current
    /// policy; with `train.sync_reference = false` (pi_ref fixed at the start) the current
    /// policy, as an online loop samples from it.
    fn sampler(&self) -> Result<Cow<'_, CausalLm<B::InnerBackend>>> {
        let trainer = self.burn()?;
        Ok(if self.config.train.sync_reference {
            Cow::Borrowed(trainer.reference())
        } else {
            Cow::Owned(trainer.policy().valid())
        })
    }

    /// Orders each prompt's candidates as K samples, the dataset's responses (when
    /// `prompts.dataset_responses`), then y_ref (generated first).
    fn add_dataset_candidates(&mut self) -> Result<()> {
        let use_dataset = self.config.prompts.dataset_responses;
        for (prompt, cands) in self.state.prompts.iter().zip(&mut self.state.candidates) {
            let y_ref = cands.remove(0);
            let r = &prompt.responses;
            let rows = [
                (&r.chosen, DatasetLabel::Chosen),
                (&r.rejected, DatasetLabel::Rejected),
            ];
            for (text, label) in rows.into_iter().filter(|_| use_dataset) {
                let Some(text) = text else { continue };
                cands.push(Candidate {
                    text: text.clone(),
                    tokens: self.tokenizer.encode_response(text)?,
                    is_reference: false,
                    score: None,
                    dataset: Some(label),
                    reference_logps: None,
                });
            }
            cands.push(y_ref);
        }
        Ok(())
    }

    /// `iter-NNN/candidates.jsonl`; written before ranking too, so a failing ranker loses
    /// nothing.
    pub(in crate::engine) fn write_candidates(&self) -> Result<()> {
        let rows: Vec<CandidatesRecord> = self
            .state
            .prompts
            .iter()
            .zip(&self.state.candidates)
            .zip(&self.state.ranked_by)
            .map(|((p, c), ranker)| CandidatesRecord {
                iteration: self.iteration,
                prompt: p.text.clone(),
                candidates: c.clone(),
                ranker: ranker.clone(),
            })
            .collect();
        self.run.write_candidates(self.iteration, &rows)
    }
}
