//! Stage 2: one decode batch of candidates from pi_ref per unit (K samples per prompt and
//! the greedy y_ref); the candidates go to disk when the last batch is done.

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::engine::pipeline::{Pipeline, Progress};
use crate::io::records::{Candidate, CandidatesRecord};
use crate::model::generate::generate_suppressing;
use crate::model::sampling::SamplingParams;

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn generate_batch(&mut self) -> Result<Progress> {
        let total = self.state.jobs.len();
        let jobs = self.state.jobs[self.cursor].clone();
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
            self.trainer.reference(),
            &prompts,
            g.max_new_tokens,
            &params,
            &self.tokenizer.suppressed_ids(),
            &mut rng,
        );
        for ((i, is_ref), out) in jobs.iter().zip(out) {
            // The ids its text tokenizes back to: what is trained on is what pairs.jsonl says.
            let (text, tokens) = self.tokenizer.response_text_and_ids(&out.tokens)?;
            self.state.candidates[*i].push(Candidate {
                text,
                tokens,
                is_reference: *is_ref,
                score: None,
            });
        }
        if self.cursor + 1 == total {
            // y_ref was generated first; keep it last, after the K samples.
            for c in &mut self.state.candidates {
                c.rotate_left(1);
            }
            self.write_candidates()?;
        }
        Ok((self.cursor + 1, total))
    }

    /// `iter-NNN/candidates.jsonl`; written before ranking too, so a failing ranker loses
    /// nothing.
    pub(in crate::engine) fn write_candidates(&self) -> Result<()> {
        let rows: Vec<CandidatesRecord> = self
            .state
            .prompts
            .iter()
            .zip(&self.state.candidates)
            .map(|(p, c)| CandidatesRecord {
                iteration: self.iteration,
                prompt: p.text.clone(),
                candidates: c.clone(),
            })
            .collect();
        self.run
            .write_jsonl(self.iteration, "candidates.jsonl", &rows)
    }
}
