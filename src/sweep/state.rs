//! `sweep.json`: the grid, the base config and each run's status, rewritten (atomically) at
//! every change, so an interrupted sweep knows where it stopped and `compare` what it holds.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::grid::{Axis, Point};
use crate::run::RunDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Finished,
    Failed,
    /// Started and stopped before its end: the next sweep resumes it.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    pub name: String,
    /// The run directory, relative to the sweep directory, once it exists.
    pub dir: Option<String>,
    pub values: serde_json::Map<String, serde_json::Value>,
    pub status: RunStatus,
    pub error: Option<String>,
    pub wall_s: Option<f64>,
    /// `sweep --launcher slurm`: the array task that last ran it (`JOBID_INDEX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepState {
    pub version: u32,
    pub base_config: String,
    pub grid: Vec<Axis>,
    pub set: Vec<String>,
    pub runs: Vec<RunEntry>,
    /// Where this state lives.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl SweepState {
    pub const VERSION: u32 = 1;

    /// The sweep in `dir`: continued when `sweep.json` describes the same grid (statuses
    /// refreshed from the run directories), created otherwise; a different sweep there is
    /// an error.
    pub fn open_or_create(
        dir: &Path,
        base_config: &str,
        grid: &[Axis],
        set: &[String],
        points: &[Point],
    ) -> Result<Self> {
        let path = dir.join("sweep.json");
        let mut state = if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let old: SweepState = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a sweep.json", path.display()))?;
            if old.grid != grid || old.set != set || old.base_config != base_config {
                bail!(
                    "{} holds another sweep (base {}, grid {}); give another --out",
                    dir.display(),
                    old.base_config,
                    describe(&old.grid)
                );
            }
            old
        } else {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            SweepState {
                version: Self::VERSION,
                base_config: base_config.into(),
                grid: grid.to_vec(),
                set: set.to_vec(),
                runs: points.iter().map(entry).collect(),
                dir: PathBuf::new(),
            }
        };
        state.dir = dir.to_path_buf();
        for run in &mut state.runs {
            refresh(dir, run);
        }
        state.save()?;
        Ok(state)
    }

    /// The sweep in `dir` as its `sweep.json` stands (a Slurm task reads which point it is).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("sweep.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut state: SweepState = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a sweep.json", path.display()))?;
        state.dir = dir.to_path_buf();
        Ok(state)
    }

    pub fn save(&self) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        crate::io::atomic_write(&self.dir.join("sweep.json"), json.as_bytes())
    }

    /// The run directory of `name`, if it has been created.
    pub fn run_dir(&self, name: &str) -> Option<PathBuf> {
        find_run_dir(&self.dir, name)
    }

    /// [`Self::run_dir`] relative to the sweep directory, as `sweep.json` records it.
    pub fn relative_run_dir(&self, name: &str) -> Option<String> {
        let run = self.run_dir(name)?;
        run.strip_prefix(&self.dir)
            .ok()
            .map(|p| p.display().to_string())
    }
}

fn entry(p: &Point) -> RunEntry {
    RunEntry {
        name: p.name.clone(),
        dir: None,
        values: p.values.iter().cloned().collect(),
        status: RunStatus::Pending,
        error: None,
        wall_s: None,
        slurm: None,
    }
}

/// A run's status as its directory says: finished, or started and not finished.
fn refresh(dir: &Path, run: &mut RunEntry) {
    let Some(run_dir) = find_run_dir(dir, &run.name) else {
        if run.status != RunStatus::Failed {
            run.status = RunStatus::Pending;
        }
        return;
    };
    run.dir = run_dir
        .strip_prefix(dir)
        .ok()
        .map(|p| p.display().to_string());
    let finished = RunDir::open(&run_dir)
        .and_then(|r| r.read_state())
        .is_ok_and(|s| s.is_some_and(|s| s.finished));
    run.status = match (finished, run.status) {
        (true, _) => RunStatus::Finished,
        (false, RunStatus::Failed) => RunStatus::Failed,
        (false, _) => RunStatus::Interrupted,
    };
}

/// `DIR/runs/<name>/run-<timestamp>/`: the newest directory there with a config.toml.
fn find_run_dir(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs").join(name))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| RunDir::is_run_dir(p))
        .collect();
    dirs.sort();
    dirs.pop()
}

fn describe(grid: &[Axis]) -> String {
    grid.iter()
        .map(|a| format!("{} x{}", a.key, a.values.len()))
        .collect::<Vec<_>>()
        .join(", ")
}
