//! Softmax over the attention scores' last dimension.
//!
//! Burn's autodiff has no softmax of its own: it differentiates the five ops softmax is made
//! of (max, sub, exp, sum, div), and balanced checkpointing recomputes them all in the
//! backward pass. On the CPU training backend that was most of a small model's update. There
//! softmax is one differentiable op instead: the backend's fused softmax forward, and
//! `y * (g - sum(g * y))` backward from the kept output `y`. Every other backend, and
//! inference, takes burn's `softmax` as it is.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, activation};

/// Softmax over the last dimension of `x`.
pub fn softmax_last<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    if let Some(y) = fused::on_flex_autodiff(&x) {
        return y;
    }
    activation::softmax(x, D - 1)
}

#[cfg(feature = "flex")]
mod fused {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::{
        BalancedCheckpointing, CheckpointStrategy,
    };
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{Tensor, TensorPrimitive};
    use std::any::Any;

    use crate::backend::FlexAutodiff;

    /// The fused op when `B` is [`FlexAutodiff`] (a type test: no specialization in stable
    /// Rust), else None.
    pub(super) fn on_flex_autodiff<B: Backend, const D: usize>(
        x: &Tensor<B, D>,
    ) -> Option<Tensor<B, D>> {
        let any: &dyn Any = x;
        let x: &Tensor<FlexAutodiff, D> = any.downcast_ref()?;
        let y = softmax::<Flex, BalancedCheckpointing>(x.clone().into_primitive().tensor(), D - 1);
        let y: Box<dyn Any> = Box::new(Tensor::<FlexAutodiff, D>::from_primitive(
            TensorPrimitive::Float(y),
        ));
        Some(*y.downcast().expect("B is FlexAutodiff"))
    }

    #[derive(Debug)]
    struct Softmax {
        dim: usize,
    }

    impl<B: Backend> Backward<B, 1> for Softmax {
        /// The output `y`.
        type State = B::FloatTensorPrimitive;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let y = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |g| {
                let gy = B::float_mul(g, y.clone());
                let sum = B::float_sum_dim(gy.clone(), self.dim);
                B::float_sub(gy, B::float_mul(y, sum))
            });
        }
    }

    /// Softmax as one autodiff op over `B`'s own softmax. Compute-bound: its output is kept,
    /// not recomputed, and it is the same size as the input the decomposition kept.
    fn softmax<B: Backend, C: CheckpointStrategy>(
        x: FloatTensor<Autodiff<B, C>>,
        dim: usize,
    ) -> FloatTensor<Autodiff<B, C>> {
        match (Softmax { dim })
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::softmax(x.primitive, dim);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax(x.primitive, dim)),
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::backend::FlexAutodiff;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, TensorData};

    /// Forward values and input gradients of the fused op against burn's softmax under plain
    /// autodiff, with masked (-inf) scores as attention has them.
    #[test]
    fn fused_softmax_matches_the_decomposition() {
        let device = Default::default();
        let shape = [2, 3, 4, 7];
        let x = Tensor::<Flex, 4>::random(shape, Distribution::Normal(0.0, 3.0), &device);
        let mask: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|i| {
                if i % 7 > i / 7 % 4 + 3 {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let x = x + Tensor::from_data(TensorData::new(mask, shape), &device);
        let w = Tensor::<Flex, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let fused = {
            let x = Tensor::<FlexAutodiff, 4>::from_inner(x.clone()).require_grad();
            assert!(fused::on_flex_autodiff(&x).is_some(), "takes the fused op");
            let y = softmax_last(x.clone());
            let grads = (y.clone() * Tensor::from_inner(w.clone())).sum().backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let plain = {
            let x = Tensor::<Autodiff<Flex>, 4>::from_inner(x).require_grad();
            assert!(
                fused::on_flex_autodiff(&x).is_none(),
                "takes burn's softmax"
            );
            let y = softmax_last(x.clone());
            let grads = (y.clone() * Tensor::from_inner(w)).sum().backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let close = |a: Tensor<Flex, 4>, b: Tensor<Flex, 4>| {
            let (a, b): (Vec<f32>, Vec<f32>) = (
                a.into_data().into_vec().unwrap(),
                b.into_data().into_vec().unwrap(),
            );
            assert!(a.iter().all(|v| v.is_finite()));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "max difference {worst}");
        };
        close(fused.0, plain.0);
        close(fused.1, plain.1);
    }
}
