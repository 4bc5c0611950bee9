//! The compare TUI's state and its one transition, a key press. Its keys are its own (the
//! run TUI's table does not apply: nothing runs here), listed once in [`KEYS`] for the footer.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::comparison::Comparison;

/// The compare views, cycled with Tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareView {
    /// Per-iteration curves of the held-out figures.
    Curves,
    /// The last iteration: mean +- sd per group, differences to the baseline.
    Final,
    /// Held-out reward histograms of one iteration, the groups overlaid.
    Rewards,
    /// Implicit rewards of chosen, rejected and y_ref at one iteration.
    Implicit,
}

impl CompareView {
    pub const ALL: [CompareView; 4] = [
        CompareView::Curves,
        CompareView::Final,
        CompareView::Rewards,
        CompareView::Implicit,
    ];

    pub fn title(self) -> &'static str {
        match self {
            CompareView::Curves => "Curves",
            CompareView::Final => "Final",
            CompareView::Rewards => "Rewards",
            CompareView::Implicit => "Implicit",
        }
    }

    /// Whether ←/→ choose an iteration here.
    pub fn has_iteration(self) -> bool {
        matches!(self, CompareView::Rewards | CompareView::Implicit)
    }
}

/// The footer: each key as written and what it does.
pub const KEYS: &[(&str, &str)] = &[
    ("Tab", "next view"),
    ("1-4", "view"),
    ("←/→", "iteration"),
    ("q", "quit"),
];

/// The comparison and what is on screen.
#[derive(Debug, Clone)]
pub struct CompareApp {
    pub cmp: Comparison,
    pub view: CompareView,
    /// The iteration the Rewards and Implicit views show.
    pub iteration: usize,
}

impl CompareApp {
    /// Opens on the curves, with the last iteration selected (where differences show most).
    pub fn new(cmp: Comparison) -> Self {
        let iteration = cmp.last_iteration();
        Self {
            cmp,
            view: CompareView::Curves,
            iteration,
        }
    }

    /// Applies a key; true when the TUI should close.
    pub fn handle_key(&mut self, key: KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => return true,
            KeyCode::Char('q') | KeyCode::Esc => return true,
            KeyCode::Tab => self.cycle(1),
            KeyCode::BackTab => self.cycle(CompareView::ALL.len() - 1),
            KeyCode::Char(c @ '1'..='4') => {
                self.view = CompareView::ALL[c as usize - '1' as usize];
            }
            KeyCode::Left | KeyCode::Char('h') => self.iteration = self.iteration.saturating_sub(1),
            KeyCode::Right | KeyCode::Char('l') => {
                self.iteration = (self.iteration + 1).min(self.cmp.last_iteration());
            }
            _ => {}
        }
        false
    }

    fn cycle(&mut self, by: usize) {
        let all = CompareView::ALL;
        let at = all.iter().position(|v| *v == self.view).unwrap_or(0);
        self.view = all[(at + by) % all.len()];
    }
}
