//! Rebuilds the TUI state of a finished or interrupted run from its run directory, read-only.

use anyhow::{Context, Result, bail};
use std::path::Path;

use super::app::{App, EngineState};
use crate::config::Config;
use crate::engine::pipeline::PairRecord;
use crate::engine::{IterationSummary, PairLogps};
use crate::io::read_jsonl;
use crate::io::run_dir::MetricRow;

pub fn load_run(dir: &Path) -> Result<App> {
    if !dir.join("config.toml").is_file() {
        bail!("{} is not a run directory (no config.toml)", dir.display());
    }
    let config = Config::from_file(&dir.join("config.toml"))?;
    let params = config.live_params();
    let mut app = App::new(params, config.run.auto_pause);
    app.state = EngineState::ReadOnly;
    app.run_dir = dir.display().to_string();
    app.backend = config.runtime.backend.clone();
    app.model = config.model.path.clone();
    app.iterations = config.run.iterations;
    app.push_log(format!("opened {} read-only", dir.display()));
    load_history(dir, &mut app)?;
    load_metrics(dir, &mut app)?;
    load_iterations(dir, &mut app)?;
    let last = app
        .data
        .keys()
        .copied()
        .filter(|&i| i > 0)
        .max()
        .unwrap_or(0);
    app.iteration = last.max(1);
    app.selected_iteration = last;
    app.follow = false;
    if app.data.get(&last).is_some_and(|d| d.summary.is_some()) {
        // The last iteration completed: its pipeline bar shows every stage done.
        for s in &mut app.stages {
            s.finished = true;
        }
    }
    app.elapsed_s = app.evals.iter().map(|s| s.wall_s).sum();
    Ok(app)
}

/// The parameters in force at the end: the last `set` entry of history.jsonl.
fn load_history(dir: &Path, app: &mut App) -> Result<()> {
    let path = dir.join("history.jsonl");
    if !path.exists() {
        return Ok(());
    }
    for entry in read_jsonl::<serde_json::Value>(&path)? {
        if entry["event"] == "set" {
            app.params = serde_json::from_value(entry["new"].clone())
                .with_context(|| format!("{}: a `set` entry without new values", path.display()))?;
        }
    }
    Ok(())
}

fn load_metrics(dir: &Path, app: &mut App) -> Result<()> {
    let summaries: Vec<IterationSummary> = match std::fs::read_to_string(dir.join("summary.json")) {
        Ok(text) => serde_json::from_str(&text).with_context(|| {
            format!("{}: not a summary list", dir.join("summary.json").display())
        })?,
        Err(_) => vec![],
    };
    let path = dir.join("metrics.jsonl");
    let rows: Vec<MetricRow> = if path.exists() {
        read_jsonl(&path)?
    } else {
        vec![]
    };
    for row in &rows {
        match row.get("kind").and_then(|k| k.as_str()) {
            Some("train") => app.push_metrics(row),
            // summary.json is rewritten at each iteration's end; an eval row newer than it
            // (an interrupted run) still shows, without a histogram.
            Some("eval") => app.push_eval(eval_from_row(row)),
            _ => {}
        }
    }
    for s in summaries {
        app.push_eval(s);
    }
    Ok(())
}

fn eval_from_row(row: &MetricRow) -> IterationSummary {
    let get = |k: &str| row.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    IterationSummary {
        iteration: get("iteration") as usize,
        kl: get("kl"),
        high_reward_fraction: get("high_reward_fraction"),
        reward_mean: get("reward/mean"),
        reward_histogram: [0; 10],
        histogram_range: [0.0, 1.0],
        candidate_reward_mean: f64::NAN,
        pairs: 0,
        mean_loss: f64::NAN,
        eval_prompts: 0,
        eval_samples: 0,
        wall_s: 0.0,
    }
}

fn load_iterations(dir: &Path, app: &mut App) -> Result<()> {
    for iteration in 1..=app.iterations {
        let it_dir = dir.join(format!("iter-{iteration:03}"));
        let pairs_path = it_dir.join("pairs.jsonl");
        if !pairs_path.exists() {
            continue;
        }
        let pairs = read_jsonl::<PairRecord>(&pairs_path)?
            .iter()
            .map(PairRecord::view)
            .collect();
        let logps_path = it_dir.join("pair_logps.jsonl");
        let logps = if logps_path.exists() {
            Some(read_jsonl::<PairLogps>(&logps_path)?)
        } else {
            None
        };
        let data = app.data.entry(iteration).or_default();
        data.pairs = pairs;
        data.logps = logps;
    }
    Ok(())
}
