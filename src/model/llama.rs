//! Llama-family decoder (Llama, Qwen2): embeddings, RMSNorm, RoPE, grouped-query attention,
//! SwiGLU MLP, tied or untied head. Field names follow HF checkpoint names
//! (`model.layers.0.self_attn.q_proj.weight`), so loading and gradient reports need no rename table.
//!
//! Linear weights are stored as `[in, out]` (Burn's layout); the loader transposes HF's `[out, in]`.
//!
//! [`CausalLm::skeleton`] builds the module tree a config implies with lazy parameters (shapes,
//! no memory); loading, random initialization and saving walk that tree (see
//! [`super::load`]), so the tensor names and shapes are written down only here.

use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

pub use super::attention::AttentionPlan;
use super::cache::{KvCache, LayerCache};
use super::config::ModelConfig;
use super::decode_matmul;
use super::lora::Lora;
use super::softmax::softmax_last;

/// `y = x W + b` with `W: [in, out]`, plus a low-rank adapter's `scale * (x A) B` when one
/// is attached ([`super::lora`]).
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub lora: Option<Lora<B>>,
}

impl<B: Backend> Linear<B> {
    /// A lazy `inp -> out` layer, with a bias when `bias`.
    fn lazy(inp: usize, out: usize, bias: bool, device: &B::Device) -> Self {
        Self {
            weight: lazy_param([inp, out], device),
            bias: bias.then(|| lazy_param([out], device)),
            lora: None,
        }
    }

    /// `[batch, seq, in] -> [batch, seq, out]`. The input is flattened to 2-D first: a batched
    /// matmul would broadcast the weight, and its backward would build one weight-sized
    /// gradient per batch row before summing them.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, i] = x.dims();
        let x = x.reshape([b * t, i]);
        let mut y = linear(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        if let Some(lora) = &self.lora {
            y = y + lora.delta(x);
        }
        let o = y.dims()[1];
        y.reshape([b, t, o])
    }
}

/// `x W + b` for `x: [rows, in]`: decoding's few rows stream the weights once
/// ([`decode_matmul`]), the rest is burn's `linear`.
fn linear<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 2> {
    match decode_matmul::streamed(&x, &weight) {
        Some(y) => match bias {
            Some(b) => y + b.unsqueeze(),
            None => y,
        },
        None => burn::tensor::module::linear(x, weight, bias),
    }
}

#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    /// `[vocab, hidden]`, as in HF.
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> Embedding<B> {
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, seq] = ids.dims();
        let hidden = self.weight.dims()[1];
        self.weight
            .val()
            .select(0, ids.reshape([batch * seq]))
            .reshape([batch, seq, hidden])
    }
}

/// RMSNorm as HF computes it: `w * x / sqrt(mean(x^2) + eps)`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let variance = x.clone().square().mean_dim(2);
        let normed = x * (variance + self.eps).sqrt().recip();
        normed * self.weight.val().unsqueeze::<3>()
    }
}

#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub self_attn: SelfAttention<B>,
    pub mlp: Mlp<B>,
    pub input_layernorm: RmsNorm<B>,
    pub post_attention_layernorm: RmsNorm<B>,
}

#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
}

/// A causal LM: `model` (the transformer) and `lm_head` (absent when tied to the embeddings).
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    pub model: Transformer<B>,
    pub lm_head: Option<Linear<B>>,
    #[module(skip)]
    pub config: ModelConfig,
}

impl<B: Backend> SelfAttention<B> {
    /// Grouped-query attention without copying the keys and values per query head: the
    /// queries of each kv head are grouped (`[batch, kv_heads, group, seq, head_dim]`) and the
    /// keys and values are broadcast over the group as strided views.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        plan: &AttentionPlan<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = h / kvh;
        let heads = |y: Tensor<B, 3>, n: usize| y.reshape([b, t, n, hd]);
        let q = plan.rotate_queries(heads(self.q_proj.forward(x.clone()), h));
        let k = plan.rotate_keys(heads(self.k_proj.forward(x.clone()), kvh));
        let v = heads(self.v_proj.forward(x), kvh);
        // [batch, keys, kv_heads, head_dim], contiguous.
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let keys = k.dims()[1];
        let q = q.reshape([b, t, kvh, group, hd]).permute([0, 2, 3, 1, 4]);
        let k = k
            .reshape([b, keys, kvh, 1, hd])
            .permute([0, 2, 3, 4, 1])
            .expand([b, kvh, group, hd, keys]);
        let v = v
            .reshape([b, keys, kvh, 1, hd])
            .permute([0, 2, 3, 1, 4])
            .expand([b, kvh, group, keys, hd]);
        // The queries are already scaled by 1/sqrt(head_dim) (their RoPE tables).
        let scores = q.matmul(k) + plan.bias();
        let out = softmax_last(scores).matmul(v);
        let out = out.permute([0, 3, 1, 2, 4]).reshape([b, t, h * hd]);
        self.o_proj.forward(out)
    }
}

impl<B: Backend> DecoderLayer<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        plan: &AttentionPlan<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let attn = self
            .self_attn
            .forward(self.input_layernorm.forward(x.clone()), plan, cache);
        let x = x + attn;
        let mlp = self
            .mlp
            .forward(self.post_attention_layernorm.forward(x.clone()));
        x + mlp
    }
}

/// A parameter of `shape` that allocates (zeros) only if read before something replaces it.
fn lazy_param<B: Backend, const D: usize>(
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::uninitialized(
        ParamId::new(),
        move |device, require_grad| {
            let zeros = Tensor::zeros(shape, device);
            if require_grad {
                zeros.require_grad()
            } else {
                zeros
            }
        },
        device.clone(),
        true,
        shape.into(),
    )
}

impl<B: Backend> RmsNorm<B> {
    fn lazy(size: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: lazy_param([size], device),
            eps,
        }
    }
}

impl<B: Backend> CausalLm<B> {
    /// The module tree `config` implies, every parameter lazy: its shape is known
    /// ([`Param::lazy_shape`]) but nothing is allocated. [`super::load`] fills it by walking
    /// the tree, whose field path is each tensor's HF name.
    pub fn skeleton(config: ModelConfig, device: &B::Device) -> Self {
        let c = &config;
        let (h, i, hd, eps) = (
            c.hidden_size,
            c.intermediate_size,
            c.head_dim,
            c.rms_norm_eps,
        );
        let (q, kv) = (c.num_heads * hd, c.num_kv_heads * hd);
        let layers = (0..c.num_layers)
            .map(|_| DecoderLayer {
                self_attn: SelfAttention {
                    q_proj: Linear::lazy(h, q, c.qkv_bias, device),
                    k_proj: Linear::lazy(h, kv, c.qkv_bias, device),
                    v_proj: Linear::lazy(h, kv, c.qkv_bias, device),
                    o_proj: Linear::lazy(q, h, c.o_bias, device),
                    num_heads: c.num_heads,
                    num_kv_heads: c.num_kv_heads,
                    head_dim: hd,
                },
                mlp: Mlp {
                    gate_proj: Linear::lazy(h, i, c.mlp_bias, device),
                    up_proj: Linear::lazy(h, i, c.mlp_bias, device),
                    down_proj: Linear::lazy(i, h, c.mlp_bias, device),
                },
                input_layernorm: RmsNorm::lazy(h, eps, device),
                post_attention_layernorm: RmsNorm::lazy(h, eps, device),
            })
            .collect();
        let lm_head =
            (!c.tie_word_embeddings).then(|| Linear::lazy(h, c.vocab_size, false, device));
        Self {
            model: Transformer {
                embed_tokens: Embedding {
                    weight: lazy_param([c.vocab_size, h], device),
                },
                layers,
                norm: RmsNorm::lazy(h, eps, device),
            },
            lm_head,
            config,
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> B::Device {
        self.model.embed_tokens.weight.device()
    }

    /// Final hidden states `[batch, seq, hidden]` (after the last norm).
    pub fn hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        plan: &AttentionPlan<B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let mut x = self.model.embed_tokens.forward(ids);
        for (i, layer) in self.model.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| c.layer_mut(i));
            x = layer.forward(x, plan, slot);
        }
        self.model.norm.forward(x)
    }

    /// Logits `[batch, seq, vocab]` from hidden states.
    pub fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, h] = hidden.dims();
        self.head_rows(hidden.reshape([b * t, h]))
            .reshape([b, t, self.config.vocab_size])
    }

    /// Logits `[rows, vocab]` from hidden states `[rows, hidden]`. A tied head multiplies by
    /// the embedding matrix transposed, a strided view (no copy).
    pub fn head_rows(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.lm_head {
            Some(head) => linear(
                hidden,
                head.weight.val(),
                head.bias.as_ref().map(|b| b.val()),
            ),
            None => decode_matmul::matmul(hidden, self.model.embed_tokens.weight.val().transpose()),
        }
    }

    /// Logits for a batch of token rows under `plan`, extending `cache` when given.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        plan: &AttentionPlan<B>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.head(self.hidden(ids, plan, cache))
    }
}

/// Right-pads rows into an `[n, max_len]` id tensor; returns it with the row lengths.
pub fn right_pad<B: Backend>(
    rows: &[Vec<u32>],
    pad_id: u32,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Vec<usize>, usize) {
    let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
    let lens: Vec<usize> = rows.iter().map(Vec::len).collect();
    let mut flat = Vec::with_capacity(rows.len() * seq);
    for row in rows {
        flat.extend(row.iter().map(|&t| t as i64));
        flat.extend(std::iter::repeat_n(pad_id as i64, seq - row.len()));
    }
    let ids = Tensor::from_data(TensorData::new(flat, [rows.len(), seq]), device);
    (ids, lens, seq)
}
