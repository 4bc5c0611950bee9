//! The TUI's shared state and its two pure transitions: an engine [`Event`] is folded into
//! the engine's copy and dispatched to the panels; a key press is looked up in the key table
//! and yields the [`Command`]s to send. No terminal, no engine.

mod keypress;

use super::panels::eval_charts::EvalHistory;
use super::panels::log::LogPanel;
use super::panels::loss_chart::LossChart;
use super::panels::metrics_table::MetricsTable;
use super::panels::pair_inspector::PairInspector;
use super::panels::pair_list::PairList;
use super::panels::pipeline_bar::PipelineBar;
use super::panels::rank_desk::RankDesk;
pub use super::state::{Action, EngineState, Popup, RunInfo, View};
use crate::engine::{Event, LiveParams, LogLine, Stage};
use crate::run::records::IterationSummary;

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub run: RunInfo,
    // View state shared by the panels.
    pub view: View,
    pub popup: Option<Popup>,
    /// The iteration the histogram and the pair list show.
    pub selected_iteration: usize,
    /// Whether the selection follows the engine's iteration.
    pub follow: bool,
    /// Seconds since start (set by the main loop; frozen in read-only mode).
    pub elapsed_s: f64,
    // The panels.
    pub pipeline: PipelineBar,
    pub loss: LossChart,
    pub evals: EvalHistory,
    pub metrics: MetricsTable,
    pub log: LogPanel,
    pub pairs: PairList,
    pub inspector: PairInspector,
    pub desk: RankDesk,
}

impl App {
    pub fn new(params: LiveParams, auto_pause: bool) -> Self {
        Self {
            run: RunInfo {
                state: EngineState::Loading,
                run_dir: String::new(),
                backend: String::new(),
                model: String::new(),
                iterations: 0,
                params,
                auto_pause,
                last_error: None,
                resumable: false,
                attached: None,
            },
            view: View::Dashboard,
            popup: None,
            selected_iteration: 1,
            follow: true,
            elapsed_s: 0.0,
            pipeline: PipelineBar {
                iteration: 1,
                ..PipelineBar::default()
            },
            loss: LossChart::default(),
            evals: EvalHistory::default(),
            metrics: MetricsTable::default(),
            log: LogPanel::default(),
            pairs: PairList::default(),
            inspector: PairInspector::default(),
            desk: RankDesk::default(),
        }
    }

    /// This state (the run's files so far, replayed) becomes a viewer's of the live run of
    /// process `pid`: live events follow, and `q` detaches.
    pub fn attach(&mut self, pid: u32) {
        self.run.state = EngineState::Loading;
        self.run.attached = Some(pid);
        self.run.resumable = false;
        self.follow = true;
        self.log = LogPanel::default();
        self.log.info(format!(
            "attached to the run of pid {pid}: q detaches (the run goes on), S stops it"
        ));
    }

    pub fn read_only(&self) -> bool {
        self.run.state == EngineState::ReadOnly
    }

    /// Whether commands reach a working engine.
    fn live(&self) -> bool {
        matches!(
            self.run.state,
            EngineState::Loading | EngineState::Paused | EngineState::Running
        )
    }

    /// Folds one engine event into the state.
    pub fn apply(&mut self, event: Event) {
        // A wait ends with whatever the engine says next.
        let waiting = matches!(event, Event::Waiting(_) | Event::Log(_));
        if !waiting {
            self.pipeline.waiting = None;
        }
        match event {
            Event::Started {
                run_dir,
                backend,
                model,
                iterations,
                params,
            } => {
                self.log.info(format!("run directory {run_dir}"));
                let run = &mut self.run;
                (run.run_dir, run.backend, run.model) = (run_dir, backend, model);
                (run.iterations, run.params) = (iterations, params);
            }
            Event::StageStarted { iteration, stage } => {
                self.pipeline.stage_started(iteration, stage);
                if self.follow {
                    self.select_iteration(iteration);
                }
            }
            Event::Progress {
                stage, done, total, ..
            } => self.pipeline.progress(stage, done, total),
            Event::StageFinished {
                iteration,
                stage,
                summary,
                seconds,
            } => {
                if stage == Stage::Rank {
                    self.desk.close();
                    if self.view == View::Rank {
                        self.view = View::Dashboard;
                    }
                }
                self.pipeline.stage_finished(stage, summary);
                self.log.info(format!(
                    "iter {iteration} {}: {summary} ({seconds:.1} s)",
                    stage.label()
                ));
            }
            // A viewer read the run's files after attaching: a step both there and live
            // shows once.
            Event::Metrics(record) if self.run.attached.is_some() && self.loss.has(&record) => {}
            Event::Metrics(record) => {
                self.loss.push(&record);
                self.metrics.push(&record);
            }
            Event::Pairs { iteration, pairs } => self.pairs.set_pairs(iteration, pairs),
            Event::PairLogps { iteration, logps } => self.pairs.set_logps(iteration, logps),
            Event::RankQuery(query) => {
                self.desk.ask(query);
                if self.popup.is_none() {
                    self.set_view(View::Rank);
                }
            }
            Event::Iteration(summary) => {
                let e = summary.eval;
                self.log.info(format!(
                    "iter {} eval: kl {:.4}  high_reward_fraction {:.3}  reward/mean {:.3}",
                    summary.iteration, e.kl, e.high_reward_fraction, e.reward_mean
                ));
                self.evals.push(summary);
            }
            Event::ParamsChanged(p) => {
                self.log.info(format!(
                    "set alpha {} beta {} lr {} (from the next update)",
                    p.alpha, p.beta, p.lr
                ));
                self.run.params = p;
            }
            Event::AutoPause(on) => self.run.auto_pause = on,
            Event::Paused => self.set_state(EngineState::Paused),
            Event::Resumed => {
                self.set_state(EngineState::Running);
                // The engine is working again (a retry): the error is no longer current.
                self.run.last_error = None;
            }
            Event::Log(line) => self.log.push(line),
            Event::Waiting(wait) => self.pipeline.waiting = Some(wait),
            Event::Error(e) => {
                self.log.push(LogLine::error(e.clone()));
                self.run.last_error = Some(e);
            }
            Event::Finished { completed } => {
                self.log.info(if completed {
                    "run complete"
                } else {
                    "engine stopped"
                });
                self.run.state = EngineState::Finished { completed };
            }
        }
        if self.run.state == EngineState::Loading && !self.evals.evals.is_empty() {
            self.run.state = EngineState::Paused;
        }
    }

    /// Paused / running as the engine reports it; a requested quit stays.
    fn set_state(&mut self, state: EngineState) {
        if self.run.state != EngineState::Quitting {
            self.run.state = state;
        }
    }

    /// The selected iteration's evaluation, or the latest one.
    pub fn selected_eval(&self) -> Option<&IterationSummary> {
        self.evals
            .get(self.selected_iteration)
            .or_else(|| self.evals.evals.last())
    }

    /// The iterations that can be browsed (0 = the starting model's evaluation).
    pub fn known_iterations(&self) -> Vec<usize> {
        let mut known: Vec<usize> = self.pairs.data.keys().copied().collect();
        known.extend(self.evals.evals.iter().map(|s| s.iteration));
        known.sort_unstable();
        known.dedup();
        known
    }

    fn select_iteration(&mut self, iteration: usize) {
        if iteration != self.selected_iteration {
            self.selected_iteration = iteration;
            self.pairs.cursor = 0;
            self.inspector.close();
        }
    }

    /// Steps the selected iteration by `delta` among the known ones.
    fn browse(&mut self, delta: isize) {
        let known = self.known_iterations();
        if known.is_empty() {
            return;
        }
        let pos = known
            .iter()
            .position(|&i| i >= self.selected_iteration)
            .unwrap_or(known.len() - 1);
        let next = (pos as isize + delta).clamp(0, known.len() as isize - 1) as usize;
        self.select_iteration(known[next]);
        // Following resumes once the user is back on the newest iteration.
        self.follow = next + 1 == known.len();
    }

    /// Whether the pair inspector is what the screen shows.
    pub fn inspecting(&self) -> bool {
        self.view == View::Pairs && self.inspector.open.is_some()
    }

    /// Whether a prompt waiting for the researcher's ranking is on screen.
    pub fn ranking(&self) -> bool {
        self.view == View::Rank && self.desk.query.is_some()
    }

    /// The views the tabs offer: Rank once the run has asked for a ranking.
    pub fn views(&self) -> &'static [View] {
        if self.desk.active {
            &View::ALL
        } else {
            &View::ALL[..3]
        }
    }

    /// Leaving the pair list closes an open pair.
    fn set_view(&mut self, view: View) {
        if view != View::Pairs {
            self.inspector.close();
        }
        self.view = view;
    }
}
