//! The typed messages between the engine thread and a front end (TUI or headless).

use serde::{Deserialize, Serialize};

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

    /// For narrow displays.
    pub fn short_label(self) -> &'static str {
        match self {
            Self::SamplePrompts => "sample",
            Self::Generate => "generate",
            Self::Rank => "rank",
            Self::SelectPairs => "select",
            Self::Update => "update",
            Self::SyncEval => "sync+eval",
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiveParams {
    pub alpha: f64,
    pub beta: f64,
    pub lr: f64,
}

/// One chosen/rejected pair as the inspector shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairView {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    pub reference_response: String,
    pub chosen_score: f64,
    pub rejected_score: f64,
    pub reference_score: f64,
}

/// One response's tokens with their log-probs under pi_theta and pi_ref.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseLogps {
    /// Each token decoded on its own.
    pub tokens: Vec<String>,
    pub policy: Vec<f32>,
    pub reference: Vec<f32>,
}

impl ResponseLogps {
    /// `log pi_theta(y|x)`.
    pub fn policy_sum(&self) -> f64 {
        self.policy.iter().map(|&x| x as f64).sum()
    }

    /// `log pi_ref(y|x)`.
    pub fn reference_sum(&self) -> f64 {
        self.reference.iter().map(|&x| x as f64).sum()
    }

    /// DPO's implicit reward `beta * (log pi_theta(y|x) - log pi_ref(y|x))`.
    pub fn implicit_reward(&self, beta: f64) -> f64 {
        beta * (self.policy_sum() - self.reference_sum())
    }

    /// Per-token `log pi_theta - log pi_ref`.
    pub fn log_ratios(&self) -> impl Iterator<Item = f64> + '_ {
        self.policy
            .iter()
            .zip(&self.reference)
            .map(|(&p, &r)| p as f64 - r as f64)
    }
}

/// A pair measured after the iteration's update, before the reference sync
/// (one line of `iter-NNN/pair_logps.jsonl`, in the order of `pairs.jsonl`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairLogps {
    pub beta: f64,
    pub chosen: ResponseLogps,
    pub rejected: ResponseLogps,
    pub y_ref: ResponseLogps,
}

impl PairLogps {
    /// Implicit reward margin `r(chosen) - r(rejected)`.
    pub fn reward_margin(&self) -> f64 {
        self.chosen.implicit_reward(self.beta) - self.rejected.implicit_reward(self.beta)
    }
}

/// End-of-iteration figures (iteration 0 is the starting model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationSummary {
    pub iteration: usize,
    /// k1 estimate of KL(pi_theta || pi_ref) on held-out samples from pi_theta.
    pub kl: f64,
    pub high_reward_fraction: f64,
    #[serde(rename = "reward/mean")]
    pub reward_mean: f64,
    /// Counts of held-out rewards in ten bins over [0, 1].
    pub reward_histogram: [usize; 10],
    /// The score range the ten bins split (`rank.score_range`).
    #[serde(default = "unit_range")]
    pub histogram_range: [f64; 2],
    /// Mean ranker score of this iteration's generated candidates (under pi_ref).
    #[serde(deserialize_with = "f64_or_nan")]
    pub candidate_reward_mean: f64,
    pub pairs: usize,
    #[serde(deserialize_with = "f64_or_nan")]
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
    /// This iteration's pairs measured under the updated policy and the reference.
    PairLogps {
        iteration: usize,
        logps: Vec<PairLogps>,
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

fn unit_range() -> [f64; 2] {
    [0.0, 1.0]
}

/// serde_json writes NaN as `null`; read it back as NaN.
pub fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
