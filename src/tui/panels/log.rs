//! The log: engine messages with their level, newest at the bottom, scrollable.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Stylize;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};
use std::collections::VecDeque;

use crate::engine::{Level, LogLine};

/// Lines kept in memory.
const LOG_CAP: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogPanel {
    pub lines: VecDeque<LogLine>,
    /// Lines scrolled up from the end.
    pub scroll: usize,
}

impl LogPanel {
    pub fn push(&mut self, line: LogLine) {
        if self.lines.len() == LOG_CAP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.push(LogLine::info(text));
    }

    /// Scrolls by `delta` lines (negative = towards older lines).
    pub fn scroll_by(&mut self, delta: isize) {
        let next = (self.scroll as isize).saturating_sub(delta);
        self.scroll = next.clamp(0, self.lines.len().saturating_sub(1) as isize) as usize;
    }

    pub fn render(&self, frame: &mut Frame, area: Rect, title: &str) {
        let height = area.height.saturating_sub(2) as usize;
        let end = self.lines.len().saturating_sub(self.scroll);
        let start = end.saturating_sub(height);
        let lines: Vec<Line> = self
            .lines
            .range(start..end)
            .map(|l| match l.level {
                Level::Error => Line::from(format!("error: {}", l.text)).red(),
                Level::Warn => Line::from(format!("warning: {}", l.text)).yellow(),
                Level::Info => Line::from(l.text.as_str()),
            })
            .collect();
        let title = if self.scroll > 0 {
            format!("{title} (↑{})", self.scroll)
        } else {
            title.to_string()
        };
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(title)),
            area,
        );
    }
}
