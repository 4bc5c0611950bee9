//! Dashboard benchmarks: render time with a full chart history, and key-to-redraw latency
//! while the engine runs an update on another thread. Both draw on ratatui's TestBackend,
//! so they time the TUI's own work (state, layout, widgets, diff), not a terminal emulator.

use anyhow::{Result, bail};
use crossterm::event::{Event as CtEvent, KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde::Serialize;
use std::time::{Duration, Instant};

use super::Ui;
use super::app::{App, EngineState, View};
use crate::backend::BackendSpec;
use crate::config::Config;
use crate::engine::{self, Command, Event, LiveParams, Stage};
use crate::run::records::{
    EvalFigures, IterationSummary, PairLogps, PairRecord, ResponseLogps, TrainRecord,
};
use crate::selm::SelmMetrics;

#[derive(Debug, Serialize)]
pub struct Timing {
    pub samples: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Timing {
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Self {
            samples: ms.len(),
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UiBenchReport {
    pub width: u16,
    pub height: u16,
    pub history_steps: usize,
    pub history_iterations: usize,
    pub dashboard: Timing,
    pub pairs: Timing,
    pub pair_detail: Timing,
    /// Key press to finished redraw, sampled while the update stage runs.
    pub key_to_redraw: Option<Timing>,
}

/// A run's worth of synthetic history: `iterations` x `steps_per_iteration` updates and 384
/// measured pairs per iteration.
pub fn synthetic_app(iterations: usize, steps_per_iteration: usize) -> App {
    let params = LiveParams {
        alpha: 0.001,
        beta: 0.1,
        lr: 1e-4,
    };
    let mut app = App::new(params, true);
    app.run.backend = "flex".into();
    app.run.model = "builtin:tiny-tasks".into();
    app.run.iterations = iterations;
    for it in 0..=iterations {
        let x = it as f64;
        app.apply(Event::Iteration(IterationSummary {
            iteration: it,
            eval: EvalFigures {
                kl: 0.01 * x * x,
                high_reward_fraction: 0.15 + 0.01 * x,
                reward_mean: 0.43 + 0.01 * x,
            },
            reward_histogram: std::array::from_fn(|b| 20 + (b * 7 + it * 3) % 40),
            histogram_range: [0.0, 1.0],
            candidate_reward_mean: 0.4,
            pairs: 384,
            mean_loss: 0.69,
            eval_prompts: 256,
            eval_samples: 2048,
            wall_s: 40.0,
        }));
        if it == 0 {
            continue;
        }
        for s in 0..steps_per_iteration {
            let step = (it - 1) * steps_per_iteration + s + 1;
            let t = step as f64;
            app.apply(Event::Metrics(TrainRecord {
                iteration: it,
                step,
                batch: s + 1,
                metrics: SelmMetrics {
                    loss: 0.69 - 0.1 * (t / 50.0).sin().abs(),
                    loss_dpo: 0.68 - 0.1 * (t / 40.0).cos().abs(),
                    loss_optimism: 0.001 * (t / 10.0).sin(),
                    rewards_chosen: 0.01,
                    rewards_rejected: -0.01,
                    rewards_accuracies: 0.6,
                    rewards_margins: 0.02,
                    logps_chosen: -5.0,
                    logps_rejected: -6.0,
                    logps_pi_response: -4.5,
                    logps_ref_response: -4.6,
                    alpha: 0.001,
                    beta: 0.1,
                },
                grad_norm: 1.2,
                lr: 1e-4,
            }));
        }
        let pairs: Vec<PairRecord> = (0..384)
            .map(|i| PairRecord {
                prompt: format!("Sort the letters: q w e r t y {i}\n"),
                chosen: "e q r t w y".into(),
                rejected: "q w e r t y".into(),
                iteration: it,
                chosen_score: 1.0,
                rejected_score: (i % 10) as f64 / 10.0,
                y_ref: "e q r w t y".into(),
                y_ref_score: 0.5,
                candidates: vec![],
                ranker: crate::config::RankerKind::Oracle.name().into(),
            })
            .collect();
        let response = |n: usize| ResponseLogps {
            tokens: (0..n)
                .map(|i| ((b'a' + i as u8 % 26) as char).to_string())
                .collect(),
            policy: (0..n).map(|i| -1.0 - (i % 3) as f32 * 0.3).collect(),
            reference: (0..n).map(|i| -1.1 - (i % 4) as f32 * 0.2).collect(),
            ids: vec![],
        };
        let logps = (0..384)
            .map(|_| PairLogps {
                beta: 0.1,
                chosen: response(11),
                rejected: response(11),
                y_ref: response(11),
            })
            .collect();
        app.apply(Event::Pairs {
            iteration: it,
            pairs,
        });
        app.apply(Event::PairLogps {
            iteration: it,
            logps,
        });
    }
    for i in 0..200 {
        app.log.info(format!("log line {i}"));
    }
    app.pipeline.stage = Some(Stage::Update);
    app.pipeline.iteration = iterations;
    app.selected_iteration = iterations;
    app
}

fn time_draws(ui: &mut Ui<TestBackend>, frames: usize) -> Result<Timing> {
    let mut ms = Vec::with_capacity(frames);
    for _ in 0..frames {
        // A full repaint each time, as after a resize: clear forgets the previous buffer.
        ui.terminal.clear()?;
        let t = Instant::now();
        ui.draw()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Timing::of(ms))
}

/// Render times of the three main views at `width` x `height`, and (when `config` is given)
/// key-to-redraw latency during a real update.
pub fn run(
    width: u16,
    height: u16,
    frames: usize,
    live: Option<(Config, BackendSpec)>,
) -> Result<UiBenchReport> {
    let (iterations, per) = (20, 100);
    let app = synthetic_app(iterations, per);
    let terminal = Terminal::new(TestBackend::new(width, height))?;
    let mut ui = Ui::new(terminal, app, None);
    let dashboard = time_draws(&mut ui, frames)?;
    ui.app.view = View::Pairs;
    let pairs = time_draws(&mut ui, frames)?;
    ui.app.inspector.open(3);
    let pair_detail = time_draws(&mut ui, frames)?;
    let key_to_redraw = match live {
        Some((config, spec)) => Some(key_latency(width, height, config, spec)?),
        None => None,
    };
    Ok(UiBenchReport {
        width,
        height,
        history_steps: iterations * per,
        history_iterations: iterations,
        dashboard,
        pairs,
        pair_detail,
        key_to_redraw,
    })
}

/// Runs the engine to its update stage, then presses keys every 20 ms while it trains,
/// timing each key's frame (drain events, handle the key, redraw).
fn key_latency(width: u16, height: u16, mut config: Config, spec: BackendSpec) -> Result<Timing> {
    // The run it trains is a means, not a result: it goes to a directory removed after.
    let scratch = tempfile::tempdir()?;
    config.run.out_dir = scratch.path().to_path_buf();
    let app = App::new(config.live_params(), true);
    let handle = engine::spawn(engine::Start::New(Box::new(config)), spec)?;
    handle.commands.send(Command::Run)?;
    let mut ui = Ui::new(
        Terminal::new(TestBackend::new(width, height))?,
        app,
        Some(handle),
    );
    let deadline = Instant::now() + Duration::from_secs(1800);
    while ui.app.pipeline.stage != Some(Stage::Update) {
        ui.frame(None)?;
        if Instant::now() > deadline || ui.app.run.last_error.is_some() {
            bail!(
                "the engine did not reach the update stage: {:?}",
                ui.app.run.last_error
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let keys = [KeyCode::Tab, KeyCode::Char('j'), KeyCode::Char('k')];
    let mut ms = vec![];
    let mut n = 0;
    while ui.app.pipeline.stage == Some(Stage::Update) && ms.len() < 2000 {
        let key = CtEvent::Key(KeyEvent::from(keys[n % keys.len()]));
        n += 1;
        let t = Instant::now();
        ui.frame(Some(key))?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(e) = ui.engine() {
        let _ = e.commands.send(Command::Quit);
    }
    // Let it stop writing before its directory goes.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !matches!(ui.app.run.state, EngineState::Finished { .. }) && Instant::now() < deadline {
        ui.frame(None)?;
        std::thread::sleep(Duration::from_millis(20));
    }
    if ms.is_empty() {
        bail!("the update stage ended before any key was timed");
    }
    Ok(Timing::of(ms))
}
