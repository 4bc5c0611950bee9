//! The per-iteration evaluations (kl, high-reward fraction) as small line charts; the
//! history here also feeds the reward histogram.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType};

use super::{bounds, format_num};
use crate::run::records::{EvalFigures, IterationSummary};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalHistory {
    /// By iteration (0 = the starting model).
    pub evals: Vec<IterationSummary>,
}

impl EvalHistory {
    /// Records an evaluation, replacing an earlier one of the same iteration.
    pub fn push(&mut self, summary: IterationSummary) {
        self.evals.retain(|s| s.iteration != summary.iteration);
        self.evals.push(summary);
        self.evals.sort_by_key(|s| s.iteration);
    }

    pub fn get(&self, iteration: usize) -> Option<&IterationSummary> {
        self.evals.iter().find(|s| s.iteration == iteration)
    }

    /// One figure per iteration, as a chart titled `name` over `iterations`.
    pub fn render(
        &self,
        frame: &mut Frame,
        area: Rect,
        name: &str,
        value: fn(&EvalFigures) -> f64,
        color: Color,
        iterations: usize,
    ) {
        let points: Vec<(f64, f64)> = self
            .evals
            .iter()
            .map(|s| (s.iteration as f64, value(&s.eval)))
            .filter(|p| p.1.is_finite())
            .collect();
        let title = match points.last() {
            Some((i, v)) => format!("{name} {v:.4} (iter {i})"),
            None => name.to_string(),
        };
        let x = [0.0, iterations.max(1) as f64];
        let y = bounds(points.iter().map(|p| p.1));
        let line = Dataset::default()
            .marker(symbols::Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(color))
            .data(&points);
        let dots = Dataset::default()
            .marker(symbols::Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(Style::new().fg(color).bold())
            .data(&points);
        let chart = Chart::new(vec![line, dots])
            .block(Block::bordered().title(title))
            .x_axis(
                Axis::default()
                    .bounds(x)
                    .labels(["0".to_string(), format!("{iterations}")])
                    .style(Style::new().dark_gray()),
            )
            .y_axis(
                Axis::default()
                    .bounds(y)
                    .labels([format_num(y[0]), format_num(y[1])])
                    .style(Style::new().dark_gray()),
            );
        frame.render_widget(chart, area);
    }
}
