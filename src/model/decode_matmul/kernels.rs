//! The kernels of [`super`] on plain slices: the split over the compute pool and, per task,
//! the widest instructions the CPU has (AVX-512, AVX2+FMA, portable Rust).

use rayon::prelude::*;
use std::ops::Range;

use crate::backend::CpuKernels;

/// How `w: [k, n]` sits in memory, from its first element.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// `w[i, j] = data[i * stride + j]`: a Linear's `[in, out]` weight.
    Rows { data: &'a [f32], stride: usize },
    /// `w[i, j] = data[j * stride + i]`: an `[out, in]` matrix seen transposed (the tied
    /// head's embeddings).
    Cols { data: &'a [f32], stride: usize },
}

/// Weight rows per task of a row-major product: each task streams one contiguous block
/// of the matrix (split by columns, every task would read a few hundred bytes of each row,
/// at a third of the memory bandwidth). Fixed, not from the thread count, so that the
/// partial sums, and so the rounding, are the same on every machine.
const ROWS_PER_TASK: usize = 48;

/// `x @ w` for `x: [rows, k]` (row-major), as `[rows, n]` row-major.
pub fn product(
    isa: CpuKernels,
    x: &[f32],
    rows: usize,
    k: usize,
    w: Weights<'_>,
    n: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * k, "x is [rows, k]");
    match w {
        Weights::Rows { .. } => {
            // Partial products over blocks of weight rows, summed in order.
            let ranges = split(k, ROWS_PER_TASK);
            let parts: Vec<Vec<f32>> = ranges
                .into_par_iter()
                .map(|part| block(isa, (x, rows, k, n, w, part)))
                .collect();
            let mut parts = parts.into_iter();
            let mut out = parts.next().expect("k > 0");
            for part in parts {
                out.iter_mut().zip(&part).for_each(|(o, p)| *o += p);
            }
            out
        }
        Weights::Cols { .. } => {
            // Blocks of columns, contiguous in memory; a few per thread, so that an
            // uneven split costs little.
            let width = n
                .div_ceil(4 * rayon::current_num_threads())
                .next_multiple_of(4);
            let ranges = split(n, width);
            let parts: Vec<Vec<f32>> = ranges
                .par_iter()
                .map(|cols| block(isa, (x, rows, k, n, w, cols.clone())))
                .collect();
            let mut out = vec![0.0; rows * n];
            for (cols, part) in ranges.iter().zip(&parts) {
                for (m, part) in part.chunks(cols.len()).enumerate() {
                    out[m * n + cols.start..m * n + cols.end].copy_from_slice(part);
                }
            }
            out
        }
    }
}

/// `0..len` in pieces of `size`.
fn split(len: usize, size: usize) -> Vec<Range<usize>> {
    (0..len)
        .step_by(size)
        .map(|i| i..(i + size).min(len))
        .collect()
}

/// One task of [`product`], with the widest instructions `isa` allows: of a row-major
/// `w`, the product of weight rows `part` (`[rows, n]`); of a column-major one, columns
/// `part` (`[rows, part.len()]`).
fn block(isa: CpuKernels, args: Args<'_>) -> Vec<f32> {
    let (_, rows, _, n, w, part) = &args;
    let width = match w {
        Weights::Rows { .. } => *n,
        Weights::Cols { .. } => part.len(),
    };
    let mut out = vec![0.0; rows * width];
    match isa {
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        // SAFETY: CpuKernels::Avx512 is detected only where the CPU has AVX-512F.
        CpuKernels::Avx512 => unsafe { x86::avx512(args, &mut out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: CpuKernels::Avx2 is detected only where the CPU has AVX2 and FMA.
        CpuKernels::Avx2 => unsafe { x86::avx2(args, &mut out) },
        // Without FMA instructions `mul_add` is a libm call: multiply, then add.
        _ => generic::<{ cfg!(target_arch = "aarch64") }>(args, &mut out, dots_portable),
    }
    out
}

/// `x`, its rows, `k`, `n`, the weights, and the task's part.
type Args<'a> = (&'a [f32], usize, usize, usize, Weights<'a>, Range<usize>);

#[cfg(target_arch = "x86_64")]
mod x86;

/// The kernels: the row-major one written for the compiler to vectorize at the caller's
/// target features, the column-major one around `dots`.
#[inline(always)]
fn generic<const FUSED: bool>(
    (x, rows, k, n, w, part): Args<'_>,
    out: &mut [f32],
    dots: impl Fn([&[f32]; 2], &[&[f32]; 4]) -> [[f32; 4]; 2],
) {
    match w {
        Weights::Rows { data, stride } => {
            rows_major::<FUSED>(x, rows, k, data, stride, 0..n, n, part, out)
        }
        Weights::Cols { data, stride } => cols_major(x, rows, k, data, stride, part, out, dots),
    }
}

#[inline(always)]
fn fma<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

/// `out[m, j] += sum_{i in part} x[m, i] w[i, j]` for columns `cols` of `out: [rows, n]`,
/// four weight rows at a time: the weights are read once, in order, and each accumulator
/// is loaded and stored once per four of them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn rows_major<const FUSED: bool>(
    x: &[f32],
    rows: usize,
    k: usize,
    data: &[f32],
    stride: usize,
    cols: Range<usize>,
    n: usize,
    part: Range<usize>,
    out: &mut [f32],
) {
    let row = |i: usize| &data[i * stride + cols.start..i * stride + cols.end];
    let mut i = part.start;
    while i + 4 <= part.end {
        let (w0, w1, w2, w3) = (row(i), row(i + 1), row(i + 2), row(i + 3));
        for m in 0..rows {
            let xm = &x[m * k + i..][..4];
            let acc = &mut out[m * n + cols.start..m * n + cols.end];
            let ws = w0.iter().zip(w1).zip(w2).zip(w3);
            for (a, (((&p, &q), &r), &s)) in acc.iter_mut().zip(ws) {
                let t = fma::<FUSED>(xm[0], p, *a);
                let t = fma::<FUSED>(xm[1], q, t);
                let t = fma::<FUSED>(xm[2], r, t);
                *a = fma::<FUSED>(xm[3], s, t);
            }
        }
        i += 4;
    }
    for i in i..part.end {
        let w0 = row(i);
        for m in 0..rows {
            let xm = x[m * k + i];
            let acc = &mut out[m * n + cols.start..m * n + cols.end];
            for (a, &p) in acc.iter_mut().zip(w0) {
                *a = fma::<FUSED>(xm, p, *a);
            }
        }
    }
}

/// `out[m, j] = dot(x[m, :], w[:, j])` with column `j` contiguous: blocks of two rows by
/// four columns, each loaded once per block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn cols_major(
    x: &[f32],
    rows: usize,
    k: usize,
    data: &[f32],
    stride: usize,
    cols: Range<usize>,
    out: &mut [f32],
    dots: impl Fn([&[f32]; 2], &[&[f32]; 4]) -> [[f32; 4]; 2],
) {
    let len = cols.len();
    let col = |j: usize| &data[(cols.start + j) * stride..][..k];
    let row = |m: usize| &x[m * k..][..k];
    let mut j = 0;
    while j < len {
        let group = (len - j).min(4);
        // A short last group repeats its last column.
        let w: [&[f32]; 4] = std::array::from_fn(|t| col(j + t.min(group - 1)));
        for m in (0..rows).step_by(2) {
            // An odd last row pairs with itself.
            let pair = [row(m), row((m + 1).min(rows - 1))];
            let dots = dots(pair, &w);
            for (r, dots) in dots.iter().enumerate().take(rows - m) {
                out[(m + r) * len + j..][..group].copy_from_slice(&dots[..group]);
            }
        }
        j += group;
    }
}

/// The dot products of two rows of `x` with four columns of `w`, in plain Rust, `LANES`
/// partial sums each.
fn dots_portable(x: [&[f32]; 2], w: &[&[f32]; 4]) -> [[f32; 4]; 2] {
    const LANES: usize = 8;
    let fused = cfg!(target_arch = "aarch64");
    let k = x[0].len();
    let mut acc = [[[0f32; LANES]; 4]; 2];
    for c in (0..k / LANES * LANES).step_by(LANES) {
        for r in 0..2 {
            for t in 0..4 {
                for l in 0..LANES {
                    let (a, b) = (x[r][c + l], w[t][c + l]);
                    acc[r][t][l] = if fused {
                        a.mul_add(b, acc[r][t][l])
                    } else {
                        a * b + acc[r][t][l]
                    };
                }
            }
        }
    }
    finish(x, w, k / LANES * LANES, |r, t| acc[r][t].iter().sum())
}

/// The dot products from the vector sums `sum(r, t)` of their first `whole` elements and
/// the scalar tail.
fn finish(
    x: [&[f32]; 2],
    w: &[&[f32]; 4],
    whole: usize,
    sum: impl Fn(usize, usize) -> f32,
) -> [[f32; 4]; 2] {
    let k = x[0].len();
    std::array::from_fn(|r| {
        std::array::from_fn(|t| {
            let tail: f32 = (whole..k).map(|i| x[r][i] * w[t][i]).sum();
            sum(r, t) + tail
        })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{Weights, product};
    use crate::backend::CpuKernels;

    /// The kernel sets this CPU can run.
    pub(crate) fn runnable() -> Vec<CpuKernels> {
        let mut out = vec![CpuKernels::Baseline];
        if CpuKernels::detect() != CpuKernels::Baseline {
            out.push(CpuKernels::Avx2);
        }
        if CpuKernels::detect() == CpuKernels::Avx512 {
            out.push(CpuKernels::Avx512);
        }
        out
    }

    pub(crate) fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// `x @ w` in f64, w given by its element function.
    fn reference(
        x: &[f32],
        rows: usize,
        k: usize,
        n: usize,
        w: impl Fn(usize, usize) -> f32,
    ) -> Vec<f64> {
        let mut out = vec![0.0; rows * n];
        for m in 0..rows {
            for j in 0..n {
                out[m * n + j] = (0..k).map(|i| x[m * k + i] as f64 * w(i, j) as f64).sum();
            }
        }
        out
    }

    #[test]
    fn both_layouts_match_the_plain_product_at_every_kernel_set() {
        // Odd sizes: tails of the four-row, four-column and 16-lane loops; strides wider
        // than the matrix (views of a bigger one) and an offset start.
        for (rows, k, n) in [
            (1, 1, 1),
            (3, 7, 5),
            (8, 64, 96),
            (16, 37, 301),
            (5, 576, 40),
        ] {
            let x = values(rows * k, 1);
            let stride_rows = n + 3;
            let data = values(2 + k * stride_rows, 2);
            let w_rows = |i: usize, j: usize| data[2 + i * stride_rows + j];
            let stride_cols = k + 5;
            let data_t = values(1 + n * stride_cols, 3);
            let w_cols = |i: usize, j: usize| data_t[1 + j * stride_cols + i];
            for isa in runnable() {
                for (layout, weights, expect) in [
                    (
                        "rows",
                        Weights::Rows {
                            data: &data[2..],
                            stride: stride_rows,
                        },
                        reference(&x, rows, k, n, w_rows),
                    ),
                    (
                        "cols",
                        Weights::Cols {
                            data: &data_t[1..],
                            stride: stride_cols,
                        },
                        reference(&x, rows, k, n, w_cols),
                    ),
                ] {
                    let got = product(isa, &x, rows, k, weights, n);
                    assert_eq!(got.len(), rows * n);
                    for (idx, (g, e)) in got.iter().zip(&expect).enumerate() {
                        let tol = 1e-5 * (k as f64).sqrt().max(1.0) * 4.0;
                        assert!(
                            (*g as f64 - e).abs() <= tol,
                            "{isa} {layout} rows {rows} k {k} n {n} at {idx}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }
}
