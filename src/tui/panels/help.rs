//! The `?` overlay: every row of the key table.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Stylize;
use ratatui::widgets::{Block, Cell, Clear, Row, Table};

use super::centered;
use crate::tui::keys::BINDINGS;

pub fn render(frame: &mut Frame, area: Rect) {
    let rect = centered(area, 64, BINDINGS.len() as u16 + 2);
    let rows = BINDINGS
        .iter()
        .map(|b| Row::new([Cell::from(b.label).bold().yellow(), Cell::from(b.help)]));
    let table = Table::new(rows, [Constraint::Length(17), Constraint::Min(10)])
        .block(Block::bordered().title("keys (Esc to close)"));
    frame.render_widget(Clear, rect);
    frame.render_widget(table, rect);
}
