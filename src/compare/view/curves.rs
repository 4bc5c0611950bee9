//! The Curves view: the held-out figures per iteration, a chart each, and the groups.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::{group_color, halves, notes, plural, stat_chart};
use crate::compare::comparison::{Comparison, Metric};

pub(super) fn draw_curves(frame: &mut Frame, cmp: &Comparison, area: Rect) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let [a, b] = halves(top);
    let [c, legend] = halves(bottom);
    for (metric, area) in Metric::ALL.into_iter().zip([a, b, c]) {
        draw_curve(frame, cmp, metric, area);
    }
    draw_legend(frame, cmp, legend);
}
fn draw_curve(frame: &mut Frame, cmp: &Comparison, metric: Metric, area: Rect) {
    let curves: Vec<_> = (0..cmp.groups.len())
        .map(|g| cmp.curve(g, metric))
        .collect();
    let title = format!("{} (mean, min-max)", metric.name());
    stat_chart(frame, area, &title, &curves, cmp.last_iteration());
}
/// Each group's colour, runs and seeds, then the warnings and unreadable runs.
fn draw_legend(frame: &mut Frame, cmp: &Comparison, area: Rect) {
    let mut lines: Vec<Line> = cmp
        .groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let seeds: Vec<String> = group
                .runs
                .iter()
                .map(|&r| cmp.runs[r].seed().to_string())
                .collect();
            Line::from(vec![
                Span::from("━━ ").fg(group_color(g)),
                Span::from(group.label.clone()).fg(group_color(g)),
                Span::from(format!(
                    "  {} run{}, seeds {}",
                    group.runs.len(),
                    plural(group.runs.len()),
                    seeds.join(",")
                )),
            ])
        })
        .collect();
    lines.push(Line::from("lines: mean over seeds; │ at each iteration: min-max").dark_gray());
    lines.extend(notes(cmp));
    let block = Block::bordered().title("groups");
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}
