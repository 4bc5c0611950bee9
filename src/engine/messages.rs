//! The typed messages between the engine thread and a front end (TUI or headless).

use serde::Serialize;

/// The six stages of one iteration, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Stage {
    SamplePrompts,
    Generate,
    Rank,
    SelectPairs,
    Update,
    SyncEval,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Self::SamplePrompts,
        Self::Generate,
        Self::Rank,
        Self::SelectPairs,
        Self::Update,
        Self::SyncEval,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::SamplePrompts => "sample prompts",
            Self::Generate => "generate",
            Self::Rank => "rank",
            Self::SelectPairs => "select pairs",
            Self::Update => "update",
            Self::SyncEval => "sync + eval",
        }
    }

    pub fn next(self) -> Option<Stage> {
        let i = Self::ALL.iter().position(|s| *s == self).expect("listed");
        Self::ALL.get(i + 1).copied()
    }
}

/// Front end -> engine.
#[derive(Debug, Clone, PartialEq)]
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
    },
    /// Stop after the current unit of work; what is written stays written.
    Quit,
}

/// Values a front end displays.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LiveParams {
    pub alpha: f64,
    pub beta: f64,
    pub lr: f64,
}

/// One chosen/rejected pair as the inspector shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairView {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    pub reference_response: String,
    pub chosen_score: f64,
    pub rejected_score: f64,
    pub reference_score: f64,
}

/// End-of-iteration figures (iteration 0 is the starting model).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IterationSummary {
    pub iteration: usize,
    /// k1 estimate of KL(pi_theta || pi_ref) on held-out samples from pi_theta.
    pub kl: f64,
    pub high_reward_fraction: f64,
    #[serde(rename = "reward/mean")]
    pub reward_mean: f64,
    /// Counts of held-out rewards in ten bins over [0, 1].
    pub reward_histogram: [usize; 10],
    /// Mean ranker score of this iteration's generated candidates (under pi_ref).
    pub candidate_reward_mean: f64,
    pub pairs: usize,
    pub mean_loss: f64,
    pub eval_prompts: usize,
    pub eval_samples: usize,
    pub wall_s: f64,
}

/// Engine -> front end.
#[derive(Debug, Clone, PartialEq)]
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
        summary: String,
    },
    /// One update's TRL-named metrics.
    Metrics(serde_json::Map<String, serde_json::Value>),
    Pairs {
        iteration: usize,
        pairs: Vec<PairView>,
    },
    Iteration(IterationSummary),
    ParamsChanged(LiveParams),
    Paused,
    Resumed,
    Log(String),
    /// A stage failed; the engine pauses (nothing written is lost).
    Error(String),
    /// The run ended (all iterations done, or quit).
    Finished {
        completed: bool,
    },
}
