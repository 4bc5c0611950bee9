//! Stage 1: this iteration's chunk of training prompts, tokenized, and the decode batches
//! that will generate their candidates.

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use std::time::Instant;

use super::IterationState;
use crate::engine::pipeline::{Pipeline, Progress};

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn sample_prompts(&mut self) -> Result<Progress> {
        self.started = Instant::now();
        let per = self.config.prompts.per_iteration;
        let chunk = &self.sets.train[(self.iteration - 1) * per..self.iteration * per];
        let prompt_ids = chunk
            .iter()
            .map(|p| p.encode(&self.tokenizer, self.config.prompts.chat))
            .collect::<Result<_>>()?;
        let k = self.config.generate.samples;
        let bs = self.config.generate.batch_size;
        // y_ref (greedy) first, in batches of its own: greedy and sampled rows never mix.
        let greedy: Vec<(usize, bool)> = (0..chunk.len()).map(|i| (i, true)).collect();
        let sampled: Vec<(usize, bool)> = (0..chunk.len())
            .flat_map(|i| std::iter::repeat_n((i, false), k))
            .collect();
        let jobs = greedy
            .chunks(bs)
            .chain(sampled.chunks(bs))
            .map(<[_]>::to_vec)
            .collect();
        self.state = IterationState {
            prompts: chunk.to_vec(),
            prompt_ids,
            candidates: vec![vec![]; chunk.len()],
            ranked_by: vec![None; chunk.len()],
            jobs,
            ..IterationState::default()
        };
        Ok((1, 1))
    }
}
