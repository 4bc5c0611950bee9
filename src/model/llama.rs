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
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::cache::{KvCache, LayerCache};
use super::config::ModelConfig;

/// `y = x W + b` with `W: [in, out]`.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Linear<B> {
    /// A lazy `inp -> out` layer, with a bias when `bias`.
    fn lazy(inp: usize, out: usize, bias: bool, device: &B::Device) -> Self {
        Self {
            weight: lazy_param([inp, out], device),
            bias: bias.then(|| lazy_param([out], device)),
        }
    }

    /// `[batch, seq, in] -> [batch, seq, out]`. The input is flattened to 2-D first: a batched
    /// matmul would broadcast the weight, and its backward would build one weight-sized
    /// gradient per batch row before summing them.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, i] = x.dims();
        let y = burn::tensor::module::linear(
            x.reshape([b * t, i]),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        let o = y.dims()[1];
        y.reshape([b, t, o])
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

/// What one forward call attends over: per-row positions (for RoPE) and the attention mask.
/// Built on the host; see [`AttentionPlan::new`].
pub struct AttentionPlan<B: Backend> {
    /// `[batch, 1, seq, head_dim]` each.
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    /// `[batch, 1, seq, keys]`, true = masked out.
    mask: Tensor<B, 4, Bool>,
}

impl<B: Backend> AttentionPlan<B> {
    /// `positions[b][t]`: RoPE position of query `t` of row `b`.
    /// `key_valid[b][j]`: whether key `j` (past cache + this call) is a real token.
    /// Queries sit at key indices `past .. past + seq`. A query sees valid keys at or before
    /// itself, and always itself, so that padding rows never become fully masked (which would
    /// make NaNs that leak through the values of later layers).
    pub fn new(
        config: &ModelConfig,
        positions: &[Vec<usize>],
        key_valid: &[Vec<bool>],
        device: &B::Device,
    ) -> Self {
        let batch = positions.len();
        let seq = positions.first().map_or(0, Vec::len);
        let keys = key_valid.first().map_or(0, Vec::len);
        let past = keys - seq;
        let (cos, sin) = rope_tables(config, positions);
        let hd = config.head_dim;
        let shape = [batch, 1, seq, hd];
        let cos = Tensor::from_data(TensorData::new(cos, shape), device);
        let sin = Tensor::from_data(TensorData::new(sin, shape), device);
        let mut mask = Vec::with_capacity(batch * seq * keys);
        for valid in key_valid {
            for t in 0..seq {
                let q = past + t;
                mask.extend((0..keys).map(|j| !(j == q || (j < q && valid[j]))));
            }
        }
        let mask = Tensor::from_data(TensorData::new(mask, [batch, 1, seq, keys]), device);
        Self { cos, sin, mask }
    }

    /// Right-padded full sequences of the given lengths, no cache: positions 0.., pads masked.
    pub fn right_padded(
        config: &ModelConfig,
        lens: &[usize],
        seq: usize,
        device: &B::Device,
    ) -> Self {
        let positions: Vec<Vec<usize>> = lens.iter().map(|_| (0..seq).collect()).collect();
        let valid: Vec<Vec<bool>> = lens
            .iter()
            .map(|&n| (0..seq).map(|j| j < n).collect())
            .collect();
        Self::new(config, &positions, &valid, device)
    }
}

/// cos/sin of `position * inv_freq`, duplicated over both halves as HF's `rotate_half` expects.
fn rope_tables(config: &ModelConfig, positions: &[Vec<usize>]) -> (Vec<f32>, Vec<f32>) {
    let inv_freq = config.rope.inv_freq(config.head_dim);
    let n = positions.iter().map(Vec::len).sum::<usize>() * config.head_dim;
    let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for &p in positions.iter().flatten() {
        for _half in 0..2 {
            for &f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
    }
    (cos, sin)
}

fn apply_rope<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    let half = x.dims()[3] / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// `[b, kv_heads, t, d] -> [b, kv_heads * n_rep, t, d]`, head `h` reading kv head `h / n_rep`.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return x;
    }
    let [b, h, t, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, h, n_rep, t, d])
        .reshape([b, h * n_rep, t, d])
}

impl<B: Backend> SelfAttention<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        plan: &AttentionPlan<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |y: Tensor<B, 3>, n: usize| y.reshape([b, t, n, hd]).swap_dims(1, 2);
        let q = heads(self.q_proj.forward(x.clone()), h);
        let k = heads(self.k_proj.forward(x.clone()), kvh);
        let v = heads(self.v_proj.forward(x), kvh);
        let q = apply_rope(q, &plan.cos, &plan.sin);
        let k = apply_rope(k, &plan.cos, &plan.sin);
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let keys = k.dims()[2];
        let k = repeat_kv(k, h / kvh);
        let v = repeat_kv(v, h / kvh);
        let mask = plan.mask.clone().expand([b, h, t, keys]);
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let out = attention(q, k, v, Some(mask), None, options);
        self.o_proj
            .forward(out.swap_dims(1, 2).reshape([b, t, h * hd]))
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
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, t, h] = hidden.dims();
                let w = self.model.embed_tokens.weight.val();
                let v = w.dims()[0];
                hidden
                    .reshape([b * t, h])
                    .matmul(w.transpose())
                    .reshape([b, t, v])
            }
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
