//! The compare TUI's frame: a header with the views, a status line, the view and a footer
//! with the keys. Drawing only reads the [`CompareApp`].

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Bar, BarChart, BarGroup, Block, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table,
    Tabs, Wrap,
};

use super::app::{CompareApp, CompareView, KEYS};
use super::comparison::{Comparison, Metric};
use super::stats::{RESPONSES, Stat};
use super::text::{self, NONE};
use crate::io::records::HISTOGRAM_BINS;
use crate::tui::panels::format_num;
use crate::tui::view::{MIN_HEIGHT, MIN_WIDTH};

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

fn draw_curves(frame: &mut Frame, cmp: &Comparison, area: Rect) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let [a, b] = halves(top);
    let [c, legend] = halves(bottom);
    for (metric, area) in Metric::ALL.into_iter().zip([a, b, c]) {
        draw_curve(frame, cmp, metric, area);
    }
    draw_legend(frame, cmp, legend);
}

fn halves(area: Rect) -> [Rect; 2] {
    Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area)
}

fn draw_curve(frame: &mut Frame, cmp: &Comparison, metric: Metric, area: Rect) {
    let curves: Vec<_> = (0..cmp.groups.len())
        .map(|g| cmp.curve(g, metric))
        .collect();
    let title = format!("{} (mean, min-max)", metric.name());
    stat_chart(frame, area, &title, &curves, cmp.last_iteration());
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

fn draw_final(frame: &mut Frame, cmp: &Comparison, area: Rect) {
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

/// The width of a column of group labels.
fn label_width(cmp: &Comparison, at_least: usize) -> Constraint {
    let widest = cmp.groups.iter().map(|g| g.label.chars().count()).max();
    Constraint::Length(widest.unwrap_or(0).max(at_least) as u16 + 1)
}

fn group_cell(g: usize, label: &str) -> Cell<'static> {
    Cell::from(label.to_string()).fg(group_color(g))
}

fn header(cells: &[&str]) -> Row<'static> {
    Row::new(cells.iter().map(|c| c.to_string())).bold()
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
    let rows = cmp.groups.iter().enumerate().map(|(g, group)| {
        let diff = cmp.final_row(g).and_then(|r| r.diff);
        let mut cells = vec![group_cell(g, &group.label)];
        match diff {
            Some(d) => {
                let n = d.values.iter().flatten().map(|v| v.n).max().unwrap_or(0);
                cells.push(Cell::from(cmp.groups[d.baseline].label.clone()));
                cells.push(Cell::from(d.iteration.to_string()));
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
                cells.extend([NONE; 5].map(Cell::from));
            }
        }
        Row::new(cells)
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

fn draw_rewards(frame: &mut Frame, app: &CompareApp, area: Rect) {
    let cmp = &app.cmp;
    let table_height = cmp.groups.len() as u16 + 3;
    let [top, shares] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(table_height)]).areas(area);
    let [bars, legend] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(36)]).areas(top);
    draw_histograms(frame, app, bars);
    draw_reward_legend(frame, app, legend);
    draw_high_shares(frame, cmp, shares);
}

/// The groups' histograms of the selected iteration side by side in each bin, as shares of
/// their samples (per mille, so groups of any size compare).
fn draw_histograms(frame: &mut Frame, app: &CompareApp, area: Rect) {
    let cmp = &app.cmp;
    let it = app.iteration;
    let pooled: Vec<_> = (0..cmp.groups.len())
        .map(|g| cmp.distribution(g, it))
        .collect();
    let range = pooled.iter().flatten().map(|p| p.range).next();
    let block = Block::bordered().title(format!(
        "held-out rewards, iter {it}: share of samples per bin"
    ));
    let Some(range) = range else {
        let msg = format!("no run has an evaluation of iteration {it}");
        frame.render_widget(Paragraph::new(msg).block(block), area);
        return;
    };
    let (bar_width, group_gap) = bar_layout(block.inner(area).width as usize, pooled.len());
    let step = (range[1] - range[0]) / HISTOGRAM_BINS as f64;
    // Enough decimals to tell the bins' lower edges apart, and no more (labels are narrow).
    let places = (-step.log10().floor()).clamp(0.0, 3.0) as usize;
    let mut chart = BarChart::default()
        .block(block)
        .bar_width(bar_width)
        .bar_gap(0)
        .group_gap(group_gap);
    for bin in 0..HISTOGRAM_BINS {
        let bars: Vec<Bar> = pooled
            .iter()
            .enumerate()
            .map(|(g, p)| {
                let share = p.as_ref().map_or(0.0, |p| p.shares[bin]);
                Bar::default()
                    .value((share * 1000.0).round() as u64)
                    .text_value(String::new())
                    .style(Style::new().fg(group_color(g)))
            })
            .collect();
        let edge = format!("{:.places$}", range[0] + step * bin as f64);
        chart = chart.data(BarGroup::default().label(Line::from(edge)).bars(&bars));
    }
    frame.render_widget(chart, area);
}

/// Bar width (1-4 columns) and the gap between bins that spread `groups` bars per bin over
/// `width` columns.
fn bar_layout(width: usize, groups: usize) -> (u16, u16) {
    let groups = groups.max(1);
    let bins = HISTOGRAM_BINS;
    let bar = ((width.saturating_sub(bins - 1) / bins) / groups).clamp(1, 4);
    let gap = (width.saturating_sub(bar * groups * bins) / (bins - 1)).clamp(1, 4);
    (bar as u16, gap as u16)
}

fn draw_reward_legend(frame: &mut Frame, app: &CompareApp, area: Rect) {
    let cmp = &app.cmp;
    let threshold = cmp.threshold();
    let mut lines = vec![];
    for (g, group) in cmp.groups.iter().enumerate() {
        lines.push(Line::from(group.label.clone()).fg(group_color(g)));
        let Some(p) = cmp.distribution(g, app.iteration) else {
            lines.push(Line::from("  no evaluation"));
            continue;
        };
        let mean = text::mean_sd(cmp.stat(g, Metric::RewardMean, app.iteration));
        lines.push(Line::from(format!(
            "  ≥ {threshold}: {} of {} samples",
            text::percent(p.high_share),
            p.samples
        )));
        lines.push(Line::from(format!("  reward {mean} ({} runs)", p.runs)));
    }
    let title = format!("iter {} of {} (←/→)", app.iteration, cmp.last_iteration());
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

/// The share at or above the threshold per group and iteration: how the distribution's
/// top moves across iterations.
fn draw_high_shares(frame: &mut Frame, cmp: &Comparison, area: Rect) {
    let last = cmp.last_iteration();
    let rows = cmp.groups.iter().enumerate().map(|(g, group)| {
        let mut cells = vec![group_cell(g, &group.label)];
        cells.extend((0..=last).map(|i| {
            Cell::from(
                cmp.distribution(g, i)
                    .map_or(NONE.into(), |p| text::percent(p.high_share)),
            )
        }));
        Row::new(cells)
    });
    let mut widths = vec![label_width(cmp, 5)];
    widths.extend((0..=last).map(|_| Constraint::Length(7)));
    let mut head = vec!["group".to_string()];
    head.extend((0..=last).map(|i| format!("iter {i}")));
    let title = format!(
        "share of held-out samples ≥ {} by iteration",
        cmp.threshold()
    );
    let table = Table::new(rows, widths)
        .header(Row::new(head).bold())
        .block(Block::bordered().title(title));
    frame.render_widget(table, area);
}

fn draw_implicit(frame: &mut Frame, app: &CompareApp, area: Rect) {
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
    let rows = cmp.groups.iter().enumerate().map(|(g, group)| {
        let mut cells = vec![group_cell(g, &group.label)];
        match cmp.implicit(g, it).and_then(|r| r.diff) {
            Some(d) => {
                let n = d.values.iter().flatten().map(|v| v.n).max().unwrap_or(0);
                cells.push(Cell::from(cmp.groups[d.baseline].label.clone()));
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
                cells.extend([NONE; 4].map(Cell::from));
            }
        }
        Row::new(cells)
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
