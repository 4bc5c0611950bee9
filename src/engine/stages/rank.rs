//! Stage 3: the ranker scores each prompt's candidates, a chunk of prompts per unit, so a
//! failure redoes only its chunk (the candidates are already on disk). A human ranker's
//! stage is in `human.rs`.

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use std::ops::Range;

use crate::engine::Event;
use crate::engine::pipeline::{Pipeline, Progress};
use crate::ranker::{RankRequest, score_all_checked};

/// Prompts ranked per unit.
const RANK_CHUNK: usize = 16;

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn rank_chunk(
        &mut self,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Progress> {
        if self.desk.is_some() {
            return self.rank_by_human(emit);
        }
        let n = self.state.prompts.len();
        let total = n.div_ceil(RANK_CHUNK).max(1);
        let start = self.cursor * RANK_CHUNK;
        self.rank_prompts(start..(start + RANK_CHUNK).min(n), emit)?;
        if self.cursor + 1 == total {
            self.write_candidates()?;
        }
        Ok((self.cursor + 1, total))
    }

    /// Scores the candidates of `prompts` with the automatic ranker.
    pub(in crate::engine) fn rank_prompts(
        &mut self,
        prompts: Range<usize>,
        emit: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let n = self.state.prompts.len();
        let texts: Vec<Vec<String>> = prompts
            .clone()
            .map(|i| {
                self.state.candidates[i]
                    .iter()
                    .map(|c| c.text.clone())
                    .collect()
            })
            .collect();
        let requests: Vec<RankRequest> = prompts
            .clone()
            .zip(&texts)
            .map(|(i, texts)| {
                let prompt = &self.state.prompts[i];
                RankRequest {
                    prompt: &prompt.text,
                    task: prompt.task.as_ref(),
                    reference: prompt.reference_answer(),
                    candidates: texts,
                }
            })
            .collect();
        let mut watch = self.watch(emit);
        let scores = score_all_checked(self.ranker.as_mut(), &requests, &mut watch);
        let scores = scores.with_context(|| {
            format!(
                "ranking prompts {}-{} of {n} (the candidates are in \
                 iter-{:03}/candidates.jsonl; step again to retry)",
                prompts.start + 1,
                prompts.end,
                self.iteration
            )
        })?;
        for (i, scores) in prompts.zip(scores) {
            for (c, s) in self.state.candidates[i].iter_mut().zip(scores) {
                c.score = Some(s);
            }
            self.state.ranked_by[i] = Some(self.ranker.name().to_string());
        }
        Ok(())
    }
}
