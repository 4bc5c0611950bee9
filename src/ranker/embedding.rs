//! The `embedding` ranker: an offline judge that needs no reward model, only a reference
//! answer per prompt. A candidate's score is the cosine similarity between its sentence
//! embedding and the embedding of the prompt's reference answer, both made by a
//! sentence-transformers model ([`SentenceEncoder`], all-MiniLM-L6-v2 by default) run
//! in-process on the run's backend. Scores lie in [-1, 1]; answers that say what the
//! reference says, in whatever words, score near its top.

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use std::path::Path;

use super::{RankRequest, Ranker};
use crate::model::bert::{SentenceEncoder, cosine};

/// `rank.model` when the config gives none: the directory `scripts/fetch_minilm.sh` fills.
pub const DEFAULT_MODEL: &str = "cache:all-MiniLM-L6-v2";

/// A sentence encoder scoring candidates against the reference answer.
pub struct EmbeddingRanker<B: Backend> {
    encoder: SentenceEncoder<B>,
}

impl<B: Backend> EmbeddingRanker<B> {
    /// Loads the sentence-transformers model directory `dir` onto `device`.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self> {
        let encoder = SentenceEncoder::load(dir, device)
            .with_context(|| format!("loading the sentence encoder in {}", dir.display()))?;
        Ok(Self { encoder })
    }

    pub fn encoder(&self) -> &SentenceEncoder<B> {
        &self.encoder
    }
}

impl<B: Backend> Ranker for EmbeddingRanker<B> {
    fn name(&self) -> &str {
        crate::config::RankerKind::Embedding.name()
    }

    /// The reference and the candidates go through the encoder together (one batch for up
    /// to [`crate::model::bert::BATCH_SIZE`] texts).
    fn score(&mut self, request: &RankRequest<'_>) -> Result<Vec<f64>> {
        let reference = request.reference.with_context(|| {
            format!(
                "the embedding ranker scores candidates against the prompt's reference answer, \
                 and prompt {:?} has none (give each row of the prompts file a `reference` or \
                 `chosen` answer)",
                request.prompt
            )
        })?;
        let texts: Vec<&str> = std::iter::once(reference)
            .chain(request.candidates.iter().map(String::as_str))
            .collect();
        let embeddings = self.encoder.embed(&texts)?;
        let (reference, candidates) = embeddings
            .split_first()
            .context("the sentence encoder returned no embeddings")?;
        Ok(candidates.iter().map(|c| cosine(reference, c)).collect())
    }
}
