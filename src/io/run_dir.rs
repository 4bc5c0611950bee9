//! A run's directory: resolved config, per-iteration candidates and pairs, metrics (JSONL and
//! CSV), parameter-change history, checkpoints. Whole files are replaced atomically and
//! logs (metrics, history) grow by appended, fsynced lines, so a crash leaves every file valid:
//! at worst a log's last line is torn, and readers skip it ([`super::read_jsonl`]).
//! Every path inside a run directory is built here.

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use serde::Serialize;
use std::path::{Path, PathBuf};

use super::records::{HistoryEntry, MetricsRecord, csv_columns};
use super::{append_line, atomic_write};
use crate::config::Config;
use crate::model::CausalLm;
use crate::model::load::save_hf_dir;

pub struct RunDir {
    pub path: PathBuf,
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
        let run = Self { path };
        let mut header = csv_columns().join(",");
        header.push('\n');
        atomic_write(&run.metrics_csv(), header.as_bytes())?;
        Ok(run)
    }

    /// An existing run directory (one with a `config.toml`).
    pub fn open(path: &Path) -> Result<Self> {
        let run = Self {
            path: path.to_path_buf(),
        };
        if !run.config_path().is_file() {
            bail!("{} is not a run directory (no config.toml)", path.display());
        }
        Ok(run)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    pub fn metrics_jsonl(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    pub fn metrics_csv(&self) -> PathBuf {
        self.path.join("metrics.csv")
    }

    pub fn history_path(&self) -> PathBuf {
        self.path.join("history.jsonl")
    }

    pub fn summary_path(&self) -> PathBuf {
        self.path.join("summary.json")
    }

    pub fn iteration_dir(&self, iteration: usize) -> PathBuf {
        self.path.join(format!("iter-{iteration:03}"))
    }

    /// `iter-NNN/<file>`.
    pub fn iteration_file(&self, iteration: usize, file: &str) -> PathBuf {
        self.iteration_dir(iteration).join(file)
    }

    pub fn checkpoint_dir(&self, iteration: usize) -> PathBuf {
        self.path
            .join("checkpoints")
            .join(format!("iter-{iteration:03}"))
    }

    /// The iterations with a finished checkpoint, in order.
    pub fn checkpoints(&self) -> Vec<usize> {
        let Ok(entries) = std::fs::read_dir(self.path.join("checkpoints")) else {
            return vec![];
        };
        let mut found: Vec<usize> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix("iter-")?.parse().ok()?;
                (e.path().join("config.json").is_file()).then_some(n)
            })
            .collect();
        found.sort_unstable();
        found
    }

    pub fn write_config(&self, config: &Config) -> Result<()> {
        atomic_write(&self.config_path(), config.to_toml().as_bytes())
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

    pub fn write_summary<T: Serialize>(&self, value: &T) -> Result<()> {
        atomic_write(
            &self.summary_path(),
            serde_json::to_string_pretty(value)?.as_bytes(),
        )
    }

    /// Appends a row to `metrics.jsonl` and `metrics.csv` (one fsynced line each).
    pub fn push_metrics(&mut self, record: &MetricsRecord) -> Result<()> {
        append_line(&self.metrics_jsonl(), &serde_json::to_string(record)?)?;
        append_line(&self.metrics_csv(), &csv_row(record)?)
    }

    /// Appends a start or a parameter change to `history.jsonl`.
    pub fn push_history(&mut self, entry: &HistoryEntry) -> Result<()> {
        append_line(&self.history_path(), &serde_json::to_string(entry)?)
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

/// A record as a `metrics.csv` line; columns it lacks stay empty.
fn csv_row(record: &MetricsRecord) -> Result<String> {
    let serde_json::Value::Object(row) = serde_json::to_value(record)? else {
        bail!("a metrics record is not an object");
    };
    let cells: Vec<String> = csv_columns()
        .iter()
        .map(|c| match row.get(c) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        })
        .collect();
    Ok(cells.join(","))
}
