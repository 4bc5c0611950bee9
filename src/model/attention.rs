//! What one forward call attends over ([`AttentionPlan`]): RoPE tables for the queries and
//! keys, and the additive attention bias (causal, padding), built on the host once per call.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::config::ModelConfig;

/// What one forward call attends over: per-row RoPE tables and the attention bias, built on
/// the host once per call and shared by every layer. Each is laid out exactly as the tensor it
/// meets, so that the per-layer element-wise ops run on contiguous, same-shape operands (the
/// CPU backend's fast path) rather than through broadcast strides.
pub struct AttentionPlan<B: Backend> {
    /// `[batch, seq, heads, head_dim]`, for the queries, times the 1/sqrt(head_dim) score scale.
    rope_q: Rope<B>,
    /// `[batch, seq, kv_heads, head_dim]`, for the keys.
    rope_k: Rope<B>,
    /// `rotate_half` as a matrix, `[head_dim, head_dim]`: `x @ rot = [-x2, x1]`, exactly.
    rot: Tensor<B, 2>,
    /// Added to the scores, `[batch, kv_heads, heads / kv_heads, seq, keys]`: 0 where a query
    /// may attend, -inf where not.
    bias: Tensor<B, 5>,
}

/// cos and sin of each position's angles, repeated over the heads they apply to.
struct Rope<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
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
        let (heads, kv_heads) = (config.num_heads, config.num_kv_heads);
        let (cos, sin) = rope_tables(config, positions);
        let rope = |n: usize, scale: f32| Rope {
            cos: per_head(&cos, n, scale, [batch, seq, n, config.head_dim], device),
            sin: per_head(&sin, n, scale, [batch, seq, n, config.head_dim], device),
        };
        let mut bias = Vec::with_capacity(batch * heads * seq * keys);
        for valid in key_valid {
            let mut row = Vec::with_capacity(seq * keys);
            for t in 0..seq {
                let q = past + t;
                row.extend((0..keys).map(|j| {
                    if j == q || (j < q && valid[j]) {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                }));
            }
            for _ in 0..heads {
                bias.extend_from_slice(&row);
            }
        }
        let shape = [batch, kv_heads, heads / kv_heads, seq, keys];
        Self {
            // The queries' tables carry the 1/sqrt(head_dim) score scale: one op fewer on the
            // `[.., seq, keys]` scores, forward and backward.
            rope_q: rope(heads, (config.head_dim as f32).sqrt().recip()),
            rope_k: rope(kv_heads, 1.0),
            rot: rotate_half_matrix(config.head_dim, device),
            bias: Tensor::from_data(TensorData::new(bias, shape), device),
        }
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

/// cos/sin of `position * inv_freq`, duplicated over both halves as HF's `rotate_half` expects;
/// `[rows * seq * head_dim]`.
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

/// A `[.., head_dim]` table times `scale`, repeated for `heads` heads:
/// `[batch, seq, heads, head_dim]`.
fn per_head<B: Backend>(
    table: &[f32],
    heads: usize,
    scale: f32,
    shape: [usize; 4],
    device: &B::Device,
) -> Tensor<B, 4> {
    let hd = shape[3];
    let mut out = Vec::with_capacity(table.len() * heads);
    for row in table.chunks(hd) {
        for _ in 0..heads {
            out.extend(row.iter().map(|&x| x * scale));
        }
    }
    Tensor::from_data(TensorData::new(out, shape), device)
}

/// The signed permutation with `x @ R = [-x2, x1]` (HF's `rotate_half`). A matmul keeps the
/// rotation on contiguous data (no narrowed views). On the CPU its sums add exact zeros, so the
/// result is bit-for-bit the negated, swapped halves; a GPU matmul may round its inputs through
/// TF32, as it does for every projection.
fn rotate_half_matrix<B: Backend>(hd: usize, device: &B::Device) -> Tensor<B, 2> {
    let half = hd / 2;
    let mut r = vec![0f32; hd * hd];
    for j in 0..half {
        r[(j + half) * hd + j] = -1.0;
        r[j * hd + j + half] = 1.0;
    }
    Tensor::from_data(TensorData::new(r, [hd, hd]), device)
}

impl<B: Backend> AttentionPlan<B> {
    /// RoPE on the queries, `[batch, seq, heads, head_dim]`, times the score scale.
    pub(super) fn rotate_queries(&self, q: Tensor<B, 4>) -> Tensor<B, 4> {
        apply_rope(q, &self.rope_q, &self.rot)
    }

    /// RoPE on the keys, `[batch, seq, kv_heads, head_dim]`.
    pub(super) fn rotate_keys(&self, k: Tensor<B, 4>) -> Tensor<B, 4> {
        apply_rope(k, &self.rope_k, &self.rot)
    }

    /// Added to the scores, `[batch, kv_heads, heads / kv_heads, seq, keys]`.
    pub(super) fn bias(&self) -> Tensor<B, 5> {
        self.bias.clone()
    }
}

/// `x * cos + rotate_half(x) * sin` on `[batch, seq, heads, head_dim]`.
fn apply_rope<B: Backend>(x: Tensor<B, 4>, rope: &Rope<B>, rot: &Tensor<B, 2>) -> Tensor<B, 4> {
    let [b, t, n, hd] = x.dims();
    let rotated = x
        .clone()
        .reshape([b * t * n, hd])
        .matmul(rot.clone())
        .reshape([b, t, n, hd]);
    x * rope.cos.clone() + rotated * rope.sin.clone()
}
