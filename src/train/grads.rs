//! Gradient bookkeeping by HF parameter name: per-tensor L2 norms, the global norm, and
//! global-norm clipping as `torch.nn.utils.clip_grad_norm_` does it.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

/// Visits float parameters with their dotted module path (`model.layers.0.mlp.up_proj.weight`).
struct Named<'a, F> {
    path: Vec<String>,
    f: &'a mut F,
}

impl<B: AutodiffBackend, F: FnMut(&str, &dyn ParamGrad<B>)> ModuleVisitor<B> for Named<'_, F> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        (self.f)(&self.path.join("."), param);
    }
}

/// A float parameter of any rank, seen through what gradient handling needs.
pub trait ParamGrad<B: AutodiffBackend> {
    /// Sum of absolute values, `[1]`: finite when every value is finite and small enough
    /// that their sum stays finite.
    fn abs_sum(&self) -> Tensor<B::InnerBackend, 1>;
    /// Sum of squares of this parameter's gradient, `[1]` (None if it got none).
    fn grad_sq(&self, grads: &GradientsParams) -> Option<Tensor<B::InnerBackend, 1>>;
    fn scale_grad(&self, grads: &mut GradientsParams, factor: f64);
}

impl<B: AutodiffBackend, const D: usize> ParamGrad<B> for Param<Tensor<B, D>> {
    fn abs_sum(&self) -> Tensor<B::InnerBackend, 1> {
        self.val().inner().abs().sum()
    }
    fn grad_sq(&self, grads: &GradientsParams) -> Option<Tensor<B::InnerBackend, 1>> {
        let g = grads.get::<B::InnerBackend, D>(self.id)?;
        Some(g.square().sum())
    }
    fn scale_grad(&self, grads: &mut GradientsParams, factor: f64) {
        if let Some(g) = grads.remove::<B::InnerBackend, D>(self.id) {
            grads.register(self.id, g.mul_scalar(factor));
        }
    }
}

fn for_each_param<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    mut f: impl FnMut(&str, &dyn ParamGrad<B>),
) {
    let mut visitor = Named {
        path: vec![],
        f: &mut f,
    };
    module.visit(&mut visitor);
}

/// L2 norm of each parameter's gradient, by name, in module order. One read from the device
/// for all of them (a GPU would otherwise wait once per parameter).
pub fn grad_norms<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &GradientsParams,
) -> Vec<(String, f64)> {
    let (mut names, mut squares) = (vec![], vec![]);
    for_each_param::<B, M>(module, |name, p| {
        if let Some(sq) = p.grad_sq(grads) {
            names.push(name.to_string());
            squares.push(sq);
        }
    });
    names
        .into_iter()
        .zip(read(squares))
        .map(|(n, sq)| (n, sq.sqrt()))
        .collect()
}

/// Whether all parameters hold finite values (an overflowing update makes them inf or huge).
pub fn params_finite<B: AutodiffBackend, M: Module<B>>(module: &M) -> bool {
    let mut sums = vec![];
    for_each_param::<B, M>(module, |_, p| sums.push(p.abs_sum()));
    read(sums).iter().all(|s| s.is_finite())
}

/// `[1]` tensors to host numbers, in one transfer.
fn read<B: burn::tensor::backend::Backend>(scalars: Vec<Tensor<B, 1>>) -> Vec<f64> {
    if scalars.is_empty() {
        return vec![];
    }
    Tensor::cat(scalars, 0)
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("f64 data")
}

/// Global L2 norm over all gradients.
pub fn total_norm(norms: &[(String, f64)]) -> f64 {
    norms.iter().map(|(_, n)| n * n).sum::<f64>().sqrt()
}

/// Scales all gradients by `max_norm / (total + 1e-6)` when that is below 1 (torch's rule).
/// Returns the factor applied.
pub fn clip_global_norm<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &mut GradientsParams,
    total: f64,
    max_norm: f64,
) -> f64 {
    let factor = max_norm / (total + 1e-6);
    if factor >= 1.0 {
        return 1.0;
    }
    for_each_param::<B, M>(module, |_, p| p.scale_grad(grads, factor));
    factor
}
