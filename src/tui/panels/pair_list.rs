//! The selected iteration's chosen/rejected pairs as a sortable table.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use std::collections::BTreeMap;

use crate::run::records::{PairLogps, PairRecord};

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

    pub fn next(self) -> Self {
        match self {
            PairSort::Prompt => PairSort::ScoreGap,
            PairSort::ScoreGap => PairSort::RewardMargin,
            PairSort::RewardMargin => PairSort::Prompt,
        }
    }
}

/// What the engine reported of one iteration's pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IterationPairs {
    pub pairs: Vec<PairRecord>,
    /// Measured after the update; absent until then.
    pub logps: Option<Vec<PairLogps>>,
}

/// A pair in display order: (index in pairs.jsonl, pair, its log-probs once measured).
pub type PairRow<'a> = (usize, &'a PairRecord, Option<&'a PairLogps>);

#[derive(Debug, Clone, PartialEq)]
pub struct PairList {
    /// By iteration: the engine's copy.
    pub data: BTreeMap<usize, IterationPairs>,
    /// View state.
    pub sort: PairSort,
    pub cursor: usize,
}

impl Default for PairList {
    fn default() -> Self {
        Self {
            data: BTreeMap::new(),
            sort: PairSort::ScoreGap,
            cursor: 0,
        }
    }
}

impl PairList {
    pub fn set_pairs(&mut self, iteration: usize, pairs: Vec<PairRecord>) {
        self.data.entry(iteration).or_default().pairs = pairs;
    }

    pub fn set_logps(&mut self, iteration: usize, logps: Vec<PairLogps>) {
        self.data.entry(iteration).or_default().logps = Some(logps);
    }

    pub fn count(&self, iteration: usize) -> usize {
        self.data.get(&iteration).map_or(0, |d| d.pairs.len())
    }

    pub fn cycle_sort(&mut self) {
        self.sort = self.sort.next();
        self.cursor = 0;
    }

    /// Moves the cursor by `delta` within `iteration`'s pairs.
    pub fn move_cursor(&mut self, iteration: usize, delta: isize) {
        let n = self.count(iteration);
        if n > 0 {
            let next = (self.cursor as isize).saturating_add(delta);
            self.cursor = next.clamp(0, n as isize - 1) as usize;
        }
    }

    /// `iteration`'s pairs in display order.
    pub fn sorted(&self, iteration: usize) -> Vec<PairRow<'_>> {
        let Some(data) = self.data.get(&iteration) else {
            return vec![];
        };
        let mut rows: Vec<PairRow> = data
            .pairs
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p, data.logps.as_ref().and_then(|l| l.get(i))))
            .collect();
        let desc = |a: f64, b: f64| b.total_cmp(&a);
        match self.sort {
            PairSort::Prompt => {}
            PairSort::ScoreGap => rows.sort_by(|a, b| desc(a.1.score_gap(), b.1.score_gap())),
            PairSort::RewardMargin => rows.sort_by(|a, b| {
                let m = |l: Option<&PairLogps>| l.map_or(f64::NEG_INFINITY, |l| l.reward_margin());
                desc(m(a.2), m(b.2))
            }),
        }
        rows
    }

    /// `any_iteration`: whether some iteration has pairs (for the empty message).
    pub fn render(&self, frame: &mut Frame, area: Rect, iteration: usize, any_iteration: bool) {
        let rows = self.sorted(iteration);
        let measured = rows.iter().any(|r| r.2.is_some());
        let title = format!(
            "pairs, iteration {iteration} ({}), sorted by {}{}",
            rows.len(),
            self.sort.label(),
            if measured {
                ""
            } else {
                "; margins after the update"
            }
        );
        let block = Block::bordered().title(title);
        if rows.is_empty() {
            let msg = if any_iteration {
                "no pairs for this iteration yet (← → to browse)"
            } else {
                "no pairs yet: they appear after the select-pairs stage"
            };
            frame.render_widget(Paragraph::new(msg).block(block), area);
            return;
        }
        let header = Row::new(["#", "gap", "margin", "chosen", "rejected", "prompt"]).bold();
        let table_rows = rows.iter().map(|(i, p, l)| {
            Row::new([
                Cell::from(format!("{}", i + 1)),
                Cell::from(format!("{:.3}", p.score_gap())),
                Cell::from(l.map_or("—".into(), |l| format!("{:+.3}", l.reward_margin()))),
                Cell::from(format!("{:.3}", p.chosen_score)),
                Cell::from(format!("{:.3}", p.rejected_score)),
                Cell::from(p.prompt.replace('\n', "⏎ ")),
            ])
        });
        let widths = [
            Constraint::Length(4),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Min(10),
        ];
        let table = Table::new(table_rows, widths)
            .header(header)
            .block(block)
            .row_highlight_style(Style::new().reversed())
            .highlight_symbol("▶ ");
        let mut state = TableState::default().with_selected(Some(self.cursor));
        frame.render_stateful_widget(table, area, &mut state);
    }
}
