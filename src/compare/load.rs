//! Reading what `compare` is given: run directories and sweep directories (`sweep.json`,
//! whose runs are expanded). A directory that cannot be read is kept as a [`Skipped`] entry
//! with the reason, so one broken run never hides the others.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::stats::{ImplicitMeans, implicit_means};
use crate::config::Config;
use crate::run::RunDir;
use crate::run::records::IterationSummary;

/// One readable run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The directory's name, or the sweep's name for its run.
    pub name: String,
    pub dir: PathBuf,
    pub config: Config,
    /// The config flattened to dotted keys (`train.alpha`), values as labels show them.
    pub keys: BTreeMap<String, String>,
    /// `summary.json`, by iteration (0 = the starting model); shorter for an unfinished run.
    pub summary: Vec<IterationSummary>,
    /// Mean implicit rewards of each iteration's pairs (`iter-NNN/pair_logps.jsonl`).
    pub implicit: BTreeMap<usize, ImplicitMeans>,
    /// The sweep's word on the run when it did not finish (`running`, `interrupted`).
    pub note: Option<String>,
}

impl RunData {
    pub fn seed(&self) -> u64 {
        self.config.run.seed
    }

    /// The evaluation of `iteration`, if the run reached it.
    pub fn eval(&self, iteration: usize) -> Option<&IterationSummary> {
        self.summary.iter().find(|s| s.iteration == iteration)
    }

    /// The last iteration evaluated.
    pub fn last_iteration(&self) -> Option<usize> {
        self.summary.iter().map(|s| s.iteration).max()
    }
}

/// A directory left out of the comparison, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything read from the command line's directories.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub runs: Vec<RunData>,
    pub skipped: Vec<Skipped>,
}

impl Loaded {
    fn skip(&mut self, path: &Path, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            path: path.to_path_buf(),
            reason: reason.into(),
        });
    }
}

/// Reads each directory as a sweep (it has `sweep.json`) or a run (it has `config.toml`);
/// a run given twice (directly and through its sweep) counts once.
pub fn load(dirs: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    for dir in dirs {
        if dir.join(SWEEP_FILE).is_file() {
            load_sweep(dir, &mut loaded);
        } else if RunDir::is_run_dir(dir) {
            load_one(dir, None, None, &mut loaded);
        } else if !dir.is_dir() {
            loaded.skip(dir, "no such directory");
        } else {
            loaded.skip(
                dir,
                "neither a run (no config.toml) nor a sweep (no sweep.json)",
            );
        }
    }
    dedup(&mut loaded);
    loaded
}

/// Reads one run into `loaded`, or records why it cannot be.
fn load_one(dir: &Path, name: Option<&str>, note: Option<String>, loaded: &mut Loaded) {
    match read_run(dir, name, note) {
        Ok(run) => loaded.runs.push(run),
        Err(e) => loaded.skip(dir, format!("{e:#}")),
    }
}

fn read_run(dir: &Path, name: Option<&str>, note: Option<String>) -> Result<RunData> {
    let run = RunDir::open(dir)?;
    let config = Config::from_file(&run.config_path())?;
    let summary = read_summary(&run.summary_path())?;
    let implicit = read_implicit(&run)?;
    let name = match name {
        Some(n) => n.to_string(),
        None => dir_name(dir),
    };
    Ok(RunData {
        name,
        dir: dir.to_path_buf(),
        keys: flatten_config(&config),
        config,
        summary,
        implicit,
        note,
    })
}

fn dir_name(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canonical
        .file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into())
}

fn read_summary(path: &Path) -> Result<Vec<IterationSummary>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {} (the run stopped before its first evaluation finished?)",
            path.display()
        )
    })?;
    let mut rows: Vec<IterationSummary> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a list of iteration summaries", path.display()))?;
    rows.sort_by_key(|r| r.iteration);
    Ok(rows)
}

/// The `iter-NNN/pair_logps.jsonl` files there are, each reduced to its mean implicit
/// rewards (the per-token log-probs are not kept: a real model's files are large).
fn read_implicit(run: &RunDir) -> Result<BTreeMap<usize, ImplicitMeans>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&run.path) else {
        return Ok(out);
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(iteration) = name.strip_prefix("iter-").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Some(pairs) = run.read_pair_logps(iteration)? else {
            continue;
        };
        if let Some(means) = implicit_means(&pairs) {
            out.insert(iteration, means);
        }
    }
    Ok(out)
}

/// The file that marks a sweep directory.
pub const SWEEP_FILE: &str = "sweep.json";

/// The `sweep.json` format this reads.
const SWEEP_VERSION: u32 = 1;

/// What `compare` needs of `sweep.json` (`selm-tui sweep` writes it; other fields are
/// ignored).
#[derive(Debug, Deserialize)]
struct SweepFile {
    version: u32,
    #[serde(default)]
    runs: Vec<SweepRun>,
}

#[derive(Debug, Deserialize)]
struct SweepRun {
    name: String,
    /// Relative to the sweep directory.
    dir: PathBuf,
    status: SweepStatus,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SweepStatus {
    Pending,
    Running,
    Finished,
    Failed,
    Interrupted,
}

fn read_sweep(path: &Path) -> Result<SweepFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let sweep: SweepFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid sweep file", path.display()))?;
    if sweep.version > SWEEP_VERSION {
        bail!(
            "{}: sweep format {} is newer than this selm-tui reads ({SWEEP_VERSION})",
            path.display(),
            sweep.version
        );
    }
    Ok(sweep)
}

/// The sweep's runs: failed and pending ones are listed with their status, the others read
/// (an interrupted or running one with what it has).
fn load_sweep(dir: &Path, loaded: &mut Loaded) {
    let sweep = match read_sweep(&dir.join(SWEEP_FILE)) {
        Ok(s) => s,
        Err(e) => return loaded.skip(dir, format!("{e:#}")),
    };
    for run in sweep.runs {
        let path = dir.join(&run.dir);
        match run.status {
            SweepStatus::Failed => {
                let error = run.error.as_deref().unwrap_or("no error recorded");
                loaded.skip(&path, format!("sweep run {} failed: {error}", run.name));
            }
            SweepStatus::Pending => {
                loaded.skip(&path, format!("sweep run {} has not started", run.name));
            }
            SweepStatus::Finished => load_one(&path, Some(&run.name), None, loaded),
            SweepStatus::Running => {
                load_one(&path, Some(&run.name), Some("running".into()), loaded)
            }
            SweepStatus::Interrupted => {
                load_one(&path, Some(&run.name), Some("interrupted".into()), loaded)
            }
        }
    }
}

/// Drops a run read a second time (same directory after resolving links and `..`).
fn dedup(loaded: &mut Loaded) {
    let mut seen = std::collections::HashSet::new();
    loaded.runs.retain(|r| {
        let key = r.dir.canonicalize().unwrap_or_else(|_| r.dir.clone());
        seen.insert(key)
    });
}

/// The config as dotted keys (`train.alpha` -> `0.001`), so runs can be compared key by key
/// without naming every field here.
pub fn flatten_config(config: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(toml::Value::Table(table)) = toml::Value::try_from(config) {
        flatten_into("", &table, &mut out);
    }
    out
}

fn flatten_into(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(t) => flatten_into(&key, t, out),
            other => {
                out.insert(key, show_value(other));
            }
        }
    }
}

/// A value as a label shows it: strings unquoted, numbers in their shortest form (`0`, not
/// `0.0`).
fn show_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_flattens_to_dotted_keys() {
        let mut config = Config::embedded_default();
        config.train.alpha = 0.0;
        let keys = flatten_config(&config);
        assert_eq!(keys["train.alpha"], "0");
        assert_eq!(keys["train.beta"], "0.1");
        assert_eq!(keys["train.objective"], "selm");
        assert_eq!(keys["model.path"], "builtin:tiny-tasks");
        assert_eq!(keys["run.seed"], "0");
        assert!(keys["prompts.tasks"].contains("\"add\""), "{keys:?}");
        assert!(!keys.contains_key("prompts.file"));
    }

    #[test]
    fn a_missing_directory_is_skipped_with_its_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = load(&[tmp.path().join("nope"), tmp.path().to_path_buf()]);
        assert!(loaded.runs.is_empty());
        assert_eq!(loaded.skipped.len(), 2);
        assert_eq!(loaded.skipped[0].reason, "no such directory");
        assert!(loaded.skipped[1].reason.contains("no config.toml"));
    }
}
