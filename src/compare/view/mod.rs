//! The compare TUI's frame: a header with the views, a status line, the view and a footer
//! with the keys. Drawing only reads the [`CompareApp`].

mod curves;
mod final_table;
mod implicit;
mod rewards;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Cell, Chart, Dataset, GraphType, Row, Tabs};

use super::app::{CompareApp, CompareView, KEYS};
use super::comparison::{Comparison, Diff};
use super::stats::Stat;
use super::text::{self, NONE};
use crate::tui::panels::format_num;
use crate::tui::view::{MIN_HEIGHT, MIN_WIDTH};
use curves::draw_curves;
use final_table::draw_final;
use implicit::draw_implicit;
use rewards::draw_rewards;

/// One colour per group, in group order (repeating past eight groups).
const PALETTE: [Color; 8] = [
    Color::Cyan,
    Color::Yellow,
    Color::Magenta,
    Color::Green,
    Color::LightRed,
    Color::LightBlue,
    Color::White,
    Color::LightGreen,
];

pub fn group_color(g: usize) -> Color {
    PALETTE[g % PALETTE.len()]
}

pub fn draw(frame: &mut Frame, app: &CompareApp) {
    let area = frame.area();
    if crate::tui::view::too_small(frame, "selm-tui compare", (MIN_WIDTH, MIN_HEIGHT)) {
        return;
    }
    let [header, status, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, app, header);
    draw_status(frame, &app.cmp, status);
    match app.view {
        CompareView::Curves => draw_curves(frame, &app.cmp, body),
        CompareView::Final => draw_final(frame, &app.cmp, body),
        CompareView::Rewards => draw_rewards(frame, app, body),
        CompareView::Implicit => draw_implicit(frame, app, body),
    }
    draw_footer(frame, app, footer);
}

fn draw_header(frame: &mut Frame, app: &CompareApp, area: Rect) {
    let [title, tabs] =
        Layout::horizontal([Constraint::Length(18), Constraint::Min(0)]).areas(area);
    frame.render_widget(Span::from(" selm-tui compare").bold(), title);
    let selected = CompareView::ALL.iter().position(|v| *v == app.view);
    let titles = CompareView::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{} {}", i + 1, v.title()));
    frame.render_widget(
        Tabs::new(titles)
            .select(selected.unwrap_or(0))
            .highlight_style(Style::new().reversed()),
        tabs,
    );
}

fn draw_status(frame: &mut Frame, cmp: &Comparison, area: Rect) {
    let sep = Span::from(" │ ").dark_gray();
    let mut spans = vec![Span::from(format!(
        " {} runs in {} groups",
        cmp.runs.len(),
        cmp.groups.len()
    ))];
    if !cmp.keys.is_empty() {
        spans.push(sep.clone());
        spans.push(Span::from(format!("differ in {}", cmp.keys.join(", "))).cyan());
    }
    if !cmp.skipped.is_empty() {
        spans.push(sep.clone());
        spans.push(Span::from(format!("{} unreadable", cmp.skipped.len())).light_red());
    }
    if !cmp.warnings.is_empty() {
        spans.push(sep);
        let n = cmp.warnings.len();
        spans.push(Span::from(format!("{n} warning{}", plural(n))).yellow());
    }
    frame.render_widget(Line::from(spans).on_dark_gray().white(), area);
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn draw_footer(frame: &mut Frame, app: &CompareApp, area: Rect) {
    let mut spans = vec![];
    for (key, what) in KEYS {
        if *key == "←/→" && !app.view.has_iteration() {
            continue;
        }
        spans.push(Span::from(*key).reversed());
        spans.push(Span::from(format!(" {what} ")));
    }
    frame.render_widget(Line::from(spans), area);
}
fn halves(area: Rect) -> [Rect; 2] {
    Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area)
}
/// Each group's means over iterations as a line, each iteration's min-max over seeds as a
/// whisker beside it (shifted a little per group so they do not cover each other).
fn stat_chart(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    curves: &[Vec<(usize, Stat)>],
    last: usize,
) {
    let groups = curves.len();
    let mut lines: Vec<(Color, Vec<(f64, f64)>)> = vec![];
    let mut whiskers: Vec<(Color, Vec<(f64, f64)>)> = vec![];
    for (g, curve) in curves.iter().enumerate() {
        let shift = (g as f64 - (groups as f64 - 1.0) / 2.0) * 0.06;
        let color = group_color(g);
        lines.push((
            color,
            curve.iter().map(|(i, s)| (*i as f64, s.mean)).collect(),
        ));
        for (i, s) in curve {
            let x = *i as f64 + shift;
            whiskers.push((color, vec![(x, s.min), (x, s.max)]));
        }
    }
    let y = super::plots::padded_range(whiskers.iter().flat_map(|(_, w)| w.iter().map(|p| p.1)));
    let last = last.max(1) as f64;
    let datasets = lines
        .iter()
        .chain(&whiskers)
        .map(|(color, data)| {
            Dataset::default()
                .marker(symbols::Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(*color))
                .data(data)
        })
        .collect();
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(title.to_string()))
        .x_axis(
            Axis::default()
                .bounds([-0.2, last + 0.2])
                .labels(["0".to_string(), format!("{last}")])
                .style(Style::new().dark_gray()),
        )
        .y_axis(
            Axis::default()
                .bounds([y.0, y.1])
                .labels([format_num(y.0), format_num(y.1)])
                .style(Style::new().dark_gray()),
        );
    frame.render_widget(chart, area);
}
/// Warnings (yellow) and unreadable runs (red), one line each.
fn notes(cmp: &Comparison) -> Vec<Line<'static>> {
    let warnings = cmp
        .warnings
        .iter()
        .map(|w| Line::from(format!("! {w}")).yellow());
    let skipped = cmp
        .skipped
        .iter()
        .map(|s| Line::from(format!("✗ {}: {}", s.path.display(), s.reason)).light_red());
    warnings.chain(skipped).collect()
}
/// The width of a column of group labels.
fn label_width(cmp: &Comparison, at_least: usize) -> Constraint {
    let widest = cmp.groups.iter().map(|g| g.label.chars().count()).max();
    Constraint::Length(widest.unwrap_or(0).max(at_least) as u16 + 1)
}

fn group_cell(g: usize, label: &str) -> Cell<'static> {
    Cell::from(label.to_string()).fg(group_color(g))
}

/// A group's row of differences to its baseline: the group, the baseline, `extra` cells (such
/// as the iteration), the seeds paired and one cell per value; "(baseline)" or blanks without
/// a difference.
fn diff_row(
    cmp: &Comparison,
    g: usize,
    diff: Option<&Diff>,
    extra: impl Fn(&Diff) -> Vec<String>,
    blanks: usize,
) -> Row<'static> {
    let group = &cmp.groups[g];
    let mut cells = vec![group_cell(g, &group.label)];
    match diff {
        Some(d) => {
            let n = d.values.iter().flatten().map(|v| v.n).max().unwrap_or(0);
            cells.push(Cell::from(cmp.groups[d.baseline].label.clone()));
            cells.extend(extra(d).into_iter().map(Cell::from));
            cells.push(Cell::from(n.to_string()));
            cells.extend(d.values.map(|v| Cell::from(text::diff(v))));
        }
        None => {
            let what = if group.is_baseline {
                "(baseline)"
            } else {
                NONE
            };
            cells.push(Cell::from(what));
            cells.extend(std::iter::repeat_n(NONE, blanks).map(Cell::from));
        }
    }
    Row::new(cells)
}

fn header(cells: &[&str]) -> Row<'static> {
    Row::new(cells.iter().map(|c| c.to_string())).bold()
}
