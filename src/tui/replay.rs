//! Rebuilds the TUI state of a finished or interrupted run from its run directory, read-only,
//! by replaying its records as the engine's events.

use anyhow::{Context, Result};
use std::path::Path;

use super::app::{App, EngineState};
use crate::config::Config;
use crate::engine::Event;
use crate::io::read_jsonl;
use crate::run::RunDir;
use crate::run::records::{HISTOGRAM_BINS, HistoryEntry, IterationSummary, MetricsRecord};

pub fn load_run(dir: &Path) -> Result<App> {
    let run = RunDir::open(dir)?;
    let config = Config::from_file(&run.config_path())?;
    let mut app = App::new(config.live_params(), config.run.auto_pause);
    app.run.state = EngineState::ReadOnly;
    app.run.run_dir = dir.display().to_string();
    app.run.backend = config.runtime.backend.clone();
    app.run.model = config.model_label();
    app.run.iterations = config.run.iterations;
    app.log.info(format!("opened {} read-only", dir.display()));
    load_history(&run, &mut app)?;
    load_metrics(&run, &config, &mut app)?;
    load_iterations(&run, &mut app)?;
    let last = app
        .known_iterations()
        .into_iter()
        .filter(|&i| i > 0)
        .max()
        .unwrap_or(0);
    app.pipeline.iteration = last.max(1);
    app.selected_iteration = last;
    app.follow = false;
    if app.evals.get(last).is_some() && last > 0 {
        // The last iteration completed: its pipeline bar shows every stage done.
        app.pipeline.all_done();
    }
    app.elapsed_s = app.evals.evals.iter().map(|s| s.wall_s).sum();
    // An unfinished run can go on (one without a state.json from its start).
    app.run.resumable = run
        .read_state()
        .is_ok_and(|s| s.is_none_or(|s| !s.finished));
    Ok(app)
}

/// The parameters in force at the end: the last entry of history.jsonl.
fn load_history(run: &RunDir, app: &mut App) -> Result<()> {
    let path = run.history_path();
    if !path.exists() {
        return Ok(());
    }
    if let Some(last) = read_jsonl::<HistoryEntry>(&path)?.last() {
        app.run.params = last.params();
    }
    Ok(())
}

fn load_metrics(run: &RunDir, config: &Config, app: &mut App) -> Result<()> {
    let path = run.summary_path();
    let summaries: Vec<IterationSummary> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{}: not a summary list", path.display()))?,
        // Written at the end of the first iteration: an early interrupted run has none.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let path = run.metrics_jsonl();
    let rows: Vec<MetricsRecord> = if path.exists() {
        read_jsonl(&path)?
    } else {
        vec![]
    };
    for row in rows {
        match row {
            MetricsRecord::Train(r) => app.apply(Event::Metrics(r)),
            // summary.json is rewritten at each iteration's end; an eval row newer than it
            // (an interrupted run) still shows, with an empty histogram.
            MetricsRecord::Eval(r) => app.evals.push(IterationSummary {
                iteration: r.iteration,
                eval: r.figures,
                reward_histogram: [0; HISTOGRAM_BINS],
                histogram_range: config.rank.score_range,
                candidate_reward_mean: f64::NAN,
                pairs: 0,
                mean_loss: f64::NAN,
                eval_prompts: 0,
                eval_samples: 0,
                wall_s: 0.0,
            }),
        }
    }
    for s in summaries {
        app.evals.push(s);
    }
    Ok(())
}

fn load_iterations(run: &RunDir, app: &mut App) -> Result<()> {
    for iteration in 1..=app.run.iterations {
        let Some(pairs) = run.read_pairs(iteration)? else {
            continue;
        };
        app.pairs.set_pairs(iteration, pairs);
        if let Some(logps) = run.read_pair_logps(iteration)? {
            app.pairs.set_logps(iteration, logps);
        }
    }
    Ok(())
}
