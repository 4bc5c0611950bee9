//! The researcher as the ranker (`rank.ranker = "human"`): the prompt the engine asked about,
//! its candidates in the order being built (best on top, worst at the bottom; y_ref and the
//! dataset's responses marked) and the highlighted candidate's full text.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};

use crate::engine::{RankQuery, Verdict};
use crate::run::records::{Candidate, DatasetLabel};
use crate::tui::keys::Act;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankDesk {
    /// The engine's open question; None when nothing waits.
    pub query: Option<RankQuery>,
    /// Whether this run ranks by hand (a question has come): shows the Rank tab.
    pub active: bool,
    /// Candidate indices, best first: the order being built.
    pub order: Vec<usize>,
    /// Position in `order` of the highlighted candidate.
    pub cursor: usize,
}

impl RankDesk {
    /// Opens `query`; candidates ranked before (going back) start in their earlier order.
    pub fn ask(&mut self, query: RankQuery) {
        let mut order: Vec<usize> = (0..query.candidates.len()).collect();
        let score = |i: &usize| query.candidates[*i].score.unwrap_or(f64::NEG_INFINITY);
        order.sort_by(|a, b| score(b).total_cmp(&score(a)));
        (self.order, self.cursor, self.active) = (order, 0, true);
        self.query = Some(query);
    }

    /// Closes the question (its stage is over, or it was answered).
    pub fn close(&mut self) {
        self.query = None;
    }

    pub fn move_cursor(&mut self, delta: isize) {
        if !self.order.is_empty() {
            let last = self.order.len() as isize - 1;
            self.cursor = (self.cursor as isize).saturating_add(delta).clamp(0, last) as usize;
        }
    }

    /// Moves the highlighted candidate `delta` places (up is negative); it stays highlighted.
    pub fn shift(&mut self, delta: isize) {
        if self.order.is_empty() {
            return;
        }
        let last = self.order.len() as isize - 1;
        let to = (self.cursor as isize + delta).clamp(0, last) as usize;
        let c = self.order.remove(self.cursor);
        self.order.insert(to, c);
        self.cursor = to;
    }

    /// The highlighted candidate to the top (`best`) or the bottom.
    pub fn make(&mut self, best: bool) {
        self.shift(if best { isize::MIN / 2 } else { isize::MAX / 2 });
    }

    /// The verdict a key asks for, closing the question; None when nothing is asked.
    pub fn answer(&mut self, verdict: fn(usize, Vec<usize>) -> Verdict) -> Option<Verdict> {
        let q = self.query.take()?;
        Some(verdict(q.index, std::mem::take(&mut self.order)))
    }

    /// A key in the Rank view: edits the order, or yields the verdict to send. None: not a
    /// ranking key.
    pub fn key(&mut self, act: Act) -> Option<Option<Verdict>> {
        match act {
            Act::Up => self.move_cursor(-1),
            Act::Down => self.move_cursor(1),
            Act::Top => self.move_cursor(isize::MIN / 2),
            Act::Bottom => self.move_cursor(isize::MAX / 2),
            Act::MoveUp => self.shift(-1),
            Act::MoveDown => self.shift(1),
            Act::MakeBest => self.make(true),
            Act::MakeWorst => self.make(false),
            Act::Open => return Some(self.answer(|index, order| Verdict::Order { index, order })),
            Act::SkipPrompt => return Some(self.answer(|index, _| Verdict::Skip { index })),
            Act::PrevPrompt => return Some(self.answer(|_, _| Verdict::Back)),
            Act::HandOff => return Some(self.answer(|_, _| Verdict::HandOff)),
            _ => return None,
        }
        Some(None)
    }

    pub fn render(&self, frame: &mut Frame, area: Rect) {
        let Some(q) = &self.query else {
            let msg = "No prompt waits for a ranking. With rank.ranker = \"human\" the rank \
                       stage stops at each prompt and asks here.";
            let block = Block::bordered().title("rank");
            frame.render_widget(
                Paragraph::new(msg).wrap(Wrap { trim: true }).block(block),
                area,
            );
            return;
        };
        let list_height = (self.order.len() as u16 + 3).min(area.height / 2);
        let [prompt, list, detail] = Layout::vertical([
            Constraint::Max(5),
            Constraint::Length(list_height),
            Constraint::Min(3),
        ])
        .areas(area);
        let title = format!(
            "rank: iteration {}, prompt {} of {}",
            q.iteration,
            q.index + 1,
            q.total
        );
        frame.render_widget(
            Paragraph::new(q.prompt.as_str())
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(title)),
            prompt,
        );
        self.render_list(frame, list, q);
        let Some(&c) = self.order.get(self.cursor) else {
            return;
        };
        let title = format!("candidate {} {}", c + 1, tags(&q.candidates[c]))
            .trim_end()
            .to_string();
        frame.render_widget(
            Paragraph::new(q.candidates[c].text.as_str())
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(title)),
            detail,
        );
    }

    fn render_list(&self, frame: &mut Frame, area: Rect, q: &RankQuery) {
        let n = self.order.len();
        let rows = self.order.iter().enumerate().map(|(pos, &c)| {
            let cand = &q.candidates[c];
            let place = match pos {
                0 => Cell::from("best").green().bold(),
                p if p + 1 == n => Cell::from("worst").red().bold(),
                p => Cell::from(format!("#{}", p + 1)),
            };
            Row::new([
                place,
                Cell::from(tags(cand)).fg(Color::Cyan),
                Cell::from(cand.text.replace('\n', "⏎ ")),
            ])
        });
        let widths = [
            Constraint::Length(6),
            Constraint::Length(11),
            Constraint::Min(10),
        ];
        let table = Table::new(rows, widths)
            .header(Row::new(["place", "", "candidate (best on top)"]).bold())
            .block(Block::bordered())
            .row_highlight_style(Style::new().reversed())
            .highlight_symbol("▶ ");
        let mut state = TableState::default().with_selected(Some(self.cursor));
        frame.render_stateful_widget(table, area, &mut state);
    }
}

/// What a candidate is besides a sample: y_ref, or one of the dataset's responses.
fn tags(c: &Candidate) -> &'static str {
    match (c.is_reference, c.dataset) {
        (true, _) => "[y_ref]",
        (_, Some(DatasetLabel::Chosen)) => "[chosen]",
        (_, Some(DatasetLabel::Rejected)) => "[rejected]",
        _ => "",
    }
}
