//! Low-rank adapters (LoRA, Hu et al. 2021) on the decoder's projections, as peft adds them:
//! `y = x W + b + scale * (x A) B` with `A: [in, r]`, `B: [r, out]` and `scale = alpha / r`
//! (`alpha / sqrt(r)` with rsLoRA). The base weights are frozen (no gradient, so no optimizer
//! state); only A and B train. Adapters read and write PEFT's files (`adapter_config.json`,
//! `adapter_model.safetensors`, tensors `base_model.model.<projection>.lora_A.weight` as
//! `[r, in]` and `lora_B.weight` as `[out, r]`), so transformers + peft, TRL and vLLM load them
//! as they are.

use anyhow::{Context, Result, bail, ensure};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use super::llama::{CausalLm, Linear};
use super::load::host;
use crate::io::weights::HostTensor;

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

/// PEFT's file names.
pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

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
}

impl<B: Backend> Lora<B> {
    fn new(a: Param<Tensor<B, 2>>, b: Param<Tensor<B, 2>>, shape: &LoraShape) -> Self {
        Self {
            a,
            b,
            alpha: shape.alpha,
            rslora: shape.rslora,
            scale: shape.scale(),
        }
    }

    /// `scale * (x A) B` for `x: [rows, in]`.
    pub fn delta(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
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
/// adapted model starts equal to the base. The base is frozen.
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
        let [inp, out] = linear.weight.dims();
        let bound = 1.0 / (inp as f32).sqrt();
        let a: Vec<f32> = (0..inp * shape.rank)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        linear.lora = Some(Lora::new(
            param(a, [inp, shape.rank], &device),
            param(vec![0.0; shape.rank * out], [shape.rank, out], &device),
            shape,
        ));
    }
    Ok(freeze_base(model))
}

fn param<B: Backend>(data: Vec<f32>, shape: [usize; 2], device: &B::Device) -> Param<Tensor<B, 2>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(data, shape), device))
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

/// PEFT's `adapter_config.json` for `shape` on a base model at `base`.
pub fn peft_config(shape: &LoraShape, base: &str, dropout: f64) -> serde_json::Value {
    serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": shape.rank,
        "lora_alpha": shape.alpha,
        "lora_dropout": dropout,
        "use_rslora": shape.rslora,
        "target_modules": shape.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
    })
}

/// The adapter's tensors under PEFT's names and layouts.
pub fn to_peft_tensors<B: Backend>(model: &CausalLm<B>) -> BTreeMap<String, HostTensor> {
    let mut out = BTreeMap::new();
    for (name, linear) in projections_of(model) {
        if let Some(lora) = &linear.lora {
            let key = |which: &str| format!("base_model.model.{name}.lora_{which}.weight");
            out.insert(key("A"), host(lora.a.val().transpose()));
            out.insert(key("B"), host(lora.b.val().transpose()));
        }
    }
    out
}

/// Writes the adapters of `model` as a PEFT adapter directory for the base model `base`
/// (a path or hub id: what `base_model_name_or_path` says).
pub fn save_adapter<B: Backend>(model: &CausalLm<B>, base: &str, dir: &Path) -> Result<()> {
    let shape = shape_of(model).context("the model has no adapters to save")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::io::safetensors::write_file(&dir.join(WEIGHTS_FILE), &to_peft_tensors(model))?;
    let config = serde_json::to_string_pretty(&peft_config(&shape, base, 0.0))?;
    crate::io::atomic_write(&dir.join(CONFIG_FILE), config.as_bytes())
}

/// A PEFT adapter directory's shape (from `adapter_config.json`).
pub fn read_shape(dir: &Path) -> Result<LoraShape> {
    let path = dir.join(CONFIG_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let field = |k: &str| {
        v.get(k)
            .with_context(|| format!("{}: no `{k}`", path.display()))
    };
    ensure!(
        field("peft_type")?.as_str() == Some("LORA"),
        "{}: `peft_type` is {}, not \"LORA\"",
        path.display(),
        field("peft_type")?
    );
    // What plain LoRA leaves unset: anything else would change the adapters' arithmetic.
    let plain = |k: &str, ok: &dyn Fn(&serde_json::Value) -> bool| match v.get(k) {
        Some(x) if !ok(x) => bail!(
            "{}: `{k}` is {x}: only plain LoRA adapters are read (no per-module ranks or \
             alphas, layer subsets, DoRA, biases or fan-in-fan-out weights)",
            path.display()
        ),
        _ => Ok(()),
    };
    let empty = |x: &serde_json::Value| {
        x.is_null()
            || x.as_object().is_some_and(|o| o.is_empty())
            || x.as_array().is_some_and(|a| a.is_empty())
    };
    for key in ["rank_pattern", "alpha_pattern", "layers_to_transform"] {
        plain(key, &empty)?;
    }
    plain("use_dora", &|x| x.as_bool() != Some(true))?;
    plain("fan_in_fan_out", &|x| x.as_bool() != Some(true))?;
    plain("bias", &|x| x.as_str().is_none_or(|b| b == "none"))?;
    let targets = match field("target_modules")? {
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        serde_json::Value::String(s) if s == "all-linear" => {
            TARGETS.iter().map(|t| t.to_string()).collect()
        }
        other => bail!(
            "{}: `target_modules` {other} is not a list of names",
            path.display()
        ),
    };
    let mut shape = LoraShape {
        rank: field("r")?
            .as_u64()
            .with_context(|| format!("{}: `r` is not a count", path.display()))?
            as usize,
        alpha: field("lora_alpha")?
            .as_f64()
            .with_context(|| format!("{}: `lora_alpha` is not a number", path.display()))?,
        rslora: v
            .get("use_rslora")
            .and_then(|x| x.as_bool())
            .unwrap_or(false),
        targets,
    };
    shape.check().with_context(|| path.display().to_string())?;
    // peft writes its target set in any order: ours is the projections' order.
    shape
        .targets
        .sort_by_key(|t| TARGETS.iter().position(|x| x == t));
    shape.targets.dedup();
    Ok(shape)
}

/// `model` (a base without adapters) with the PEFT adapter in `dir` attached, the base
/// frozen. Every target projection must have both tensors in the file, of the base's shapes.
pub fn attach_from<B: Backend>(
    mut model: CausalLm<B>,
    dir: &Path,
) -> Result<(CausalLm<B>, LoraShape)> {
    let shape = read_shape(dir)?;
    let path = dir.join(WEIGHTS_FILE);
    let mut weights = crate::io::weights::WeightMap::default();
    crate::io::safetensors::read_file_into(&path, &mut weights)?;
    let device = model.device();
    for (name, linear) in projections(&mut model) {
        if !shape.targets.iter().any(|t| t == short_name(&name)) {
            continue;
        }
        let [inp, out] = linear.weight.dims();
        let key = |which: &str| format!("base_model.model.{name}.lora_{which}.weight");
        let a = weights
            .take(&key("A"), &[shape.rank, inp])
            .with_context(|| format!("{}", path.display()))?;
        let b = weights
            .take(&key("B"), &[out, shape.rank])
            .with_context(|| format!("{}", path.display()))?;
        let a = a.transposed();
        let b = b.transposed();
        linear.lora = Some(Lora::new(
            param(a.data, [inp, shape.rank], &device),
            param(b.data, [shape.rank, out], &device),
            &shape,
        ));
    }
    let left: Vec<&str> = weights.names().take(5).collect();
    ensure!(
        left.is_empty(),
        "{}: tensor(s) of no projection that `target_modules` names in this model: {}{}",
        path.display(),
        left.join(", "),
        if weights.len() > 5 { ", ..." } else { "" }
    );
    Ok((freeze_base(model), shape))
}
