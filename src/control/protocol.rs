//! The control socket's protocol: one JSON object per line each way. A viewer opens with
//! `hello`; the run answers `hello` (then the catch-up and live events) or `refused`.
//! Commands and events are the engine's own [`Command`] and [`Event`], so a viewer sees what
//! the run's own front end sees.

use serde::{Deserialize, Serialize};

use crate::engine::{Command, Event};

/// Bumped whenever a message changes shape; both sides must speak the same one. The test
/// `the_wire_is_the_golden_one` holds every message to `snapshots/*protocol-vN.snap`: a change
/// of a variant or field fails it until the version is bumped and the new lines recorded.
/// 2: `Event::Waiting`.
pub const PROTOCOL: u32 = 2;

/// Longest line either side accepts (a pair inspector's log-probs fit many times over).
pub const MAX_LINE: usize = 64 << 20;

/// Viewer -> run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientMsg {
    Hello {
        protocol: u32,
        client: String,
        pid: u32,
    },
    Command(Command),
}

/// Run -> viewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMsg {
    Hello {
        protocol: u32,
        server: String,
        pid: u32,
        run_dir: String,
    },
    /// The viewer cannot attach (another protocol version); the connection closes.
    Refused {
        protocol: u32,
        reason: String,
    },
    Event(Event),
    /// The viewer broke the protocol (the connection closes) or a command was refused.
    Error(String),
}

/// This binary's name and version, as a hello carries it.
pub fn software() -> String {
    format!("selm-tui {}", env!("CARGO_PKG_VERSION"))
}

/// Reads one line of at most [`MAX_LINE`] bytes, without its newline; None at the end.
pub fn read_line(r: &mut impl std::io::BufRead) -> std::io::Result<Option<String>> {
    use std::io::{BufRead, Read};
    let mut buf = vec![];
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line longer than {MAX_LINE} bytes"),
        ));
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "a line not in UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{LiveParams, Origin, StageSummary};
    use crate::run::Stage;

    #[test]
    fn messages_are_one_json_line_and_read_back() {
        let msgs = [
            ClientMsg::Hello {
                protocol: PROTOCOL,
                client: software(),
                pid: 7,
            },
            ClientMsg::Command(Command::SetParams {
                alpha: Some(0.01),
                beta: None,
                lr: None,
                origin: Origin::Tui,
            }),
            ClientMsg::Command(Command::StepBatch),
        ];
        for m in msgs {
            let line = serde_json::to_string(&m).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<ClientMsg>(&line).unwrap(), m);
        }
        let line = serde_json::to_string(&ClientMsg::Command(Command::Pause)).unwrap();
        assert_eq!(line, r#"{"command":"pause"}"#);
    }

    #[test]
    fn nan_figures_survive_the_wire() {
        let e = ServerMsg::Event(Event::StageFinished {
            iteration: 2,
            stage: Stage::Update,
            summary: StageSummary::Update {
                updates: 0,
                mean_loss: f64::NAN,
            },
            seconds: 0.5,
        });
        let line = serde_json::to_string(&e).unwrap();
        match serde_json::from_str::<ServerMsg>(&line).unwrap() {
            ServerMsg::Event(Event::StageFinished {
                summary: StageSummary::Update { mean_loss, .. },
                ..
            }) => assert!(mean_loss.is_nan()),
            other => panic!("{other:?}"),
        }
        // A diverging step reaches viewers as NaN, not as an event they cannot read.
        let step = crate::run::records::TrainRecord {
            iteration: 1,
            step: 3,
            batch: 3,
            metrics: crate::selm::SelmMetrics {
                loss: f64::NAN,
                rewards_margins: f64::INFINITY,
                ..Default::default()
            },
            grad_norm: f64::NAN,
            lr: 1e-6,
        };
        let line = serde_json::to_string(&ServerMsg::Event(Event::Metrics(step))).unwrap();
        match serde_json::from_str::<ServerMsg>(&line).unwrap() {
            ServerMsg::Event(Event::Metrics(r)) => {
                assert!(r.metrics.loss.is_nan() && r.grad_norm.is_nan());
                assert!(r.metrics.rewards_margins.is_nan());
            }
            other => panic!("{other:?}"),
        }
        let p = LiveParams {
            alpha: 0.1,
            beta: 0.2,
            lr: 1e-6,
        };
        let line = serde_json::to_string(&ServerMsg::Event(Event::ParamsChanged(p))).unwrap();
        assert_eq!(
            serde_json::from_str::<ServerMsg>(&line).unwrap(),
            ServerMsg::Event(Event::ParamsChanged(p))
        );
    }

    /// One message of every kind, each command and event variant included: a variant added
    /// without a line here does not compile (the `match` below has no catch-all).
    fn every_message() -> Vec<String> {
        use crate::engine::{LogLine, RankQuery, Verdict, Wait};
        use crate::run::records::*;
        let params = LiveParams {
            alpha: 0.001,
            beta: 0.1,
            lr: 1e-4,
        };
        let candidate = Candidate {
            text: "1 2".into(),
            tokens: vec![5, 6, 2],
            is_reference: true,
            score: Some(1.0),
            dataset: Some(DatasetLabel::Chosen),
            reference_logps: Some(vec![-0.5, -0.25, -0.125]),
        };
        let response = ResponseLogps {
            tokens: vec!["1".into()],
            ids: vec![5],
            policy: vec![-0.5],
            reference: vec![-0.75],
        };
        let figures = EvalFigures {
            kl: 0.03,
            high_reward_fraction: 0.25,
            reward_mean: 0.5,
        };
        let commands = vec![
            Command::StepStage,
            Command::StepBatch,
            Command::Run,
            Command::Pause,
            Command::SetAutoPause(true),
            Command::SetParams {
                alpha: Some(0.01),
                beta: None,
                lr: Some(1e-5),
                origin: Origin::Attach { pid: 42 },
            },
            Command::Rank(Verdict::Order {
                index: 3,
                order: vec![2, 0, 1],
            }),
            Command::Rank(Verdict::Skip { index: 4 }),
            Command::Rank(Verdict::Back),
            Command::Rank(Verdict::HandOff),
            Command::Quit,
        ];
        let events = vec![
            Event::Started {
                run_dir: "runs/r".into(),
                backend: "flex".into(),
                model: "builtin:tiny-tasks".into(),
                iterations: 3,
                params,
            },
            Event::StageStarted {
                iteration: 1,
                stage: Stage::Generate,
            },
            Event::Progress {
                iteration: 1,
                stage: Stage::Generate,
                done: 2,
                total: 4,
            },
            Event::StageFinished {
                iteration: 1,
                stage: Stage::SyncEval,
                summary: StageSummary::SyncEval(figures),
                seconds: 1.5,
            },
            Event::Metrics(TrainRecord {
                iteration: 1,
                step: 2,
                batch: 1,
                metrics: crate::selm::SelmMetrics::default(),
                grad_norm: 0.5,
                lr: 1e-4,
            }),
            Event::Pairs {
                iteration: 1,
                pairs: vec![PairRecord {
                    prompt: "sort 2 1:".into(),
                    chosen: "1 2".into(),
                    rejected: "2 1".into(),
                    iteration: 1,
                    chosen_score: 1.0,
                    rejected_score: 0.0,
                    y_ref: "1 2".into(),
                    y_ref_score: 1.0,
                    candidates: vec![candidate.clone()],
                    ranker: "oracle".into(),
                }],
            },
            Event::PairLogps {
                iteration: 1,
                logps: vec![PairLogps {
                    beta: 0.1,
                    chosen: response.clone(),
                    rejected: response.clone(),
                    y_ref: response,
                }],
            },
            Event::RankQuery(RankQuery {
                iteration: 1,
                index: 0,
                total: 8,
                prompt: "sort 2 1:".into(),
                candidates: vec![candidate],
            }),
            Event::Iteration(IterationSummary {
                iteration: 1,
                eval: figures,
                reward_histogram: [1, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                histogram_range: [0.0, 1.0],
                candidate_reward_mean: 0.5,
                pairs: 12,
                mean_loss: 0.69,
                eval_prompts: 4,
                eval_samples: 8,
                wall_s: 2.5,
            }),
            Event::ParamsChanged(params),
            Event::AutoPause(false),
            Event::Paused,
            Event::Resumed,
            Event::Log(LogLine::warn("a warning")),
            Event::Waiting(Wait {
                what: "server starting".into(),
                elapsed_s: 12.0,
                limit_s: Some(600.0),
            }),
            Event::Error("iteration 1 stage `generate`: refused".into()),
            Event::Finished { completed: true },
        ];
        for e in &events {
            match e {
                Event::Started { .. }
                | Event::StageStarted { .. }
                | Event::Progress { .. }
                | Event::StageFinished { .. }
                | Event::Metrics(_)
                | Event::Pairs { .. }
                | Event::PairLogps { .. }
                | Event::RankQuery(_)
                | Event::Iteration(_)
                | Event::ParamsChanged(_)
                | Event::AutoPause(_)
                | Event::Paused
                | Event::Resumed
                | Event::Log(_)
                | Event::Waiting(_)
                | Event::Error(_)
                | Event::Finished { .. } => {}
            }
        }
        for c in &commands {
            match c {
                Command::StepStage
                | Command::StepBatch
                | Command::Run
                | Command::Pause
                | Command::SetAutoPause(_)
                | Command::SetParams { .. }
                | Command::Rank(_)
                | Command::Quit => {}
            }
        }
        let client = [ClientMsg::Hello {
            protocol: PROTOCOL,
            client: "selm-tui 0.1.0".into(),
            pid: 7,
        }]
        .into_iter()
        .chain(commands.into_iter().map(ClientMsg::Command));
        let server = [
            ServerMsg::Hello {
                protocol: PROTOCOL,
                server: "selm-tui 0.1.0".into(),
                pid: 8,
                run_dir: "runs/r".into(),
            },
            ServerMsg::Refused {
                protocol: PROTOCOL,
                reason: "protocol 1".into(),
            },
            ServerMsg::Error("a command was refused".into()),
        ]
        .into_iter()
        .chain(events.into_iter().map(ServerMsg::Event));
        let mut lines: Vec<String> = client.map(|m| serde_json::to_string(&m).unwrap()).collect();
        lines.extend(server.map(|m| serde_json::to_string(&m).unwrap()));
        lines
    }

    /// The wire, line for line, as recorded for this protocol version.
    #[test]
    fn the_wire_is_the_golden_one() {
        let lines = every_message();
        // Every line reads back as what was sent.
        for line in &lines {
            let back = serde_json::from_str::<ClientMsg>(line)
                .map(|m| serde_json::to_string(&m).unwrap())
                .or_else(|_| {
                    serde_json::from_str::<ServerMsg>(line)
                        .map(|m| serde_json::to_string(&m).unwrap())
                })
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(&back, line);
        }
        insta::assert_snapshot!(format!("protocol-v{PROTOCOL}"), lines.join("\n"));
    }

    #[test]
    fn lines_are_capped_and_utf8() {
        let mut r = std::io::Cursor::new(b"{\"a\":1}\nrest".to_vec());
        assert_eq!(read_line(&mut r).unwrap().unwrap(), "{\"a\":1}");
        assert_eq!(read_line(&mut r).unwrap().unwrap(), "rest");
        assert_eq!(read_line(&mut r).unwrap(), None);
        let mut bad = std::io::Cursor::new(vec![0xff, b'\n']);
        assert!(read_line(&mut bad).is_err());
    }
}
