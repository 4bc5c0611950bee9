//! The TUI's shared state and its two pure transitions: an engine [`Event`] is folded into
//! the engine's copy and dispatched to the panels; a key press is looked up in the key table
//! and yields the [`Command`]s to send. No terminal, no engine.

use crossterm::event::{KeyEvent, KeyModifiers};

use super::keys::{self, Act};
use super::panels::eval_charts::EvalHistory;
use super::panels::log::LogPanel;
use super::panels::loss_chart::LossChart;
use super::panels::metrics_table::MetricsTable;
use super::panels::pair_inspector::PairInspector;
use super::panels::pair_list::PairList;
use super::panels::params_popup::{FormOutcome, ParamsForm};
use super::panels::pipeline_bar::PipelineBar;
use super::panels::rank_desk::RankDesk;
pub use super::state::{Action, EngineState, Popup, RunInfo, View};
use crate::engine::{Command, Event, LiveParams, LogLine, Stage};
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

    /// Handles one key; returns what the main loop must do.
    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let local = if self.inspecting() {
            Some(keys::Context::Inspector)
        } else if self.ranking() {
            Some(keys::Context::Ranking)
        } else {
            None
        };
        let act = keys::lookup(&key, local);
        // Ctrl-C quits from anywhere, popups included.
        if act == Some(Act::Quit) && key.modifiers.contains(KeyModifiers::CONTROL) {
            return self.quit();
        }
        match &mut self.popup {
            Some(Popup::Help) => {
                if matches!(act, Some(Act::Back | Act::Help | Act::Quit | Act::Open)) {
                    self.popup = None;
                }
                return vec![];
            }
            Some(Popup::ConfirmStop) => {
                self.popup = None;
                return if key.code == crossterm::event::KeyCode::Char('y') && self.live() {
                    self.run.state = EngineState::Quitting;
                    self.log
                        .info("stopping the run after its current unit of work");
                    vec![Action::Send(Command::Quit)]
                } else {
                    vec![]
                };
            }
            Some(Popup::Params(form)) => {
                return match form.key(key.code) {
                    FormOutcome::Editing => vec![],
                    FormOutcome::Cancel => {
                        self.popup = None;
                        vec![]
                    }
                    FormOutcome::Submit(cmd) => {
                        self.popup = None;
                        vec![Action::Send(cmd)]
                    }
                };
            }
            None => {}
        }
        act.map_or_else(Vec::new, |act| self.perform(act))
    }

    /// Does what a key table action asks, where the user is.
    fn perform(&mut self, act: Act) -> Vec<Action> {
        let send = |live: bool, c: Command| if live { vec![Action::Send(c)] } else { vec![] };
        let live = self.live();
        let inspecting = self.inspecting();
        if self.ranking()
            && let Some(verdict) = self.desk.key(act)
        {
            return verdict.map_or_else(Vec::new, |v| send(live, Command::Rank(v)));
        }
        let it = self.selected_iteration;
        match act {
            Act::Quit => return self.quit(),
            Act::Help => self.popup = Some(Popup::Help),
            Act::StepStage => return send(live, Command::StepStage),
            Act::StepBatch => return send(live, Command::StepBatch),
            Act::Run => return send(live, Command::Run),
            Act::Pause => return send(live, Command::Pause),
            Act::RunOrPause => {
                let running = self.run.state == EngineState::Running;
                return send(
                    live,
                    if running {
                        Command::Pause
                    } else {
                        Command::Run
                    },
                );
            }
            Act::ToggleAutoPause if live => {
                self.run.auto_pause = !self.run.auto_pause;
                return send(live, Command::SetAutoPause(self.run.auto_pause));
            }
            Act::EditParams if live => {
                self.popup = Some(Popup::Params(ParamsForm::new(self.run.params)))
            }
            Act::ToggleAutoPause | Act::EditParams => {}
            Act::NextView => self.cycle_view(1),
            Act::PrevView => self.cycle_view(-1),
            Act::Dashboard => self.set_view(View::Dashboard),
            Act::Pairs => self.set_view(View::Pairs),
            Act::Log => self.set_view(View::Log),
            Act::Ranking if self.desk.active => self.set_view(View::Rank),
            Act::Ranking => {}
            Act::Left | Act::PrevPair if inspecting => self.step_pair(false),
            Act::Right | Act::NextPair if inspecting => self.step_pair(true),
            Act::Left | Act::PrevIteration => self.browse(-1),
            Act::Right | Act::NextIteration => self.browse(1),
            Act::Tokens if inspecting => self.inspector.token_view = !self.inspector.token_view,
            Act::PrevPair | Act::NextPair | Act::Tokens => {}
            Act::Up if inspecting => self.inspector.scroll_by(-1),
            Act::Down if inspecting => self.inspector.scroll_by(1),
            Act::PageUp if inspecting => self.inspector.scroll_by(-10),
            Act::PageDown if inspecting => self.inspector.scroll_by(10),
            Act::Top if inspecting => self.inspector.scroll = 0,
            Act::Up => self.move_cursor(-1),
            Act::Down => self.move_cursor(1),
            Act::PageUp => self.move_cursor(-10),
            Act::PageDown => self.move_cursor(10),
            Act::Top => self.move_cursor(isize::MIN / 2),
            Act::Bottom => self.move_cursor(isize::MAX / 2),
            Act::Open if self.view == View::Pairs && self.pairs.count(it) > 0 => {
                self.inspector.open(self.pairs.cursor)
            }
            Act::Open => {}
            Act::Sort => self.pairs.cycle_sort(),
            Act::Resume if self.read_only() && self.run.resumable => return vec![Action::Resume],
            Act::Resume => {}
            Act::StopRun if live && self.run.attached.is_some() => {
                self.popup = Some(Popup::ConfirmStop)
            }
            Act::StopRun => {}
            Act::Back if inspecting => self.inspector.close(),
            Act::Back if self.view != View::Dashboard => self.view = View::Dashboard,
            Act::Back => {}
            // Outside the Rank view (or with nothing asked) these keys do nothing.
            Act::MakeBest
            | Act::MakeWorst
            | Act::MoveUp
            | Act::MoveDown
            | Act::SkipPrompt
            | Act::PrevPrompt
            | Act::HandOff => {}
        }
        vec![]
    }

    /// First `q`: ask the engine to stop after its current unit. Second: leave at once
    /// (every file is written atomically, so abandoning loses nothing already written).
    /// A viewer detaches at once, whatever the run does.
    fn quit(&mut self) -> Vec<Action> {
        if self.run.attached.is_some() {
            return vec![Action::Exit];
        }
        if self.live() {
            self.run.state = EngineState::Quitting;
            self.log
                .info("quitting after the current unit of work (q again to leave now)");
            vec![Action::Send(Command::Quit)]
        } else {
            vec![Action::Exit]
        }
    }

    fn step_pair(&mut self, forward: bool) {
        let n = self.pairs.count(self.selected_iteration);
        self.pairs.cursor = self.inspector.step(forward, n);
    }

    /// Leaving the pair list closes an open pair.
    fn set_view(&mut self, view: View) {
        if view != View::Pairs {
            self.inspector.close();
        }
        self.view = view;
    }

    fn cycle_view(&mut self, delta: isize) {
        let views = self.views();
        let i = views.iter().position(|v| *v == self.view).unwrap_or(0) as isize;
        let n = views.len() as isize;
        self.set_view(views[((i + delta).rem_euclid(n)) as usize]);
    }

    fn move_cursor(&mut self, delta: isize) {
        match self.view {
            View::Pairs => self.pairs.move_cursor(self.selected_iteration, delta),
            View::Log | View::Dashboard => self.log.scroll_by(delta),
            View::Rank => self.desk.move_cursor(delta),
        }
    }
}
