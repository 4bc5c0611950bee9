//! The Implicit view: implicit rewards at the selected iteration, the differences to the
//! baseline and their curves over iterations.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};

use super::{diff_row, group_cell, halves, header, label_width, stat_chart};
use crate::compare::app::CompareApp;
use crate::compare::comparison::Comparison;
use crate::compare::stats::{RESPONSES, Stat};
use crate::compare::text::{self, NONE};

pub(super) fn draw_implicit(frame: &mut Frame, app: &CompareApp, area: Rect) {
    let cmp = &app.cmp;
    let it = app.iteration;
    let block = Block::bordered().title(format!(
        "implicit rewards β·(log πθ − log πref), iter {it}: mean ± sd over seeds (←/→)"
    ));
    if cmp.implicit_iterations().is_empty() {
        let msg = "no run has iter-NNN/pair_logps.jsonl";
        frame.render_widget(Paragraph::new(msg).block(block), area);
        return;
    }
    if !cmp.implicit_iterations().contains(&it) {
        let msg = format!(
            "no pairs at iteration {it} (iteration 0 is the starting model); pairs at {}",
            join(&cmp.implicit_iterations())
        );
        frame.render_widget(Paragraph::new(msg).block(block), area);
        return;
    }
    let rows = cmp.groups.len() as u16 + 3;
    let [means, diffs, note] = Layout::vertical([
        Constraint::Length(rows),
        Constraint::Length(rows),
        Constraint::Min(0),
    ])
    .areas(area);
    draw_implicit_means(frame, cmp, it, block, means);
    draw_implicit_diffs(frame, cmp, it, diffs);
    let [text, charts] = Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(note);
    let note = "each run: mean over its pairs (each with the beta it was trained with); \
                Δ: group − baseline per seed, 95% Student t interval";
    frame.render_widget(
        Paragraph::new(note).dark_gray().wrap(Wrap { trim: true }),
        text,
    );
    if charts.height >= 6 {
        draw_implicit_charts(frame, cmp, charts);
    }
}

/// Chosen and rejected implicit rewards over iterations, a line per group.
fn draw_implicit_charts(frame: &mut Frame, cmp: &Comparison, area: Rect) {
    let last = cmp.implicit_iterations().last().copied().unwrap_or(1);
    for (k, area) in halves(area).into_iter().enumerate() {
        let curves: Vec<Vec<(usize, Stat)>> = (0..cmp.groups.len())
            .map(|g| {
                cmp.implicit_iterations()
                    .into_iter()
                    .filter_map(|i| Some((i, cmp.implicit(g, i)?.stats[k]?)))
                    .collect()
            })
            .collect();
        let title = format!("{} over iterations (mean, min-max)", RESPONSES[k]);
        stat_chart(frame, area, &title, &curves, last);
    }
}

fn join(iterations: &[usize]) -> String {
    iterations
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn draw_implicit_means(frame: &mut Frame, cmp: &Comparison, it: usize, block: Block, area: Rect) {
    let rows = cmp.groups.iter().enumerate().map(|(g, group)| {
        let mut cells = vec![group_cell(g, &group.label)];
        match cmp.implicit(g, it) {
            Some(row) => {
                cells.push(Cell::from(row.runs.to_string()));
                cells.extend(row.stats.map(|s| Cell::from(text::mean_sd(s))));
                let margin = match (row.stats[0], row.stats[1]) {
                    (Some(c), Some(r)) => text::signed(c.mean - r.mean),
                    _ => NONE.into(),
                };
                cells.push(Cell::from(margin));
            }
            None => cells.push(Cell::from("no pairs")),
        }
        Row::new(cells)
    });
    let mut head = vec!["group", "n"];
    head.extend(RESPONSES);
    head.push("chosen − rejected");
    let widths = [
        label_width(cmp, 5),
        Constraint::Length(3),
        Constraint::Length(19),
        Constraint::Length(19),
        Constraint::Length(19),
        Constraint::Length(17),
    ];
    let table = Table::new(rows, widths).header(header(&head)).block(block);
    frame.render_widget(table, area);
}

fn draw_implicit_diffs(frame: &mut Frame, cmp: &Comparison, it: usize, area: Rect) {
    let rows = (0..cmp.groups.len()).map(|g| {
        let diff = cmp.implicit(g, it).and_then(|r| r.diff);
        diff_row(cmp, g, diff.as_ref(), |_| vec![], 4)
    });
    let mut head = vec!["group", "vs", "n"];
    let names = RESPONSES.map(|r| format!("Δ {r}"));
    head.extend(names.iter().map(String::as_str));
    let widths = [
        label_width(cmp, 5),
        label_width(cmp, 10),
        Constraint::Length(3),
        Constraint::Length(20),
        Constraint::Length(20),
        Constraint::Length(20),
    ];
    let table = Table::new(rows, widths)
        .header(header(&head))
        .block(Block::bordered().title("SELM − DPO: difference to the baseline, paired by seed"));
    frame.render_widget(table, area);
}
