//! Gradient bookkeeping by HF parameter name: per-tensor L2 norms, the global norm, and
//! global-norm clipping as `torch.nn.utils.clip_grad_norm_` does it.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

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
    /// Whether every value is finite, and small enough that their sum stays finite.
    fn values_finite(&self) -> bool;
    /// Sum of squares of this parameter's gradient (None if it got none).
    fn grad_sq(&self, grads: &GradientsParams) -> Option<f64>;
    fn scale_grad(&self, grads: &mut GradientsParams, factor: f64);
}

impl<B: AutodiffBackend, const D: usize> ParamGrad<B> for Param<Tensor<B, D>> {
    fn values_finite(&self) -> bool {
        let total: f64 = self.val().inner().abs().sum().into_scalar().elem();
        total.is_finite()
    }
    fn grad_sq(&self, grads: &GradientsParams) -> Option<f64> {
        let g = grads.get::<B::InnerBackend, D>(self.id)?;
        Some(g.square().sum().into_scalar().elem::<f64>())
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

/// L2 norm of each parameter's gradient, by name, in module order.
pub fn grad_norms<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &GradientsParams,
) -> Vec<(String, f64)> {
    let mut out = vec![];
    for_each_param::<B, M>(module, |name, p| {
        if let Some(sq) = p.grad_sq(grads) {
            out.push((name.to_string(), sq.sqrt()));
        }
    });
    out
}

/// Whether all parameters hold finite values (an overflowing update makes them inf or huge).
pub fn params_finite<B: AutodiffBackend, M: Module<B>>(module: &M) -> bool {
    let mut ok = true;
    for_each_param::<B, M>(module, |_, p| ok &= p.values_finite());
    ok
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
