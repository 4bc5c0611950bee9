//! Stage 3: the ranker scores each prompt's candidates, a chunk of prompts per unit, so a
//! failure redoes only its chunk (the candidates are already on disk). A human ranker's
//! stage is in `human.rs`.

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use std::ops::Range;

use crate::engine::pipeline::{Pipeline, Progress};
use crate::ranker::{RankRequest, score_checked};

/// Prompts ranked per unit.
const RANK_CHUNK: usize = 16;

impl<B: AutodiffBackend> Pipeline<B> {
    pub(in crate::engine) fn rank_chunk(&mut self) -> Result<Progress> {
        if self.desk.is_some() {
            return self.rank_by_human();
        }
        let n = self.state.prompts.len();
        let total = n.div_ceil(RANK_CHUNK).max(1);
        let start = self.cursor * RANK_CHUNK;
        self.rank_prompts(start..(start + RANK_CHUNK).min(n))?;
        if self.cursor + 1 == total {
            self.write_candidates()?;
        }
        Ok((self.cursor + 1, total))
    }

    /// Scores the candidates of `prompts` with the automatic ranker.
    pub(in crate::engine) fn rank_prompts(&mut self, prompts: Range<usize>) -> Result<()> {
        let n = self.state.prompts.len();
        for i in prompts {
            let prompt = &self.state.prompts[i];
            let cands = &mut self.state.candidates[i];
            let texts: Vec<String> = cands.iter().map(|c| c.text.clone()).collect();
            let req = RankRequest {
                prompt: &prompt.text,
                task: prompt.task.as_ref(),
                reference: prompt.reference_answer(),
                candidates: &texts,
            };
            let scores = score_checked(self.ranker.as_mut(), &req).with_context(|| {
                format!(
                    "ranking prompt {} of {n} (the candidates are in iter-{:03}/candidates.jsonl; \
                     step again to retry)",
                    i + 1,
                    self.iteration
                )
            })?;
            for (c, s) in cands.iter_mut().zip(scores) {
                c.score = Some(s);
            }
            self.state.ranked_by[i] = Some(self.ranker.name().to_string());
        }
        Ok(())
    }
}
