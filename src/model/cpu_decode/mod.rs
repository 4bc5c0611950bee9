//! Decoding on the CPU backend without going through tensors: a forward pass over the model's
//! own weight buffers, for inference only (no autodiff), with
//! - a key/value cache sized for the whole generation and written in place ([`kv`]);
//! - one thread team per call that walks the layers together ([`team`]), rather than a pool
//!   woken for every op;
//! - products in register tiles reading the weights where they are stored ([`tiles`]), with
//!   the residual add, bias and SiLU-times-up done as each product's columns are finished;
//! - attention per (row, kv head) over the cache in one pass ([`ops::attend`]).
//!
//! [`CpuDecoder::new`] takes a model on the flex backend in float32 without adapters; any
//! other model decodes through [`super::llama::CausalLm::forward`]. Both give the same tokens up
//! to float rounding; the tests hold them to each other.

mod forward;
mod kv;
pub mod ops;
pub mod team;
pub mod tiles;

use burn::backend::Flex;
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;
use std::any::Any;

pub use kv::KvStore;

use super::config::ModelConfig;
use super::decode_matmul::kernels::Weights;
use super::llama::{CausalLm, Linear, RmsNorm};
use crate::backend::CpuKernels;

/// A model's weights as the decode path reads them.
pub struct CpuDecoder {
    config: ModelConfig,
    isa: CpuKernels,
    /// `[vocab, hidden]`.
    embed: Matrix,
    layers: Vec<Layer>,
    norm: Vector,
    /// `[hidden, vocab]`: the untied head's weight, or the embeddings seen transposed.
    head: Projection,
}

struct Layer {
    input_norm: Vector,
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    post_norm: Vector,
    gate: Projection,
    up: Projection,
    down: Projection,
}

/// `x W + b`.
struct Projection {
    weight: Matrix,
    bias: Option<Vector>,
}

/// A `[k, n]` float32 matrix, row- or column-major (checked when made).
struct Matrix {
    tensor: FlexTensor,
    k: usize,
    n: usize,
    transposed: bool,
}

struct Vector(FlexTensor);

impl CpuDecoder {
    /// The decode path for `model`, or None where it does not apply: another backend or
    /// dtype, adapters attached, or weights laid out other than row- or column-major.
    pub fn new<B: Backend>(model: &CausalLm<B>) -> Option<Self> {
        // A type test: no specialization in stable Rust.
        let model: &CausalLm<Flex> = (model as &dyn Any).downcast_ref()?;
        let c = model.config().clone();
        let embed = Matrix::of(&model.model.embed_tokens.weight, false)?;
        let head = match &model.lm_head {
            Some(head) => Projection::of(head)?,
            None => Projection {
                weight: Matrix::of(&model.model.embed_tokens.weight, true)?,
                bias: None,
            },
        };
        let layers = model
            .model
            .layers
            .iter()
            .map(|l| {
                let (a, m) = (&l.self_attn, &l.mlp);
                Some(Layer {
                    input_norm: Vector::of(&l.input_layernorm)?,
                    q: Projection::of(&a.q_proj)?,
                    k: Projection::of(&a.k_proj)?,
                    v: Projection::of(&a.v_proj)?,
                    o: Projection::of(&a.o_proj)?,
                    post_norm: Vector::of(&l.post_attention_layernorm)?,
                    gate: Projection::of(&m.gate_proj)?,
                    up: Projection::of(&m.up_proj)?,
                    down: Projection::of(&m.down_proj)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let shapes_agree = embed.k == c.vocab_size
            && embed.n == c.hidden_size
            && head.weight.n == c.vocab_size
            && c.head_dim % 2 == 0
            && layers.iter().all(|l| {
                l.q.weight.n == c.num_heads * c.head_dim
                    && l.k.weight.n == c.num_kv_heads * c.head_dim
                    && l.gate.weight.n == c.intermediate_size
            });
        shapes_agree.then_some(Self {
            norm: Vector::of(&model.model.norm)?,
            config: c,
            isa: CpuKernels::detect(),
            embed,
            layers,
            head,
        })
    }

    /// Multiply-adds per token, to size the thread team.
    fn work_per_token(&self) -> usize {
        let c = &self.config;
        c.num_layers
            * c.hidden_size
            * (2 * c.num_heads * c.head_dim
                + 2 * c.num_kv_heads * c.head_dim
                + 3 * c.intermediate_size)
    }
}

impl Projection {
    fn of(linear: &Linear<Flex>) -> Option<Self> {
        if linear.lora.is_some() {
            return None;
        }
        let bias = match &linear.bias {
            Some(b) => Some(Vector::tensor(b.val().into_primitive().tensor())?),
            None => None,
        };
        Some(Self {
            weight: Matrix::of(&linear.weight, false)?,
            bias,
        })
    }
}

impl Matrix {
    /// `param` as `[k, n]`, or transposed (`[n, k]` stored, read as `[k, n]`).
    fn of(param: &Param<Tensor<Flex, 2>>, transposed: bool) -> Option<Self> {
        let tensor = param.val().into_primitive().tensor();
        let [rows, cols] = tensor.layout().shape().dims::<2>();
        let (k, n) = if transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let matrix = Self {
            tensor,
            k,
            n,
            transposed,
        };
        (matrix.tensor.dtype() == DType::F32 && matrix.try_view().is_some()).then_some(matrix)
    }

    fn view(&self) -> Weights<'_> {
        self.try_view().expect("checked when made")
    }

    fn try_view(&self) -> Option<Weights<'_>> {
        let layout = self.tensor.layout();
        let strides = layout.strides();
        let (s0, s1) = (
            usize::try_from(strides[0]).ok()?,
            usize::try_from(strides[1]).ok()?,
        );
        let data = self.tensor.storage::<f32>().get(layout.start_offset()..)?;
        // The stored matrix's rows must be contiguous.
        let (stored_rows, stored_cols) = if self.transposed {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        if s1 != 1 || s0 < stored_cols || (stored_rows - 1) * s0 + stored_cols > data.len() {
            return None;
        }
        Some(match self.transposed {
            false => Weights::Rows { data, stride: s0 },
            true => Weights::Cols { data, stride: s0 },
        })
    }
}

impl Vector {
    fn of(norm: &RmsNorm<Flex>) -> Option<Self> {
        Self::tensor(norm.weight.val().into_primitive().tensor())
    }

    fn tensor(t: FlexTensor) -> Option<Self> {
        (t.dtype() == DType::F32 && t.as_slice::<f32>().is_some()).then_some(Self(t))
    }

    fn slice(&self) -> &[f32] {
        self.0.as_slice().expect("checked when made")
    }
}

/// One generation's state: the decoder and its cache.
pub struct Session {
    decoder: CpuDecoder,
    cache: KvStore,
}

impl Session {
    /// A cache for `rows` rows of up to `capacity` tokens each.
    pub fn new(decoder: CpuDecoder, rows: usize, capacity: usize) -> Self {
        let c = &decoder.config;
        let cache = KvStore::new(c.num_layers, rows, c.num_kv_heads, capacity, c.head_dim);
        Self { decoder, cache }
    }

    /// Runs the next tokens of every row (`ids[b]`, the same count for all rows, at RoPE
    /// positions `positions[b]`) and returns the last position's logits, `[rows * vocab]`.
    /// `valid[b][j]` says whether key `j` of row `b` (cached and new) is a real token.
    pub fn forward(
        &mut self,
        ids: &[&[u32]],
        positions: &[&[usize]],
        valid: &[&[bool]],
    ) -> Vec<f32> {
        let batch = forward::Batch {
            ids,
            positions,
            valid,
        };
        let tokens: usize = ids.iter().map(|r| r.len()).sum();
        let threads = match self.decoder.work_per_token() * tokens {
            // Too little work to share: a thread start would cost more than it saves.
            w if w < 1 << 22 => 1,
            _ => rayon::current_num_threads(),
        };
        forward::run(&self.decoder, &mut self.cache, &batch, threads)
    }

    /// Keeps rows `index` of the cache, in that order (a row may repeat).
    pub fn select_rows(&mut self, index: &[usize]) {
        self.cache.select_rows(index);
    }
}

#[cfg(test)]
mod tests;
