//! The TUI's state types besides [`super::app::App`]: the views, the engine's state as the
//! TUI knows it, the popups, and what the engine reported about the run.

use super::panels::params_popup::ParamsForm;
use crate::engine::{Command, LiveParams};

/// What a key press asks the main loop to do besides redrawing.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(Command),
    /// Leave the TUI now.
    Exit,
    /// Leave `inspect` and resume the run.
    Resume,
}

/// The top-level views, cycled with Tab. Rank is there only when the run ranks by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Pairs,
    Log,
    Rank,
}

impl View {
    pub const ALL: [View; 4] = [View::Dashboard, View::Pairs, View::Log, View::Rank];

    pub fn title(self) -> &'static str {
        match self {
            View::Dashboard => "Dashboard",
            View::Pairs => "Pairs",
            View::Log => "Log",
            View::Rank => "Rank",
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

#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    Help,
    Params(ParamsForm),
    /// `S` in a viewer: stop the run? (`y` confirms.)
    ConfirmStop,
}

/// What the engine reported about the run as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub state: EngineState,
    pub run_dir: String,
    pub backend: String,
    pub model: String,
    pub iterations: usize,
    pub params: LiveParams,
    pub auto_pause: bool,
    /// The engine's current error, until it runs again.
    pub last_error: Option<String>,
    /// Read-only on a run that stopped before its end: `R` resumes it.
    pub resumable: bool,
    /// A viewer attached to the run of this process id (`selm-tui attach`): `q` detaches.
    pub attached: Option<u32>,
}
