//! The tiles in AVX-512 and AVX2+FMA intrinsics.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{AHEAD, Out, Weights, element, store};

/// One kernel set: `$rows_mr x $rows_nv` vectors per row-major tile (rows of `x` by
/// vectors of columns), `$cols_mr x $cols_nc` per column-major one (rows by columns, each a
/// vector of partial sums over `k`).
macro_rules! kernel_set {
    ($name:ident, $feature:literal, $vec:ty, $lanes:literal, $zero:ident, $load:ident,
     $store:ident, $splat:ident, $fma:ident, $add:ident, $hsum:path,
     $rows_mr:literal, $rows_nv:literal, $cols_mr:literal, $cols_nc:literal) => {
        #[target_feature(enable = $feature)]
        pub(crate) unsafe fn $name(
            x: &[f32],
            rows: usize,
            k: usize,
            w: Weights<'_>,
            cols: Range<usize>,
            out: Out,
        ) {
            // SAFETY (all below): the bounds `super::product` asserted; `out` by its caller.
            match w {
                Weights::Rows { data, stride } => {
                    // Partial sums of a column group between blocks of k.
                    let mut part = vec![$zero(); rows * $rows_nv];
                    let args = RowArgs {
                        x,
                        rows,
                        k,
                        data,
                        stride,
                        first: cols.start,
                        out,
                    };
                    let mut c = cols.start;
                    while c + $rows_nv * $lanes <= cols.end {
                        unsafe { row_blocks::<$rows_nv>(&args, c, &mut part) };
                        c += $rows_nv * $lanes;
                    }
                    while c + $lanes <= cols.end {
                        unsafe { row_blocks::<1>(&args, c, &mut part) };
                        c += $lanes;
                    }
                    for c in c..cols.end {
                        for m in 0..rows {
                            unsafe { store(out, m, c - cols.start, element(x, k, w, m, c, true)) };
                        }
                    }
                }
                Weights::Cols { data, stride } => {
                    for c in cols.clone().step_by($cols_nc) {
                        for m in (0..rows).step_by($cols_mr) {
                            unsafe { cols_tile(x, rows, k, data, stride, m, c, &cols, out) };
                        }
                    }
                }
            }
        }

        /// A row-major product's operands.
        struct RowArgs<'a> {
            x: &'a [f32],
            rows: usize,
            k: usize,
            data: &'a [f32],
            stride: usize,
            /// The product's first column (where `out` points).
            first: usize,
            out: Out,
        }

        /// Columns `c..c + V * lanes` of every row: over `k` in blocks of `KC` weight rows,
        /// each block (`KC x V` vectors, a few tens of KB) read from memory by the first row
        /// tile and from L1 by the others; `$rows_mr` rows at a time, then the rest by fours,
        /// twos and ones. A tile's sums wait in `part` between blocks: stored and loaded
        /// exactly, they are the same multiply-adds in the same order as in one pass.
        #[inline(always)]
        unsafe fn row_blocks<const V: usize>(a: &RowArgs<'_>, c: usize, part: &mut [$vec]) {
            const KC: usize = 128;
            for k0 in (0..a.k).step_by(KC) {
                let ks = k0..(k0 + KC).min(a.k);
                let mut m = 0;
                // SAFETY: as the caller's.
                unsafe {
                    while m + $rows_mr <= a.rows {
                        row_tile::<$rows_mr, V>(a, c, m, ks.clone(), part);
                        m += $rows_mr;
                    }
                    for r in [4, 2, 1] {
                        if r < $rows_mr && m + r <= a.rows {
                            match r {
                                4 => row_tile::<4, V>(a, c, m, ks.clone(), part),
                                2 => row_tile::<2, V>(a, c, m, ks.clone(), part),
                                _ => row_tile::<1, V>(a, c, m, ks.clone(), part),
                            }
                            m += r;
                        }
                    }
                    if m < a.rows {
                        row_tile::<1, V>(a, c, m, ks.clone(), part);
                    }
                }
            }
        }

        /// Rows `m0..m0 + R` by columns `c..c + V * lanes`, summed over weight rows `ks` in
        /// registers, from the partial sums of the blocks before (none for the first) and
        /// into `out` after the last. The first row tile prefetches the weights.
        #[inline(always)]
        unsafe fn row_tile<const R: usize, const V: usize>(
            a: &RowArgs<'_>,
            c: usize,
            m0: usize,
            ks: Range<usize>,
            part: &mut [$vec],
        ) {
            let (k, stride, out) = (a.k, a.stride, a.out);
            // SAFETY: reads within the asserted bounds; prefetches never fault.
            unsafe {
                let mut acc = [[$zero(); V]; R];
                if ks.start > 0 {
                    for r in 0..R {
                        for v in 0..V {
                            acc[r][v] = part[(m0 + r) * $rows_nv + v];
                        }
                    }
                }
                let xp = a.x.as_ptr().add(m0 * k);
                let base = a.data.as_ptr().add(c);
                let lines = (V * $lanes * 4).div_ceil(64) + 1;
                for i in ks.clone() {
                    let row = base.add(i * stride);
                    if m0 == 0 {
                        let ahead = row.wrapping_add(AHEAD * stride);
                        for line in 0..lines {
                            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(16 * line).cast());
                        }
                    }
                    let wv: [_; V] = std::array::from_fn(|v| $load(row.add(v * $lanes)));
                    for r in 0..R {
                        let b = $splat(*xp.add(r * k + i));
                        for v in 0..V {
                            acc[r][v] = $fma(b, wv[v], acc[r][v]);
                        }
                    }
                }
                if ks.end < k {
                    for r in 0..R {
                        for v in 0..V {
                            part[(m0 + r) * $rows_nv + v] = acc[r][v];
                        }
                    }
                    return;
                }
                for r in 0..R {
                    for v in 0..V {
                        let p = out
                            .ptr
                            .add((m0 + r) * out.stride + c - a.first + v * $lanes);
                        let y = if out.add {
                            $add($load(p), acc[r][v])
                        } else {
                            acc[r][v]
                        };
                        $store(p, y);
                    }
                }
            }
        }

        /// Rows `m0..` by columns `c..` (`$cols_mr x $cols_nc`, a short edge repeating its
        /// last row or column, so that every element is summed the same way): dot products
        /// of contiguous rows of `x` and contiguous columns of `w`.
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn cols_tile(
            x: &[f32],
            rows: usize,
            k: usize,
            data: &[f32],
            stride: usize,
            m0: usize,
            c0: usize,
            cols: &Range<usize>,
            out: Out,
        ) {
            let main = k / $lanes * $lanes;
            let row: [usize; $cols_mr] = std::array::from_fn(|r| (m0 + r).min(rows - 1));
            let col: [usize; $cols_nc] = std::array::from_fn(|j| (c0 + j).min(cols.end - 1));
            // SAFETY: reads within the asserted bounds.
            unsafe {
                let xp: [*const f32; $cols_mr] =
                    std::array::from_fn(|r| x.as_ptr().add(row[r] * k));
                let wp: [*const f32; $cols_nc] =
                    std::array::from_fn(|j| data.as_ptr().add(col[j] * stride));
                let mut acc = [[$zero(); $cols_nc]; $cols_mr];
                let mut i = 0;
                while i < main {
                    let wv: [_; $cols_nc] = std::array::from_fn(|j| $load(wp[j].add(i)));
                    for r in 0..$cols_mr {
                        let xv = $load(xp[r].add(i));
                        for j in 0..$cols_nc {
                            acc[r][j] = $fma(xv, wv[j], acc[r][j]);
                        }
                    }
                    i += $lanes;
                }
                for r in 0..$cols_mr.min(rows - m0) {
                    for j in 0..$cols_nc.min(cols.end - c0) {
                        let mut s = $hsum(acc[r][j]);
                        for i in main..k {
                            s = (*xp[r].add(i)).mul_add(*wp[j].add(i), s);
                        }
                        store(out, m0 + r, c0 + j - cols.start, s);
                    }
                }
            }
        }
    };
}

pub(super) use set256::kernels as avx2;
#[cfg(feature = "avx512")]
pub(super) use set512::kernels as avx512;

#[cfg(feature = "avx512")]
mod set512 {
    use super::*;
    kernel_set!(
        kernels,
        "avx512f,avx2,fma",
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_reduce_add_ps,
        8,
        3,
        8,
        3
    );
}

mod set256 {
    use super::*;
    kernel_set!(
        kernels,
        "avx2,fma",
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        hsum256,
        6,
        2,
        2,
        4
    );

    /// The eight lanes' sum, in a fixed order.
    #[inline(always)]
    unsafe fn hsum256(v: __m256) -> f32 {
        // SAFETY: called only from AVX2 functions.
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
            _mm_cvtss_f32(s)
        }
    }
}
