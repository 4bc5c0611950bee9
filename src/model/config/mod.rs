//! Model hyper-parameters, read from an HF `config.json` ([`crate::model::gguf`] builds the
//! same struct from GGUF metadata). [`ModelConfig`] is this crate's resolved form, not
//! transformers' schema: some fields are renamed (`num_layers` for `num_hidden_layers`,
//! `eos_token_ids` always a list), defaults are filled in (`num_kv_heads`, `head_dim`), and
//! biases and RoPE are resolved per architecture. [`ModelConfig::validate`] checks untrusted
//! sizes; [`ModelConfig::to_hf_json`] writes transformers' names back.

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::tokenizer::ModelTokens;

mod rope;
use rope::{RawRope, resolve_rope};
pub use rope::{Rope, RopeScaling};

/// The deepest model a config may describe (the largest open models have about 130 layers).
pub const MAX_LAYERS: usize = 1 << 12;
/// The most parameters a config may imply: the loader holds every weight as f32 on the host.
pub const MAX_PARAMETERS: u64 = 1 << 40;

/// Which HF architecture the checkpoint uses. The two differ only in where biases live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Qwen2,
}

/// Resolved hyper-parameters of a Llama-family causal LM.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope: Rope,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v (Qwen2: always; Llama: `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on o_proj (Llama `attention_bias` only).
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

/// The raw `config.json` fields we read; anything else in the file is ignored, as HF does.
#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_parameters: Option<RawRope>,
    rope_scaling: Option<RawRope>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
    pad_token_id: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text).context("parsing config.json")?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Self> {
        let arch = match raw.model_type.as_str() {
            "llama" | "mistral" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => bail!("model_type `{other}` is not supported (expected llama or qwen2)"),
        };
        if raw.num_attention_heads == 0 || raw.hidden_size == 0 || raw.vocab_size == 0 {
            bail!("hidden_size, num_attention_heads and vocab_size must be positive");
        }
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if num_kv_heads == 0 || !raw.num_attention_heads.is_multiple_of(num_kv_heads) {
            bail!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({num_kv_heads})",
                raw.num_attention_heads
            );
        }
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size / raw.num_attention_heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            bail!("head_dim ({head_dim}) must be positive and even for rotary embeddings");
        }
        let rope = resolve_rope(&raw)?;
        let attention_bias = raw.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias) = match arch {
            Arch::Llama => (attention_bias, attention_bias),
            Arch::Qwen2 => (true, false),
        };
        let eos_token_ids = match raw.eos_token_id {
            None => vec![],
            Some(OneOrMany::One(id)) => vec![id],
            Some(OneOrMany::Many(ids)) => ids,
        };
        let config = Self {
            arch,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            bos_token_id: raw.bos_token_id,
            eos_token_ids,
            pad_token_id: raw.pad_token_id,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what the model builder relies on, whatever file the config came from: positive
    /// sizes, heads that group evenly, an even head size for RoPE, a plausible depth, and a
    /// parameter count that is computable without overflow and plausible. A config is
    /// untrusted input: the builder allocates per layer and multiplies these sizes.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.vocab_size > 0 && self.hidden_size > 0 && self.num_heads > 0,
            "vocab size ({}), hidden size ({}) and head count ({}) must be positive",
            self.vocab_size,
            self.hidden_size,
            self.num_heads
        );
        ensure!(
            self.num_kv_heads > 0 && self.num_heads.is_multiple_of(self.num_kv_heads),
            "the head count ({}) must be a multiple of the key/value head count ({})",
            self.num_heads,
            self.num_kv_heads
        );
        ensure!(
            self.head_dim > 0 && self.head_dim.is_multiple_of(2),
            "head_dim ({}) must be positive and even for rotary embeddings",
            self.head_dim
        );
        ensure!(
            self.num_layers <= MAX_LAYERS,
            "{} layers is implausible (limit {MAX_LAYERS})",
            self.num_layers
        );
        match self.num_parameters() {
            Some(n) if n <= MAX_PARAMETERS => {}
            n => bail!(
                "the shapes (vocab {}, hidden {}, intermediate {}, {} layers, {}x{} heads) imply \
                 {} parameters, over the {MAX_PARAMETERS} limit",
                self.vocab_size,
                self.hidden_size,
                self.intermediate_size,
                self.num_layers,
                self.num_heads,
                self.head_dim,
                n.map_or("too many".to_string(), |n| n.to_string())
            ),
        }
        ensure!(
            self.rope.theta.is_finite() && self.rope.theta > 0.0,
            "rope_theta must be a positive number, got {}",
            self.rope.theta
        );
        Ok(())
    }

    /// The number of parameters the shapes imply, or None when it overflows a u64.
    pub fn num_parameters(&self) -> Option<u64> {
        let n = |v: usize| u64::try_from(v).ok();
        let (v, h, i, hd) = (
            n(self.vocab_size)?,
            n(self.hidden_size)?,
            n(self.intermediate_size)?,
            n(self.head_dim)?,
        );
        let q = n(self.num_heads)?.checked_mul(hd)?;
        let kv = n(self.num_kv_heads)?.checked_mul(hd)?;
        // One layer: q, k, v, o, gate, up, down as (rows, cols); the norms and biases.
        let matrices = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)];
        let mut vectors = vec![h, h];
        if self.qkv_bias {
            vectors.extend([q, kv, kv]);
        }
        if self.o_bias {
            vectors.push(h);
        }
        if self.mlp_bias {
            vectors.extend([i, i, h]);
        }
        let mut layer = 0u64;
        for (rows, cols) in matrices {
            layer = layer.checked_add(rows.checked_mul(cols)?)?;
        }
        for len in vectors {
            layer = layer.checked_add(len)?;
        }
        let heads = if self.tie_word_embeddings { 1 } else { 2 };
        let embeddings = v.checked_mul(h)?.checked_mul(heads)?;
        layer
            .checked_mul(n(self.num_layers)?)?
            .checked_add(embeddings)?
            .checked_add(h)
    }

    /// Writes the config back as an HF `config.json` value that transformers loads.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let (model_type, arch_name) = match self.arch {
            Arch::Llama => ("llama", "LlamaForCausalLM"),
            Arch::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
        };
        let mut rope = serde_json::json!({ "rope_theta": self.rope.theta, "rope_type": "default" });
        if let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } = self.rope.scaling
        {
            rope = serde_json::json!({
                "rope_theta": self.rope.theta, "rope_type": "llama3", "factor": factor,
                "low_freq_factor": low_freq_factor, "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            });
        }
        let eos = match self.eos_token_ids.as_slice() {
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        serde_json::json!({
            "architectures": [arch_name],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope.theta,
            "rope_parameters": rope,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.arch == Arch::Llama && self.qkv_bias,
            "mlp_bias": self.mlp_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
            "torch_dtype": "float32",
        })
    }

    /// A config from explicit shapes (benchmarks, tests, models trained from scratch).
    #[allow(clippy::too_many_arguments)]
    pub fn llama(
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_layers: usize,
        num_heads: usize,
        num_kv_heads: usize,
        head_dim: usize,
        tie_word_embeddings: bool,
    ) -> Self {
        Self {
            arch: Arch::Llama,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: 1e-5,
            rope: Rope {
                theta: 10_000.0,
                scaling: RopeScaling::Default,
            },
            max_position_embeddings: 2048,
            tie_word_embeddings,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            pad_token_id: Some(0),
        }
    }

    /// SmolLM2-135M's shape (30 layers, hidden 576, 9/3 heads, vocab 49152, tied).
    pub fn smollm2_135m() -> Self {
        let mut cfg = Self::llama(49_152, 576, 1536, 30, 9, 3, 64, true);
        cfg.rope.theta = 100_000.0;
        cfg
    }

    /// The tiny fixture shape (2 layers, hidden 64, 4/2 heads, vocab 128).
    pub fn tiny() -> Self {
        Self::llama(128, 64, 160, 2, 4, 2, 16, false)
    }

    /// The special ids and embedding rows the tokenizer needs.
    pub fn tokens(&self) -> ModelTokens {
        ModelTokens {
            bos: self.bos_token_id,
            eos: self.eos_token_ids.clone(),
            pad: self.pad_id(),
            vocab_size: self.vocab_size,
        }
    }

    /// The id that pads batches: `pad_token_id`, else the first EOS id, else 0. Pad positions
    /// are masked, so the choice changes no logits.
    pub fn pad_id(&self) -> u32 {
        self.pad_token_id
            .or(self.eos_token_ids.first().copied())
            .unwrap_or(0)
    }

    pub fn is_eos(&self, token: u32) -> bool {
        self.eos_token_ids.contains(&token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_rope_spellings() {
        let new = r#"{"model_type":"llama","vocab_size":8,"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":2,"rope_parameters":{"rope_theta":5e5,"rope_type":"default"}}"#;
        let old = r#"{"model_type":"qwen2","vocab_size":8,"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"rope_theta":1e6,
            "tie_word_embeddings":true,"eos_token_id":[2,3]}"#;
        let a = ModelConfig::from_json(new).unwrap();
        assert_eq!(a.rope.theta, 5e5);
        assert_eq!(a.head_dim, 4);
        assert_eq!(a.num_kv_heads, 2);
        assert!(!a.qkv_bias);
        let b = ModelConfig::from_json(old).unwrap();
        assert_eq!(b.rope.theta, 1e6);
        assert!(b.qkv_bias && !b.o_bias && b.tie_word_embeddings);
        assert_eq!(b.eos_token_ids, vec![2, 3]);
    }

    #[test]
    fn rejects_bad_shapes_and_types() {
        let gqa = r#"{"model_type":"llama","vocab_size":8,"hidden_size":12,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2}"#;
        let err = ModelConfig::from_json(gqa).unwrap_err().to_string();
        assert!(err.contains("num_key_value_heads"), "{err}");
        let arch = r#"{"model_type":"gpt2","vocab_size":8,"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":2}"#;
        let err = ModelConfig::from_json(arch).unwrap_err().to_string();
        assert!(err.contains("gpt2"), "{err}");
    }

    #[test]
    fn hf_json_round_trips() {
        let cfg = ModelConfig::smollm2_135m();
        let back = ModelConfig::from_json(&cfg.to_hf_json().to_string()).unwrap();
        assert_eq!(back, cfg);
    }
}
