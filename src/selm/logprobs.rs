//! Sequence log-probabilities: `sum_t log pi(y_t | x, y_<t)` over response tokens only.
//!
//! The LM head runs only at the positions that predict a response token, and each
//! log-prob is `logit[target] - logsumexp(logits)` over chunks of rows: no
//! `[batch, seq, vocab]` tensor and no full `log_softmax` (at SmolLM2's vocabulary those
//! are 0.6 GB each per update).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::CausalLm;
use crate::model::llama::{AttentionPlan, right_pad};

/// Elements of one chunk of head logits (64 MiB of f32): bounds the transient memory of
/// inference passes; training keeps each chunk's softmax for the backward pass anyway.
const CHUNK_ELEMENTS: usize = 1 << 24;

/// `log softmax(logits)[target]` per row, `logits: [rows, vocab]`, `targets: [rows]`.
pub fn target_logps<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let rows = logits.dims()[0];
    // The max only steadies exp; logsumexp's gradient (softmax) does not depend on it.
    let max = logits.clone().max_dim(1).detach();
    let lse = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
    let picked = logits.gather(1, targets.reshape([rows, 1]));
    (picked - lse).reshape([rows])
}

/// Log-prob sums of each `(prompt, response)` pair's response under `model`, one forward pass.
/// Rows are right-padded; prompt and pad positions do not count.
pub fn sequence_logps<B: Backend>(model: &CausalLm<B>, pairs: &[(&[u32], &[u32])]) -> Tensor<B, 1> {
    let device = model.device();
    let Some(tokens) = token_logps(model, pairs) else {
        return Tensor::zeros([pairs.len()], &device);
    };
    // Lay the tokens out as `[pairs, longest response]`, padded with a zero appended after
    // them, and sum each row: plain f32 sums (a 0/1 matmul could round through TF32 on a GPU).
    let total = tokens.dims()[0];
    let width = pairs.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
    let mut index = Vec::with_capacity(pairs.len() * width);
    let mut start = 0;
    for (_, r) in pairs {
        index.extend((start..start + r.len()).map(|t| t as i64));
        index.extend(std::iter::repeat_n(total as i64, width - r.len()));
        start += r.len();
    }
    let index =
        Tensor::<B, 1, Int>::from_data(TensorData::new(index, [pairs.len() * width]), &device);
    Tensor::cat(vec![tokens, Tensor::zeros([1], &device)], 0)
        .select(0, index)
        .reshape([pairs.len(), width])
        .sum_dim(1)
        .reshape([pairs.len()])
}

/// Per-token log-probs of each pair's response under `model` (one entry per response token).
pub fn response_token_logps<B: Backend>(
    model: &CausalLm<B>,
    pairs: &[(&[u32], &[u32])],
) -> Vec<Vec<f32>> {
    let flat = token_logps(model, pairs).map_or_else(Vec::new, |t| {
        t.into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 data")
    });
    let mut rest = flat.as_slice();
    pairs
        .iter()
        .map(|(_, r)| {
            let (mine, tail) = rest.split_at(r.len());
            rest = tail;
            mine.to_vec()
        })
        .collect()
}

/// Log-probs of every response token, pair after pair, `[total response tokens]`; None when
/// no pair has a response token. One forward pass over right-padded `prompt ++ response`
/// rows; the head runs only where a response token is predicted.
fn token_logps<B: Backend>(
    model: &CausalLm<B>,
    pairs: &[(&[u32], &[u32])],
) -> Option<Tensor<B, 1>> {
    let device = model.device();
    let pad = model.config().pad_id();
    let rows: Vec<Vec<u32>> = pairs
        .iter()
        .map(|(p, r)| {
            assert!(!p.is_empty(), "a prompt needs at least one token");
            [*p, *r].concat()
        })
        .collect();
    // Response token j of row i is predicted by position len(prompt) - 1 + j.
    let (mut positions, mut targets) = (vec![], vec![]);
    let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
    for (i, (p, r)) in pairs.iter().enumerate() {
        positions.extend((0..r.len()).map(|j| (i * seq + p.len() - 1 + j) as i64));
        targets.extend(r.iter().map(|&t| t as i64));
    }
    if targets.is_empty() {
        return None;
    }
    let (ids, lens, seq) = right_pad::<B>(&rows, pad, &device);
    let plan = AttentionPlan::right_padded(model.config(), &lens, seq, &device);
    let hidden = model.hidden(ids, &plan, None);
    let width = hidden.dims()[2];
    let n = positions.len();
    let index = |v: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), &device);
    let hidden = hidden
        .reshape([rows.len() * seq, width])
        .select(0, index(positions));
    let targets = index(targets);
    let chunk = (CHUNK_ELEMENTS / model.config().vocab_size).max(1);
    let parts: Vec<Tensor<B, 1>> = (0..n)
        .step_by(chunk)
        .map(|start| {
            let len = chunk.min(n - start);
            let logits = model.head_rows(hidden.clone().narrow(0, start, len));
            target_logps(logits, targets.clone().narrow(0, start, len))
        })
        .collect();
    Some(Tensor::cat(parts, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn target_logps_are_log_softmax_at_the_target() {
        let device = Default::default();
        // Row 0: p = softmax([0, ln 3]) = [1/4, 3/4]; row 1 shifted by 1000 (no overflow).
        let l3 = 3f32.ln();
        let logits = Tensor::<Flex, 2>::from_data(
            TensorData::new(vec![0.0, l3, 1000.0, 1000.0 + l3], [2, 2]),
            &device,
        );
        let targets =
            Tensor::<Flex, 1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
        let got = target_logps(logits, targets)
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        assert!((got[0] - 0.25f32.ln()).abs() < 1e-6, "{got:?}");
        assert!((got[1] - 0.75f32.ln()).abs() < 1e-4, "{got:?}");
    }
}
