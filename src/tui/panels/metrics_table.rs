//! The latest update's metrics under their TRL names, in `metrics.csv` order.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Row, Table};

use super::format_num;
use crate::run::records::TrainRecord;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsTable {
    pub last: Vec<(String, f64)>,
}

impl MetricsTable {
    pub fn push(&mut self, r: &TrainRecord) {
        self.last = r.named_values();
    }

    pub fn render(&self, frame: &mut Frame, area: Rect) {
        let rows = self.last.iter().map(|(k, v)| {
            Row::new([
                Cell::from(k.clone()),
                Cell::from(Line::from(format_num(*v)).alignment(Alignment::Right)),
            ])
        });
        let table = Table::new(rows, [Constraint::Min(10), Constraint::Length(10)])
            .block(Block::bordered().title("metrics (last update)"));
        frame.render_widget(table, area);
    }
}
