//! One pair opened: prompt, chosen, rejected and y_ref with their scores, implicit rewards
//! and log-probs, each token colored by its log-ratio log pi_theta - log pi_ref.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::pair_list::PairRow;
use crate::run::records::{PairLogps, PairRecord, ResponseLogps};

#[derive(Debug, Clone, PartialEq)]
pub struct PairInspector {
    /// The open pair: an index into the sorted list.
    pub open: Option<usize>,
    pub token_view: bool,
    pub scroll: u16,
}

impl Default for PairInspector {
    fn default() -> Self {
        Self {
            open: None,
            token_view: true,
            scroll: 0,
        }
    }
}

impl PairInspector {
    pub fn open(&mut self, index: usize) {
        self.open = Some(index);
        self.scroll = 0;
    }

    pub fn close(&mut self) {
        self.open = None;
        self.scroll = 0;
    }

    pub fn scroll_by(&mut self, delta: i32) {
        self.scroll = (self.scroll as i32 + delta).clamp(0, u16::MAX as i32) as u16;
    }

    /// Opens the next (`forward`) or previous of `count` pairs; returns the new index.
    pub fn step(&mut self, forward: bool, count: usize) -> usize {
        let cur = self.open.unwrap_or(0);
        let next = if forward {
            (cur + 1).min(count.saturating_sub(1))
        } else {
            cur.saturating_sub(1)
        };
        self.open(next);
        next
    }

    pub fn render(&self, frame: &mut Frame, area: Rect, rows: &[PairRow], iteration: usize) {
        let index = self.open.unwrap_or(0);
        let Some((i, pair, logps)) = rows.get(index.min(rows.len().saturating_sub(1))) else {
            frame.render_widget(Paragraph::new("no pair"), area);
            return;
        };
        let title = format!(
            "pair {} of {}, iteration {iteration}{}",
            i + 1,
            rows.len(),
            if self.token_view {
                "  (tokens colored by log π_θ − log π_ref)"
            } else {
                ""
            }
        );
        let lines = pair_lines(pair, *logps, self.token_view);
        frame.render_widget(
            Paragraph::new(lines)
                .block(Block::bordered().title(title))
                .wrap(Wrap { trim: false })
                .scroll((self.scroll, 0)),
            area,
        );
    }
}

/// The inspector's text: the prompt, then chosen, rejected and y_ref with their figures.
pub fn pair_lines<'a>(
    pair: &'a PairRecord,
    logps: Option<&'a PairLogps>,
    tokens: bool,
) -> Vec<Line<'a>> {
    let mut lines = vec![Line::from("prompt").bold().underlined()];
    lines.extend(pair.prompt.lines().map(Line::from));
    let beta = logps.map_or(f64::NAN, |l| l.beta);
    let parts = [
        (
            "chosen",
            &pair.chosen,
            pair.chosen_score,
            logps.map(|l| &l.chosen),
            Color::Green,
        ),
        (
            "rejected",
            &pair.rejected,
            pair.rejected_score,
            logps.map(|l| &l.rejected),
            Color::Red,
        ),
        (
            "y_ref",
            &pair.y_ref,
            pair.y_ref_score,
            logps.map(|l| &l.y_ref),
            Color::Blue,
        ),
    ];
    for (name, text, score, r, color) in parts {
        lines.push(Line::default());
        let mut head = vec![
            Span::from(name).bold().fg(color),
            Span::from(format!("  score {score:.3}")),
        ];
        match r {
            Some(r) => head.push(Span::from(format!(
                "  reward β·Δ {:+.4}  log π_θ {:.3}  log π_ref {:.3}",
                r.implicit_reward(beta),
                r.policy_sum(),
                r.reference_sum()
            ))),
            None => head.push(Span::from("  (log-probs after the update)").dark_gray()),
        }
        lines.push(Line::from(head));
        match r {
            Some(r) if tokens => lines.extend(token_lines(r)),
            _ => lines.extend(text.lines().map(Line::from)),
        }
    }
    if tokens && logps.is_some() {
        lines.push(Line::default());
        lines.push(Line::from(vec![
            Span::from("log-ratio: "),
            Span::from(" < -1 ").on_red().black(),
            Span::from(" < -0.1 ").light_red(),
            Span::from(" ~0 "),
            Span::from(" > 0.1 ").light_green(),
            Span::from(" > 1 ").on_green().black(),
        ]));
    }
    lines
}

/// A response as colored token spans, split into lines at newline tokens.
fn token_lines(r: &ResponseLogps) -> Vec<Line<'static>> {
    let mut lines = vec![];
    let mut spans = vec![];
    for (tok, ratio) in r.tokens.iter().zip(r.log_ratios()) {
        let style = ratio_style(ratio);
        let mut parts = tok.split('\n').peekable();
        while let Some(part) = parts.next() {
            if !part.is_empty() {
                spans.push(Span::styled(part.to_string(), style));
            }
            if parts.peek().is_some() {
                spans.push(Span::styled("⏎", style));
                lines.push(Line::from(std::mem::take(&mut spans)));
            }
        }
    }
    if !spans.is_empty() || lines.is_empty() {
        lines.push(Line::from(spans));
    }
    lines
}

/// The color band of a token's log-ratio.
pub fn ratio_style(ratio: f64) -> Style {
    match ratio {
        r if r <= -1.0 => Style::new().bg(Color::Red).fg(Color::Black),
        r if r <= -0.1 => Style::new().fg(Color::LightRed),
        r if r >= 1.0 => Style::new().bg(Color::Green).fg(Color::Black),
        r if r >= 0.1 => Style::new().fg(Color::LightGreen),
        _ => Style::new().add_modifier(Modifier::UNDERLINED),
    }
}
