//! The x86-64 kernels: register tiles in AVX-512 and AVX2+FMA intrinsics.

use super::{Args, Weights};
use std::arch::x86_64::*;

#[cfg(feature = "avx512")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) fn avx512(args: Args<'_>, out: &mut [f32]) {
    match args.4 {
        Weights::Rows { .. } => rows_avx512(args, out),
        Weights::Cols { .. } => cols_avx512(args, out),
    }
}

#[target_feature(enable = "avx2,fma")]
pub(super) fn avx2(args: Args<'_>, out: &mut [f32]) {
    match args.4 {
        Weights::Rows { .. } => rows_avx2(args, out),
        Weights::Cols { .. } => cols_avx2(args, out),
    }
}

/// The row-major product in register tiles of `$rows` rows of `x` by `$vecs` vectors
/// of columns: per weight row, `$vecs` loads and `$rows` broadcasts feed
/// `$rows x $vecs` FMAs into accumulators that stay in registers over `SUB` weight
/// rows. Rows of `x` past a multiple of `$rows` are padded with zeros; columns past a
/// whole tile go to the plain loop.
macro_rules! rows_tiled {
    ($name:ident, $feature:literal, $rows:literal, $vecs:literal, $lanes:literal,
     $zero:ident, $load:ident, $store:ident, $splat:ident, $fma:ident) => {
        #[target_feature(enable = $feature)]
        fn $name((x, rows, k, n, w, part): Args<'_>, out: &mut [f32]) {
            const SUB: usize = 16;
            const PREFETCH: usize = 4;
            let Weights::Rows { data, stride } = w else {
                unreachable!("row-major weights")
            };
            if part.is_empty() {
                return;
            }
            assert!(part.end <= k && (part.end - 1) * stride + n <= data.len());
            let padded = rows.next_multiple_of($rows);
            let mut x_pad = vec![];
            let mut out_pad = vec![];
            let (xp, op): (&[f32], &mut [f32]) = if padded == rows {
                (x, &mut *out)
            } else {
                x_pad = x.to_vec();
                x_pad.resize(padded * k, 0.0);
                out_pad = vec![0.0; padded * n];
                (&x_pad, &mut out_pad)
            };
            let main = n / ($vecs * $lanes) * ($vecs * $lanes);
            for m0 in (0..padded).step_by($rows) {
                for sub in (part.start..part.end).step_by(SUB) {
                    let sub = sub..(sub + SUB).min(part.end);
                    for j in (0..main).step_by($vecs * $lanes) {
                        let at = |m: usize, v: usize| (m0 + m) * n + j + v * $lanes;
                        // SAFETY: at(m, v) + $lanes <= padded * n = op.len(); the
                        // weight reads end at (part.end - 1) * stride + n (asserted).
                        unsafe {
                            let mut acc = [[$zero(); $vecs]; $rows];
                            for m in 0..$rows {
                                for v in 0..$vecs {
                                    acc[m][v] = $load(op.as_ptr().add(at(m, v)));
                                }
                            }
                            for i in sub.clone() {
                                let row = data.as_ptr().add(i * stride + j);
                                // This row's part of the tile PREFETCH tiles on: the
                                // tiles walk 16 rows at once, too many streams for
                                // the hardware prefetcher.
                                let ahead = row.wrapping_add(PREFETCH * $vecs * $lanes);
                                for line in 0..$vecs * $lanes / 16 {
                                    _mm_prefetch::<_MM_HINT_T0>(
                                        ahead.wrapping_add(16 * line).cast(),
                                    );
                                }
                                let wv: [_; $vecs] =
                                    std::array::from_fn(|v| $load(row.add(v * $lanes)));
                                for m in 0..$rows {
                                    let b = $splat(xp[(m0 + m) * k + i]);
                                    for v in 0..$vecs {
                                        acc[m][v] = $fma(b, wv[v], acc[m][v]);
                                    }
                                }
                            }
                            for m in 0..$rows {
                                for v in 0..$vecs {
                                    $store(op.as_mut_ptr().add(at(m, v)), acc[m][v]);
                                }
                            }
                        }
                    }
                }
            }
            if main < n {
                super::rows_major::<true>(xp, padded, k, data, stride, main..n, n, part, op);
            }
            if padded != rows {
                out.copy_from_slice(&out_pad[..rows * n]);
            }
        }
    };
}

#[cfg(feature = "avx512")]
rows_tiled!(
    rows_avx512,
    "avx512f",
    4,
    3,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps
);
rows_tiled!(
    rows_avx2,
    "avx2,fma",
    4,
    2,
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps
);

/// The column-major product in register tiles of `$rows` rows of `x` by two columns:
/// each column is read from memory once, two at a time, in order (the tied head's
/// embeddings, row after row), while the rows of `x` come from L1. Rows of `x` past a
/// multiple of `$rows` are padded with zeros.
macro_rules! cols_tiled {
    ($name:ident, $feature:literal, $rows:literal, $lanes:literal, $zero:ident,
     $load:ident, $fma:ident, $hsum:ident) => {
        #[target_feature(enable = $feature)]
        fn $name((x, rows, k, _, w, part): Args<'_>, out: &mut [f32]) {
            let Weights::Cols { data, stride } = w else {
                unreachable!("column-major weights")
            };
            let len = part.len();
            if len == 0 {
                return;
            }
            assert!((part.end - 1) * stride + k <= data.len());
            let padded = rows.next_multiple_of($rows);
            let mut x_pad = vec![];
            let xp: &[f32] = if padded == rows {
                x
            } else {
                x_pad = x.to_vec();
                x_pad.resize(padded * k, 0.0);
                &x_pad
            };
            let main = k / $lanes * $lanes;
            let col = |j: usize| &data[(part.start + j) * stride..][..k];
            for j in (0..len).step_by(2) {
                // An odd last column pairs with itself.
                let (c0, c1) = (col(j), col((j + 1).min(len - 1)));
                for m0 in (0..padded).step_by($rows) {
                    let mut acc0 = [$zero(); $rows];
                    let mut acc1 = [$zero(); $rows];
                    let mut i = 0;
                    while i < main {
                        // SAFETY: i + $lanes <= k, the length of c0, c1 and each row
                        // of xp; a prefetch never faults.
                        unsafe {
                            // The next two columns, where they follow these.
                            let next = c0.as_ptr().wrapping_add(2 * stride + i);
                            _mm_prefetch::<_MM_HINT_T0>(next.cast());
                            _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(stride).cast());
                            let w0 = $load(c0.as_ptr().add(i));
                            let w1 = $load(c1.as_ptr().add(i));
                            for r in 0..$rows {
                                let xv = $load(xp.as_ptr().add((m0 + r) * k + i));
                                acc0[r] = $fma(xv, w0, acc0[r]);
                                acc1[r] = $fma(xv, w1, acc1[r]);
                            }
                        }
                        i += $lanes;
                    }
                    let mut sums = [[0f32; 2]; $rows];
                    for r in 0..$rows {
                        sums[r] = [$hsum(acc0[r]), $hsum(acc1[r])];
                    }
                    for (r, sums) in sums.iter().enumerate().take(rows.saturating_sub(m0)) {
                        let xm = &xp[(m0 + r) * k..][..k];
                        let tail = |c: &[f32]| -> f32 { (main..k).map(|i| xm[i] * c[i]).sum() };
                        out[(m0 + r) * len + j] = sums[0] + tail(c0);
                        if j + 1 < len {
                            out[(m0 + r) * len + j + 1] = sums[1] + tail(c1);
                        }
                    }
                }
            }
        }
    };
}

#[cfg(feature = "avx512")]
cols_tiled!(
    cols_avx512,
    "avx512f",
    4,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_fmadd_ps,
    _mm512_reduce_add_ps
);
cols_tiled!(
    cols_avx2,
    "avx2,fma",
    4,
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_fmadd_ps,
    hsum256
);

#[target_feature(enable = "avx")]
fn hsum256(v: __m256) -> f32 {
    let mut lanes = [0f32; 8];
    // SAFETY: lanes holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
    lanes.iter().sum()
}
