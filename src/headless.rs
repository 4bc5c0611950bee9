//! The headless front end: runs the engine to the end with plain progress lines, then prints
//! a per-iteration summary table. For scripted sweeps and CI.

use anyhow::{Result, bail};
use std::io::Write;
use std::time::Instant;

use crate::backend::BackendSpec;
use crate::engine::{self, Command, Event, Level, Stage, Start};
use crate::run::records::IterationSummary;

/// Runs `what` to its end (or its first error). `paused`: wait after the starting evaluation
/// for a viewer's commands (`selm-tui attach`), and stay for its retries after an error.
pub fn run(what: Start, spec: BackendSpec, paused: bool) -> Result<Vec<IterationSummary>> {
    let start = Instant::now();
    let handle = engine::spawn(what, spec)?;
    let handle = crate::control::serve(handle);
    if !paused {
        // An engine that failed at once has closed its side already; its error is in the
        // event channel, read below, so a failed send says nothing new.
        let _ = handle.commands.send(Command::Run);
    }
    let mut summaries = vec![];
    let mut error = None;
    // An engine that could not open its run (a refused resume, a model that does not load)
    // errs before Started: that error alone is the outcome, with no table.
    let mut started = false;
    let mut finished = false;
    // Locked per line, never across a wait: a library printing from the engine thread
    // must not block on a lock this thread holds while it waits for that engine.
    let mut out = std::io::stdout();
    let mut waiting: Option<String> = None;
    let mut shown_update: Option<usize> = None;
    for event in handle.events.iter() {
        let t = start.elapsed().as_secs_f64();
        if !matches!(event, Event::Waiting(_)) {
            waiting = None;
        }
        match event {
            Event::Started {
                run_dir,
                backend,
                model,
                iterations,
                params,
            } => {
                started = true;
                writeln!(
                    out,
                    "[{t:7.1}s] run {run_dir}: {model} on {backend}, {iterations} iterations, alpha {} beta {} lr {}",
                    params.alpha, params.beta, params.lr
                )?;
                if paused {
                    writeln!(
                        out,
                        "[{t:7.1}s] paused: waiting for commands from `selm-tui attach {run_dir}`"
                    )?;
                }
            }
            Event::StageFinished {
                iteration,
                stage,
                summary,
                seconds,
            } => writeln!(
                out,
                "[{t:7.1}s] iter {iteration} {:<14} {summary}  ({seconds:.3} s)",
                stage.label()
            )?,
            Event::Progress {
                stage: Stage::Update,
                done,
                total,
                ..
            } if done % 10 == 0 && done < total && shown_update != Some(done) => {
                // An external trainer's unit repeats the same count while it waits: once.
                shown_update = Some(done);
                writeln!(out, "[{t:7.1}s]        update {done}/{total}")?
            }
            Event::Iteration(s) => {
                writeln!(
                    out,
                    "[{t:7.1}s] iter {} eval: kl {:.4}  high_reward_fraction {:.3}  reward/mean {:.3}",
                    s.iteration, s.eval.kl, s.eval.high_reward_fraction, s.eval.reward_mean
                )?;
                summaries.push(s);
            }
            // Once per wait: what it waits on and its limit, not every second of it.
            Event::Waiting(w) if waiting.as_ref() != Some(&w.what) => {
                let limit = w
                    .limit_s
                    .map(|l| format!(" (up to {l:.0} s)"))
                    .unwrap_or_default();
                writeln!(out, "[{t:7.1}s]        waiting: {}{limit}", w.what)?;
                waiting = Some(w.what);
            }
            Event::Log(line) => {
                let tag = match line.level {
                    Level::Info => "",
                    Level::Warn => "warning: ",
                    Level::Error => "error: ",
                };
                writeln!(out, "[{t:7.1}s] {tag}{}", line.text)?
            }
            Event::Error(e) if !started => error = Some(e),
            // Paused runs are steered by a viewer, which can retry.
            Event::Error(e) if paused => {
                writeln!(out, "[{t:7.1}s] error: {e}")?;
                error = Some(e);
            }
            Event::Error(e) => {
                writeln!(out, "[{t:7.1}s] error: {e}")?;
                error = Some(e);
                let _ = handle.commands.send(Command::Quit);
            }
            Event::Resumed if paused => error = None,
            Event::ParamsChanged(p) => writeln!(
                out,
                "[{t:7.1}s] set alpha {} beta {} lr {} (from the next update)",
                p.alpha, p.beta, p.lr
            )?,
            Event::RankQuery(q) if paused => writeln!(
                out,
                "[{t:7.1}s] prompt {} of {} waits for a ranking from an attached viewer",
                q.index + 1,
                q.total
            )?,
            Event::RankQuery(_) => {
                let e = "the `human` ranker asks the researcher in the TUI; headless runs \
                         cannot answer (run without --headless)";
                writeln!(out, "[{t:7.1}s] error: {e}")?;
                error = Some(e.to_string());
                let _ = handle.commands.send(Command::Quit);
            }
            Event::Finished { completed } => {
                finished = completed;
                break;
            }
            _ => {}
        }
    }
    let _ = handle.thread.join();
    if !started {
        bail!(
            "{}",
            error.unwrap_or_else(|| "the engine stopped before it started".into())
        );
    }
    writeln!(out, "\n{}", summary_table(&summaries))?;
    writeln!(out, "wall time {:.1}s", start.elapsed().as_secs_f64())?;
    if let Some(e) = error {
        bail!("run stopped: {e}");
    }
    if !finished {
        bail!(
            "the run was stopped before its end (from an attached viewer); `selm-tui resume` continues it"
        );
    }
    Ok(summaries)
}

/// The per-iteration table printed at the end of a headless run.
pub fn summary_table(rows: &[IterationSummary]) -> String {
    let mut s = String::from(
        "iter  pairs  mean loss  cand reward  reward/mean  high_reward_frac       kl   wall s\n",
    );
    let num = |v: f64, prec: usize| {
        if v.is_finite() {
            format!("{v:.prec$}")
        } else {
            "-".into()
        }
    };
    for r in rows {
        s.push_str(&format!(
            "{:>4}  {:>5}  {:>9}  {:>11}  {:>11.3}  {:>16.3}  {:>7.4}  {:>7.1}\n",
            r.iteration,
            r.pairs,
            num(r.mean_loss, 4),
            num(r.candidate_reward_mean, 3),
            r.eval.reward_mean,
            r.eval.high_reward_fraction,
            r.eval.kl,
            r.wall_s
        ));
    }
    s
}
