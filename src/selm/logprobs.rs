//! Sequence log-probabilities: `sum_t log pi(y_t | x, y_<t)` over response tokens only.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::CausalLm;
use crate::model::llama::{AttentionPlan, right_pad};

/// Sums of log-probs of `targets` under `logits`, counting only positions where `mask` is 1.
/// `logits: [n, t, vocab]`, `targets: [n, t]` (the token each position predicts), `mask: [n, t]`.
pub fn masked_token_logp_sums<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [n, t, _] = logits.dims();
    let logp = log_softmax(logits, 2);
    let picked = logp.gather(2, targets.reshape([n, t, 1])).reshape([n, t]);
    (picked * mask).sum_dim(1).reshape([n])
}

/// Log-prob sums of each `(prompt, response)` pair's response under `model`, one forward pass.
/// Rows are right-padded; prompt and pad positions do not count.
pub fn sequence_logps<B: Backend>(model: &CausalLm<B>, pairs: &[(&[u32], &[u32])]) -> Tensor<B, 1> {
    let (logits, targets, mask) = response_positions(model, pairs);
    masked_token_logp_sums(logits, targets, mask)
}

/// Per-token log-probs of each pair's response under `model` (one entry per response token).
pub fn response_token_logps<B: Backend>(
    model: &CausalLm<B>,
    pairs: &[(&[u32], &[u32])],
) -> Vec<Vec<f32>> {
    let (logits, targets, _) = response_positions(model, pairs);
    let [n, t, _] = logits.dims();
    let picked = log_softmax(logits, 2)
        .gather(2, targets.reshape([n, t, 1]))
        .reshape([n, t]);
    let flat = picked
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data");
    pairs
        .iter()
        .enumerate()
        .map(|(i, (p, r))| {
            // Response token j is predicted at position len(p) - 1 + j.
            let start = i * t + p.len() - 1;
            flat[start..start + r.len()].to_vec()
        })
        .collect()
}

/// One forward pass over right-padded `prompt ++ response` rows: the logits that predict each
/// next token, those tokens, and a mask selecting response positions.
fn response_positions<B: Backend>(
    model: &CausalLm<B>,
    pairs: &[(&[u32], &[u32])],
) -> (Tensor<B, 3>, Tensor<B, 2, Int>, Tensor<B, 2>) {
    let device = model.device();
    let pad = model.config().pad_id();
    let rows: Vec<Vec<u32>> = pairs
        .iter()
        .map(|(p, r)| {
            assert!(!p.is_empty(), "a prompt needs at least one token");
            [*p, *r].concat()
        })
        .collect();
    let (ids, lens, seq) = right_pad::<B>(&rows, pad, &device);
    let plan = AttentionPlan::right_padded(model.config(), &lens, seq, &device);
    let logits = model.forward(ids.clone(), &plan, None);
    // Position t predicts token t + 1.
    let inputs_len = seq - 1;
    let logits = logits.narrow(1, 0, inputs_len);
    let targets = ids.narrow(1, 1, inputs_len);
    let mut mask = Vec::with_capacity(rows.len() * inputs_len);
    for ((p, _), len) in pairs.iter().zip(&lens) {
        mask.extend((0..inputs_len).map(|t| f32::from(t + 1 >= p.len() && t + 1 < *len)));
    }
    let mask = Tensor::from_data(TensorData::new(mask, [rows.len(), inputs_len]), &device);
    (logits, targets, mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn sums_only_masked_positions() {
        let device = Default::default();
        // Two positions over a 2-token vocabulary: p = softmax([0, ln 3]) = [1/4, 3/4].
        let l3 = 3f32.ln();
        let logits = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![0.0, l3, 0.0, l3], [1, 2, 2]),
            &device,
        );
        let targets =
            Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![0i64, 1], [1, 2]), &device);
        let both =
            Tensor::<Flex, 2>::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 2]), &device);
        let second =
            Tensor::<Flex, 2>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 2]), &device);
        let all: f32 = masked_token_logp_sums(logits.clone(), targets.clone(), both).into_scalar();
        let last: f32 = masked_token_logp_sums(logits, targets, second).into_scalar();
        assert!((all - (0.25f32.ln() + 0.75f32.ln())).abs() < 1e-6);
        assert!((last - 0.75f32.ln()).abs() < 1e-6);
    }
}
