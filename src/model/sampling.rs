//! Choosing the next token from a row of logits, on the host: greedy, or temperature, top-k
//! and top-p sampling (applied in that order, as HF's logits processors do) from a seeded RNG.

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus mass kept; 1 disables.
    pub top_p: f32,
    /// Candidates kept; 0 disables.
    pub top_k: usize,
}

impl SamplingParams {
    pub const GREEDY: Self = Self {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
    };

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// Sets the logits of `ids` to -inf, as transformers' `suppress_tokens`
/// (`SuppressTokensLogitsProcessor`): neither sampling nor greedy decoding picks them. Ids
/// past the row are ignored.
pub fn suppress(logits: &mut [f32], ids: &[u32]) {
    for &id in ids {
        if let Some(x) = logits.get_mut(id as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
}

/// Index of the largest logit (the first one on ties, as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Picks the next token from one row of logits.
pub fn sample_token(logits: &[f32], params: &SamplingParams, rng: &mut impl Rng) -> u32 {
    if params.is_greedy() {
        return argmax(logits);
    }
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    if order.is_empty() {
        return argmax(logits);
    }
    order.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if params.top_k > 0 {
        order.truncate(params.top_k);
    }
    let max = logits[order[0]] / params.temperature;
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] / params.temperature - max) as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if params.top_p < 1.0 {
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        let mut mass = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                mass += p;
                mass >= params.top_p as f64
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
        order.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut draw = rng.random::<f64>() * total;
    for (p, &i) in probs.iter().zip(&order) {
        draw -= p;
        if draw < 0.0 {
            return i as u32;
        }
    }
    *order.last().expect("non-empty") as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn counts(logits: &[f32], params: SamplingParams, n: usize) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[sample_token(logits, &params, &mut rng) as usize] += 1;
        }
        c
    }

    #[test]
    fn greedy_takes_first_max() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        let p = SamplingParams::GREEDY;
        assert_eq!(
            sample_token(&[0.0, 2.0, 1.0], &p, &mut StdRng::seed_from_u64(0)),
            1
        );
    }

    #[test]
    fn suppressed_tokens_are_never_picked() {
        let mut logits = vec![5.0, 1.0, 4.0, 0.5];
        suppress(&mut logits, &[0, 9]);
        assert_eq!(logits[0], f32::NEG_INFINITY);
        assert_eq!(&logits[1..], [1.0, 4.0, 0.5]);
        // Greedy takes the best remaining token.
        let greedy = SamplingParams::GREEDY;
        assert_eq!(
            sample_token(&logits, &greedy, &mut StdRng::seed_from_u64(0)),
            2
        );
        // Sampling never draws it, even hot, with top-k and top-p.
        for params in [
            SamplingParams {
                temperature: 5.0,
                top_p: 1.0,
                top_k: 0,
            },
            SamplingParams {
                temperature: 1.0,
                top_p: 0.9,
                top_k: 2,
            },
        ] {
            let c = counts(&logits, params, 2000);
            assert_eq!(c[0], 0, "{c:?}");
        }
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [2.0f32.ln(), 1.0f32.ln(), 0.5f32.ln(), 0.25f32.ln()];
        let top_k = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 2,
        };
        let c = counts(&logits, top_k, 3000);
        assert_eq!(c[2] + c[3], 0);
        // p(0) = 2/3 among the two kept.
        assert!((c[0] as f64 / 3000.0 - 2.0 / 3.0).abs() < 0.04, "{c:?}");
        // Probabilities 8/15, 4/15, 2/15, 1/15: top_p 0.7 keeps the first two.
        let top_p = SamplingParams {
            temperature: 1.0,
            top_p: 0.7,
            top_k: 0,
        };
        let c = counts(&logits, top_p, 3000);
        assert_eq!(c[2] + c[3], 0, "{c:?}");
    }

    #[test]
    fn temperature_sharpens_and_same_seed_repeats() {
        let logits = [1.0, 0.0];
        let cold = SamplingParams {
            temperature: 0.25,
            top_p: 1.0,
            top_k: 0,
        };
        let c = counts(&logits, cold, 2000);
        // p(0) = sigmoid(4) = 0.982
        assert!((c[0] as f64 / 2000.0 - 0.982).abs() < 0.02, "{c:?}");
        assert_eq!(counts(&logits, cold, 50), counts(&logits, cold, 50));
    }
}
