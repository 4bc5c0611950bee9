//! The Rewards view: the groups' held-out reward histograms at the selected iteration and
//! the share at or above the threshold by iteration.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Cell, Paragraph, Row, Table};

use super::{group_cell, group_color, label_width};
use crate::compare::app::CompareApp;
use crate::compare::comparison::{Comparison, Metric};
use crate::compare::text::{self, NONE};
use crate::run::records::HISTOGRAM_BINS;

pub(super) fn draw_rewards(frame: &mut Frame, app: &CompareApp, area: Rect) {
    let cmp = &app.cmp;
    let table_height = cmp.groups.len() as u16 + 3;
    let [top, shares] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(table_height)]).areas(area);
    // The bars need a column per group and bin and a gap between bins (ratatui drops the
    // bins that do not fit, the high-reward end first): the legend gives way down to 20.
    let needed = (cmp.groups.len().max(1) * HISTOGRAM_BINS + HISTOGRAM_BINS + 1) as u16;
    let legend_width = top.width.saturating_sub(needed).clamp(20, 36);
    let [bars, legend] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(legend_width)]).areas(top);
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
