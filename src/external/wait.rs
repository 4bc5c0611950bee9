//! Waits on the outside that a command can cut short. A unit of work that waits on a server
//! (starting, reloading, answering a batch) runs the blocking part on a thread of its own and
//! polls a [`Watch`] every [`POLL`]: the watch shows the wait ("server starting: 12 s of 600")
//! and says whether to go on. When it says stop, the wait ends with [`Interrupted`] at once;
//! the abandoned thread ends by its own timeout, and the unit runs again from its start.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How often a wait looks at its watch.
pub const POLL: Duration = Duration::from_millis(100);

/// What a unit of work is waiting on, and for how long so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wait {
    /// What is awaited, e.g. "server starting".
    pub what: String,
    pub elapsed_s: f64,
    /// When it gives up; None for a wait with no limit of its own.
    pub limit_s: Option<f64>,
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:.0} s", self.what, self.elapsed_s)?;
        if let Some(limit) = self.limit_s {
            write!(f, " of {limit:.0}")?;
        }
        Ok(())
    }
}

/// A wait given up because a command came (pause, quit, step, ...): not a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by a command while waiting")]
pub struct Interrupted;

/// Told about a wait every [`POLL`]; returns false to give it up.
pub type Watch<'a> = dyn FnMut(&Wait) -> bool + 'a;

/// A watch that never interrupts and shows nothing (tests, tools).
pub fn unwatched(_: &Wait) -> bool {
    true
}

/// Whether `e` is a wait given up for a command.
pub fn is_interrupted(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Interrupted>().is_some()
}

/// Work running on a thread of its own, whose result can be waited for, given up on and
/// waited for again (a reload interrupted by a pause is not sent twice).
pub struct Background<T>(Receiver<T>);

impl<T: Send + 'static> Background<T> {
    pub fn spawn(work: impl FnOnce() -> T + Send + 'static) -> Result<Self> {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("selm-wait".into())
            .spawn(move || {
                // The receiver is gone when the work was given up: the result goes with it.
                let _ = tx.send(work());
            })?;
        Ok(Self(rx))
    }

    /// The work's result, telling `watch` about the wait (`what`, `since`, `limit`)
    /// meanwhile; [`Interrupted`] when the watch says stop (the work goes on).
    pub fn wait(
        &self,
        what: &str,
        since: Instant,
        limit: Option<Duration>,
        watch: &mut Watch,
    ) -> Result<T> {
        loop {
            match self.0.recv_timeout(POLL) {
                Ok(result) => return Ok(result),
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("{what}: the waiting thread died")
                }
                Err(RecvTimeoutError::Timeout) => tick(what, since, limit, watch)?,
            }
        }
    }
}

/// Runs `work` on a thread of its own and returns its result, telling `watch` about the wait
/// meanwhile; [`Interrupted`] when the watch says stop (the work is then abandoned).
pub fn wait_for<T: Send + 'static>(
    what: &str,
    since: Instant,
    limit: Option<Duration>,
    watch: &mut Watch,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    Background::spawn(work)?.wait(what, since, limit, watch)
}

/// Tells `watch` once about a wait; [`Interrupted`] when it says stop.
pub fn tick(what: &str, since: Instant, limit: Option<Duration>, watch: &mut Watch) -> Result<()> {
    let wait = Wait {
        what: what.to_string(),
        elapsed_s: since.elapsed().as_secs_f64(),
        limit_s: limit.map(|l| l.as_secs_f64()),
    };
    if watch(&wait) {
        Ok(())
    } else {
        Err(Interrupted.into())
    }
}

/// Sleeps `d`, looking at `watch` every [`POLL`].
pub fn sleep(
    d: Duration,
    what: &str,
    since: Instant,
    limit: Option<Duration>,
    watch: &mut Watch,
) -> Result<()> {
    let end = Instant::now() + d;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        std::thread::sleep(left.min(POLL));
        tick(what, since, limit, watch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_that_says_stop_ends_the_wait_at_once() {
        let start = Instant::now();
        let mut seen = vec![];
        let mut watch = |w: &Wait| {
            seen.push(w.clone());
            w.elapsed_s < 0.25
        };
        let r = wait_for("server starting", start, None, &mut watch, || {
            std::thread::sleep(Duration::from_secs(30));
        });
        assert!(is_interrupted(&r.unwrap_err()));
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(seen.len() >= 2 && seen.iter().all(|w| w.what == "server starting"));
        let w = Wait {
            what: "server starting".into(),
            elapsed_s: 12.2,
            limit_s: Some(600.0),
        };
        assert_eq!(w.to_string(), "server starting: 12 s of 600");
    }

    #[test]
    fn a_finished_wait_returns_its_result() {
        let r = wait_for("x", Instant::now(), None, &mut unwatched, || 7).unwrap();
        assert_eq!(r, 7);
    }
}
