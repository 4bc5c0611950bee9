//! `selm-tui export`: one iteration's checkpoint, or any model selm-tui loads (a GGUF file
//! included), as a self-contained HF model directory (config.json, model.safetensors with
//! `format = pt`, tokenizer.json, tokenizer_config.json with the chat template,
//! generation_config.json) that transformers' `AutoModelForCausalLM` / `AutoTokenizer` and
//! vLLM load unchanged.

use anyhow::{Context, Result, bail};
use std::path::Path;

use crate::io::atomic_write;
use crate::model::ModelConfig;
use crate::run::RunDir;

const FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

/// Writes iteration `iteration`'s checkpoint of the run in `run_dir` to `out` (which must not
/// exist, or be empty). The files are staged in a uniquely named directory beside `out` and
/// renamed into place, so a failure leaves no half-written export and touches nothing else.
pub fn export(run_dir: &Path, iteration: usize, out: &Path) -> Result<()> {
    let run = RunDir::open(run_dir)?;
    let have = run.checkpoints();
    if !have.contains(&iteration) {
        let have: Vec<String> = have.iter().map(|n| format!("iter-{n:03}")).collect();
        bail!(
            "{} has no checkpoint for iteration {iteration} (have: {})",
            run_dir.display(),
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        );
    }
    let src = run.checkpoint_dir(iteration);
    write_staged(out, |staging| {
        // An adapter-only checkpoint (a LoRA run's) is merged into its base first.
        let adapter_only = !src.join("config.json").is_file();
        if adapter_only {
            merge_adapter(&src, staging)?;
        }
        for f in FILES {
            let from = src.join(f);
            let merged = adapter_only && matches!(*f, "config.json" | "model.safetensors");
            if merged || (*f == "tokenizer_config.json" && !from.exists()) {
                continue;
            }
            let bytes =
                std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            atomic_write(&staging.join(f), &bytes)?;
        }
        Ok(())
    })
}

/// Writes the model at `model` (what `model.path` takes: an HF directory, a GGUF file whose
/// quantized weights are dequantized, `builtin:` or `cache:` names) to `out` as an HF
/// directory in float32: the same weights for a server that reads only safetensors.
pub fn export_model(model: &Path, out: &Path) -> Result<()> {
    let (model, tokenizer) =
        crate::model::load::load_pretrained::<burn::backend::Flex>(model, &Default::default())?;
    write_staged(out, |staging| {
        crate::model::load::save_hf_dir(&model, staging)?;
        atomic_write(
            &staging.join("tokenizer.json"),
            tokenizer.to_json()?.as_bytes(),
        )?;
        let config = serde_json::to_string_pretty(&tokenizer.tokenizer_config_json())?;
        atomic_write(&staging.join("tokenizer_config.json"), config.as_bytes())
    })
}

/// Fills a staging directory beside `out` with `fill`, adds generation_config.json from its
/// config.json, and renames it to `out` (which must not exist, or be empty).
fn write_staged(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{} exists and is not empty; not overwriting it",
            out.display()
        );
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".selm-export-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    fill(staging.path())?;
    let config = ModelConfig::from_file(&staging.path().join("config.json"))?;
    let generation = serde_json::json!({
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_ids,
        "pad_token_id": config.pad_token_id,
    });
    atomic_write(
        &staging.path().join("generation_config.json"),
        serde_json::to_string_pretty(&generation)?.as_bytes(),
    )?;
    if out.exists() {
        std::fs::remove_dir(out).with_context(|| format!("replacing {}", out.display()))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        anyhow::Error::new(e).context(format!("moving the export to {}", out.display()))
    })
}

/// Writes the model of adapter-only checkpoint `src` to `out` (config.json and
/// model.safetensors): its adapter folded into the base model its `adapter_config.json`
/// names.
fn merge_adapter(src: &Path, out: &Path) -> Result<()> {
    use crate::model::lora;
    let adapter = src.join(crate::run::ADAPTER_DIR);
    let base = lora::base_of(&adapter)?;
    let device = Default::default();
    let (model, _) =
        crate::model::load::load_pretrained::<burn::backend::Flex>(Path::new(&base), &device)
            .with_context(|| format!("loading {base}, the base model of {}", adapter.display()))?;
    let (adapted, _) = lora::attach_from(model, &adapter)?;
    crate::model::load::save_hf_dir(&lora::merged(adapted), out)
}
