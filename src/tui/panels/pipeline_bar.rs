//! The six stages of the current iteration as gauges: done, active (with its progress), or
//! still to come.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::widgets::{Block, Gauge};

use crate::engine::{Stage, StageSummary, Wait};

/// One stage's status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageStatus {
    pub done: usize,
    pub total: usize,
    pub finished: bool,
    pub summary: Option<StageSummary>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineBar {
    /// The iteration and stage the engine is on.
    pub iteration: usize,
    pub stage: Option<Stage>,
    pub stages: [StageStatus; 6],
    /// What the active stage's unit is waiting on (a server starting), while it waits.
    pub waiting: Option<Wait>,
}

impl PipelineBar {
    pub fn stage_started(&mut self, iteration: usize, stage: Stage) {
        if iteration != self.iteration || stage == Stage::SamplePrompts {
            self.stages = Default::default();
        }
        self.iteration = iteration;
        self.stage = Some(stage);
    }

    pub fn progress(&mut self, stage: Stage, done: usize, total: usize) {
        let s = &mut self.stages[stage.index()];
        s.done = done;
        s.total = total;
    }

    pub fn stage_finished(&mut self, stage: Stage, summary: StageSummary) {
        let s = &mut self.stages[stage.index()];
        s.finished = true;
        s.summary = Some(summary);
    }

    /// Every stage done (a finished iteration opened read-only).
    pub fn all_done(&mut self) {
        for s in &mut self.stages {
            s.finished = true;
        }
    }

    pub fn render(&self, frame: &mut Frame, area: Rect) {
        let cells = Layout::horizontal([Constraint::Ratio(1, 6); 6]).split(area);
        for (stage, cell) in Stage::ALL.iter().zip(cells.iter()) {
            let s = &self.stages[stage.index()];
            let active = self.stage == Some(*stage) && !s.finished;
            let (style, ratio, label) = if s.finished {
                (Style::new().fg(Color::Green), 1.0, "done".to_string())
            } else if active {
                let ratio = if s.total == 0 {
                    0.0
                } else {
                    s.done as f64 / s.total as f64
                };
                let label = match (&self.waiting, s.total) {
                    (Some(w), _) => format!("wait {:.0} s", w.elapsed_s),
                    (None, 1..) => format!("{}/{}", s.done, s.total),
                    (None, 0) => "…".into(),
                };
                (Style::new().fg(Color::Yellow).bold(), ratio, label)
            } else {
                (Style::new().fg(Color::DarkGray), 0.0, String::new())
            };
            let title = if cell.width >= 16 {
                stage.label()
            } else {
                stage.short_label()
            };
            let block = Block::bordered()
                .title(title)
                .border_style(style)
                .title_style(style);
            frame.render_widget(
                Gauge::default()
                    .block(block)
                    .gauge_style(style)
                    .ratio(ratio.clamp(0.0, 1.0))
                    .label(label),
                *cell,
            );
        }
    }
}
