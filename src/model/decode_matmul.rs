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
pub(crate) mod kernels;

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
