//! The control socket's protocol: one JSON object per line each way. A viewer opens with
//! `hello`; the run answers `hello` (then the catch-up and live events) or `refused`.
//! Commands and events are the engine's own [`Command`] and [`Event`], so a viewer sees what
//! the run's own front end sees.

use serde::{Deserialize, Serialize};

use crate::engine::{Command, Event};

/// Bumped whenever a message changes shape; both sides must speak the same one.
pub const PROTOCOL: u32 = 1;

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
