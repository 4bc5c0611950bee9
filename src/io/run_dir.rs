//! A run's directory: resolved config, per-iteration candidates and pairs, metrics (JSONL and
//! CSV), parameter-change history, checkpoints. Whole files are replaced atomically and
//! logs (metrics, history) grow by appended, fsynced lines, so a crash leaves every file valid:
//! at worst a log's last line is torn, and readers skip it ([`super::read_jsonl`]).
//! Every path inside a run directory is built here.

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use serde::Serialize;
use std::path::{Path, PathBuf};

use super::atomic_write;
use crate::config::Config;
use crate::model::CausalLm;
use crate::model::load::save_hf_dir;

/// One row of `metrics.jsonl` / `metrics.csv`: a name -> value map in TRL naming.
pub type MetricRow = serde_json::Map<String, serde_json::Value>;

/// Columns of `metrics.csv`, in order; rows lacking one leave it empty.
pub const CSV_COLUMNS: &[&str] = &[
    "kind",
    "iteration",
    "step",
    "batch",
    "loss",
    "loss/dpo",
    "loss/optimism",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logps/pi_response",
    "logps/ref_response",
    "grad_norm",
    "lr",
    "alpha",
    "beta",
    "kl",
    "high_reward_fraction",
    "reward/mean",
];

pub struct RunDir {
    pub path: PathBuf,
    metrics: Vec<MetricRow>,
    history: Vec<serde_json::Value>,
}

impl RunDir {
    /// Creates `<out_dir>/<name>-<UTC timestamp>` (with a numeric suffix if taken).
    pub fn create(out_dir: &Path, name: &str) -> Result<Self> {
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
        let mut path = out_dir.join(format!("{name}-{stamp}"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = out_dir.join(format!("{name}-{stamp}-{n}"));
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path,
            metrics: vec![],
            history: vec![],
        })
    }

    pub fn iteration_dir(&self, iteration: usize) -> PathBuf {
        self.path.join(format!("iter-{iteration:03}"))
    }

    pub fn checkpoint_dir(&self, iteration: usize) -> PathBuf {
        self.path
            .join("checkpoints")
            .join(format!("iter-{iteration:03}"))
    }

    pub fn write_config(&self, config: &Config) -> Result<()> {
        atomic_write(&self.path.join("config.toml"), config.to_toml().as_bytes())
    }

    /// Writes `records` as `iter-NNN/<file>` in JSON lines.
    pub fn write_jsonl<T: Serialize>(
        &self,
        iteration: usize,
        file: &str,
        records: &[T],
    ) -> Result<()> {
        let dir = self.iteration_dir(iteration);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        atomic_write(&dir.join(file), jsonl(records)?.as_bytes())
    }

    pub fn write_json<T: Serialize>(&self, file: &str, value: &T) -> Result<()> {
        atomic_write(
            &self.path.join(file),
            serde_json::to_string_pretty(value)?.as_bytes(),
        )
    }

    /// Adds a metrics row and rewrites `metrics.jsonl` and `metrics.csv`.
    pub fn push_metrics(&mut self, row: MetricRow) -> Result<()> {
        self.metrics.push(row);
        atomic_write(
            &self.path.join("metrics.jsonl"),
            jsonl(&self.metrics)?.as_bytes(),
        )?;
        atomic_write(
            &self.path.join("metrics.csv"),
            csv(&self.metrics).as_bytes(),
        )
    }

    /// Records a parameter change in `history.jsonl`.
    pub fn push_history(&mut self, entry: serde_json::Value) -> Result<()> {
        self.history.push(entry);
        atomic_write(
            &self.path.join("history.jsonl"),
            jsonl(&self.history)?.as_bytes(),
        )
    }

    /// Saves the policy as an HF directory under `checkpoints/iter-NNN`, via a temporary
    /// directory renamed into place.
    pub fn save_checkpoint<B: Backend>(
        &self,
        iteration: usize,
        model: &CausalLm<B>,
        tokenizer_files: &[(String, String)],
    ) -> Result<PathBuf> {
        let dest = self.checkpoint_dir(iteration);
        let tmp = dest.with_extension("partial");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        save_hf_dir(model, &tmp)?;
        for (name, content) in tokenizer_files {
            atomic_write(&tmp.join(name), content.as_bytes())?;
        }
        if dest.exists() {
            std::fs::remove_dir_all(&dest)?;
        }
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("moving checkpoint to {}", dest.display()))?;
        Ok(dest)
    }
}

fn jsonl<T: Serialize>(records: &[T]) -> Result<String> {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r)?);
        out.push('\n');
    }
    Ok(out)
}

fn csv(rows: &[MetricRow]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| match row.get(*c) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}
