//! A ranker in a child process speaking JSON lines on stdin/stdout:
//!
//! request (one line):  `{"prompt": "...", "candidates": ["...", "..."]}`
//! response (one line): `{"scores": [0.3, -1.2]}`  (one finite number per candidate)
//!
//! The process is started on first use and kept for the run. A response slower than the
//! timeout kills it; a crash, a malformed line or a wrong count is an error that quotes what
//! came back (and the tail of its stderr). The loop has written the candidates to disk before
//! ranking, so a failure loses nothing and the rank stage can be retried.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{RankRequest, Ranker};

/// Lines of stderr kept for error messages.
const STDERR_TAIL: usize = 20;

#[derive(Serialize)]
struct Request<'a> {
    prompt: &'a str,
    candidates: &'a [String],
}

#[derive(Deserialize)]
struct Response {
    scores: Option<Vec<f64>>,
    /// A ranker may answer `{"error": "..."}` for a request it cannot score.
    error: Option<String>,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

pub struct ProcessRanker {
    name: String,
    command: Vec<String>,
    timeout: Duration,
    running: Option<Running>,
}

impl ProcessRanker {
    pub fn new(name: String, command: Vec<String>, timeout: Duration) -> Result<Self> {
        if command.is_empty() {
            bail!("the ranker command is empty");
        }
        Ok(Self {
            name,
            command,
            timeout,
            running: None,
        })
    }

    fn start(&mut self) -> Result<&mut Running> {
        if self.running.is_none() {
            let mut child = Command::new(&self.command[0])
                .args(&self.command[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting ranker `{}`", self.command.join(" ")))?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            let stderr = child.stderr.take().expect("piped");
            // Readers on their own threads, so a silent child cannot block past the timeout.
            let (tx, lines) = channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let tail = Arc::new(Mutex::new(VecDeque::new()));
            let sink = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
            self.running = Some(Running {
                child,
                stdin,
                lines,
                stderr: tail,
            });
        }
        Ok(self.running.as_mut().expect("started"))
    }

    /// Stops the child; the next request starts a fresh one.
    fn stop(&mut self) -> String {
        let Some(mut r) = self.running.take() else {
            return String::new();
        };
        let _ = r.child.kill();
        let status = r.child.wait().map(|s| s.to_string()).unwrap_or_default();
        // Give the stderr reader a moment to collect the last lines.
        std::thread::sleep(Duration::from_millis(50));
        let tail = r.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let mut msg = format!("process {status}");
        if !tail.is_empty() {
            msg.push_str("; its stderr ends with:\n");
            msg.push_str(&tail.iter().cloned().collect::<Vec<_>>().join("\n"));
        }
        msg
    }

    fn exchange(&mut self, request: &RankRequest<'_>) -> Result<String> {
        let timeout = self.timeout;
        let line = serde_json::to_string(&Request {
            prompt: request.prompt,
            candidates: request.candidates,
        })?;
        let r = self.start()?;
        if writeln!(r.stdin, "{line}")
            .and_then(|_| r.stdin.flush())
            .is_err()
        {
            let why = self.stop();
            bail!("the ranker closed its input ({why})");
        }
        match r.lines.recv_timeout(timeout) {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                let why = self.stop();
                bail!("reading the ranker's output: {e} ({why})")
            }
            Err(RecvTimeoutError::Timeout) => {
                let why = self.stop();
                bail!(
                    "the ranker did not answer within {:.0} s (rank.timeout_s); stopped it ({why})",
                    timeout.as_secs_f64()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let why = self.stop();
                bail!("the ranker exited without answering ({why})")
            }
        }
    }
}

impl Ranker for ProcessRanker {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&mut self, request: &RankRequest<'_>) -> Result<Vec<f64>> {
        let reply = self
            .exchange(request)
            .with_context(|| format!("ranker `{}`", self.command.join(" ")))?;
        parse_reply(&self.name, &reply, request.candidates.len())
    }
}

/// The scores in one reply line of ranker `name` to a request with `n_candidates`
/// candidates: exactly one finite number per candidate, or an error that quotes the line
/// (or passes on the ranker's own `{"error": ...}`). The line is untrusted: anything else is
/// an error, never a panic.
pub fn parse_reply(name: &str, reply: &str, n_candidates: usize) -> Result<Vec<f64>> {
    let quoted = quote(reply);
    let response: Response = serde_json::from_str(reply).map_err(|e| {
        anyhow::anyhow!("ranker `{name}` answered with a malformed line ({e}): {quoted}")
    })?;
    let scores = match (response.scores, response.error) {
        (_, Some(e)) => bail!("ranker `{name}` reported an error: {e}"),
        (Some(s), None) => s,
        (None, None) => bail!("ranker `{name}` answered without `scores`: {quoted}"),
    };
    if scores.len() != n_candidates {
        bail!(
            "ranker `{name}` returned {} scores for {n_candidates} candidates: {quoted}",
            scores.len()
        );
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        bail!(
            "ranker `{name}` returned a non-finite score {} at {i}: {quoted}",
            scores[i]
        );
    }
    Ok(scores)
}

impl Drop for ProcessRanker {
    fn drop(&mut self) {
        // Kill the child and wait for it, so that no ranker process outlives the run.
        self.stop();
    }
}

/// A reply for an error message: quoted, and cut if long.
fn quote(line: &str) -> String {
    format!("`{}`", crate::text::clip(line, 300))
}
