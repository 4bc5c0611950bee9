//! The TUI's second pure transition: a key press, looked up in the key table, changes the
//! view state and yields the commands to send.

use crossterm::event::{KeyEvent, KeyModifiers};

use super::{Action, App, EngineState, Popup, View};
use crate::engine::Command;
use crate::tui::keys::{self, Act};
use crate::tui::panels::params_popup::{FormOutcome, ParamsForm};

impl App {
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
