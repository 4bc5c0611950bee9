//! sentence-transformers around the encoder: the pooling config, the tokenizer with its
//! truncation, batching, mean pooling and L2 normalisation.

use anyhow::{Context, Result, anyhow, bail, ensure};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde::Deserialize;
use std::path::Path;
use tokenizers::{PostProcessor, Tokenizer, TruncationParams};

use super::*;

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
