//! Building a [`CausalLm`] from named host tensors (any file format), from random weights,
//! and turning it back into HF-named tensors.

use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;

use super::config::ModelConfig;
use super::llama::{
    CausalLm, DecoderLayer, Embedding, Linear, Mlp, RmsNorm, SelfAttention, Transformer,
};
use crate::io::weights::{HostTensor, WeightMap};

/// Loads a model and its tokenizer from an HF directory (`config.json`, safetensors,
/// `tokenizer.json`, optional `tokenizer_config.json`) or a GGUF file.
pub fn load_pretrained<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(CausalLm<B>, crate::tokenizer::TextTokenizer)> {
    if path.is_dir() {
        let model = load_hf_dir(path, device)?;
        let tok = crate::tokenizer::TextTokenizer::from_hf_dir(path, model.config())?;
        return Ok((model, tok));
    }
    if !path.exists() {
        anyhow::bail!("model path {} does not exist", path.display());
    }
    let mut m = super::gguf::read_gguf(path)?;
    let tok = crate::tokenizer::TextTokenizer::from_gguf(&m)?;
    let model = from_weights(m.config.clone(), &mut m.weights, device)
        .with_context(|| format!("loading {}", path.display()))?;
    Ok((model, tok))
}

/// Loads an HF model directory (`config.json` + safetensors).
pub fn load_hf_dir<B: Backend>(dir: &Path, device: &B::Device) -> Result<CausalLm<B>> {
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let mut weights = crate::io::safetensors::read_model_dir(dir)?;
    from_weights(config, &mut weights, device).with_context(|| format!("loading {}", dir.display()))
}

/// Builds the model, consuming every tensor it expects from `weights`; leftovers are an error.
pub fn from_weights<B: Backend>(
    config: ModelConfig,
    weights: &mut WeightMap,
    device: &B::Device,
) -> Result<CausalLm<B>> {
    let mut b = Builder { weights, device };
    let model = build(&mut b, config)?;
    // Old checkpoints carry RoPE buffers, and tied ones sometimes a duplicate head.
    let ignorable: Vec<String> = b
        .weights
        .names()
        .filter(|n| n.ends_with("rotary_emb.inv_freq") || *n == "lm_head.weight")
        .map(str::to_string)
        .collect();
    for name in ignorable {
        b.weights.remove(&name);
    }
    let left: Vec<&str> = b.weights.names().take(5).collect();
    if !left.is_empty() {
        bail!(
            "unexpected tensor(s) not used by a {:?} model: {}{}",
            model.config().arch,
            left.join(", "),
            if b.weights.len() > 5 { ", ..." } else { "" }
        );
    }
    Ok(model)
}

/// A model with random weights (normal, std 0.02; norms at 1), for benchmarks and tests.
pub fn random<B: Backend>(config: ModelConfig, seed: u64, device: &B::Device) -> CausalLm<B> {
    let mut weights = WeightMap::default();
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, shape) in expected_tensors(&config) {
        let n: usize = shape.iter().product();
        let data = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            (0..n).map(|_| normal(&mut rng) * 0.02).collect()
        };
        weights
            .insert(name, HostTensor::new(shape, data))
            .expect("names are unique");
    }
    from_weights(config, &mut weights, device).expect("shapes come from the config")
}

fn normal(rng: &mut StdRng) -> f32 {
    // Box-Muller; good enough for initialization.
    let u1: f32 = rng.random::<f32>().max(1e-12);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// Every tensor name the config implies, with its HF shape (`[out, in]` for linear weights).
pub fn expected_tensors(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i, hd) = (c.hidden_size, c.intermediate_size, c.head_dim);
    let (q, kv) = (c.num_heads * hd, c.num_kv_heads * hd);
    let mut out = vec![("model.embed_tokens.weight".into(), vec![c.vocab_size, h])];
    for l in 0..c.num_layers {
        let p = format!("model.layers.{l}");
        let mut add = |n: &str, s: Vec<usize>| out.push((format!("{p}.{n}"), s));
        add("self_attn.q_proj.weight", vec![q, h]);
        add("self_attn.k_proj.weight", vec![kv, h]);
        add("self_attn.v_proj.weight", vec![kv, h]);
        add("self_attn.o_proj.weight", vec![h, q]);
        if c.qkv_bias {
            add("self_attn.q_proj.bias", vec![q]);
            add("self_attn.k_proj.bias", vec![kv]);
            add("self_attn.v_proj.bias", vec![kv]);
        }
        if c.o_bias {
            add("self_attn.o_proj.bias", vec![h]);
        }
        add("mlp.gate_proj.weight", vec![i, h]);
        add("mlp.up_proj.weight", vec![i, h]);
        add("mlp.down_proj.weight", vec![h, i]);
        if c.mlp_bias {
            add("mlp.gate_proj.bias", vec![i]);
            add("mlp.up_proj.bias", vec![i]);
            add("mlp.down_proj.bias", vec![h]);
        }
        add("input_layernorm.weight", vec![h]);
        add("post_attention_layernorm.weight", vec![h]);
    }
    out.push(("model.norm.weight".into(), vec![h]));
    if !c.tie_word_embeddings {
        out.push(("lm_head.weight".into(), vec![c.vocab_size, h]));
    }
    out
}

struct Builder<'a, B: Backend> {
    weights: &'a mut WeightMap,
    device: &'a B::Device,
}

impl<B: Backend> Builder<'_, B> {
    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>> {
        let t = self.weights.take(name, &shape)?;
        Ok(Tensor::from_data(
            TensorData::new(t.data, shape),
            self.device,
        ))
    }

    /// HF linear `[out, in]` (+ optional bias) into Burn's `[in, out]`.
    fn linear(&mut self, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear<B>> {
        let w = self
            .weights
            .take(&format!("{name}.weight"), &[out, inp])?
            .transposed();
        let weight = Tensor::from_data(TensorData::new(w.data, [inp, out]), self.device);
        let bias = if bias {
            Some(Param::from_tensor(
                self.tensor(&format!("{name}.bias"), [out])?,
            ))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }

    fn norm(&mut self, name: &str, size: usize, eps: f64) -> Result<RmsNorm<B>> {
        Ok(RmsNorm {
            weight: Param::from_tensor(self.tensor(&format!("{name}.weight"), [size])?),
            eps,
        })
    }
}

fn build<B: Backend>(b: &mut Builder<'_, B>, c: ModelConfig) -> Result<CausalLm<B>> {
    let (h, i, hd, eps) = (
        c.hidden_size,
        c.intermediate_size,
        c.head_dim,
        c.rms_norm_eps,
    );
    let (q, kv) = (c.num_heads * hd, c.num_kv_heads * hd);
    let embed = b.tensor("model.embed_tokens.weight", [c.vocab_size, h])?;
    let mut layers = Vec::with_capacity(c.num_layers);
    for l in 0..c.num_layers {
        let p = format!("model.layers.{l}");
        let self_attn = SelfAttention {
            q_proj: b.linear(&format!("{p}.self_attn.q_proj"), q, h, c.qkv_bias)?,
            k_proj: b.linear(&format!("{p}.self_attn.k_proj"), kv, h, c.qkv_bias)?,
            v_proj: b.linear(&format!("{p}.self_attn.v_proj"), kv, h, c.qkv_bias)?,
            o_proj: b.linear(&format!("{p}.self_attn.o_proj"), h, q, c.o_bias)?,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: hd,
        };
        let mlp = Mlp {
            gate_proj: b.linear(&format!("{p}.mlp.gate_proj"), i, h, c.mlp_bias)?,
            up_proj: b.linear(&format!("{p}.mlp.up_proj"), i, h, c.mlp_bias)?,
            down_proj: b.linear(&format!("{p}.mlp.down_proj"), h, i, c.mlp_bias)?,
        };
        layers.push(DecoderLayer {
            self_attn,
            mlp,
            input_layernorm: b.norm(&format!("{p}.input_layernorm"), h, eps)?,
            post_attention_layernorm: b.norm(&format!("{p}.post_attention_layernorm"), h, eps)?,
        });
    }
    let norm = b.norm("model.norm", h, eps)?;
    let lm_head = if c.tie_word_embeddings {
        None
    } else {
        Some(b.linear("lm_head", c.vocab_size, h, false)?)
    };
    Ok(CausalLm {
        model: Transformer {
            embed_tokens: Embedding {
                weight: Param::from_tensor(embed),
            },
            layers,
            norm,
        },
        lm_head,
        config: c,
    })
}

/// The model's tensors under their HF names and shapes, ready to write as safetensors.
pub fn to_hf_tensors<B: Backend>(model: &CausalLm<B>) -> BTreeMap<String, HostTensor> {
    let mut out = BTreeMap::new();
    let linear = |out: &mut BTreeMap<String, HostTensor>, name: &str, l: &Linear<B>| {
        out.insert(format!("{name}.weight"), host(l.weight.val().transpose()));
        if let Some(bias) = &l.bias {
            out.insert(format!("{name}.bias"), host(bias.val()));
        }
    };
    let m = &model.model;
    out.insert(
        "model.embed_tokens.weight".into(),
        host(m.embed_tokens.weight.val()),
    );
    for (l, layer) in m.layers.iter().enumerate() {
        let p = format!("model.layers.{l}");
        let a = &layer.self_attn;
        linear(&mut out, &format!("{p}.self_attn.q_proj"), &a.q_proj);
        linear(&mut out, &format!("{p}.self_attn.k_proj"), &a.k_proj);
        linear(&mut out, &format!("{p}.self_attn.v_proj"), &a.v_proj);
        linear(&mut out, &format!("{p}.self_attn.o_proj"), &a.o_proj);
        linear(
            &mut out,
            &format!("{p}.mlp.gate_proj"),
            &layer.mlp.gate_proj,
        );
        linear(&mut out, &format!("{p}.mlp.up_proj"), &layer.mlp.up_proj);
        linear(
            &mut out,
            &format!("{p}.mlp.down_proj"),
            &layer.mlp.down_proj,
        );
        let norms = [
            ("input_layernorm", &layer.input_layernorm),
            ("post_attention_layernorm", &layer.post_attention_layernorm),
        ];
        for (name, norm) in norms {
            out.insert(format!("{p}.{name}.weight"), host(norm.weight.val()));
        }
    }
    out.insert("model.norm.weight".into(), host(m.norm.weight.val()));
    if let Some(head) = &model.lm_head {
        linear(&mut out, "lm_head", head);
    }
    out
}

/// Copies a tensor to the host as f32.
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data");
    HostTensor::new(shape, data)
}

/// Writes `model` as an HF directory: `config.json` and `model.safetensors`.
pub fn save_hf_dir<B: Backend>(model: &CausalLm<B>, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::io::safetensors::write_file(&dir.join("model.safetensors"), &to_hf_tensors(model))?;
    let config = serde_json::to_string_pretty(&model.config().to_hf_json())?;
    crate::io::atomic_write(&dir.join("config.json"), config.as_bytes())
}
