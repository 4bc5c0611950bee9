//! `x @ w` over a range of output columns, in register tiles, reading the weights where they
//! are stored (no packing). Every output element is one sum over `k` in order, whatever the
//! tile, the thread or the other rows: a row's result never depends on the batch it is in or
//! on how the columns were shared out.

use std::ops::Range;

use crate::backend::CpuKernels;
use crate::model::decode_matmul::kernels::Weights;

/// Rows of weights prefetched ahead in a row-major tile: the tile walks down the matrix
/// a few cache lines per row, which the hardware prefetcher does not follow.
const AHEAD: usize = 12;

/// Where a product's `[rows, cols]` result goes: element `(m, c)` at `ptr + m * stride + c`
/// (`c` counted from the start of the product's columns), added to what is there when `add`.
#[derive(Clone, Copy)]
pub struct Out {
    pub ptr: *mut f32,
    pub stride: usize,
    pub add: bool,
}

/// `out[m, c - cols.start] (+)= sum_i x[m, i] w[i, c]` for `m < rows`, `c` in `cols`.
///
/// # Safety
/// `out` must be valid for writes at every `(m, c)` of the result, and no other thread may
/// touch those elements during the call.
pub unsafe fn product(
    isa: CpuKernels,
    x: &[f32],
    rows: usize,
    k: usize,
    w: Weights<'_>,
    cols: Range<usize>,
    out: Out,
) {
    assert!(x.len() >= rows * k);
    if rows == 0 || cols.is_empty() {
        return;
    }
    match w {
        Weights::Rows { data, stride } => {
            assert!(k == 0 || (k - 1) * stride + cols.end <= data.len());
        }
        Weights::Cols { data, stride } => {
            assert!(k == 0 || (cols.end - 1) * stride + k <= data.len());
        }
    }
    // SAFETY: bounds asserted above, `out` by the caller; each kernel set only where detected.
    unsafe {
        match isa {
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            CpuKernels::Avx512 => x86::avx512(x, rows, k, w, cols, out),
            #[cfg(target_arch = "x86_64")]
            CpuKernels::Avx2 => x86::avx2(x, rows, k, w, cols, out),
            _ => portable(x, rows, k, w, cols, out),
        }
    }
}

/// Element `(m, c)` one at a time: the same sum, in the same order, as every tile.
///
/// # Safety
/// As [`product`].
#[inline(always)]
unsafe fn element(x: &[f32], k: usize, w: Weights<'_>, m: usize, c: usize, fused: bool) -> f32 {
    let xm = &x[m * k..(m + 1) * k];
    let mut acc = 0f32;
    match w {
        Weights::Rows { data, stride } => {
            for (i, &xi) in xm.iter().enumerate() {
                acc = madd(xi, data[i * stride + c], acc, fused);
            }
        }
        Weights::Cols { data, stride } => {
            let col = &data[c * stride..c * stride + k];
            for (&xi, &wi) in xm.iter().zip(col) {
                acc = madd(xi, wi, acc, fused);
            }
        }
    }
    acc
}

#[inline(always)]
fn madd(a: f32, b: f32, c: f32, fused: bool) -> f32 {
    if fused { a.mul_add(b, c) } else { a * b + c }
}

/// # Safety
/// As [`product`].
#[inline(always)]
unsafe fn store(out: Out, m: usize, c: usize, value: f32) {
    // SAFETY: the caller's contract on `out`.
    unsafe {
        let p = out.ptr.add(m * out.stride + c);
        *p = if out.add { *p + value } else { value };
    }
}

/// Without SIMD kernels: element by element (aarch64 fuses its multiply-adds).
unsafe fn portable(x: &[f32], rows: usize, k: usize, w: Weights<'_>, cols: Range<usize>, out: Out) {
    let fused = cfg!(target_arch = "aarch64");
    for m in 0..rows {
        for c in cols.clone() {
            // SAFETY: as the caller's.
            unsafe { store(out, m, c - cols.start, element(x, k, w, m, c, fused)) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests {
    use super::{Out, Weights, product};
    use crate::backend::CpuKernels;
    use crate::model::decode_matmul::kernels::tests::{runnable, values};

    /// `x @ w` for rows `rows` and columns `cols` of the result, one call.
    #[allow(clippy::too_many_arguments)]
    fn run(
        isa: CpuKernels,
        x: &[f32],
        k: usize,
        w: Weights<'_>,
        n: usize,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        into: &mut [f32],
    ) {
        let out = Out {
            ptr: into[rows.start * n + cols.start..].as_mut_ptr(),
            stride: n,
            add: true,
        };
        unsafe { product(isa, &x[rows.start * k..], rows.len(), k, w, cols, out) };
    }

    #[test]
    fn an_element_is_the_same_sum_whatever_the_tile_batch_or_share() {
        // Row counts past each tile height, columns past each tile width and vector, k past
        // a block of weight rows, both layouts, strides wider than the matrix.
        for (rows, k, n) in [
            (1, 1, 1),
            (3, 7, 5),
            (8, 64, 96),
            (13, 37, 301),
            (64, 40, 53),
        ] {
            let x = values(rows * k, 1);
            let stride_rows = n + 3;
            let w_rows = values(k * stride_rows, 2);
            let stride_cols = k + 5;
            let w_cols = values(n * stride_cols, 3);
            let layouts = [
                Weights::Rows {
                    data: &w_rows,
                    stride: stride_rows,
                },
                Weights::Cols {
                    data: &w_cols,
                    stride: stride_cols,
                },
            ];
            for (layout, w) in layouts.into_iter().enumerate() {
                let exact: Vec<f64> = (0..rows * n)
                    .map(|e| {
                        let (m, c) = (e / n, e % n);
                        (0..k)
                            .map(|i| {
                                let wi = match w {
                                    Weights::Rows { data, stride } => data[i * stride + c],
                                    Weights::Cols { data, stride } => data[c * stride + i],
                                };
                                x[m * k + i] as f64 * wi as f64
                            })
                            .sum()
                    })
                    .collect();
                for isa in runnable() {
                    let at = format!("{isa} layout {layout} rows {rows} k {k} n {n}");
                    // All at once, added to ones.
                    let mut whole = vec![1f32; rows * n];
                    run(isa, &x, k, w, n, 0..rows, 0..n, &mut whole);
                    for (e, (&g, &want)) in whole.iter().zip(&exact).enumerate() {
                        let tol = 1e-5 * (k as f64).sqrt().max(1.0) * 4.0;
                        assert!(
                            (g as f64 - 1.0 - want).abs() <= tol,
                            "{at} element {e}: {g} vs {want}"
                        );
                    }
                    // Row by row, and in two column shares: the same bits.
                    let mut split = vec![1f32; rows * n];
                    for m in 0..rows {
                        run(isa, &x, k, w, n, m..m + 1, 0..n / 3, &mut split);
                        run(isa, &x, k, w, n, m..m + 1, n / 3..n, &mut split);
                    }
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&whole), bits(&split), "{at}");
                    if isa != CpuKernels::Baseline && layout == 0 {
                        // Row-major tiles and tails: one fused multiply-add per weight, in order.
                        for (e, &g) in whole.iter().enumerate() {
                            let one = unsafe { super::element(&x, k, w, e / n, e % n, true) };
                            assert_eq!(g.to_bits(), (1.0 + one).to_bits(), "{at} element {e}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_portable_kernel_matches_an_f64_product() {
        let (rows, k, n) = (5, 33, 19);
        let x = values(rows * k, 4);
        let w = values(k * n, 5);
        let mut got = vec![0f32; rows * n];
        let out = Out {
            ptr: got.as_mut_ptr(),
            stride: n,
            add: false,
        };
        let weights = Weights::Rows {
            data: &w,
            stride: n,
        };
        unsafe { product(CpuKernels::Baseline, &x, rows, k, weights, 0..n, out) };
        for m in 0..rows {
            for c in 0..n {
                let want: f64 = (0..k)
                    .map(|i| x[m * k + i] as f64 * w[i * n + c] as f64)
                    .sum();
                assert!((got[m * n + c] as f64 - want).abs() < 1e-4);
            }
        }
    }
}
