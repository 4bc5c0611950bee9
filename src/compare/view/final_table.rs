//! The Final view: the last iteration's statistics, the differences to the baseline and
//! every run.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};

use super::{diff_row, group_cell, group_color, header, label_width, notes};
use crate::compare::comparison::{Comparison, Metric};
use crate::compare::text;

pub(super) fn draw_final(frame: &mut Frame, cmp: &Comparison, area: Rect) {
    let rows = cmp.groups.len() as u16 + 3;
    let [stats, diffs, runs] = Layout::vertical([
        Constraint::Length(rows),
        Constraint::Length(rows),
        Constraint::Min(0),
    ])
    .areas(area);
    draw_final_stats(frame, cmp, stats);
    draw_final_diffs(frame, cmp, diffs);
    draw_runs(frame, cmp, runs);
}

fn draw_final_stats(frame: &mut Frame, cmp: &Comparison, area: Rect) {
    let rows = cmp.groups.iter().enumerate().map(|(g, group)| {
        let Some(row) = cmp.final_row(g) else {
            return Row::new([group_cell(g, &group.label), Cell::from("no evaluation")]);
        };
        let n = row.stats.iter().flatten().map(|s| s.n).max().unwrap_or(0);
        let mut cells = vec![
            group_cell(g, &group.label),
            Cell::from(row.iteration.to_string()),
            Cell::from(n.to_string()),
        ];
        cells.extend(row.stats.map(|s| Cell::from(text::mean_sd(s))));
        Row::new(cells)
    });
    let mut head = vec!["group", "iter", "n"];
    head.extend(Metric::ALL.map(Metric::name));
    let widths = [
        label_width(cmp, 5),
        Constraint::Length(4),
        Constraint::Length(3),
        Constraint::Length(20),
        Constraint::Length(18),
        Constraint::Length(18),
    ];
    let table = Table::new(rows, widths).header(header(&head)).block(
        Block::bordered().title("last iteration: mean ± sd over seeds (n = runs that reached it)"),
    );
    frame.render_widget(table, area);
}

fn draw_final_diffs(frame: &mut Frame, cmp: &Comparison, area: Rect) {
    let rows = (0..cmp.groups.len()).map(|g| {
        let diff = cmp.final_row(g).and_then(|r| r.diff);
        diff_row(cmp, g, diff.as_ref(), |d| vec![d.iteration.to_string()], 5)
    });
    let mut head = vec!["group", "vs", "iter", "n"];
    let names = Metric::ALL.map(|m| format!("Δ {}", m.name()));
    head.extend(names.iter().map(String::as_str));
    let widths = [
        label_width(cmp, 5),
        label_width(cmp, 10),
        Constraint::Length(4),
        Constraint::Length(3),
        Constraint::Length(22),
        Constraint::Length(18),
        Constraint::Length(18),
    ];
    let table = Table::new(rows, widths).header(header(&head)).block(
        Block::bordered()
            .title("difference to the baseline, paired by seed: mean ± 95% t half-width"),
    );
    frame.render_widget(table, area);
}

/// Every run with its group and how far it got, then warnings and unreadable runs.
fn draw_runs(frame: &mut Frame, cmp: &Comparison, area: Rect) {
    let mut lines: Vec<Line> = vec![];
    for (g, group) in cmp.groups.iter().enumerate() {
        for &r in &group.runs {
            let run = &cmp.runs[r];
            let last = run
                .last_iteration()
                .map_or("no evaluation".into(), |i| format!("iter {i}"));
            let note = run
                .note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            lines.push(Line::from(vec![
                Span::from("● ").fg(group_color(g)),
                Span::from(format!("{}  seed {}  {last}{note}", run.name, run.seed())),
            ]));
        }
    }
    lines.extend(notes(cmp));
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title("runs"))
            .wrap(Wrap { trim: false }),
        area,
    );
}
