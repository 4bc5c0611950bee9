//! The held-out reward histogram of one evaluation, over the ranker's score range.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Paragraph};

use super::format_num;
use crate::run::records::IterationSummary;

/// Stateless: it draws whichever evaluation the App selects.
pub fn render(frame: &mut Frame, area: Rect, summary: Option<&IterationSummary>) {
    let title = match summary {
        Some(s) => format!(
            "held-out rewards, iter {} ({}, {}..{})",
            s.iteration,
            s.reward_histogram.iter().sum::<usize>(),
            format_num(s.histogram_range[0]),
            format_num(s.histogram_range[1]),
        ),
        None => "held-out rewards".into(),
    };
    let block = Block::bordered().title(title);
    let Some(s) = summary else {
        frame.render_widget(Paragraph::new("no evaluation yet").block(block), area);
        return;
    };
    let inner = block.inner(area).width as usize;
    // Ten bars with one-column gaps; widen them when there is room.
    let width = ((inner.saturating_sub(9)) / 10).clamp(1, 6) as u16;
    let bars: Vec<Bar> = s
        .reward_histogram
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            Bar::default()
                .value(n as u64)
                .label(Line::from(format!("{i}")))
                .text_value(String::new())
        })
        .collect();
    let chart = BarChart::default()
        .block(block)
        .bar_width(width)
        .bar_gap(1)
        .bar_style(Style::new().fg(Color::Green))
        .value_style(Style::new().black().on_green())
        .data(BarGroup::default().bars(&bars));
    frame.render_widget(chart, area);
}
