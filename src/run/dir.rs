//! A run's directory: resolved config, per-iteration candidates and pairs, metrics (JSONL and
//! CSV), parameter-change history, checkpoints. Whole files are replaced atomically and
//! logs (metrics, history) grow by appended, fsynced lines, so a crash leaves every file valid:
//! at worst a log's last line is torn, and readers skip it ([`crate::io::read_jsonl`]).
//! Every path inside a run directory is built here.

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

use super::records::{
    CandidatesRecord, HistoryEntry, MetricsRecord, PairLogps, PairRecord, RunState, csv_columns,
};
use crate::config::Config;
use crate::external::trainer::{EvalPromptRow, PreferenceRow, TrainerParams};
use crate::io::{append_line, atomic_write, read_jsonl};
use crate::model::CausalLm;
use crate::model::load::save_hf_dir;

/// The resolved config: what makes a directory a run directory.
const CONFIG: &str = "config.toml";

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
        run.reset_metrics()?;
        Ok(run)
    }

    /// Metrics with no rows: `metrics.csv` with its header, no `metrics.jsonl`.
    pub fn reset_metrics(&self) -> Result<()> {
        let jsonl = self.metrics_jsonl();
        match std::fs::remove_file(&jsonl) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", jsonl.display()));
            }
            _ => {}
        }
        let mut header = csv_columns().join(",");
        header.push('\n');
        atomic_write(&self.metrics_csv(), header.as_bytes())
    }

    /// An existing run directory (one with a `config.toml`).
    pub fn open(path: &Path) -> Result<Self> {
        let run = Self {
            path: path.to_path_buf(),
        };
        if !Self::is_run_dir(path) {
            bail!("{} is not a run directory (no config.toml)", path.display());
        }
        Ok(run)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG)
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

    pub fn state_path(&self) -> PathBuf {
        self.path.join("state.json")
    }

    /// The output of a generation server the run started (`generate.server.command`).
    pub fn server_log(&self) -> PathBuf {
        self.path.join("server.log")
    }

    /// The updated policy between the update and sync stages (the reference is the last
    /// checkpoint), for a resume.
    pub fn policy_state_dir(&self) -> PathBuf {
        self.path.join("state").join("policy")
    }

    /// Records where the run stands (atomically: the previous state stays until replaced).
    pub fn write_state(&self, state: &RunState) -> Result<()> {
        atomic_write(
            &self.state_path(),
            serde_json::to_string_pretty(state)?.as_bytes(),
        )
    }

    /// `state.json`, or None when there is none: the run stopped before its starting
    /// evaluation finished. An unreadable or newer-format file is an error naming it.
    pub fn read_state(&self) -> Result<Option<RunState>> {
        let path = self.state_path();
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            read => read.with_context(|| format!("reading {}", path.display()))?,
        };
        let state: RunState = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid run state", path.display()))?;
        if state.version > RunState::VERSION {
            bail!(
                "{}: state format {} is newer than this selm-tui reads ({})",
                path.display(),
                state.version,
                RunState::VERSION
            );
        }
        Ok(Some(state))
    }

    /// Whether `path` is a run directory (it has a `config.toml`).
    pub fn is_run_dir(path: &Path) -> bool {
        path.join(CONFIG).is_file()
    }

    /// Current lengths of `metrics.jsonl` and `metrics.csv`.
    pub fn metrics_lengths(&self) -> Result<(u64, u64)> {
        let len = |p: PathBuf| std::fs::metadata(&p).map_or(0, |m| m.len());
        Ok((len(self.metrics_jsonl()), len(self.metrics_csv())))
    }

    /// Cuts `metrics.jsonl` and `metrics.csv` back to the given lengths (rows of a stage
    /// that did not finish); a file shorter than that is corrupt.
    pub fn truncate_metrics(&self, jsonl: u64, csv: u64) -> Result<()> {
        for (path, len) in [(self.metrics_jsonl(), jsonl), (self.metrics_csv(), csv)] {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let have = file.metadata()?.len();
            if have < len {
                bail!(
                    "{} is shorter ({have} bytes) than recorded in state.json ({len})",
                    path.display()
                );
            }
            file.set_len(len)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("truncating {}", path.display()))?;
        }
        Ok(())
    }

    pub fn iteration_dir(&self, iteration: usize) -> PathBuf {
        self.path.join(format!("iter-{iteration:03}"))
    }

    /// `iter-NNN/candidates.jsonl`: every prompt's candidates, scored once ranked.
    pub fn candidates_path(&self, iteration: usize) -> PathBuf {
        self.iteration_dir(iteration).join("candidates.jsonl")
    }

    /// `iter-NNN/pairs.jsonl`: the preference pairs, in TRL's format plus ours.
    pub fn pairs_path(&self, iteration: usize) -> PathBuf {
        self.iteration_dir(iteration).join("pairs.jsonl")
    }

    /// `iter-NNN/pair_logps.jsonl`: the pairs' per-token log-probs after the update.
    pub fn pair_logps_path(&self, iteration: usize) -> PathBuf {
        self.iteration_dir(iteration).join("pair_logps.jsonl")
    }

    pub fn write_candidates(&self, iteration: usize, rows: &[CandidatesRecord]) -> Result<()> {
        write_jsonl(&self.candidates_path(iteration), rows)
    }

    pub fn write_pairs(&self, iteration: usize, rows: &[PairRecord]) -> Result<()> {
        write_jsonl(&self.pairs_path(iteration), rows)
    }

    pub fn write_pair_logps(&self, iteration: usize, rows: &[PairLogps]) -> Result<()> {
        write_jsonl(&self.pair_logps_path(iteration), rows)
    }

    pub fn read_candidates(&self, iteration: usize) -> Result<Vec<CandidatesRecord>> {
        read_jsonl(&self.candidates_path(iteration))
    }

    /// The iteration's pairs, or None before its pairs were selected.
    pub fn read_pairs(&self, iteration: usize) -> Result<Option<Vec<PairRecord>>> {
        read_if_present(&self.pairs_path(iteration))
    }

    /// The iteration's pair log-probs, or None before its update was synced.
    pub fn read_pair_logps(&self, iteration: usize) -> Result<Option<Vec<PairLogps>>> {
        read_if_present(&self.pair_logps_path(iteration))
    }

    /// `iter-NNN/train/`: an external trainer's inputs and outputs (`train.engine =
    /// "command"`; see [`crate::external::trainer`]).
    pub fn trainer_dir(&self, iteration: usize) -> PathBuf {
        self.iteration_dir(iteration).join("train")
    }

    /// The output of every trainer command the run started.
    pub fn trainer_log(&self) -> PathBuf {
        self.path.join("trainer.log")
    }

    /// Writes a trainer's inputs (`pairs.jsonl`, `eval_prompts.jsonl`, `params.json` at the
    /// paths `params` names) after clearing what an earlier attempt left, so no stale model
    /// or measurement is taken for this attempt's. Returns the path of `params.json`.
    pub fn write_trainer_inputs(
        &self,
        params: &TrainerParams,
        pairs: &[PreferenceRow],
        eval_prompts: &[EvalPromptRow],
    ) -> Result<PathBuf> {
        let dir = self.trainer_dir(params.iteration);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_jsonl(&params.input, pairs)?;
        write_jsonl(&params.eval_prompts, eval_prompts)?;
        let path = dir.join("params.json");
        atomic_write(&path, serde_json::to_string_pretty(params)?.as_bytes())?;
        Ok(path)
    }

    /// Makes the trainer's model at `from` the checkpoint of `iteration` (a rename, so it is
    /// there whole or not at all), with selm-tui's tokenizer files where it lacks them.
    pub fn adopt_checkpoint(
        &self,
        iteration: usize,
        from: &Path,
        tokenizer_files: &[(String, String)],
    ) -> Result<PathBuf> {
        for (name, contents) in tokenizer_files {
            if !from.join(name).exists() {
                atomic_write(&from.join(name), contents.as_bytes())?;
            }
        }
        let dir = self.checkpoint_dir(iteration);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        let parent = dir.parent().expect("checkpoints/");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        std::fs::rename(from, &dir)
            .with_context(|| format!("moving {} to {}", from.display(), dir.display()))?;
        Ok(dir)
    }

    pub fn checkpoint_dir(&self, iteration: usize) -> PathBuf {
        self.path
            .join("checkpoints")
            .join(format!("iter-{iteration:03}"))
    }

    /// Whether `iteration`'s checkpoint is there, whole.
    pub fn has_checkpoint(&self, iteration: usize) -> bool {
        is_checkpoint(&self.checkpoint_dir(iteration))
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
                is_checkpoint(&e.path()).then_some(n)
            })
            .collect();
        found.sort_unstable();
        found
    }

    pub fn write_config(&self, config: &Config) -> Result<()> {
        atomic_write(&self.config_path(), config.to_toml().as_bytes())
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
    /// directory renamed into place. A policy with adapters is saved merged (unless
    /// `as_.merged` is false), with its adapters beside it in PEFT's format for `as_.base`.
    pub fn save_checkpoint<B: Backend>(
        &self,
        iteration: usize,
        model: &CausalLm<B>,
        tokenizer_files: &[(String, String)],
        as_: &SaveAs,
    ) -> Result<PathBuf> {
        save_model_dir(&self.checkpoint_dir(iteration), model, tokenizer_files, as_)
    }

    /// Saves the updated policy for a resume (see [`Self::policy_state_dir`]).
    pub fn save_policy_state<B: Backend>(&self, model: &CausalLm<B>, as_: &SaveAs) -> Result<()> {
        let dir = self.policy_state_dir();
        std::fs::create_dir_all(dir.parent().expect("state/"))?;
        save_model_dir(&dir, model, &[], as_).map(|_| ())
    }
}

/// Where a LoRA checkpoint keeps its adapter (PEFT's files), inside the merged model's
/// directory: a folder of its own, since a loader (vLLM, transformers with peft) reads every
/// `*.safetensors` and `adapter_config.json` at the top level as the model.
pub const ADAPTER_DIR: &str = "adapter";

/// A finished checkpoint: a model directory, or a LoRA run's adapter-only one.
fn is_checkpoint(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        || dir
            .join(ADAPTER_DIR)
            .join(crate::model::lora::CONFIG_FILE)
            .is_file()
}

/// How a policy is saved: a LoRA policy's base model (a path or hub id, for its
/// `adapter_config.json`) and whether the merged model is written beside the adapter.
pub struct SaveAs {
    pub base: String,
    pub merged: bool,
}

/// Writes `model` (and tokenizer files; and its adapters for `as_.base`, if any, in
/// [`ADAPTER_DIR`]) as an HF directory at `dest`, through a sibling temporary directory
/// renamed into place. An adapted model without `as_.merged` is saved as its adapter only.
fn save_model_dir<B: Backend>(
    dest: &Path,
    model: &CausalLm<B>,
    tokenizer_files: &[(String, String)],
    as_: &SaveAs,
) -> Result<PathBuf> {
    // Inside the run directory: `<dest>.partial` can only be an earlier attempt's.
    let tmp = dest.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let adapted = crate::model::lora::has_adapters(model);
    if as_.merged || !adapted {
        save_hf_dir(model, &tmp)?;
    }
    if adapted {
        crate::model::lora::save_adapter(model, &as_.base, &tmp.join(ADAPTER_DIR))?;
    }
    for (name, content) in tokenizer_files {
        atomic_write(&tmp.join(name), content.as_bytes())?;
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    std::fs::rename(&tmp, dest).with_context(|| format!("moving a model to {}", dest.display()))?;
    Ok(dest.to_path_buf())
}

/// Writes `records` to `path` (in an iteration directory, created if missing) as JSON lines.
fn write_jsonl<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    atomic_write(path, jsonl(records)?.as_bytes())
}

pub fn read_if_present<T: DeserializeOwned>(path: &Path) -> Result<Option<Vec<T>>> {
    match path.is_file() {
        true => read_jsonl(path).map(Some),
        false => Ok(None),
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
