//! A BERT sentence encoder: sentence-transformers' all-MiniLM-L6-v2 (and models shaped like
//! it) run on any Burn backend, for the `embedding` ranker.
//!
//! The encoder is HF `BertModel`: word + position + token-type embeddings and a LayerNorm,
//! then post-LN encoder layers (self-attention over the real tokens, dense + residual +
//! LayerNorm; exact erf GELU intermediate, dense + residual + LayerNorm). sentence-transformers
//! then mean-pools the last hidden states over the attention mask and L2-normalises the result
//! (its `Pooling` and `Normalize` modules). Everything is read from the model directory as
//! sentence-transformers saves it: `config.json`, `model.safetensors`, `tokenizer.json`,
//! `sentence_bert_config.json` (`max_seq_length`), `modules.json` and `1_Pooling/config.json`.
//!
//! A batch is right-padded; padding never reaches a real token (it is masked out as a key)
//! nor the pooled vector (it is left out of the mean), so a sentence embeds the same alone or
//! in any batch.

use anyhow::{Context, Result, ensure};
use burn::module::{Module, Param};
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor};
use serde::Deserialize;
use std::path::Path;

use super::llama::{Embedding, Linear};
use crate::io::weights::WeightMap;

mod load;
mod sentence;

use load::{Loader, read_weights};
pub use sentence::*;

/// sentence-transformers' `max_seq_length` when `sentence_bert_config.json` gives none.
pub const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// Rows per forward pass of [`SentenceEncoder::embed`].
pub const BATCH_SIZE: usize = 32;

/// The fields of an HF `BertConfig` (`config.json`) the encoder needs. The sizes are
/// required; the other keys default as in transformers when absent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Must be `gelu` (exact, erf-based), the only activation implemented.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub pad_token_id: u32,
    /// Must be `absolute` (learned positions 0..).
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    /// `bert` when given: RoBERTa-style models number their positions differently.
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_hidden_act() -> String {
    "gelu".into()
}

fn default_position_embedding_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses a config and checks that this encoder computes what transformers would.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).context("not a BERT config.json")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if let Some(t) = self.model_type.as_deref() {
            ensure!(t == "bert", "model_type is `{t}`: only `bert` is supported");
        }
        ensure!(
            self.hidden_act == "gelu",
            "hidden_act is `{}`: only `gelu` (exact erf GELU) is supported",
            self.hidden_act
        );
        ensure!(
            self.position_embedding_type == "absolute",
            "position_embedding_type is `{}`: only `absolute` is supported",
            self.position_embedding_type
        );
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            ensure!(v > 0, "{key} must be at least 1");
        }
        ensure!(
            self.hidden_size.is_multiple_of(self.num_attention_heads),
            "hidden_size {} is not a multiple of num_attention_heads {}",
            self.hidden_size,
            self.num_attention_heads
        );
        ensure!(
            (self.pad_token_id as usize) < self.vocab_size,
            "pad_token_id {} is not below vocab_size {}",
            self.pad_token_id,
            self.vocab_size
        );
        Ok(())
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// LayerNorm as torch computes it: `(x - mean) / sqrt(var + eps) * weight + bias`, over the
/// last dimension, with the biased variance.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let centered = x.clone() - x.mean_dim(2);
        let variance = centered.clone().square().mean_dim(2);
        let normed = centered * (variance + self.eps).sqrt().recip();
        normed * self.weight.val().unsqueeze::<3>() + self.bias.val().unsqueeze::<3>()
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
}

impl<B: Backend> BertEmbeddings<B> {
    /// `[batch, seq]` ids and token types -> `[batch, seq, hidden]`; positions are 0..seq.
    fn forward(&self, ids: Tensor<B, 2, Int>, types: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let seq = ids.dims()[1];
        let positions = self
            .position_embeddings
            .weight
            .val()
            .narrow(0, 0, seq)
            .unsqueeze::<3>();
        let x = self.word_embeddings.forward(ids) + self.token_type_embeddings.forward(types);
        self.layer_norm.forward(x + positions)
    }
}

/// One post-LN encoder layer. Field names follow the HF ones, shortened where Rust cannot
/// spell them (`attention.self.query` is `query`, `attention.output.dense` is
/// `attention_output`; [`Loader`] maps them).
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub attention_output: Linear<B>,
    pub attention_norm: LayerNorm<B>,
    pub intermediate: Linear<B>,
    pub output: Linear<B>,
    pub output_norm: LayerNorm<B>,
    pub num_heads: usize,
    pub head_dim: usize,
}

impl<B: Backend> BertLayer<B> {
    /// `mask`: `[batch, 1, 1, seq]`, true at padding keys.
    fn forward(&self, x: Tensor<B, 3>, mask: &Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let attended = self.self_attention(x.clone(), mask);
        let x = self
            .attention_norm
            .forward(x + self.attention_output.forward(attended));
        let inner = gelu(self.intermediate.forward(x.clone()));
        self.output_norm.forward(x + self.output.forward(inner))
    }

    /// Multi-head scaled dot-product attention of every position over the real tokens.
    fn self_attention(&self, x: Tensor<B, 3>, mask: &Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (h, hd) = (self.num_heads, self.head_dim);
        let heads = |y: Tensor<B, 3>| y.reshape([b, t, h, hd]).swap_dims(1, 2);
        let q = heads(self.query.forward(x.clone()));
        let k = heads(self.key.forward(x.clone()));
        let v = heads(self.value.forward(x));
        let mask = mask.clone().expand([b, h, t, t]);
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let out = attention(q, k, v, Some(mask), None, options);
        out.swap_dims(1, 2).reshape([b, t, h * hd])
    }
}

/// HF `BertModel` without its pooler (sentence-transformers pools the hidden states itself).
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub layers: Vec<BertLayer<B>>,
    #[module(skip)]
    pub config: BertConfig,
}

impl<B: Backend> BertModel<B> {
    /// Loads `model.safetensors` for `config`.
    pub fn load(config: BertConfig, path: &Path, device: &B::Device) -> Result<Self> {
        let mut weights = read_weights(path)?;
        Self::from_weights(config, &mut weights, device)
            .with_context(|| format!("loading {}", path.display()))
    }

    /// Builds the model, consuming every tensor it expects from `weights`, named as in HF
    /// with or without the `bert.` prefix of a `BertFor*` checkpoint. The pooler is ignored;
    /// any other tensor left over is an error.
    pub fn from_weights(
        config: BertConfig,
        weights: &mut WeightMap,
        device: &B::Device,
    ) -> Result<Self> {
        let prefix = if weights
            .names()
            .any(|n| n == "bert.embeddings.word_embeddings.weight")
        {
            "bert."
        } else {
            ""
        };
        let mut loader = Loader {
            weights,
            prefix,
            device,
        };
        let embeddings = loader.embeddings(&config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| loader.layer(&config, i))
            .collect::<Result<Vec<_>>>()?;
        loader.finish()?;
        Ok(Self {
            embeddings,
            layers,
            config,
        })
    }

    pub fn device(&self) -> B::Device {
        self.embeddings.word_embeddings.weight.device()
    }

    /// Last hidden states `[batch, seq, hidden]` of right-padded `ids` and `types`;
    /// `padding` `[batch, seq]` is true at padding.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        types: Tensor<B, 2, Int>,
        padding: Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        let [b, t] = padding.dims();
        let mask = padding.reshape([b, 1, 1, t]);
        let mut x = self.embeddings.forward(ids, types);
        for layer in &self.layers {
            x = layer.forward(x, &mask);
        }
        x
    }
}
