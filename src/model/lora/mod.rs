//! Low-rank adapters (LoRA, Hu et al. 2021) on the decoder's projections, as peft adds them:
//! `y = x W + b + scale * (x A) B` with `A: [in, r]`, `B: [r, out]` and `scale = alpha / r`
//! (`alpha / sqrt(r)` with rsLoRA). The base weights are frozen (no gradient, so no optimizer
//! state); only A and B train. Adapters read and write PEFT's files (`adapter_config.json`,
//! `adapter_model.safetensors`, tensors `base_model.model.<projection>.lora_A.weight` as
//! `[r, in]` and `lora_B.weight` as `[out, r]`), so transformers + peft, TRL and vLLM load them
//! as they are.

use anyhow::{Result, ensure};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::llama::{CausalLm, Linear};

mod peft;
pub use peft::*;

/// The projections an adapter can sit on, by their HF names.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// One projection's adapter: `delta(x) = scale * (x A) B`.
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    /// `[in, r]`: PEFT's `lora_A.weight` transposed.
    pub a: Param<Tensor<B, 2>>,
    /// `[r, out]`: PEFT's `lora_B.weight` transposed.
    pub b: Param<Tensor<B, 2>>,
    pub alpha: f64,
    pub rslora: bool,
    /// alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub scale: f64,
    /// Dropout on the adapter's input while training (peft's `lora_dropout`).
    pub dropout: f64,
}

impl<B: Backend> Lora<B> {
    fn new(a: Param<Tensor<B, 2>>, b: Param<Tensor<B, 2>>, shape: &LoraShape) -> Self {
        Self {
            a,
            b,
            alpha: shape.alpha,
            rslora: shape.rslora,
            scale: shape.scale(),
            dropout: 0.0,
        }
    }

    /// `scale * (drop(x) A) B` for `x: [rows, in]`. Inputs are dropped only on the autodiff
    /// backend (training): evaluation, decoding and pi_ref see every input. The masks come
    /// from the backend's generator, which the update seeds per step.
    pub fn delta(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = match self.dropout > 0.0 && B::ad_enabled(&x.device()) {
            true => {
                let keep = 1.0 - self.dropout;
                let mask = Tensor::random(x.shape(), Distribution::Bernoulli(keep), &x.device());
                x * mask / keep
            }
            false => x,
        };
        x.matmul(self.a.val()).matmul(self.b.val()) * self.scale
    }

    /// The low-rank update of the weight, `scale * A B` (`[in, out]`).
    pub fn weight_delta(&self) -> Tensor<B, 2> {
        self.a.val().matmul(self.b.val()) * self.scale
    }
}

/// The shape of a run's adapters: rank, scaling and which projections carry one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraShape {
    pub rank: usize,
    pub alpha: f64,
    /// rsLoRA: `scale = alpha / sqrt(rank)` instead of `alpha / rank`.
    pub rslora: bool,
    /// Projection names from [`TARGETS`].
    pub targets: Vec<String>,
}

impl LoraShape {
    pub fn scale(&self) -> f64 {
        match self.rslora {
            true => self.alpha / (self.rank as f64).sqrt(),
            false => self.alpha / self.rank as f64,
        }
    }

    /// The rank, alpha and targets are usable.
    pub fn check(&self) -> Result<()> {
        ensure!(self.rank > 0, "the LoRA rank must be at least 1");
        ensure!(
            self.alpha.is_finite() && self.alpha > 0.0,
            "the LoRA alpha must be positive, got {}",
            self.alpha
        );
        ensure!(!self.targets.is_empty(), "no LoRA target modules");
        for t in &self.targets {
            ensure!(
                TARGETS.contains(&t.as_str()),
                "unknown LoRA target module `{t}` (one of {})",
                TARGETS.join(", ")
            );
        }
        Ok(())
    }
}

/// Every base parameter of `model` frozen (no gradient); adapters keep theirs.
pub fn freeze_base<B: Backend>(model: CausalLm<B>) -> CausalLm<B> {
    model.map(&mut Freezer { in_lora: 0 })
}

struct Freezer {
    in_lora: usize,
}

impl<B: Backend> ModuleMapper<B> for Freezer {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.in_lora += usize::from(container_type == "Struct:Lora");
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.in_lora -= usize::from(container_type == "Struct:Lora");
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        match self.in_lora {
            0 => param.set_require_grad(false),
            _ => param,
        }
    }
}

/// The projections of `model` by HF name (`model.layers.0.self_attn.q_proj`), mutable.
fn projections<B: Backend>(model: &mut CausalLm<B>) -> Vec<(String, &mut Linear<B>)> {
    let mut out = vec![];
    for (i, layer) in model.model.layers.iter_mut().enumerate() {
        let attn = &mut layer.self_attn;
        let mlp = &mut layer.mlp;
        let named: [(&str, &str, &mut Linear<B>); 7] = [
            ("self_attn", "q_proj", &mut attn.q_proj),
            ("self_attn", "k_proj", &mut attn.k_proj),
            ("self_attn", "v_proj", &mut attn.v_proj),
            ("self_attn", "o_proj", &mut attn.o_proj),
            ("mlp", "gate_proj", &mut mlp.gate_proj),
            ("mlp", "up_proj", &mut mlp.up_proj),
            ("mlp", "down_proj", &mut mlp.down_proj),
        ];
        for (block, name, linear) in named {
            out.push((format!("model.layers.{i}.{block}.{name}"), linear));
        }
    }
    out
}

/// The projections of `model` by HF name, to read (the order of [`projections`]).
pub fn projections_of<B: Backend>(model: &CausalLm<B>) -> Vec<(String, &Linear<B>)> {
    let mut out = vec![];
    for (i, layer) in model.model.layers.iter().enumerate() {
        let (attn, mlp) = (&layer.self_attn, &layer.mlp);
        let named: [(&str, &str, &Linear<B>); 7] = [
            ("self_attn", "q_proj", &attn.q_proj),
            ("self_attn", "k_proj", &attn.k_proj),
            ("self_attn", "v_proj", &attn.v_proj),
            ("self_attn", "o_proj", &attn.o_proj),
            ("mlp", "gate_proj", &mlp.gate_proj),
            ("mlp", "up_proj", &mlp.up_proj),
            ("mlp", "down_proj", &mlp.down_proj),
        ];
        for (block, name, linear) in named {
            out.push((format!("model.layers.{i}.{block}.{name}"), linear));
        }
    }
    out
}

fn short_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

/// `model` with fresh adapters of `shape` on its target projections, as peft initializes
/// them: A uniform in +-1/sqrt(in) (Kaiming-uniform with a = sqrt(5)), B zero, so the
/// adapted model starts equal to the base. The base is frozen. [`save_fresh_adapter`] draws
/// the same adapters without the weights.
pub fn attach_new<B: Backend>(
    mut model: CausalLm<B>,
    shape: &LoraShape,
    seed: u64,
) -> Result<CausalLm<B>> {
    shape.check()?;
    let device = model.device();
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, linear) in projections(&mut model) {
        if !shape.targets.iter().any(|t| t == short_name(&name)) {
            continue;
        }
        let [inp, out] = linear.weight.lazy_shape().dims();
        linear.lora = Some(Lora::new(
            param(
                draw_a(&mut rng, inp, shape.rank),
                [inp, shape.rank],
                &device,
            ),
            param(vec![0.0; shape.rank * out], [shape.rank, out], &device),
            shape,
        ));
    }
    Ok(freeze_base(model))
}

/// A fresh `[in, r]` A matrix: uniform in +-1/sqrt(in), row-major.
fn draw_a(rng: &mut StdRng, inp: usize, rank: usize) -> Vec<f32> {
    let bound = 1.0 / (inp as f32).sqrt();
    (0..inp * rank)
        .map(|_| rng.random_range(-bound..bound))
        .collect()
}

fn param<B: Backend>(data: Vec<f32>, shape: [usize; 2], device: &B::Device) -> Param<Tensor<B, 2>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(data, shape), device))
}

/// `model` with dropout `p` on every adapter's input while training.
pub fn with_dropout<B: Backend>(mut model: CausalLm<B>, p: f64) -> CausalLm<B> {
    for (_, linear) in projections(&mut model) {
        if let Some(lora) = linear.lora.as_mut() {
            lora.dropout = p;
        }
    }
    model
}

/// `model` without adapters.
pub fn detach<B: Backend>(mut model: CausalLm<B>) -> CausalLm<B> {
    for (_, linear) in projections(&mut model) {
        linear.lora = None;
    }
    model
}

/// Whether any projection carries an adapter.
pub fn has_adapters<B: Backend>(model: &CausalLm<B>) -> bool {
    shape_of(model).is_some()
}

/// The shape of `model`'s adapters (the first one's rank and scaling, the projections that
/// carry one), None without adapters.
pub fn shape_of<B: Backend>(model: &CausalLm<B>) -> Option<LoraShape> {
    let mut shape: Option<LoraShape> = None;
    for (name, linear) in projections_of(model) {
        let Some(lora) = &linear.lora else { continue };
        let target = short_name(&name).to_string();
        let s = shape.get_or_insert_with(|| LoraShape {
            rank: lora.a.dims()[1],
            alpha: lora.alpha,
            rslora: lora.rslora,
            targets: vec![],
        });
        if !s.targets.contains(&target) {
            s.targets.push(target);
        }
    }
    shape
}

/// `model` with each adapter folded into its base weight (`W + scale A B`) and removed.
pub fn merged<B: Backend>(mut model: CausalLm<B>) -> CausalLm<B> {
    for (_, linear) in projections(&mut model) {
        if let Some(lora) = linear.lora.take() {
            let w = linear.weight.val() + lora.weight_delta();
            linear.weight = Param::initialized(linear.weight.id, w.detach());
        }
    }
    model
}
