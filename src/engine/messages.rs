//! The typed messages between the engine thread and a front end (TUI or headless).

pub use crate::config::LiveParams;
pub use crate::external::wait::Wait;
pub use crate::run::Stage;
use crate::run::records::{
    Candidate, EvalFigures, IterationSummary, PairLogps, PairRecord, TrainRecord, f64_or_nan,
};
use serde::{Deserialize, Serialize};

// Every message is serde: viewers in other processes receive the same events and send the
// same commands over the run's control socket (`crate::control`).

/// Front end -> engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Run until the current stage finishes, then pause.
    StepStage,
    /// Run one update mini-batch (or, outside the update stage, one stage), then pause.
    StepBatch,
    /// Run until the end (or until paused, or until the iteration ends with auto-pause).
    Run,
    /// Pause at the next safe point (after the current unit of work).
    Pause,
    SetAutoPause(bool),
    /// New values, effective from the next update; recorded in the run history.
    SetParams {
        alpha: Option<f64>,
        beta: Option<f64>,
        lr: Option<f64>,
        /// Who asked (history.jsonl records it); the control socket sets it for viewers.
        origin: Origin,
    },
    /// The researcher's answer to a [`RankQuery`] (`rank.ranker = "human"`).
    Rank(Verdict),
    /// Stop after the current unit of work; what is written stays written.
    Quit,
}

/// Where a parameter change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The TUI of the process that runs the engine.
    Tui,
    /// A viewer attached through the control socket (`selm-tui attach`), by its process id.
    Attach { pid: u32 },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Tui => write!(f, "tui"),
            Origin::Attach { pid } => write!(f, "attach (pid {pid})"),
        }
    }
}

/// A prompt whose candidates wait for the researcher's ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankQuery {
    pub iteration: usize,
    /// The prompt's position among this iteration's prompts, and their number.
    pub index: usize,
    pub total: usize,
    pub prompt: String,
    /// With scores when the prompt was ranked before (the researcher went back).
    pub candidates: Vec<Candidate>,
}

/// What the researcher decided about the prompt a [`RankQuery`] showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Candidate indices from best to worst, each once; the first is chosen, the last
    /// rejected.
    Order { index: usize, order: Vec<usize> },
    /// No preference: the prompt gets no pair.
    Skip { index: usize },
    /// Back to the previous prompt, to rank it again.
    Back,
    /// The rest of this rank stage goes to `rank.fallback`.
    HandOff,
}

/// What a finished stage did, for the front ends to show as they like.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageSummary {
    SamplePrompts {
        prompts: usize,
    },
    Generate {
        responses: usize,
    },
    Rank {
        #[serde(deserialize_with = "f64_or_nan")]
        mean_score: f64,
    },
    SelectPairs {
        pairs: usize,
        without_preference: usize,
    },
    Update {
        updates: usize,
        #[serde(deserialize_with = "f64_or_nan")]
        mean_loss: f64,
    },
    SyncEval(EvalFigures),
}

impl std::fmt::Display for StageSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::SamplePrompts { prompts } => write!(f, "{prompts} prompts"),
            Self::Generate { responses } => write!(f, "{responses} responses"),
            Self::Rank { mean_score } => write!(f, "mean score {mean_score:.3}"),
            Self::SelectPairs {
                pairs,
                without_preference,
            } => write!(
                f,
                "{pairs} pairs ({without_preference} prompts without preference)"
            ),
            Self::Update { updates: 0, .. } => write!(f, "no updates (no pairs)"),
            Self::Update { updates, mean_loss } => {
                write!(f, "{updates} updates, mean loss {mean_loss:.4}")
            }
            Self::SyncEval(e) => write!(
                f,
                "kl {:.4}  high-reward {:.3}  reward {:.3}",
                e.kl, e.high_reward_fraction, e.reward_mean
            ),
        }
    }
}

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// A line for the log panel (TUI) or stdout (headless).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: Level,
    pub text: String,
}

impl LogLine {
    pub fn info(text: impl Into<String>) -> Self {
        Self {
            level: Level::Info,
            text: text.into(),
        }
    }

    pub fn warn(text: impl Into<String>) -> Self {
        Self {
            level: Level::Warn,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            level: Level::Error,
            text: text.into(),
        }
    }
}

/// Engine -> front end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Started {
        run_dir: String,
        backend: String,
        model: String,
        iterations: usize,
        params: LiveParams,
    },
    StageStarted {
        iteration: usize,
        stage: Stage,
    },
    Progress {
        iteration: usize,
        stage: Stage,
        done: usize,
        total: usize,
    },
    StageFinished {
        iteration: usize,
        stage: Stage,
        summary: StageSummary,
        /// Wall time of the stage (from its first unit in this process).
        seconds: f64,
    },
    /// One update's metrics (a row of metrics.jsonl).
    Metrics(TrainRecord),
    Pairs {
        iteration: usize,
        pairs: Vec<PairRecord>,
    },
    /// This iteration's pairs measured under the updated policy and the reference.
    PairLogps {
        iteration: usize,
        logps: Vec<PairLogps>,
    },
    /// The rank stage waits for the researcher (`rank.ranker = "human"`).
    RankQuery(RankQuery),
    Iteration(IterationSummary),
    ParamsChanged(LiveParams),
    /// Whether the engine pauses at each iteration's end.
    AutoPause(bool),
    Paused,
    Resumed,
    Log(LogLine),
    /// The current unit waits on something outside (a server starting, a batch of
    /// requests); sent about once a second while it does.
    Waiting(Wait),
    /// A stage failed; the engine pauses (nothing written is lost).
    Error(String),
    /// The run ended (all iterations done, or quit).
    Finished {
        completed: bool,
    },
}
