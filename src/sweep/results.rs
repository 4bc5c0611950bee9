//! `results.csv`: one row per run and iteration (0 is the starting model), with the run's
//! grid values, its seed, and that iteration's evaluation, for pandas or a spreadsheet.

use anyhow::{Context, Result};
use std::path::Path;

use super::grid::Axis;
use super::state::SweepState;
use crate::run::RunDir;
use crate::run::records::IterationSummary;

/// The columns after the grid values.
const FIGURES: [&str; 9] = [
    "seed",
    "status",
    "iteration",
    "kl",
    "high_reward_fraction",
    "reward/mean",
    "mean_loss",
    "pairs",
    "wall_s",
];

/// Rewrites `dir/results.csv` from the runs' `summary.json` files.
pub fn write_csv(dir: &Path, state: &SweepState, axes: &[Axis]) -> Result<()> {
    let keys: Vec<&str> = axes
        .iter()
        .map(|a| a.key.as_str())
        .filter(|k| *k != "run.seed")
        .collect();
    let mut w = csv::Writer::from_writer(vec![]);
    let header = ["run"]
        .into_iter()
        .chain(keys.iter().copied())
        .chain(FIGURES);
    w.write_record(header)?;
    for run in &state.runs {
        let Some(run_dir) = state.run_dir(&run.name) else {
            continue;
        };
        let (seed, summaries) = read_run(&run_dir)?;
        let status = serde_json::to_value(run.status)?;
        for s in summaries {
            let mut row = vec![run.name.clone()];
            row.extend(keys.iter().map(|k| value(run.values.get(*k))));
            row.extend([
                seed.to_string(),
                status.as_str().unwrap_or_default().to_string(),
                s.iteration.to_string(),
                s.eval.kl.to_string(),
                s.eval.high_reward_fraction.to_string(),
                s.eval.reward_mean.to_string(),
                num(s.mean_loss),
                s.pairs.to_string(),
                s.wall_s.to_string(),
            ]);
            w.write_record(&row)?;
        }
    }
    let bytes = w.into_inner().context("writing results.csv")?;
    crate::io::atomic_write(&dir.join("results.csv"), &bytes)
}

/// A run's seed and its evaluations so far (none before its first).
fn read_run(dir: &Path) -> Result<(u64, Vec<IterationSummary>)> {
    let run = RunDir::open(dir)?;
    let config = crate::config::Config::from_file(&run.config_path())?;
    let path = run.summary_path();
    if !path.exists() {
        return Ok((config.run.seed, vec![]));
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let summaries = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a run summary", path.display()))?;
    Ok((config.run.seed, summaries))
}

fn value(v: Option<&serde_json::Value>) -> String {
    v.map(super::grid::display).unwrap_or_default()
}

/// Empty for NaN (no update yet), so spreadsheets read a missing value.
fn num(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}
