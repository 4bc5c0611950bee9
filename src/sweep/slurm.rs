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
use std::process::Command;
use std::time::{Duration, Instant};

use super::grid::Point;
use super::progress::{prepare, say, style, units, units_done};
use super::state::{RunStatus, SweepState};

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
    let queued = queued_tasks()?;
    let followed: Vec<usize> = (0..points.len())
        .filter(|&i| {
            state.runs[i].status != RunStatus::Finished
                && state.runs[i]
                    .slurm
                    .as_ref()
                    .is_some_and(|id| queued.contains_key(id))
        })
        .collect();
    let submit: Vec<usize> = (0..points.len())
        .filter(|&i| state.runs[i].status != RunStatus::Finished && !followed.contains(&i))
        .collect();
    let mp = MultiProgress::new();
    let overall = mp.add(ProgressBar::new(points.iter().map(units).sum()));
    overall.set_style(style("{pos}/{len} units"));
    overall.set_prefix("sweep");
    let finished = points.len() - followed.len() - submit.len();
    overall.set_position(
        (0..points.len())
            .filter(|&i| state.runs[i].status == RunStatus::Finished)
            .map(|i| units(&points[i]))
            .sum(),
    );
    say(
        &mp,
        format!(
            "{} runs: {finished} finished already, {} still queued in Slurm, {} to submit",
            points.len(),
            followed.len(),
            submit.len()
        ),
    );
    if !submit.is_empty() {
        let job = submit_array(state, points, &submit, jobs, sbatch_args)?;
        say(
            &mp,
            format!(
                "submitted array job {job} ({} tasks): {}",
                submit.len(),
                state.dir.join(SLURM_DIR).display()
            ),
        );
        for &i in &submit {
            let entry = &mut state.runs[i];
            entry.slurm = Some(format!("{job}_{i}"));
            entry.status = RunStatus::Pending;
            entry.error = None;
        }
        state.save()?;
    }
    let mut tasks: HashMap<usize, Task> = followed
        .iter()
        .chain(&submit)
        .map(|&i| (i, task(state, &points[i], i, &mp)))
        .collect();
    let started = Instant::now();
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
                say(&mp, format!("squeue failed ({failures}/{SQUEUE_RETRIES}), retrying: {e:#}"));
                std::thread::sleep(POLL * 5);
                continue;
            }
            Err(e) => return Err(e.context("following the sweep's tasks (they go on in Slurm; the same sweep command follows them again)")),
        };
        let mut ended = vec![];
        for (&i, t) in tasks.iter_mut() {
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
                None => ended.push(i),
            }
            read_output(t, &overall);
            if t.bar.message().is_empty()
                && let Some(dir) = state.run_dir(&points[i].name)
            {
                t.bar.set_message(dir.display().to_string());
                say(
                    &mp,
                    format!(
                        "{:>28}: task {} running in {} (selm-tui attach {} on its node)",
                        points[i].name,
                        t.id,
                        dir.display(),
                        dir.display()
                    ),
                );
            }
        }
        for i in ended {
            let t = tasks.remove(&i).expect("a followed task");
            finish(state, &points[i], i, t, &overall, &mp)?;
        }
        if !tasks.is_empty() {
            std::thread::sleep(POLL);
        }
    }
    overall.finish_and_clear();
    Ok(super::progress::summary(state, started))
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

/// Writes the array job's script and submits it for points `indices`; returns the job id.
fn submit_array(
    state: &SweepState,
    points: &[Point],
    indices: &[usize],
    jobs: Option<usize>,
    sbatch_args: &[String],
) -> Result<String> {
    for &i in indices {
        prepare(state, &points[i])?;
    }
    let slurm = state.dir.join(SLURM_DIR);
    std::fs::create_dir_all(&slurm).with_context(|| format!("creating {}", slurm.display()))?;
    // The executable by its path: tasks start on other nodes, from a shared filesystem.
    let exe = std::env::current_exe().context("finding the selm-tui executable")?;
    let script = slurm.join("array.sh");
    crate::io::atomic_write(&script, job_script(&exe, &state.dir).as_bytes())?;
    let mut array = indices
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    if let Some(n) = jobs {
        array.push_str(&format!("%{n}"));
    }
    // `%` in the directory would read as one of Slurm's patterns.
    let tasks_out = slurm.join("%A_%a.out");
    if slurm.display().to_string().contains('%') {
        bail!(
            "{}: Slurm's --output cannot name a path with `%`",
            slurm.display()
        );
    }
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(format!("--array={array}"))
        .arg("--output")
        .arg(&tasks_out)
        .args(sbatch_args)
        .arg(&script)
        .output()
        .context("running sbatch (is Slurm installed, and this a submit host?)")?;
    if !out.status.success() {
        bail!(
            "sbatch {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let text = String::from_utf8_lossy(&out.stdout);
    let job = text.trim().split(';').next().unwrap_or_default();
    if job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
        bail!("sbatch printed no job id: {text:?}");
    }
    Ok(job.to_string())
}

/// The array job's script: each task runs (or resumes) its point of the sweep.
fn job_script(exe: &Path, dir: &Path) -> String {
    let q = |p: &Path| shell_words::quote(&p.display().to_string()).into_owned();
    format!(
        "#!/bin/bash\n\
         # selm-tui sweep: task i of this array job runs grid point i of sweep.json, or resumes\n\
         # it when its run directory exists (an interrupted, cancelled or requeued task).\n\
         # sbatch gets --output=DIR/slurm/%A_%a.out on its command line.\n\
         #SBATCH --job-name=selm-sweep\n\
         #SBATCH --open-mode=append\n\
         set -euo pipefail\n\
         # Flex's threads follow the CPUs Slurm gave the task (--cpus-per-task), 1 by default.\n\
         export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\n\
         exec {exe} sweep-task {dir} \"$SLURM_ARRAY_TASK_ID\"\n",
        exe = q(exe),
        dir = q(dir),
    )
}

/// Task ids (`JOBID_INDEX`) of this user's queued and running array tasks, with their state.
fn queued_tasks() -> Result<HashMap<String, String>> {
    let out = Command::new("squeue")
        .args(["--me", "-h", "-r", "-o", "%i %T"])
        .output()
        .context("running squeue (is Slurm installed?)")?;
    if !out.status.success() {
        bail!(
            "squeue {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, st)| (id.to_string(), st.trim().to_string()))
        .collect())
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

/// The task's final state as `scontrol` still knows it (`COMPLETED`, `CANCELLED`, ...);
/// None once Slurm has forgotten the job (MinJobAge).
fn job_state(task: &str) -> Option<String> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", task])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let state = text
        .split_whitespace()
        .find_map(|f| f.strip_prefix("JobState="))?;
    // `CANCELLED by 0` is one field in `-o` output: the state is its first word.
    Some(state.split_whitespace().next()?.to_string())
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
    fn the_script_runs_each_task_through_sweep_task() {
        let s = job_script(
            Path::new("/opt/selm tui/selm-tui"),
            Path::new("/scratch/sw"),
        );
        assert!(s.starts_with("#!/bin/bash\n"));
        assert!(s.contains(
            "exec '/opt/selm tui/selm-tui' sweep-task /scratch/sw \"$SLURM_ARRAY_TASK_ID\"\n"
        ));
        assert!(interrupted("CANCELLED") && interrupted("TIMEOUT") && !interrupted("FAILED"));
    }
}
