//! Products of a few rows (decoding: one row per sequence) with a weight matrix, on the CPU
//! backend. gemm packs the weight matrix into panels on every call, which for 8 rows costs
//! several times the product itself, and decoding is then far from its limit, reading the
//! weights once per step. These kernels read each weight once, where it is stored (a
//! Linear's `[in, out]` rows, or the tied head's embeddings `[vocab, hidden]` seen
//! transposed), split over the compute pool by output columns. Everything else (more rows,
//! autodiff, other backends, other dtypes) is the backend's own matmul.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Rows up to which the streaming kernels are used: decode batches. Prefill and training
/// have more rows than that, and gemm's packing pays for itself there.
pub const MAX_ROWS: usize = 16;

/// Weights below which gemm stays: a small matrix sits in cache, its packing is cheap, and
/// splitting it over threads costs more than it saves (the tiny model decoded 0.6x as fast).
pub const MIN_WEIGHTS: usize = 1 << 16;

/// `x @ w` (`x: [rows, k]`, `w: [k, n]`, any strides) by the streaming kernels, when `B` is
/// the CPU backend, the tensors are f32, `rows <= MAX_ROWS`, `k * n >= MIN_WEIGHTS` and `w`
/// is row- or column-major; else None, and the caller takes the backend's matmul.
pub fn streamed<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    #[cfg(feature = "flex")]
    {
        flex::streamed(x, w)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (x, w);
        None
    }
}

/// `x @ w`: [`streamed`] where it applies, else the backend's matmul.
pub fn matmul<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    match streamed(&x, &w) {
        Some(y) => y,
        None => x.matmul(w),
    }
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::Flex;
    use burn::tensor::backend::Backend;
    use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
    use burn_flex::FlexTensor;
    use std::any::Any;

    use super::kernels::{Weights, product};
    use super::{MAX_ROWS, MIN_WEIGHTS};
    use crate::backend::CpuKernels;

    pub(super) fn streamed<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
        // A type test: no specialization in stable Rust.
        let x: &Tensor<Flex, 2> = (x as &dyn Any).downcast_ref()?;
        let w: &Tensor<Flex, 2> = (w as &dyn Any).downcast_ref()?;
        let ([rows, k], [wk, n]) = (x.dims(), w.dims());
        if rows == 0 || rows > MAX_ROWS || k != wk || k * n < MIN_WEIGHTS {
            return None;
        }
        if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
            return None;
        }
        let x = x.clone().into_primitive().tensor();
        let w = w.clone().into_primitive().tensor();
        let weights = weights(&w, k, n)?;
        let x = match x.layout().contiguous_offsets() {
            Some(_) => x,
            None => x.to_contiguous(),
        };
        let (start, end) = x.layout().contiguous_offsets()?;
        let xs = &x.storage::<f32>()[start..end];
        let out = product(CpuKernels::detect(), xs, rows, k, weights, n);
        let y = FlexTensor::from_data(TensorData::new(out, [rows, n]));
        let y: Box<dyn Any> =
            Box::new(Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(y)));
        Some(*y.downcast().expect("B is Flex"))
    }

    /// `w: [k, n]` as row- or column-major storage, or None for any other strides.
    fn weights(w: &FlexTensor, k: usize, n: usize) -> Option<Weights<'_>> {
        let layout = w.layout();
        let (offset, strides) = (layout.start_offset(), layout.strides());
        let data = w.storage::<f32>().get(offset..)?;
        let (s0, s1) = (
            usize::try_from(strides[0]).ok()?,
            usize::try_from(strides[1]).ok()?,
        );
        let (weights, last) = if s1 == 1 && s0 >= n {
            (Weights::Rows { data, stride: s0 }, (k - 1) * s0 + n)
        } else if s0 == 1 && s1 >= k {
            (Weights::Cols { data, stride: s1 }, (n - 1) * s1 + k)
        } else {
            return None;
        };
        (last <= data.len()).then_some(weights)
    }
}

/// The kernels on plain slices.
pub(crate) mod kernels {
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
    mod x86 {
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
                        super::rows_major::<true>(
                            xp,
                            padded,
                            k,
                            data,
                            stride,
                            main..n,
                            n,
                            part,
                            op,
                        );
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
                                let tail =
                                    |c: &[f32]| -> f32 { (main..k).map(|i| xm[i] * c[i]).sum() };
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
    }

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

    /// The dot products of two rows of `x` with each of four columns of `w`.
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
}

#[cfg(test)]
mod tests {
    use super::kernels::{Weights, product};
    use crate::backend::CpuKernels;

    /// The kernel sets this CPU can run.
    fn runnable() -> Vec<CpuKernels> {
        let mut out = vec![CpuKernels::Baseline];
        if CpuKernels::detect() != CpuKernels::Baseline {
            out.push(CpuKernels::Avx2);
        }
        if CpuKernels::detect() == CpuKernels::Avx512 {
            out.push(CpuKernels::Avx512);
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
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

#[cfg(all(test, feature = "flex"))]
mod on_tensors {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tensor};

    use super::{MAX_ROWS, MIN_WEIGHTS, streamed};

    fn close(a: Tensor<Flex, 2>, b: Tensor<Flex, 2>) {
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert!(diff < 1e-4, "max difference {diff}");
    }

    #[test]
    fn takes_decode_shapes_and_leaves_the_rest_to_gemm() {
        let device = Default::default();
        let rand = |shape: [usize; 2]| {
            Tensor::<Flex, 2>::random(shape, Distribution::Uniform(-1.0, 1.0), &device)
        };
        let (k, n) = (300, 400);
        assert!(k * n >= MIN_WEIGHTS);
        let x = rand([5, k]);
        // A Linear's [in, out] weight, a view of one (narrowed columns), and an [out, in]
        // matrix seen transposed (the tied head).
        let w = rand([k, n]);
        let wide = rand([k, n + 7]).narrow(1, 3, n);
        let embed = rand([n, k]);
        for w in [w, wide, embed.transpose()] {
            let y = streamed(&x, &w).expect("a decode shape");
            assert_eq!(y.dims(), [5, n]);
            close(y, x.clone().matmul(w));
        }
        let rows = rand([MAX_ROWS + 1, k]);
        assert!(
            streamed(&rows, &rand([k, n])).is_none(),
            "prefill rows: gemm"
        );
        assert!(
            streamed(&x.narrow(1, 0, 8), &rand([8, 8])).is_none(),
            "small: gemm"
        );
    }
}
