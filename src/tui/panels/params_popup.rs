//! The parameters popup: alpha, beta and lr as text fields, checked with
//! [`LiveParams::validate`] on Enter and sent to the engine as one `SetParams`.

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Stylize;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::centered;
use crate::engine::{Command, LiveParams, Origin};

/// What a key did to the form.
#[derive(Debug, Clone, PartialEq)]
pub enum FormOutcome {
    Editing,
    Cancel,
    Submit(Command),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamsForm {
    /// alpha, beta, lr as typed.
    pub fields: [String; 3],
    pub focus: usize,
    pub error: Option<String>,
}

impl ParamsForm {
    pub const LABELS: [&'static str; 3] = ["alpha", "beta", "lr"];

    pub fn new(p: LiveParams) -> Self {
        Self {
            fields: [p.alpha, p.beta, p.lr].map(|v| v.to_string()),
            focus: 0,
            error: None,
        }
    }

    /// The command for the typed values, or an error naming the field.
    pub fn parse(&self) -> Result<Command, String> {
        let mut values = [0.0; 3];
        for ((text, label), v) in self.fields.iter().zip(Self::LABELS).zip(&mut values) {
            *v = text
                .trim()
                .parse()
                .map_err(|_| format!("{label}: `{}` is not a number", text.trim()))?;
        }
        let [alpha, beta, lr] = values;
        LiveParams { alpha, beta, lr }
            .validate()
            .map_err(|e| e.to_string())?;
        Ok(Command::SetParams {
            alpha: Some(alpha),
            beta: Some(beta),
            lr: Some(lr),
            origin: Origin::Tui,
        })
    }

    pub fn key(&mut self, code: KeyCode) -> FormOutcome {
        match code {
            KeyCode::Esc => return FormOutcome::Cancel,
            KeyCode::Tab | KeyCode::Down => self.focus = (self.focus + 1) % 3,
            KeyCode::BackTab | KeyCode::Up => self.focus = (self.focus + 2) % 3,
            KeyCode::Backspace => {
                self.fields[self.focus].pop();
                self.error = None;
            }
            KeyCode::Char(c) if c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+') => {
                self.fields[self.focus].push(c);
                self.error = None;
            }
            KeyCode::Enter => match self.parse() {
                Ok(cmd) => return FormOutcome::Submit(cmd),
                Err(e) => self.error = Some(e),
            },
            _ => {}
        }
        FormOutcome::Editing
    }

    pub fn render(&self, frame: &mut Frame, area: Rect) {
        let rect = centered(area, 50, 9);
        let mut lines = vec![];
        for (i, (label, value)) in Self::LABELS.iter().zip(&self.fields).enumerate() {
            let focused = i == self.focus;
            let field = Span::from(format!(" {value:<20}"));
            lines.push(Line::from(vec![
                Span::from(format!("{}{label:>6} ", if focused { "▶" } else { " " })),
                if focused {
                    field.reversed()
                } else {
                    field.underlined()
                },
            ]));
        }
        lines.push(Line::default());
        lines.push(match &self.error {
            Some(e) => Line::from(e.as_str()).red(),
            None => Line::from("effective from the next update").dark_gray(),
        });
        lines.push(Line::from("Enter apply · Tab next field · Esc cancel").dark_gray());
        frame.render_widget(Clear, rect);
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title("parameters")),
            rect,
        );
    }
}
