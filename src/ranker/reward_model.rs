//! The `reward_model` ranker: an HF sequence-classification reward model
//! ([`SequenceClassifier`], one label) run in-process on the run's backend and device. Each
//! candidate is scored in the reward model's own format: with a chat template in its
//! `tokenizer_config.json`, the conversation [user: prompt, assistant: response] rendered
//! without a generation prompt; otherwise the prompt text followed by the response text, with
//! the special tokens its `tokenizer.json` adds (BOS). A request's candidates go through the
//! model together, [`BATCH_SIZE`] rows per forward pass.

use anyhow::{Context, Result, ensure};
use burn::tensor::backend::Backend;
use std::path::Path;

use super::{RankRequest, Ranker};
use crate::chat::Message;
use crate::model::classifier::{ClassifierConfig, SequenceClassifier};
use crate::model::load::check_fits;
use crate::tokenizer::TextTokenizer;

/// Rows per forward pass (the tiny default's 9 candidates of a prompt take one).
pub const BATCH_SIZE: usize = 32;

/// A reward model and its tokenizer.
pub struct RewardModelRanker<B: Backend> {
    model: SequenceClassifier<B>,
    tokenizer: TextTokenizer,
    batch_size: usize,
}

impl<B: Backend> RewardModelRanker<B> {
    /// Loads the reward model in HF directory `dir` (`config.json` naming
    /// `LlamaForSequenceClassification` or `Qwen2ForSequenceClassification` with one label,
    /// safetensors with `score.weight`, `tokenizer.json`, optional `tokenizer_config.json`)
    /// onto `device`.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = ClassifierConfig::from_file(&config_path)?;
        let labels = config.num_labels;
        ensure!(
            labels == 1,
            "{}: num_labels is {labels}, but a reward model has one label (its score)",
            config_path.display()
        );
        let model = SequenceClassifier::<B>::load_weights(config, dir, device)?;
        let tokenizer = TextTokenizer::from_hf_dir(dir, &model.model_config().tokens())
            .with_context(|| format!("the tokenizer of {}", dir.display()))?;
        check_fits(model.model_config(), &tokenizer)
            .with_context(|| format!("the tokenizer of {}", dir.display()))?;
        Ok(Self {
            model,
            tokenizer,
            batch_size: BATCH_SIZE,
        })
    }

    /// Rows per forward pass from now on (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn model(&self) -> &SequenceClassifier<B> {
        &self.model
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The token ids the reward model scores for `response` to `prompt`.
    pub fn encode(&self, prompt: &str, response: &str) -> Result<Vec<u32>> {
        match &self.tokenizer.chat {
            Some(chat) => {
                let conversation = [
                    Message::user(prompt),
                    Message {
                        role: "assistant".into(),
                        content: response.into(),
                    },
                ];
                self.tokenizer.encode(&chat.render(&conversation, false)?)
            }
            None => self.tokenizer.encode_prompt(&format!("{prompt}{response}")),
        }
    }

    /// Scores of token rows, in order, [`Self::with_batch_size`] rows per forward pass
    /// (rows of similar length together).
    pub fn score_rows(&self, rows: &[Vec<u32>]) -> Result<Vec<f64>> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut scores = vec![0.0; rows.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| rows[i].clone()).collect();
            for (&i, s) in chunk.iter().zip(self.model.scores(&batch)?) {
                scores[i] = s as f64;
            }
        }
        Ok(scores)
    }
}

impl<B: Backend> Ranker for RewardModelRanker<B> {
    fn name(&self) -> &str {
        crate::config::RankerKind::RewardModel.name()
    }

    fn score(&mut self, request: &RankRequest<'_>) -> Result<Vec<f64>> {
        let rows = request
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.encode(request.prompt, c)
                    .with_context(|| format!("formatting candidate {} for the reward model", i + 1))
            })
            .collect::<Result<Vec<_>>>()?;
        self.score_rows(&rows)
    }
}
