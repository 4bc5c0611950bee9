//! The TUI's state and its two pure transitions: an engine [`Event`] updates what is shown,
//! a key press changes the view and yields the [`Command`]s to send. No terminal, no engine.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeMap, VecDeque};

use crate::engine::{Command, Event, IterationSummary, LiveParams, PairLogps, PairView, Stage};
use crate::io::run_dir::CSV_COLUMNS;

/// Log lines kept in memory.
const LOG_CAP: usize = 1000;

/// What a key press asks the main loop to do besides redrawing.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(Command),
    /// Leave the TUI now.
    Exit,
}

/// The top-level views, cycled with Tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Pairs,
    Log,
}

impl View {
    pub const ALL: [View; 3] = [View::Dashboard, View::Pairs, View::Log];

    pub fn title(self) -> &'static str {
        match self {
            View::Dashboard => "Dashboard",
            View::Pairs => "Pairs",
            View::Log => "Log",
        }
    }
}

/// Orders of the pair list, cycled with `o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairSort {
    /// As selected (prompt order).
    Prompt,
    /// Ranker score gap, largest first.
    ScoreGap,
    /// Implicit reward margin, largest first (known after the update).
    RewardMargin,
}

impl PairSort {
    pub fn label(self) -> &'static str {
        match self {
            PairSort::Prompt => "prompt order",
            PairSort::ScoreGap => "score gap",
            PairSort::RewardMargin => "reward margin",
        }
    }

    fn next(self) -> Self {
        match self {
            PairSort::Prompt => PairSort::ScoreGap,
            PairSort::ScoreGap => PairSort::RewardMargin,
            PairSort::RewardMargin => PairSort::Prompt,
        }
    }
}

/// Whether the engine is working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    /// Loading the model and evaluating the starting point.
    Loading,
    Paused,
    Running,
    /// Asked to quit; finishing the current unit of work.
    Quitting,
    Finished {
        completed: bool,
    },
    /// A finished or interrupted run opened from its directory.
    ReadOnly,
}

/// Per-stage status in the pipeline bar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageStatus {
    pub done: usize,
    pub total: usize,
    pub finished: bool,
    pub summary: String,
}

/// One update step for the loss chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPoint {
    pub step: f64,
    pub iteration: usize,
    pub loss: f64,
    pub dpo: f64,
    pub optimism: f64,
}

/// What is known about one iteration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IterationData {
    pub pairs: Vec<PairView>,
    /// Measured after the update; absent until then.
    pub logps: Option<Vec<PairLogps>>,
    pub summary: Option<IterationSummary>,
}

/// The parameter popup: three text fields, validated on Enter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamsForm {
    /// alpha, beta, lr as typed.
    pub fields: [String; 3],
    pub focus: usize,
    pub error: Option<String>,
}

impl ParamsForm {
    pub const LABELS: [&'static str; 3] = ["alpha", "beta", "lr"];

    fn new(p: LiveParams) -> Self {
        Self {
            fields: [p.alpha, p.beta, p.lr].map(|v| v.to_string()),
            focus: 0,
            error: None,
        }
    }

    /// The command for the typed values, or an error naming the field.
    pub fn parse(&self) -> Result<Command, String> {
        let mut values = [0.0; 3];
        for (i, (text, label)) in self.fields.iter().zip(Self::LABELS).enumerate() {
            let v: f64 = text
                .trim()
                .parse()
                .map_err(|_| format!("{label}: `{}` is not a number", text.trim()))?;
            let ok = v.is_finite() && if i == 0 { v >= 0.0 } else { v > 0.0 };
            if !ok {
                let rule = if i == 0 { ">= 0" } else { "> 0" };
                return Err(format!("{label} must be {rule}, got {v}"));
            }
            values[i] = v;
        }
        Ok(Command::SetParams {
            alpha: Some(values[0]),
            beta: Some(values[1]),
            lr: Some(values[2]),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    Help,
    Params(ParamsForm),
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub state: EngineState,
    pub run_dir: String,
    pub backend: String,
    pub model: String,
    pub iterations: usize,
    pub params: LiveParams,
    pub auto_pause: bool,
    /// The iteration and stage the engine is on.
    pub iteration: usize,
    pub stage: Option<Stage>,
    pub stages: [StageStatus; 6],
    pub steps: Vec<StepPoint>,
    /// Evaluations by iteration (0 = the starting model).
    pub evals: Vec<IterationSummary>,
    /// The latest update's metrics, TRL-named.
    pub last_metrics: Vec<(String, f64)>,
    pub data: BTreeMap<usize, IterationData>,
    pub log: VecDeque<String>,
    pub last_error: Option<String>,
    pub view: View,
    pub popup: Option<Popup>,
    /// The iteration the histogram and the pair list show.
    pub selected_iteration: usize,
    /// Whether the selection follows the engine's iteration.
    pub follow: bool,
    pub pair_sort: PairSort,
    pub pair_cursor: usize,
    /// The pair open in the inspector (index into the sorted list).
    pub open_pair: Option<usize>,
    pub token_view: bool,
    pub detail_scroll: u16,
    /// Lines scrolled up from the log's end.
    pub log_scroll: usize,
    /// Seconds since start (set by the main loop; frozen in read-only mode).
    pub elapsed_s: f64,
}

impl App {
    pub fn new(params: LiveParams, auto_pause: bool) -> Self {
        Self {
            state: EngineState::Loading,
            run_dir: String::new(),
            backend: String::new(),
            model: String::new(),
            iterations: 0,
            params,
            auto_pause,
            iteration: 1,
            stage: None,
            stages: Default::default(),
            steps: vec![],
            evals: vec![],
            last_metrics: vec![],
            data: BTreeMap::new(),
            log: VecDeque::new(),
            last_error: None,
            view: View::Dashboard,
            popup: None,
            selected_iteration: 1,
            follow: true,
            pair_sort: PairSort::ScoreGap,
            pair_cursor: 0,
            open_pair: None,
            token_view: true,
            detail_scroll: 0,
            log_scroll: 0,
            elapsed_s: 0.0,
        }
    }

    pub fn read_only(&self) -> bool {
        self.state == EngineState::ReadOnly
    }

    pub fn push_log(&mut self, line: impl Into<String>) {
        if self.log.len() == LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(line.into());
    }

    /// Folds one engine event into the state.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Started {
                run_dir,
                backend,
                model,
                iterations,
                params,
            } => {
                self.push_log(format!("run directory {run_dir}"));
                self.run_dir = run_dir;
                self.backend = backend;
                self.model = model;
                self.iterations = iterations;
                self.params = params;
            }
            Event::StageStarted { iteration, stage } => {
                if iteration != self.iteration || stage == Stage::SamplePrompts {
                    self.stages = Default::default();
                }
                self.iteration = iteration;
                self.stage = Some(stage);
                if self.follow {
                    self.select_iteration(iteration);
                }
            }
            Event::Progress {
                stage, done, total, ..
            } => {
                let s = &mut self.stages[stage_index(stage)];
                s.done = done;
                s.total = total;
            }
            Event::StageFinished {
                iteration,
                stage,
                summary,
            } => {
                let s = &mut self.stages[stage_index(stage)];
                s.finished = true;
                s.summary = summary.clone();
                self.push_log(format!("iter {iteration} {}: {summary}", stage.label()));
            }
            Event::Metrics(row) => self.push_metrics(&row),
            Event::Pairs { iteration, pairs } => {
                self.data.entry(iteration).or_default().pairs = pairs;
            }
            Event::PairLogps { iteration, logps } => {
                self.data.entry(iteration).or_default().logps = Some(logps);
            }
            Event::Iteration(summary) => {
                self.push_log(format!(
                    "iter {} eval: kl {:.4}  high_reward_fraction {:.3}  reward/mean {:.3}",
                    summary.iteration,
                    summary.kl,
                    summary.high_reward_fraction,
                    summary.reward_mean
                ));
                self.push_eval(summary);
            }
            Event::ParamsChanged(p) => {
                self.push_log(format!(
                    "set alpha {} beta {} lr {} (from the next update)",
                    p.alpha, p.beta, p.lr
                ));
                self.params = p;
            }
            Event::Paused => {
                if self.state != EngineState::Quitting {
                    self.state = EngineState::Paused;
                }
            }
            Event::Resumed => {
                if self.state != EngineState::Quitting {
                    self.state = EngineState::Running;
                }
                // The engine is working again (a retry): the error is no longer current.
                self.last_error = None;
            }
            Event::Log(line) => self.push_log(line),
            Event::Error(e) => {
                self.push_log(format!("error: {e}"));
                self.last_error = Some(e);
            }
            Event::Finished { completed } => {
                self.push_log(if completed {
                    "run complete"
                } else {
                    "engine stopped"
                });
                self.state = EngineState::Finished { completed };
            }
        }
        if self.state == EngineState::Loading && !self.evals.is_empty() {
            self.state = EngineState::Paused;
        }
    }

    /// Adds one update's metrics row (also used when replaying metrics.jsonl).
    pub fn push_metrics(&mut self, row: &serde_json::Map<String, serde_json::Value>) {
        let get = |k: &str| row.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        self.steps.push(StepPoint {
            step: get("step"),
            iteration: get("iteration") as usize,
            loss: get("loss"),
            dpo: get("loss/dpo"),
            optimism: get("loss/optimism"),
        });
        // In metrics.csv's column order, which groups the TRL names.
        self.last_metrics = CSV_COLUMNS
            .iter()
            .filter(|k| !matches!(**k, "kind" | "iteration" | "batch" | "step"))
            .filter_map(|k| Some((k.to_string(), row.get(*k)?.as_f64()?)))
            .collect();
    }

    /// Records an iteration's evaluation (replacing an earlier one for the same iteration).
    pub fn push_eval(&mut self, summary: IterationSummary) {
        self.evals.retain(|s| s.iteration != summary.iteration);
        self.data.entry(summary.iteration).or_default().summary = Some(summary.clone());
        self.evals.push(summary);
        self.evals.sort_by_key(|s| s.iteration);
    }

    /// The iterations that can be browsed (0 = the starting model's evaluation).
    pub fn known_iterations(&self) -> Vec<usize> {
        self.data.keys().copied().collect()
    }

    fn select_iteration(&mut self, iteration: usize) {
        if iteration != self.selected_iteration {
            self.selected_iteration = iteration;
            self.pair_cursor = 0;
            self.open_pair = None;
            self.detail_scroll = 0;
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

    /// The selected iteration's pairs in display order: (index in pairs.jsonl, pair, logps).
    pub fn sorted_pairs(&self) -> Vec<(usize, &PairView, Option<&PairLogps>)> {
        let Some(data) = self.data.get(&self.selected_iteration) else {
            return vec![];
        };
        let mut rows: Vec<_> = data
            .pairs
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p, data.logps.as_ref().and_then(|l| l.get(i))))
            .collect();
        let desc = |a: f64, b: f64| b.total_cmp(&a);
        match self.pair_sort {
            PairSort::Prompt => {}
            PairSort::ScoreGap => rows.sort_by(|a, b| {
                desc(
                    a.1.chosen_score - a.1.rejected_score,
                    b.1.chosen_score - b.1.rejected_score,
                )
            }),
            PairSort::RewardMargin => rows.sort_by(|a, b| {
                let m = |l: Option<&PairLogps>| l.map_or(f64::NEG_INFINITY, |l| l.reward_margin());
                desc(m(a.2), m(b.2))
            }),
        }
        rows
    }

    fn pair_count(&self) -> usize {
        self.data
            .get(&self.selected_iteration)
            .map_or(0, |d| d.pairs.len())
    }

    /// Handles one key; returns what the main loop must do.
    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Action> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return self.quit();
        }
        match &mut self.popup {
            Some(Popup::Help) => {
                if matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter
                ) {
                    self.popup = None;
                }
                return vec![];
            }
            Some(Popup::Params(_)) => return self.params_key(key.code),
            None => {}
        }
        if self.open_pair.is_some()
            && let Some(actions) = self.detail_key(key.code)
        {
            return actions;
        }
        self.global_key(key.code)
    }

    fn global_key(&mut self, code: KeyCode) -> Vec<Action> {
        let live = !self.read_only()
            && !matches!(
                self.state,
                EngineState::Finished { .. } | EngineState::Quitting
            );
        let send = |c: Command| if live { vec![Action::Send(c)] } else { vec![] };
        match code {
            KeyCode::Char('q') => return self.quit(),
            KeyCode::Char('?') => self.popup = Some(Popup::Help),
            KeyCode::Char('s') => return send(Command::StepStage),
            KeyCode::Char('b') => return send(Command::StepBatch),
            KeyCode::Char('r') => return send(Command::Run),
            KeyCode::Char('p') => return send(Command::Pause),
            KeyCode::Char(' ') => {
                let cmd = if self.state == EngineState::Running {
                    Command::Pause
                } else {
                    Command::Run
                };
                return send(cmd);
            }
            KeyCode::Char('a') if live => {
                self.auto_pause = !self.auto_pause;
                return send(Command::SetAutoPause(self.auto_pause));
            }
            KeyCode::Char('e') if live => {
                self.popup = Some(Popup::Params(ParamsForm::new(self.params)))
            }
            KeyCode::Tab => self.cycle_view(1),
            KeyCode::BackTab => self.cycle_view(-1),
            KeyCode::Char('1') => self.view = View::Dashboard,
            KeyCode::Char('2') => self.view = View::Pairs,
            KeyCode::Char('3') => self.view = View::Log,
            KeyCode::Left | KeyCode::Char('h') | KeyCode::Char('[') => self.browse(-1),
            KeyCode::Right | KeyCode::Char('l') | KeyCode::Char(']') => self.browse(1),
            KeyCode::Char('o') => {
                self.pair_sort = self.pair_sort.next();
                self.pair_cursor = 0;
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_cursor(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_cursor(1),
            KeyCode::PageUp => self.move_cursor(-10),
            KeyCode::PageDown => self.move_cursor(10),
            KeyCode::Home | KeyCode::Char('g') => self.move_cursor(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_cursor(isize::MAX / 2),
            KeyCode::Enter if self.view == View::Pairs && self.pair_count() > 0 => {
                self.open_pair = Some(self.pair_cursor);
                self.detail_scroll = 0;
            }
            KeyCode::Esc if self.view != View::Dashboard => self.view = View::Dashboard,
            _ => {}
        }
        vec![]
    }

    /// Keys of the open pair inspector; `None` falls through to the global keys.
    fn detail_key(&mut self, code: KeyCode) -> Option<Vec<Action>> {
        let n = self.pair_count();
        match code {
            KeyCode::Esc | KeyCode::Backspace => self.open_pair = None,
            KeyCode::Char('t') => self.token_view = !self.token_view,
            KeyCode::Up | KeyCode::Char('k') => {
                self.detail_scroll = self.detail_scroll.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.detail_scroll = self.detail_scroll.saturating_add(1)
            }
            KeyCode::PageUp => self.detail_scroll = self.detail_scroll.saturating_sub(10),
            KeyCode::PageDown => self.detail_scroll = self.detail_scroll.saturating_add(10),
            KeyCode::Home | KeyCode::Char('g') => self.detail_scroll = 0,
            // Previous / next pair in the list order.
            KeyCode::Char('n')
            | KeyCode::Char('N')
            | KeyCode::Left
            | KeyCode::Right
            | KeyCode::Char('h')
            | KeyCode::Char('l') => {
                let forward = matches!(
                    code,
                    KeyCode::Char('n') | KeyCode::Right | KeyCode::Char('l')
                );
                let cur = self.open_pair.unwrap_or(0);
                let next = if forward {
                    (cur + 1).min(n.saturating_sub(1))
                } else {
                    cur.saturating_sub(1)
                };
                self.open_pair = Some(next);
                self.pair_cursor = next;
                self.detail_scroll = 0;
            }
            KeyCode::Tab | KeyCode::BackTab => {
                self.open_pair = None;
                return None;
            }
            _ => return None,
        }
        Some(vec![])
    }

    fn params_key(&mut self, code: KeyCode) -> Vec<Action> {
        let Some(Popup::Params(form)) = &mut self.popup else {
            return vec![];
        };
        match code {
            KeyCode::Esc => self.popup = None,
            KeyCode::Tab | KeyCode::Down => form.focus = (form.focus + 1) % 3,
            KeyCode::BackTab | KeyCode::Up => form.focus = (form.focus + 2) % 3,
            KeyCode::Backspace => {
                form.fields[form.focus].pop();
                form.error = None;
            }
            KeyCode::Char(c) if c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+') => {
                form.fields[form.focus].push(c);
                form.error = None;
            }
            KeyCode::Enter => match form.parse() {
                Ok(cmd) => {
                    self.popup = None;
                    return vec![Action::Send(cmd)];
                }
                Err(e) => form.error = Some(e),
            },
            _ => {}
        }
        vec![]
    }

    /// First `q`: ask the engine to stop after its current unit. Second: leave at once
    /// (every file is written atomically, so abandoning loses nothing already written).
    fn quit(&mut self) -> Vec<Action> {
        match self.state {
            EngineState::Loading | EngineState::Paused | EngineState::Running => {
                self.state = EngineState::Quitting;
                self.push_log("quitting after the current unit of work (q again to leave now)");
                vec![Action::Send(Command::Quit)]
            }
            _ => vec![Action::Exit],
        }
    }

    fn cycle_view(&mut self, delta: isize) {
        let i = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0) as isize;
        let n = View::ALL.len() as isize;
        self.view = View::ALL[((i + delta).rem_euclid(n)) as usize];
    }

    fn move_cursor(&mut self, delta: isize) {
        match self.view {
            View::Pairs => {
                let n = self.pair_count();
                if n > 0 {
                    let next = (self.pair_cursor as isize).saturating_add(delta);
                    self.pair_cursor = next.clamp(0, n as isize - 1) as usize;
                }
            }
            View::Log | View::Dashboard => {
                let next = (self.log_scroll as isize).saturating_sub(delta);
                self.log_scroll = next.clamp(0, self.log.len().saturating_sub(1) as isize) as usize;
            }
        }
    }
}

pub fn stage_index(stage: Stage) -> usize {
    Stage::ALL.iter().position(|s| *s == stage).expect("listed")
}

/// Every key, for the `?` overlay and the README.
pub const KEYS: &[(&str, &str)] = &[
    ("s", "step one stage"),
    ("b", "step one update mini-batch"),
    ("r", "run continuously"),
    ("p", "pause at the next safe point"),
    ("space", "run / pause"),
    ("a", "auto-pause between iterations on/off"),
    ("e", "edit alpha, beta, lr (next update on)"),
    ("Tab / S-Tab", "next / previous view (1 2 3: jump)"),
    ("← → / h l / [ ]", "previous / next iteration"),
    ("↑ ↓ / k j", "move / scroll"),
    ("PgUp PgDn g G", "page / top / bottom"),
    ("Enter", "open the selected pair"),
    ("o", "sort pairs: gap, margin, prompt order"),
    ("t", "token log-ratio view on/off (pair)"),
    ("n N", "next / previous pair (pair)"),
    ("Esc", "back / close"),
    ("?", "this help"),
    ("q / Ctrl-C", "quit (again: leave now)"),
];
