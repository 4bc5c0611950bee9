//! The stages of an iteration: what the engine runs and what `state.json` records.

use serde::{Deserialize, Serialize};

/// The six stages of one iteration, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

    /// Position in [`Stage::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn next(self) -> Option<Stage> {
        Self::ALL.get(self.index() + 1).copied()
    }
}
