//! The element-wise parts of a layer (RMSNorm, RoPE, SiLU times up, attention over the
//! cache) in plain Rust over fixed lanes, compiled once per kernel set so that the compiler
//! vectorizes them with the widest instructions the CPU has.

use crate::backend::CpuKernels;

const LANES: usize = 16;

/// `pub fn $name(isa, args)`: `$body` compiled for AVX-512, AVX2+FMA and the baseline, the
/// widest the CPU has taken.
macro_rules! per_kernel_set {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:ident) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub fn $name(isa: CpuKernels, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn wide($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
            match isa {
                // SAFETY: each set is detected only where the CPU has it.
                #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
                CpuKernels::Avx512 => unsafe { wide($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                CpuKernels::Avx2 => unsafe { avx2($($arg),*) },
                _ => $body($($arg),*),
            }
        }
    };
}

per_kernel_set!(
    /// `out = w * x / sqrt(mean(x^2) + eps)`, row by row (`x`, `out`: `[rows, w.len()]`).
    pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) = rms_norm_body
);

#[inline(always)]
fn rms_norm_body(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let h = w.len();
    for (x, out) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        let inv = (sum_lanes(x, x) / h as f32 + eps).sqrt().recip();
        for ((o, &x), &w) in out.iter_mut().zip(x).zip(w) {
            *o = x * inv * w;
        }
    }
}

per_kernel_set!(
    /// `out = silu(gate) * up`, element by element.
    pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) = silu_mul_body
);

#[inline(always)]
fn silu_mul_body(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp(-g)) * u;
    }
}

/// `sum(a * b)` in `LANES` partial sums, then the tail.
#[inline(always)]
fn sum_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let whole = a.len() / LANES * LANES;
    for (ca, cb) in a[..whole]
        .chunks_exact(LANES)
        .zip(b[..whole].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `e^x` to about 2 ulp (Cephes' expf polynomial), in operations the compiler vectorizes:
/// libm's scalar call per element was a tenth of a decode step. Inputs above 88 give
/// `e^88` (SiLU and softmax never need more), below -87.3 (and -inf) 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    if x < -87.3 {
        return 0.0;
    }
    let x = x.min(88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// One query's attention over a cache slab: the keys transposed (`cache_k[d * capacity + j]`
/// is dimension `d` of key `j`), the values as rows (`cache_v[j * head_dim + d]`). The query
/// sits at key `own` and sees itself and the keys before it that `mask` leaves at 0 (-inf:
/// padding), as the masks of [`crate::model::attention::AttentionPlan`].
pub struct Query<'a> {
    pub q: &'a [f32],
    pub cache_k: &'a [f32],
    pub cache_v: &'a [f32],
    pub capacity: usize,
    pub mask: &'a [f32],
    pub own: usize,
}

per_kernel_set!(
    /// `out = softmax(q . K^T) V` over the keys the query sees (`q` already scaled);
    /// `scores`: scratch of at least `own + 1` floats.
    pub fn attend(query: &Query<'_>, scores: &mut [f32], out: &mut [f32]) = attend_body
);

#[inline(always)]
fn attend_body(query: &Query<'_>, scores: &mut [f32], out: &mut [f32]) {
    let (hd, cap, keys) = (query.q.len(), query.capacity, query.own + 1);
    let scores = &mut scores[..keys];
    // The mask, then the dot products added a dimension at a time: vectors over the keys.
    scores.copy_from_slice(&query.mask[..keys]);
    scores[query.own] = 0.0;
    for (d, &qd) in query.q.iter().enumerate() {
        let k = &query.cache_k[d * cap..d * cap + keys];
        for (s, &k) in scores.iter_mut().zip(k) {
            *s += qd * k;
        }
    }
    let max = fold_lanes(scores, f32::NEG_INFINITY, f32::max);
    // Masked keys: exp(-inf) = 0.
    scores.iter_mut().for_each(|s| *s = exp(*s - max));
    let total = fold_lanes(scores, 0.0, |a, b| a + b);
    out.fill(0.0);
    for (j, &p) in scores.iter().enumerate() {
        let v = &query.cache_v[j * hd..(j + 1) * hd];
        for (o, &v) in out.iter_mut().zip(v) {
            *o += p * v;
        }
    }
    let inv = total.recip();
    out.iter_mut().for_each(|o| *o *= inv);
}

/// `f` over `xs` in `LANES` running values, then across them.
#[inline(always)]
fn fold_lanes(xs: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] = f(acc[l], c[l]);
        }
    }
    tail.iter().chain(&acc).fold(init, |a, &b| f(a, b))
}

/// HF's rotary embedding on one head (`x * cos + rotate_half(x) * sin`, the tables holding
/// the first half's angles), times `scale`, into `out`.
pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], scale: f32, out: &mut [f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at(half);
    let (o1, o2) = out.split_at_mut(half);
    for d in 0..half {
        o1[d] = (x1[d] * cos[d] - x2[d] * sin[d]) * scale;
        o2[d] = (x2[d] * cos[d] + x1[d] * sin[d]) * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        for i in -8700..8800 {
            let x = i as f32 / 100.0 + 0.003;
            let (got, want) = (exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 5e-7,
                "exp({x}) = {got}, libm {want}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn attention_weighs_the_values_it_may_see() {
        let isa = CpuKernels::detect();
        let (hd, keys) = (4, 3);
        // Keys (1,0,0,0), (0,1,0,0), (2,0,0,0), transposed, in a slab of capacity 4.
        let k = [
            1.0, 0.0, 2.0, 9.0, 0.0, 1.0, 0.0, 9.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 9.0,
        ];
        let v = [
            1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0, -1.0, -1.0, -1.0, -1.0,
        ];
        let q = [2.0f32.ln(), 0.0, 0.0, 0.0];
        let mask = [0.0, f32::NEG_INFINITY, 0.0];
        let query = Query {
            q: &q,
            cache_k: &k,
            cache_v: &v,
            capacity: 4,
            mask: &mask,
            own: 2,
        };
        let (mut scores, mut out) = (vec![0.0; keys], vec![0.0; hd]);
        attend(isa, &query, &mut scores, &mut out);
        // Scores ln2 and 2 ln2 for keys 0 and 2: weights 1/3 and 2/3; key 1 unseen.
        let want = [
            1.0 / 3.0 - 2.0 / 3.0,
            2.0 / 3.0 - 2.0 / 3.0,
            1.0 - 2.0 / 3.0,
            4.0 / 3.0 - 2.0 / 3.0,
        ];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-6, "{out:?}");
        }
    }
}
