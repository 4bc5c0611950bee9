//! `sweep --launcher slurm`: the grid's unfinished points as one Slurm array job (task i is
//! point i of `sweep.json`), submitted with `sbatch`, followed with `squeue` / `scontrol`
//! and each task's output file, whose headless lines move the same progress bars as a local
//! sweep. Each task decides when it starts whether to run its point or resume its run
//! directory (`selm-tui sweep-task`), so a requeued or re-submitted task resumes. Running
//! the same sweep again follows the tasks still queued and submits only the points that are
//! neither finished nor queued.

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod commands;

use super::grid::Point;
use super::progress::{say, style, units, units_done};
use super::state::{RunStatus, SweepState};
use commands::{job_state, queued_tasks, submit_array};

/// How often Slurm is asked about the tasks.
const POLL: Duration = Duration::from_secs(2);

/// Consecutive squeue failures tolerated (with pauses of 5 polls) before following stops.
const SQUEUE_RETRIES: u32 = 30;

/// Where the array job's script and its tasks' output go, in the sweep directory.
const SLURM_DIR: &str = "slurm";

/// A task of the array job, as the sweep follows it.
struct Task {
    id: String,
    out: PathBuf,
    /// How far its output file has been read.
    read: u64,
    bar: ProgressBar,
    started: Option<Instant>,
    last_error: Option<String>,
}

/// Submits the points not finished nor queued, follows every task to its end; returns a
/// one-line summary.
pub fn drive(
    state: &mut SweepState,
    points: &[Point],
    jobs: Option<usize>,
    sbatch_args: &[String],
) -> Result<String> {
    let (followed, submit) = plan(state, points)?;
    let mp = MultiProgress::new();
    let overall = mp.add(ProgressBar::new(points.iter().map(units).sum()));
    overall.set_style(style("{pos}/{len} units"));
    overall.set_prefix("sweep");
    let finished: Vec<usize> = (0..points.len())
        .filter(|&i| state.runs[i].status == RunStatus::Finished)
        .collect();
    overall.set_position(finished.iter().map(|&i| units(&points[i])).sum());
    say(
        &mp,
        format!(
            "{} runs: {} finished already, {} still queued in Slurm, {} to submit",
            points.len(),
            finished.len(),
            followed.len(),
            submit.len()
        ),
    );
    if !submit.is_empty() {
        submit_points(state, points, &submit, jobs, sbatch_args, &mp)?;
    }
    let tasks = followed
        .iter()
        .chain(&submit)
        .map(|&i| (i, task(state, &points[i], i, &mp)))
        .collect();
    let started = Instant::now();
    follow(state, points, tasks, &overall, &mp)?;
    overall.finish_and_clear();
    Ok(super::progress::summary(state, started))
}

/// The unfinished points: those whose task Slurm still has queued (to follow), and the rest
/// (to submit).
fn plan(state: &SweepState, points: &[Point]) -> Result<(Vec<usize>, Vec<usize>)> {
    let queued = queued_tasks()?;
    let unfinished = (0..points.len()).filter(|&i| state.runs[i].status != RunStatus::Finished);
    Ok(unfinished.partition(|&i| {
        state.runs[i]
            .slurm
            .as_ref()
            .is_some_and(|id| queued.contains_key(id))
    }))
}

/// Submits points `submit` as one array job and records each one's task id.
fn submit_points(
    state: &mut SweepState,
    points: &[Point],
    submit: &[usize],
    jobs: Option<usize>,
    sbatch_args: &[String],
    mp: &MultiProgress,
) -> Result<()> {
    let job = submit_array(state, points, submit, jobs, sbatch_args)?;
    say(
        mp,
        format!(
            "submitted array job {job} ({} tasks): {}",
            submit.len(),
            state.dir.join(SLURM_DIR).display()
        ),
    );
    for &i in submit {
        let entry = &mut state.runs[i];
        entry.slurm = Some(format!("{job}_{i}"));
        entry.status = RunStatus::Pending;
        entry.error = None;
    }
    state.save()
}

/// Follows `tasks` (by point) until each has ended, moving their bars.
fn follow(
    state: &mut SweepState,
    points: &[Point],
    mut tasks: HashMap<usize, Task>,
    overall: &ProgressBar,
    mp: &MultiProgress,
) -> Result<()> {
    let mut failures = 0;
    while !tasks.is_empty() {
        // A busy controller may time out now and then: the tasks run on regardless.
        let queued = match queued_tasks() {
            Ok(q) => {
                failures = 0;
                q
            }
            Err(e) if failures < SQUEUE_RETRIES => {
                failures += 1;
                say(mp, format!("squeue failed ({failures}/{SQUEUE_RETRIES}), retrying: {e:#}"));
                std::thread::sleep(POLL * 5);
                continue;
            }
            Err(e) => return Err(e.context("following the sweep's tasks (they go on in Slurm; the same sweep command follows them again)")),
        };
        let mut ended = vec![];
        for (&i, t) in tasks.iter_mut() {
            if !observe(state, &points[i], i, t, &queued, mp)? {
                ended.push(i);
            }
            read_output(t, overall);
        }
        for i in ended {
            let t = tasks.remove(&i).expect("a followed task");
            finish(state, &points[i], i, t, overall, mp)?;
        }
        if !tasks.is_empty() {
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

/// Looks at task `t` (point `i`) in `queued`: marks it running when it starts, names its
/// run directory once there is one. False when Slurm no longer has it queued.
fn observe(
    state: &mut SweepState,
    point: &Point,
    i: usize,
    t: &mut Task,
    queued: &HashMap<String, String>,
    mp: &MultiProgress,
) -> Result<bool> {
    // squeue can miss a task scontrol still has queued (a requeue in flight).
    let listed = queued.get(&t.id).cloned().or_else(|| {
        job_state(&t.id).filter(|s| {
            matches!(
                s.as_str(),
                "PENDING" | "RUNNING" | "REQUEUED" | "CONFIGURING" | "COMPLETING"
            )
        })
    });
    match listed.as_deref() {
        Some("RUNNING" | "COMPLETING") if t.started.is_none() => {
            t.started = Some(Instant::now());
            state.runs[i].status = RunStatus::Running;
            state.save()?;
        }
        Some(_) => {}
        None => return Ok(false),
    }
    if t.bar.message().is_empty()
        && let Some(dir) = state.run_dir(&point.name)
    {
        t.bar.set_message(dir.display().to_string());
        say(
            mp,
            format!(
                "{:>28}: task {} running in {} (selm-tui attach {} on its node)",
                point.name,
                t.id,
                dir.display(),
                dir.display()
            ),
        );
    }
    Ok(true)
}

fn task(state: &SweepState, point: &Point, i: usize, mp: &MultiProgress) -> Task {
    let id = state.runs[i].slurm.clone().expect("a submitted point");
    let bar = mp.add(ProgressBar::new(units(point)));
    bar.set_style(style("{pos}/{len}"));
    bar.set_prefix(point.name.clone());
    Task {
        out: output_file(&state.dir, &id),
        id,
        read: 0,
        bar,
        started: None,
        last_error: None,
    }
}

/// `slurm/<job>_<index>.out`, as the script's `--output` names it.
fn output_file(dir: &Path, task: &str) -> PathBuf {
    dir.join(SLURM_DIR).join(format!("{task}.out"))
}

/// Moves a task's bar to where the new lines of its output say it is.
fn read_output(t: &mut Task, overall: &ProgressBar) {
    let Ok(mut f) = std::fs::File::open(&t.out) else {
        return;
    };
    let mut text = String::new();
    if f.seek(SeekFrom::Start(t.read)).is_err() || f.read_to_string(&mut text).is_err() {
        return;
    }
    // Only whole lines: a partial last line is read again next time.
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    t.read += whole as u64;
    for line in text[..whole].lines() {
        if let Some(e) = super::progress::error_text(line) {
            t.last_error = Some(e);
        }
        if let Some(done) = units_done(line)
            && done > t.bar.position()
        {
            overall.inc(done - t.bar.position());
            t.bar.set_position(done);
        }
    }
}

/// A task left the queue: its run directory says whether it finished; Slurm says why not.
fn finish(
    state: &mut SweepState,
    point: &Point,
    i: usize,
    mut t: Task,
    overall: &ProgressBar,
    mp: &MultiProgress,
) -> Result<()> {
    read_output(&mut t, overall);
    t.bar.finish_and_clear();
    overall.inc(units(point).saturating_sub(t.bar.position()));
    let finished = state
        .run_dir(&point.name)
        .and_then(|d| crate::run::RunDir::open(&d).ok()?.read_state().ok()?)
        .is_some_and(|s| s.finished);
    let slurm = job_state(&t.id);
    let dir = state.relative_run_dir(&point.name);
    let entry = &mut state.runs[i];
    entry.dir = dir;
    entry.wall_s = t.started.map(|s| s.elapsed().as_secs_f64());
    let what = slurm.as_deref().unwrap_or("gone from the queue");
    if finished {
        entry.status = RunStatus::Finished;
        entry.error = None;
        say(mp, format!("{:>28}: finished (task {})", point.name, t.id));
    } else if slurm.as_deref().is_some_and(interrupted) {
        entry.status = RunStatus::Interrupted;
        entry.error = Some(format!("Slurm task {} {what}", t.id));
        say(
            mp,
            format!(
                "{:>28}: {what} (task {}); the next sweep resumes it",
                point.name, t.id
            ),
        );
    } else {
        entry.status = RunStatus::Failed;
        let error = t
            .last_error
            .unwrap_or_else(|| format!("Slurm task {} {what}", t.id));
        say(
            mp,
            format!("{:>28}: FAILED (task {}): {error}", point.name, t.id),
        );
        entry.error = Some(error);
    }
    state.save()?;
    super::results::write_csv(&state.dir, state, &state.grid.clone())
}

/// Ends that leave a run to resume rather than a failure to report.
fn interrupted(state: &str) -> bool {
    matches!(
        state,
        "CANCELLED" | "PREEMPTED" | "TIMEOUT" | "NODE_FAIL" | "BOOT_FAIL" | "DEADLINE" | "REQUEUED"
    )
}

/// `selm-tui sweep-task DIR INDEX`: the array task's body. Runs point `index` of the sweep
/// in `dir` in this process's place (Slurm's signals reach selm-tui itself).
pub fn run_task(dir: &Path, index: usize) -> Result<()> {
    let state = SweepState::load(dir)?;
    let Some(entry) = state.runs.get(index) else {
        bail!(
            "{} has {} points; there is no point {index}",
            dir.display(),
            state.runs.len()
        );
    };
    let exe = std::env::current_exe().context("finding the selm-tui executable")?;
    let mut cmd = super::progress::point_command(&state, &entry.name, &exe);
    println!(
        "sweep task {index}: point {} ({})",
        entry.name,
        match state.run_dir(&entry.name) {
            Some(d) => format!("resuming {}", d.display()),
            None => "a new run".into(),
        }
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    use std::os::unix::process::CommandExt;
    Err(cmd.exec()).with_context(|| format!("starting {}", exe.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_and_timed_out_tasks_are_resumed_not_failed() {
        assert!(interrupted("CANCELLED") && interrupted("TIMEOUT") && !interrupted("FAILED"));
    }
}
