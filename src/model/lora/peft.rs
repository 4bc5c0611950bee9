//! PEFT's adapter directories: `adapter_config.json` and `adapter_model.safetensors`, with
//! tensors `base_model.model.<projection>.lora_A.weight` (`[r, in]`) and `lora_B.weight`
//! (`[out, r]`), read and written as transformers + peft, TRL and vLLM do.

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::backend::Backend;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::path::Path;

use super::{
    Lora, LoraShape, TARGETS, draw_a, freeze_base, param, projections, projections_of, short_name,
};
use crate::io::weights::HostTensor;
use crate::model::llama::CausalLm;
use crate::model::load::host;

/// PEFT's file names.
pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

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
    let shape = super::shape_of(model).context("the model has no adapters to save")?;
    write_adapter(&shape, &to_peft_tensors(model), base, dir)
}

/// Writes the adapters [`super::attach_new`] would attach to a model of `config` with this
/// `seed`, as a PEFT adapter directory, without the model's weights: an external trainer's
/// first adapter. Nothing of the base is read or allocated.
pub fn save_fresh_adapter(
    config: &crate::model::ModelConfig,
    shape: &LoraShape,
    seed: u64,
    base: &str,
    dir: &Path,
) -> Result<()> {
    shape.check()?;
    let skeleton = CausalLm::<burn::backend::Flex>::skeleton(config.clone(), &Default::default());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tensors = BTreeMap::new();
    // The draws in attach_new's order: projections, one A each.
    for (name, linear) in projections_of(&skeleton) {
        if !shape.targets.iter().any(|t| t == short_name(&name)) {
            continue;
        }
        let [inp, out] = linear.weight.lazy_shape().dims();
        let a = HostTensor::new(vec![inp, shape.rank], draw_a(&mut rng, inp, shape.rank));
        let key = |which: &str| format!("base_model.model.{name}.lora_{which}.weight");
        tensors.insert(key("A"), a.transposed());
        tensors.insert(
            key("B"),
            HostTensor::new(vec![out, shape.rank], vec![0.0; out * shape.rank]),
        );
    }
    write_adapter(shape, &tensors, base, dir)
}

fn write_adapter(
    shape: &LoraShape,
    tensors: &BTreeMap<String, HostTensor>,
    base: &str,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::io::safetensors::write_file(&dir.join(WEIGHTS_FILE), tensors)?;
    let config = serde_json::to_string_pretty(&peft_config(shape, base, 0.0))?;
    crate::io::atomic_write(&dir.join(CONFIG_FILE), config.as_bytes())
}

/// A PEFT adapter directory's `adapter_config.json`: its path and contents.
fn read_config(dir: &Path) -> Result<(std::path::PathBuf, serde_json::Value)> {
    let path = dir.join(CONFIG_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    Ok((path, v))
}

/// The base model a PEFT adapter directory names (`base_model_name_or_path`).
pub fn base_of(dir: &Path) -> Result<String> {
    let (path, v) = read_config(dir)?;
    v.get("base_model_name_or_path")
        .and_then(|b| b.as_str())
        .map(String::from)
        .with_context(|| format!("{}: no `base_model_name_or_path`", path.display()))
}

/// A PEFT adapter directory's shape (from `adapter_config.json`).
pub fn read_shape(dir: &Path) -> Result<LoraShape> {
    let (path, v) = read_config(dir)?;
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
