//! `selm-tui export`: one iteration's checkpoint as a self-contained HF model directory
//! (config.json, model.safetensors with `format = pt`, tokenizer.json,
//! tokenizer_config.json with the chat template, generation_config.json) that
//! transformers' `AutoModelForCausalLM` / `AutoTokenizer` load unchanged.

use anyhow::{Context, Result, bail};
use std::path::Path;

use crate::io::atomic_write;
use crate::model::ModelConfig;

const FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

pub fn export(run_dir: &Path, iteration: usize, out: &Path) -> Result<()> {
    let src = run_dir
        .join("checkpoints")
        .join(format!("iter-{iteration:03}"));
    if !src.is_dir() {
        let mut have: Vec<String> = std::fs::read_dir(run_dir.join("checkpoints"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("iter-") && !n.ends_with(".partial"))
                    .collect()
            })
            .unwrap_or_default();
        have.sort();
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
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{} exists and is not empty; not overwriting it",
            out.display()
        );
    }
    let config = ModelConfig::from_file(&src.join("config.json"))?;
    // Build next to the destination, then rename: a failure leaves no half-written export.
    let tmp = out.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    for f in FILES {
        let from = src.join(f);
        if *f == "tokenizer_config.json" && !from.exists() {
            continue;
        }
        let bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        atomic_write(&tmp.join(f), &bytes)?;
    }
    let generation = serde_json::json!({
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_ids,
        "pad_token_id": config.pad_token_id,
    });
    atomic_write(
        &tmp.join("generation_config.json"),
        serde_json::to_string_pretty(&generation)?.as_bytes(),
    )?;
    if out.exists() {
        std::fs::remove_dir(out)?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("moving the export to {}", out.display()))
}
