//! What a viewer attaching to a run under way is told first.

use std::collections::VecDeque;

use crate::engine::{Event, Stage};

/// Log lines a newly attached viewer gets from before it came.
const LOG_TAIL: usize = 500;

/// The events a viewer attaching now needs besides the run directory's files: the run's
/// description, the current iteration's stages, the state (paused, parameters, auto-pause,
/// a pending ranking) and the recent log. Whatever files hold (metrics, pairs, log-probs,
/// summaries) the viewer reads from them.
#[derive(Default)]
pub(super) struct CatchUp {
    pub(super) events: VecDeque<Event>,
}

impl CatchUp {
    pub(super) fn observe(&mut self, event: &Event) {
        // A filter keeping the events other than those `f` picks.
        let other_than = |f: fn(&Event) -> bool| move |e: &Event| !f(e);
        match event {
            Event::Metrics(_) | Event::Pairs { .. } | Event::PairLogps { .. } => return,
            Event::Iteration(_) => return,
            Event::Progress { .. } => self
                .events
                .retain(other_than(|e| matches!(e, Event::Progress { .. }))),
            Event::Paused | Event::Resumed => self
                .events
                .retain(other_than(|e| matches!(e, Event::Paused | Event::Resumed))),
            Event::ParamsChanged(_) => self
                .events
                .retain(other_than(|e| matches!(e, Event::ParamsChanged(_)))),
            Event::AutoPause(_) => self
                .events
                .retain(other_than(|e| matches!(e, Event::AutoPause(_)))),
            Event::RankQuery(_) => self
                .events
                .retain(other_than(|e| matches!(e, Event::RankQuery(_)))),
            Event::Waiting(_) => self
                .events
                .retain(other_than(|e| matches!(e, Event::Waiting(_)))),
            Event::StageStarted { iteration, .. } => {
                let now = *iteration;
                self.events.retain(|e| match e {
                    Event::StageStarted { iteration, .. }
                    | Event::StageFinished { iteration, .. } => *iteration >= now,
                    _ => true,
                });
            }
            Event::StageFinished {
                stage: Stage::Rank, ..
            } => self
                .events
                .retain(other_than(|e| matches!(e, Event::RankQuery(_)))),
            Event::Log(_) | Event::Error(_) => {
                let logs = |e: &Event| matches!(e, Event::Log(_) | Event::Error(_));
                if self.events.iter().filter(|e| logs(e)).count() >= LOG_TAIL
                    && let Some(i) = self.events.iter().position(logs)
                {
                    self.events.remove(i);
                }
            }
            Event::Started { .. } | Event::StageFinished { .. } | Event::Finished { .. } => {}
        }
        self.events.push_back(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{LiveParams, LogLine};

    #[test]
    fn catch_up_keeps_state_not_history() {
        let mut c = CatchUp::default();
        let p = |alpha| {
            Event::ParamsChanged(LiveParams {
                alpha,
                beta: 0.1,
                lr: 1e-6,
            })
        };
        for e in [
            Event::StageStarted {
                iteration: 1,
                stage: Stage::Generate,
            },
            p(0.1),
            Event::Resumed,
            Event::Progress {
                iteration: 1,
                stage: Stage::Generate,
                done: 1,
                total: 4,
            },
            Event::Progress {
                iteration: 1,
                stage: Stage::Generate,
                done: 2,
                total: 4,
            },
            Event::Paused,
            p(0.2),
            Event::StageStarted {
                iteration: 2,
                stage: Stage::SamplePrompts,
            },
        ] {
            c.observe(&e);
        }
        let kept: Vec<_> = c.events.iter().cloned().collect();
        assert_eq!(
            kept,
            vec![
                Event::Progress {
                    iteration: 1,
                    stage: Stage::Generate,
                    done: 2,
                    total: 4,
                },
                Event::Paused,
                p(0.2),
                Event::StageStarted {
                    iteration: 2,
                    stage: Stage::SamplePrompts,
                },
            ]
        );
        for i in 0..LOG_TAIL + 10 {
            c.observe(&Event::Log(LogLine::info(format!("line {i}"))));
        }
        let logs = c
            .events
            .iter()
            .filter(|e| matches!(e, Event::Log(_)))
            .count();
        assert_eq!(logs, LOG_TAIL);
    }
}
