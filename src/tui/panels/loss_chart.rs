//! Loss per update step: total and DPO on one axis, the optimism term on its own (it is
//! orders of magnitude smaller).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LegendPosition};

use super::{axis_labels, bounds, format_num};
use crate::run::records::TrainRecord;

/// One update step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPoint {
    pub step: f64,
    pub iteration: usize,
    pub loss: f64,
    pub dpo: f64,
    pub optimism: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossChart {
    pub steps: Vec<StepPoint>,
}

impl LossChart {
    /// Whether this exact step is already charted (recent steps only: duplicates are).
    pub fn has(&self, r: &TrainRecord) -> bool {
        self.steps.iter().rev().take(4096).any(|p| {
            p.step == r.step as f64
                && p.iteration == r.iteration
                && p.loss.to_bits() == r.metrics.loss.to_bits()
        })
    }

    pub fn push(&mut self, r: &TrainRecord) {
        self.steps.push(StepPoint {
            step: r.step as f64,
            iteration: r.iteration,
            loss: r.metrics.loss,
            dpo: r.metrics.loss_dpo,
            optimism: r.metrics.loss_optimism,
        });
    }

    fn series(&self, f: fn(&StepPoint) -> f64) -> Vec<(f64, f64)> {
        self.steps
            .iter()
            .filter(|p| f(p).is_finite())
            .map(|p| (p.step, f(p)))
            .collect()
    }

    pub fn render(&self, frame: &mut Frame, area: Rect) {
        let loss = self.series(|p| p.loss);
        let dpo = self.series(|p| p.dpo);
        let opt = self.series(|p| p.optimism);
        let x = bounds(self.steps.iter().map(|p| p.step));
        let [main, side] =
            Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)])
                .areas(area);
        let title = match self.steps.last() {
            Some(p) => format!("loss (last {:.4}, step {})", p.loss, p.step),
            None => "loss per step".into(),
        };
        let chart = step_chart(
            title,
            x,
            vec![
                line_dataset("total", &loss, Color::Cyan),
                line_dataset("dpo", &dpo, Color::Yellow),
            ],
            bounds(loss.iter().chain(&dpo).map(|p| p.1)),
        )
        .legend_position(Some(LegendPosition::TopRight))
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)));
        frame.render_widget(chart, main);
        let title = match opt.last() {
            Some((_, v)) => format!("optimism {}", format_num(*v)),
            None => "optimism".into(),
        };
        let y = bounds(opt.iter().map(|p| p.1));
        let mut chart = step_chart(title, x, vec![line_dataset("", &opt, Color::Magenta)], y);
        if side.width < 36 {
            // Too narrow for readable labels: the title carries the last value.
            chart = chart.y_axis(Axis::default().bounds(y).style(Style::new().dark_gray()));
        }
        frame.render_widget(chart, side);
    }
}

fn step_chart<'a>(title: String, x: [f64; 2], data: Vec<Dataset<'a>>, y: [f64; 2]) -> Chart<'a> {
    Chart::new(data)
        .block(Block::bordered().title(title))
        .x_axis(Axis::default().bounds(x).style(Style::new().dark_gray()))
        .y_axis(
            Axis::default()
                .bounds(y)
                .labels(axis_labels(y))
                .style(Style::new().dark_gray()),
        )
}

fn line_dataset<'a>(name: &'a str, data: &'a [(f64, f64)], color: Color) -> Dataset<'a> {
    Dataset::default()
        .name(name)
        .marker(symbols::Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(color))
        .data(data)
}
