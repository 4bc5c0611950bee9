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

use anyhow::{Context, Result, anyhow, bail, ensure};
use burn::module::{Module, Param};
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde::Deserialize;
use std::path::Path;
use tokenizers::{PostProcessor, Tokenizer, TruncationParams};

use super::llama::{Embedding, Linear};
use crate::io::safetensors::read_bytes_into_except;
use crate::io::weights::WeightMap;

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

/// Reads a safetensors file into a [`WeightMap`], without the integer buffers transformers
/// saves with the weights (`embeddings.position_ids`, `token_type_ids`: constants, not
/// parameters; the reader takes float tensors only).
fn read_weights(path: &Path) -> Result<WeightMap> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let is_buffer = |name: &str| name.ends_with("position_ids") || name.ends_with("token_type_ids");
    let mut map = WeightMap::default();
    read_bytes_into_except(&bytes, &path.display().to_string(), &mut map, &is_buffer)?;
    Ok(map)
}

/// Takes a BERT's tensors by HF name out of a [`WeightMap`] and puts them on the device.
struct Loader<'a, B: Backend> {
    weights: &'a mut WeightMap,
    /// `bert.` for a `BertFor*` checkpoint, else empty.
    prefix: &'static str,
    device: &'a B::Device,
}

impl<B: Backend> Loader<'_, B> {
    fn param<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<B, D>>> {
        let t = self
            .weights
            .take(&format!("{}{name}", self.prefix), &shape)?;
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(t.data, shape),
            self.device,
        )))
    }

    /// An HF `nn.Linear` (`weight` `[out, in]`, `bias` `[out]`), stored as `[in, out]`.
    fn linear(&mut self, name: &str, inp: usize, out: usize) -> Result<Linear<B>> {
        let full = format!("{}{name}.weight", self.prefix);
        let weight = self.weights.take(&full, &[out, inp])?.transposed();
        let weight = Tensor::from_data(TensorData::new(weight.data, [inp, out]), self.device);
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias: Some(self.param(&format!("{name}.bias"), [out])?),
        })
    }

    fn layer_norm(&mut self, name: &str, size: usize, eps: f64) -> Result<LayerNorm<B>> {
        Ok(LayerNorm {
            weight: self.param(&format!("{name}.weight"), [size])?,
            bias: self.param(&format!("{name}.bias"), [size])?,
            eps,
        })
    }

    fn embedding(&mut self, name: &str, rows: usize, hidden: usize) -> Result<Embedding<B>> {
        Ok(Embedding {
            weight: self.param(&format!("embeddings.{name}.weight"), [rows, hidden])?,
        })
    }

    fn embeddings(&mut self, c: &BertConfig) -> Result<BertEmbeddings<B>> {
        let h = c.hidden_size;
        Ok(BertEmbeddings {
            word_embeddings: self.embedding("word_embeddings", c.vocab_size, h)?,
            position_embeddings: self.embedding(
                "position_embeddings",
                c.max_position_embeddings,
                h,
            )?,
            token_type_embeddings: self.embedding("token_type_embeddings", c.type_vocab_size, h)?,
            layer_norm: self.layer_norm("embeddings.LayerNorm", h, c.layer_norm_eps)?,
        })
    }

    fn layer(&mut self, c: &BertConfig, i: usize) -> Result<BertLayer<B>> {
        let (h, inter, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        let at = |part: &str| format!("encoder.layer.{i}.{part}");
        Ok(BertLayer {
            query: self.linear(&at("attention.self.query"), h, h)?,
            key: self.linear(&at("attention.self.key"), h, h)?,
            value: self.linear(&at("attention.self.value"), h, h)?,
            attention_output: self.linear(&at("attention.output.dense"), h, h)?,
            attention_norm: self.layer_norm(&at("attention.output.LayerNorm"), h, eps)?,
            intermediate: self.linear(&at("intermediate.dense"), h, inter)?,
            output: self.linear(&at("output.dense"), inter, h)?,
            output_norm: self.layer_norm(&at("output.LayerNorm"), h, eps)?,
            num_heads: c.num_attention_heads,
            head_dim: c.head_dim(),
        })
    }

    /// Every expected tensor is taken; the pooler may be left, nothing else.
    fn finish(self) -> Result<()> {
        let pooler = format!("{}pooler.", self.prefix);
        let left: Vec<&str> = self
            .weights
            .names()
            .filter(|n| !n.starts_with(&pooler))
            .collect();
        if !left.is_empty() {
            bail!(
                "unexpected tensor(s) not used by a BERT encoder: {}{}",
                left[..left.len().min(5)].join(", "),
                if left.len() > 5 { ", ..." } else { "" }
            );
        }
        Ok(())
    }
}

/// What sentence-transformers does after the encoder, from `modules.json` (when present):
/// mean pooling (the only pooling implemented), then L2 normalisation when the model lists a
/// `Normalize` module. Without `modules.json`, mean pooling and normalisation (cosine
/// similarities, all the ranker reads, are the same either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipeline {
    pub normalize: bool,
}

impl Pipeline {
    /// Reads `modules.json` and the pooling module's `config.json` in `dir` (the pooling
    /// config is checked whenever it exists).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        if !modules_path.exists() {
            check_pooling(&dir.join("1_Pooling/config.json"))?;
            return Ok(Self { normalize: true });
        }
        let modules: Vec<StModule> = read_json(&modules_path)?;
        let kinds: Vec<&str> = modules
            .iter()
            .map(|m| m.kind.rsplit('.').next().unwrap_or_default())
            .collect();
        let normalize = match kinds.as_slice() {
            ["Transformer", "Pooling"] => false,
            ["Transformer", "Pooling", "Normalize"] => true,
            _ => bail!(
                "{}: modules {}; only Transformer, Pooling (mean) and optionally Normalize, in \
                 that order, are supported",
                modules_path.display(),
                modules
                    .iter()
                    .map(|m| m.kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        check_pooling(&dir.join(&modules[1].path).join("config.json"))?;
        Ok(Self { normalize })
    }
}

/// An entry of `modules.json`.
#[derive(Deserialize)]
struct StModule {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A pooling `config.json` (when it exists) must select mean pooling and nothing else: as
/// `pooling_mode` (`"mean"` or `["mean"]`, sentence-transformers 5+) or as the older
/// `pooling_mode_*_tokens` flags.
fn check_pooling(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let config: serde_json::Value = read_json(path)?;
    let modes: Vec<String> = match &config["pooling_mode"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect(),
        _ => config
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
            .map(|(k, _)| legacy_mode_name(k))
            .collect(),
    };
    ensure!(
        modes == ["mean"],
        "{}: pooling mode {} is not supported (only mean pooling)",
        path.display(),
        if modes.is_empty() {
            "(none)".to_string()
        } else {
            modes.join(" + ")
        }
    );
    Ok(())
}

/// `pooling_mode_mean_tokens` -> `mean`, `pooling_mode_cls_token` -> `cls`, ...
fn legacy_mode_name(key: &str) -> String {
    let mode = key.trim_start_matches("pooling_mode_");
    match mode {
        "mean_tokens" => "mean",
        "cls_token" => "cls",
        "max_tokens" => "max",
        "weightedmean_tokens" => "weightedmean",
        other => other,
    }
    .to_string()
}

/// `max_seq_length` of `sentence_bert_config.json`, or [`DEFAULT_MAX_SEQ_LENGTH`].
fn max_seq_length(dir: &Path) -> Result<usize> {
    let path = dir.join("sentence_bert_config.json");
    if !path.exists() {
        return Ok(DEFAULT_MAX_SEQ_LENGTH);
    }
    let config: serde_json::Value = read_json(&path)?;
    match &config["max_seq_length"] {
        serde_json::Value::Null => Ok(DEFAULT_MAX_SEQ_LENGTH),
        v => v
            .as_u64()
            .map(|n| n as usize)
            .with_context(|| format!("{}: max_seq_length {v} is not a count", path.display())),
    }
}

/// `tokenizer.json` as sentence-transformers calls it: special tokens added
/// (`[CLS] ... [SEP]`), truncated to `max_len` tokens in all, no padding (the batch is padded
/// here, whatever fixed padding the file sets).
fn load_tokenizer(path: &Path, max_len: usize, vocab_size: usize) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|e| anyhow!("{}: not a valid tokenizer.json: {e}", path.display()))?;
    let added = tokenizer
        .get_post_processor()
        .map_or(0, |p| p.added_tokens(false));
    ensure!(
        max_len > added,
        "max_seq_length {max_len} leaves no room for text beside the {added} special tokens"
    );
    let truncation = TruncationParams {
        max_length: max_len,
        ..Default::default()
    };
    tokenizer
        .with_truncation(Some(truncation))
        .map_err(|e| anyhow!("{}: setting truncation: {e}", path.display()))?;
    tokenizer.with_padding(None);
    let top = tokenizer.get_vocab(true).into_values().max().unwrap_or(0);
    ensure!(
        (top as usize) < vocab_size,
        "{}: token id {top} is not below the model's vocab_size {vocab_size}: this tokenizer \
         does not belong to this model",
        path.display()
    );
    Ok(tokenizer)
}

/// A sentence-transformers model: tokenizer, BERT encoder, pooling and normalisation.
pub struct SentenceEncoder<B: Backend> {
    model: BertModel<B>,
    tokenizer: Tokenizer,
    max_seq_length: usize,
    pipeline: Pipeline,
}

/// A tokenized sentence: ids and token types, `[CLS] ... [SEP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub types: Vec<u32>,
}

impl<B: Backend> SentenceEncoder<B> {
    /// Loads a sentence-transformers model directory onto `device`.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let pipeline = Pipeline::from_dir(dir)?;
        let max_seq_length = max_seq_length(dir)?;
        ensure!(
            max_seq_length <= config.max_position_embeddings,
            "{}: max_seq_length {max_seq_length} exceeds the model's max_position_embeddings {}",
            dir.join("sentence_bert_config.json").display(),
            config.max_position_embeddings
        );
        let tokenizer = load_tokenizer(
            &dir.join("tokenizer.json"),
            max_seq_length,
            config.vocab_size,
        )?;
        let model = BertModel::load(config, &dir.join("model.safetensors"), device)?;
        Ok(Self {
            model,
            tokenizer,
            max_seq_length,
            pipeline,
        })
    }

    pub fn model(&self) -> &BertModel<B> {
        &self.model
    }

    /// Length of an embedding (`hidden_size`).
    pub fn dimension(&self) -> usize {
        self.model.config.hidden_size
    }

    /// Tokens per sentence at most, special tokens included (longer text is cut).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    pub fn pipeline(&self) -> Pipeline {
        self.pipeline
    }

    /// The tokens each text is embedded from.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow!("tokenizing for the sentence encoder: {e}"))?;
        Ok(encodings
            .iter()
            .map(|e| Tokens {
                ids: e.get_ids().to_vec(),
                types: e.get_type_ids().to_vec(),
            })
            .collect())
    }

    /// One embedding per text, in order, [`BATCH_SIZE`] rows per forward pass (rows of
    /// similar length together, as sentence-transformers batches them).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let rows = self.tokenize(texts)?;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].ids.len());
        let mut out = vec![vec![]; rows.len()];
        for chunk in order.chunks(BATCH_SIZE) {
            let batch: Vec<&Tokens> = chunk.iter().map(|&i| &rows[i]).collect();
            for (&i, e) in chunk.iter().zip(self.embed_tokens(&batch)?) {
                out[i] = e;
            }
        }
        Ok(out)
    }

    /// Embeddings of tokenized rows, as one right-padded batch.
    pub fn embed_tokens(&self, rows: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let device = self.model.device();
        let batch = self.pad(rows, &device)?;
        let hidden = self
            .model
            .forward(batch.ids, batch.types, batch.padding.clone());
        let pooled = mean_pool(hidden, batch.padding);
        let pooled = if self.pipeline.normalize {
            l2_normalize(pooled)
        } else {
            pooled
        };
        let dim = self.dimension();
        let flat = pooled
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| anyhow!("reading embeddings: {e:?}"))?;
        Ok(flat.chunks(dim).map(<[f32]>::to_vec).collect())
    }

    /// `rows` right-padded into one batch.
    fn pad(&self, rows: &[&Tokens], device: &B::Device) -> Result<Padded<B>> {
        let c = &self.model.config;
        let seq = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        ensure!(
            seq <= c.max_position_embeddings,
            "a row of {seq} tokens exceeds max_position_embeddings {}",
            c.max_position_embeddings
        );
        let shape = [rows.len(), seq];
        let (mut ids, mut types, mut padding) = (vec![], vec![], vec![]);
        for row in rows {
            ensure!(!row.ids.is_empty(), "a row has no tokens to embed");
            let fill = seq - row.ids.len();
            ids.extend(row.ids.iter().map(|&t| t as i64));
            ids.extend(std::iter::repeat_n(c.pad_token_id as i64, fill));
            types.extend(row.types.iter().map(|&t| t as i64));
            types.extend(std::iter::repeat_n(0, fill));
            padding.extend((0..seq).map(|j| j >= row.ids.len()));
        }
        if let Some(&t) = types.iter().find(|&&t| t as usize >= c.type_vocab_size) {
            bail!(
                "token type {t} is not below type_vocab_size {}",
                c.type_vocab_size
            );
        }
        Ok(Padded {
            ids: Tensor::from_data(TensorData::new(ids, shape), device),
            types: Tensor::from_data(TensorData::new(types, shape), device),
            padding: Tensor::from_data(TensorData::new(padding, shape), device),
        })
    }
}

/// A right-padded batch: `[batch, seq]` ids and token types, and where the padding is.
struct Padded<B: Backend> {
    ids: Tensor<B, 2, Int>,
    types: Tensor<B, 2, Int>,
    padding: Tensor<B, 2, Bool>,
}

/// The mean of each row's hidden states over its real tokens: `[batch, seq, hidden]` ->
/// `[batch, hidden]` (sentence-transformers' mean pooling, counts clamped at 1e-9).
pub fn mean_pool<B: Backend>(hidden: Tensor<B, 3>, padding: Tensor<B, 2, Bool>) -> Tensor<B, 2> {
    let [b, t, h] = hidden.dims();
    let weights = padding.bool_not().float().reshape([b, t, 1]);
    let sums = (hidden * weights.clone()).sum_dim(1).reshape([b, h]);
    let counts = weights.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
    sums / counts
}

/// Each row divided by its L2 norm (at least 1e-12), as `torch.nn.functional.normalize`.
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norms = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norms
}

/// The cosine similarity of two vectors, in f64; 0 when either is all zeros.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot =
        |x: &[f32], y: &[f32]| -> f64 { x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum() };
    let norms = (dot(a, a) * dot(b, b)).sqrt();
    if norms == 0.0 { 0.0 } else { dot(a, b) / norms }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with hidden size 8, `heads` heads and the `extra` keys.
    fn config_with(heads: usize, extra: &str) -> Result<BertConfig> {
        BertConfig::from_json(&format!(
            r#"{{"vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":{heads},
                "intermediate_size":16,"max_position_embeddings":12{extra}}}"#
        ))
    }

    fn config(extra: &str) -> Result<BertConfig> {
        config_with(2, extra)
    }

    #[test]
    fn config_defaults_and_checks() {
        let c = config("").unwrap();
        assert_eq!((c.type_vocab_size, c.layer_norm_eps), (2, 1e-12));
        assert_eq!(c.head_dim(), 4);
        let e = config(r#","hidden_act":"gelu_new""#).unwrap_err();
        assert!(
            format!("{e:#}").contains("hidden_act is `gelu_new`"),
            "{e:#}"
        );
        let e = config_with(3, "").unwrap_err();
        assert!(format!("{e:#}").contains("not a multiple"), "{e:#}");
        let e = config(r#","model_type":"roberta""#).unwrap_err();
        assert!(format!("{e:#}").contains("roberta"), "{e:#}");
    }

    #[test]
    fn legacy_pooling_flags_name_their_mode() {
        assert_eq!(legacy_mode_name("pooling_mode_mean_tokens"), "mean");
        assert_eq!(legacy_mode_name("pooling_mode_cls_token"), "cls");
        assert_eq!(legacy_mode_name("pooling_mode_lasttoken"), "lasttoken");
    }

    #[test]
    fn mean_pooling_skips_padding() {
        use burn::backend::Flex;
        let device = Default::default();
        let hidden = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 100.0, 100.0], [1, 3, 2]),
            &device,
        );
        let padding = Tensor::<Flex, 2, Bool>::from_data(
            TensorData::new(vec![false, false, true], [1, 3]),
            &device,
        );
        let pooled = mean_pool(hidden, padding)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(pooled, vec![2.0, 3.0]);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}
