//! Many requests to a server at once: up to `concurrency` in flight, in order, the first
//! failure (after the client's retries) stops new ones, and a command cuts the wait short
//! ([`wait::Interrupted`]): no new request starts then, and those in flight end unheard.

use anyhow::{Context, Result, bail};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::wait::{self, Watch};

/// `send` applied to every job, the answers in the jobs' order; the first error fails the
/// whole, in the context `describe(i)` gives request i. `what` names the wait.
pub fn send_all<J, T>(
    what: &str,
    jobs: Vec<J>,
    concurrency: usize,
    watch: &mut Watch,
    send: impl Fn(&J) -> Result<T> + Send + Sync + 'static,
    describe: impl Fn(usize) -> String,
) -> Result<Vec<T>>
where
    J: Send + Sync + 'static,
    T: Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut watch = |w: &wait::Wait| {
        let go = watch(w);
        stop.fetch_or(!go, Ordering::Relaxed);
        go
    };
    let batch_stop = stop.clone();
    let results = wait::wait_for(what, Instant::now(), None, &mut watch, move || {
        answer_all(&jobs, concurrency, &batch_stop, &send)
    })?;
    let mut out = Vec::with_capacity(results.len());
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Some(result) => out.push(result.with_context(|| describe(i))?),
            None => bail!("{}: never sent", describe(i)),
        }
    }
    Ok(out)
}

/// Each job's answer, None for those not sent once one failed or `stop` was raised.
fn answer_all<J: Sync, T: Send>(
    jobs: &[J],
    concurrency: usize,
    stop: &AtomicBool,
    send: &(impl Fn(&J) -> Result<T> + Sync),
) -> Vec<Option<Result<T>>> {
    let n = jobs.len();
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<T>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..concurrency.clamp(1, n.max(1)) {
            scope.spawn(|| {
                // `stop` before taking a job: a job taken is always sent, so the jobs never
                // sent all come after every one that failed.
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let result = send(&jobs[i]);
                    stop.fetch_or(result.is_err(), Ordering::Relaxed);
                    *results[i].lock().expect("not poisoned") = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| slot.into_inner().expect("not poisoned"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_come_in_order_and_the_first_failure_fails_the_whole() {
        let jobs: Vec<u32> = (0..20).collect();
        let got = send_all(
            "t",
            jobs,
            4,
            &mut wait::unwatched,
            |j| Ok(j * 2),
            |i| format!("job {i}"),
        )
        .unwrap();
        assert_eq!(got, (0..20).map(|j| j * 2).collect::<Vec<_>>());
        let e = send_all(
            "t",
            vec![1u32, 2, 3],
            1,
            &mut wait::unwatched,
            |&j| if j == 2 { bail!("boom") } else { Ok(j) },
            |i| format!("job {i}"),
        )
        .unwrap_err();
        assert_eq!(format!("{e:#}"), "job 1: boom");
    }
}
