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
///
/// Candidates are taken in descending logit order (ties to the lower id), as a full sort gives
/// them (the same draw but for the f64 rounding of the normaliser's sum), but only the prefix
/// that top-k, top-p and the draw actually walk is ever sorted: a partial selection finds it,
/// in a few dozen of a 49,152-token vocabulary at usual temperatures, instead of sorting the
/// whole row at every step.
pub fn sample_token(logits: &[f32], params: &SamplingParams, rng: &mut impl Rng) -> u32 {
    if params.is_greedy() {
        return argmax(logits);
    }
    sample_token_at(logits, params, rng.random::<f64>())
}

/// [`sample_token`] with its one uniform draw `u` in `[0, 1)` made beforehand (unused when
/// greedy or when no logit is finite), so that rows can be sampled in parallel from draws
/// taken in row order.
pub fn sample_token_at(logits: &[f32], params: &SamplingParams, u: f64) -> u32 {
    if params.is_greedy() {
        return argmax(logits);
    }
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    if order.is_empty() {
        return argmax(logits);
    }
    let mut sorted = Prefix::new(logits);
    if params.top_k > 0 && params.top_k < order.len() {
        sorted.select(&mut order, params.top_k);
        order.truncate(params.top_k);
    }
    sorted.sort_to(&mut order, 1);
    let temperature = params.temperature;
    let max = logits[order[0]] / temperature;
    let weight = |i: usize| ((logits[i] / temperature - max) as f64).exp();
    let total: f64 = order.iter().map(|&i| weight(i)).sum();
    let mut kept = order.len();
    if params.top_p < 1.0 {
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        let mut mass = 0.0;
        let mut i = 0;
        kept = loop {
            sorted.sort_to(&mut order, i + 1);
            mass += weight(order[i]) / total;
            if mass >= params.top_p as f64 || i + 1 == order.len() {
                break i + 1;
            }
            i += 1;
        };
    }
    let kept_total: f64 = if kept == order.len() {
        1.0
    } else {
        order[..kept].iter().map(|&i| weight(i) / total).sum()
    };
    let mut draw = u * kept_total;
    for i in 0..kept {
        sorted.sort_to(&mut order, i + 1);
        draw -= weight(order[i]) / total;
        if draw < 0.0 {
            return order[i] as u32;
        }
    }
    order[kept - 1] as u32
}

/// Sorts a row's candidate ids by descending logit lazily: `sort_to(n)` makes the first `n`
/// sorted, selecting them from the rest in growing chunks.
struct Prefix<'a> {
    logits: &'a [f32],
    sorted: usize,
}

impl<'a> Prefix<'a> {
    fn new(logits: &'a [f32]) -> Self {
        Self { logits, sorted: 0 }
    }

    fn cmp(&self, a: usize, b: usize) -> std::cmp::Ordering {
        self.logits[b].total_cmp(&self.logits[a]).then(a.cmp(&b))
    }

    /// Moves the `n` best ids of `order[sorted..]` to its front (unsorted).
    fn select(&self, order: &mut [usize], n: usize) {
        let rest = &mut order[self.sorted..];
        if n > 0 && n < rest.len() {
            rest.select_nth_unstable_by(n - 1, |&a, &b| self.cmp(a, b));
        }
    }

    /// Makes `order[..n]` the `n` best ids in order.
    fn sort_to(&mut self, order: &mut [usize], n: usize) {
        if n <= self.sorted {
            return;
        }
        let chunk = (n - self.sorted).max(self.sorted).max(64);
        let end = (self.sorted + chunk).min(order.len());
        self.select(order, end - self.sorted);
        let logits = self.logits;
        order[self.sorted..end]
            .sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        self.sorted = end;
    }
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

    /// The sampler before the partial sort: sorts the whole row.
    fn full_sort_sample(logits: &[f32], params: &SamplingParams, rng: &mut impl Rng) -> u32 {
        let mut order: Vec<usize> = (0..logits.len())
            .filter(|&i| logits[i].is_finite())
            .collect();
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
        let mut mass = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                mass += p;
                mass >= params.top_p as f64
            })
            .map_or(probs.len(), |i| i + 1);
        let keep = if params.top_p < 1.0 {
            keep
        } else {
            probs.len()
        };
        let total: f64 = probs[..keep].iter().sum();
        let mut draw = rng.random::<f64>() * total;
        for (p, &i) in probs[..keep].iter().zip(&order) {
            draw -= p;
            if draw < 0.0 {
                return i as u32;
            }
        }
        order[keep - 1] as u32
    }

    #[test]
    fn partial_sort_draws_what_a_full_sort_draws() {
        let mut rng = StdRng::seed_from_u64(3);
        // A vocabulary-sized row with ties, -inf (suppressed) and a long flat tail.
        let mut logits: Vec<f32> = (0..49_152)
            .map(|_| (rng.random::<f32>() * 8.0).round() - 4.0)
            .collect();
        logits[7] = f32::NEG_INFINITY;
        for (temperature, top_p, top_k) in [
            (1.0, 1.0, 0),
            (0.7, 0.9, 0),
            (1.0, 1.0, 50),
            (1.3, 0.95, 200),
            (5.0, 0.5, 0),
        ] {
            let params = SamplingParams {
                temperature,
                top_p,
                top_k,
            };
            let (mut a, mut b) = (StdRng::seed_from_u64(9), StdRng::seed_from_u64(9));
            for _ in 0..200 {
                assert_eq!(
                    sample_token(&logits, &params, &mut a),
                    full_sort_sample(&logits, &params, &mut b),
                    "{params:?}"
                );
            }
        }
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
