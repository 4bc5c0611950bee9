//! A llama.cpp GGUF checkpoint as a model: hyper-parameters from the metadata, weights under
//! their HF names (llama.cpp's q/k row permutation undone), the tokenizer rebuilt from
//! `tokenizer.ggml.*`, and the chat template.

use anyhow::{Context, Result, bail, ensure};
use std::path::Path;

use super::config::{Arch, ModelConfig, Rope, RopeScaling};
use crate::chat::ChatTemplate;
use crate::io::gguf::{GgufFile, Value};
use crate::io::weights::{HostTensor, WeightMap};
use crate::tokenizer::{PreTokenizer, TextTokenizer, bpe_tokenizer_json};

/// Everything a GGUF file provides.
pub struct GgufModel {
    pub config: ModelConfig,
    pub weights: WeightMap,
    /// An HF `tokenizer.json` built from the metadata (BOS in its post-processor when
    /// `tokenizer.ggml.add_bos_token` is true).
    pub tokenizer_json: String,
    pub chat_template: Option<String>,
    pub add_bos: bool,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

impl GgufModel {
    /// The tokenizer.json built from the metadata (with BOS in its post-processor when
    /// `tokenizer.ggml.add_bos_token` says so), with the chat template.
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        let model = self.config.tokens();
        let eos = *model
            .eos
            .first()
            .context("the GGUF names no tokenizer.ggml.eos_token_id")?;
        let mut tok = TextTokenizer::from_bytes(self.tokenizer_json.as_bytes(), eos, model.pad)
            .context("the tokenizer built from GGUF metadata")?
            .for_model(&model);
        if let Some(src) = &self.chat_template {
            tok.chat = Some(ChatTemplate::new(
                src,
                self.bos_token.as_deref().unwrap_or(""),
                self.eos_token.as_deref().unwrap_or(""),
            )?);
        }
        Ok(tok)
    }
}

pub fn read_gguf(path: &Path) -> Result<GgufModel> {
    let file = GgufFile::open(path)?;
    convert(&file, true).with_context(|| format!("in GGUF file {}", path.display()))
}

/// The model config and tokenizer of a GGUF file, as [`read_gguf`] +
/// [`GgufModel::tokenizer`] build them, without reading any tensor data.
pub fn read_gguf_tokenizer(path: &Path) -> Result<(ModelConfig, TextTokenizer)> {
    let file = GgufFile::open(path)?;
    convert(&file, false)
        .and_then(|m| Ok((m.config.clone(), m.tokenizer()?)))
        .with_context(|| format!("in GGUF file {}", path.display()))
}

fn convert(file: &GgufFile, with_weights: bool) -> Result<GgufModel> {
    let config = model_config(file)?;
    let weights = if with_weights {
        weights(file, &config)?
    } else {
        WeightMap::default()
    };
    let meta = TokenizerMeta::read(file)?;
    // BOS goes into the post-processor when the file says to add it (and names one).
    let add_bos = config.bos_token_id.filter(|_| meta.add_bos);
    let tokenizer_json =
        bpe_tokenizer_json(&meta.tokens, &meta.types, &meta.merges, meta.pre, add_bos)?;
    let name = |id: Option<u32>| id.and_then(|i| meta.tokens.get(i as usize).cloned());
    Ok(GgufModel {
        bos_token: name(config.bos_token_id),
        eos_token: name(config.eos_token_ids.first().copied()),
        tokenizer_json,
        chat_template: file
            .get("tokenizer.chat_template")
            .and_then(Value::as_str)
            .map(str::to_string),
        add_bos: meta.add_bos,
        config,
        weights,
    })
}

fn req<'a>(file: &'a GgufFile, key: &str) -> Result<&'a Value> {
    file.get(key)
        .with_context(|| format!("metadata key `{key}` is missing"))
}

fn req_usize(file: &GgufFile, key: &str) -> Result<usize> {
    let v = req(file, key)?
        .as_u64()
        .with_context(|| format!("metadata `{key}` is not an integer"))?;
    usize::try_from(v).with_context(|| format!("metadata `{key}` = {v} is too large"))
}

fn opt_u32(file: &GgufFile, key: &str) -> Result<Option<u32>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .map(Some)
            .with_context(|| format!("metadata `{key}` is not a token id")),
    }
}

fn model_config(file: &GgufFile) -> Result<ModelConfig> {
    let arch_name = req(file, "general.architecture")?
        .as_str()
        .context("general.architecture is not a string")?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => bail!("general.architecture `{other}` is not supported (llama, qwen2)"),
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let hidden = req_usize(file, &key("embedding_length"))?;
    let heads = req_usize(file, &key("attention.head_count"))?;
    let kv_heads = match file.get(&key("attention.head_count_kv")) {
        Some(_) => req_usize(file, &key("attention.head_count_kv"))?,
        None => heads,
    };
    ensure!(
        heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && hidden % heads == 0,
        "head counts {heads}/{kv_heads} do not divide hidden size {hidden}"
    );
    let head_dim = match file.get(&key("attention.key_length")) {
        Some(_) => req_usize(file, &key("attention.key_length"))?,
        None => hidden / heads,
    };
    let embd = file
        .tensor("token_embd.weight")
        .context("tensor `token_embd.weight` is missing")?;
    ensure!(
        embd.dims.len() == 2,
        "tensor `token_embd.weight` must be 2-D [hidden, vocab], has dims {:?}",
        embd.dims
    );
    let vocab = match file.get(&key("vocab_size")) {
        Some(_) => req_usize(file, &key("vocab_size"))?,
        None => embd.dims[1],
    };
    if file.tensor("rope_freqs.weight").is_some() {
        bail!("GGUF rope_freqs (Llama 3.1 rope scaling) is not supported; use the HF checkpoint");
    }
    let theta = match file.get(&key("rope.freq_base")) {
        Some(v) => v.as_f64().context("rope.freq_base is not a number")?,
        None => 10_000.0,
    };
    let eps = req(file, &key("attention.layer_norm_rms_epsilon"))?
        .as_f64()
        .context("layer_norm_rms_epsilon is not a number")?;
    let eos = opt_u32(file, "tokenizer.ggml.eos_token_id")?;
    let config = ModelConfig {
        arch,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: req_usize(file, &key("feed_forward_length"))?,
        num_layers: req_usize(file, &key("block_count"))?,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rms_norm_eps: eps,
        rope: Rope {
            theta,
            scaling: RopeScaling::Default,
        },
        max_position_embeddings: match file.get(&key("context_length")) {
            Some(_) => req_usize(file, &key("context_length"))?,
            None => 2048,
        },
        tie_word_embeddings: file.tensor("output.weight").is_none(),
        qkv_bias: file.tensor("blk.0.attn_q.bias").is_some(),
        o_bias: file.tensor("blk.0.attn_output.bias").is_some(),
        mlp_bias: false,
        bos_token_id: opt_u32(file, "tokenizer.ggml.bos_token_id")?,
        eos_token_ids: eos.into_iter().collect(),
        pad_token_id: opt_u32(file, "tokenizer.ggml.padding_token_id")?,
    };
    // Untrusted sizes: a model of 2^40 layers is refused before anything is allocated.
    config.validate()?;
    Ok(config)
}

/// GGUF tensor name -> HF name.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = part.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

fn weights(file: &GgufFile, config: &ModelConfig) -> Result<WeightMap> {
    let mut map = WeightMap::default();
    for t in &file.tensors {
        let name = hf_name(&t.name)
            .with_context(|| format!("tensor `{}` has no HF counterpart", t.name))?;
        let mut tensor = file.read(t)?;
        // llama.cpp's converter permutes q/k rows of Llama models for its RoPE layout.
        if config.arch == Arch::Llama && name.ends_with("q_proj.weight") {
            tensor = unpermute_rows(&tensor, config.num_heads, &t.name)?;
        } else if config.arch == Arch::Llama && name.ends_with("k_proj.weight") {
            tensor = unpermute_rows(&tensor, config.num_kv_heads, &t.name)?;
        }
        map.insert(name, tensor)?;
    }
    Ok(map)
}

/// Inverts `w.reshape(h, 2, r/h/2, c).swapaxes(1, 2)`: GGUF row `h*d + 2i + j` is HF row
/// `h*d + j*(d/2) + i`, for head size `d`.
pub fn unpermute_rows(w: &HostTensor, heads: usize, name: &str) -> Result<HostTensor> {
    let [rows, cols] = w.shape[..] else {
        bail!("tensor `{name}`: expected 2 dimensions, got {:?}", w.shape);
    };
    ensure!(
        heads > 0 && rows % (2 * heads) == 0,
        "tensor `{name}`: {rows} rows do not split into {heads} heads of even size"
    );
    let d = rows / heads;
    let half = d / 2;
    let mut out = vec![0.0; w.data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * d + 2 * i + j;
                let dst = h * d + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&w.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(HostTensor::new(w.shape.clone(), out))
}

struct TokenizerMeta {
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
    pre: PreTokenizer,
    add_bos: bool,
}

impl TokenizerMeta {
    fn read(file: &GgufFile) -> Result<Self> {
        let model = req(file, "tokenizer.ggml.model")?
            .as_str()
            .context("tokenizer.ggml.model is not a string")?;
        ensure!(
            model == "gpt2",
            "tokenizer.ggml.model `{model}` is not supported (gpt2-style byte-level BPE is)"
        );
        let strings = |key: &str| -> Result<Vec<String>> {
            req(file, key)?
                .as_array()
                .with_context(|| format!("`{key}` is not an array"))?
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_string)
                        .with_context(|| format!("`{key}`[{i}] is not a string"))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types = match file.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .context("tokenizer.ggml.token_type is not an array")?
                .iter()
                .map(|t| t.as_u64().map(|t| t as i32).unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        ensure!(
            types.len() == tokens.len(),
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            types.len(),
            tokens.len()
        );
        let pre_name = file
            .get("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let pre = PreTokenizer::from_gguf(pre_name)?;
        let add_bos = file
            .get("tokenizer.ggml.add_bos_token")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            tokens,
            types,
            merges,
            pre,
            add_bos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_the_converter_permutation() {
        // 2 heads of size 4, 1 column: HF rows 0..8; the converter's permutation per head
        // interleaves the halves: [0, 2, 1, 3] within each head.
        let gguf = HostTensor::new(vec![8, 1], vec![0., 2., 1., 3., 4., 6., 5., 7.]);
        let hf = unpermute_rows(&gguf, 2, "t").unwrap();
        assert_eq!(hf.data, [0., 1., 2., 3., 4., 5., 6., 7.]);
        assert!(unpermute_rows(&gguf, 3, "t").is_err());
    }

    #[test]
    fn names_map_to_hf() {
        assert_eq!(
            hf_name("blk.12.attn_k.weight").unwrap(),
            "model.layers.12.self_attn.k_proj.weight"
        );
        assert_eq!(
            hf_name("blk.0.attn_q.bias").unwrap(),
            "model.layers.0.self_attn.q_proj.bias"
        );
        assert_eq!(hf_name("output_norm.weight").unwrap(), "model.norm.weight");
        assert!(hf_name("blk.x.attn_k.weight").is_none());
        assert!(hf_name("mystery").is_none());
    }
}
