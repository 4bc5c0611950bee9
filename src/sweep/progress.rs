//! Runs the sweep's pending points as child processes, `jobs` at a time, with a progress bar
//! per running run and one for the whole sweep (each with its ETA). Progress is read from
//! the children's headless output (`iter N <stage>` lines), which also goes to each run's
//! `sweep.log`.

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use super::grid::Point;
use super::state::{RunStatus, SweepState};
use crate::run::Stage;

/// A run in progress.
struct Job {
    child: Child,
    bar: ProgressBar,
    started: Instant,
    last_error: Option<String>,
    /// Whether its run directory has been announced (it exists once the run has started).
    dir_shown: bool,
}

/// Units of progress in one run: the starting evaluation, then six stages per iteration.
pub(super) fn units(p: &Point) -> u64 {
    1 + 6 * p.config.run.iterations as u64
}

/// Runs every point not yet finished; returns a one-line summary.
pub fn drive(
    state: &mut SweepState,
    points: &[Point],
    jobs: usize,
    threads: usize,
) -> Result<String> {
    let mut todo: VecDeque<usize> = (0..points.len())
        .filter(|&i| state.runs[i].status != RunStatus::Finished)
        .collect();
    let skipped = points.len() - todo.len();
    let mp = MultiProgress::new();
    let overall = mp.add(ProgressBar::new(points.iter().map(units).sum()));
    overall.set_style(style("{pos}/{len} units"));
    overall.set_prefix("sweep");
    overall.set_position(
        (0..points.len())
            .filter(|i| !todo.contains(i))
            .map(|i| units(&points[i]))
            .sum(),
    );
    say(
        &mp,
        format!(
            "{} runs: {skipped} finished already, {} to run, {jobs} at a time ({threads} thread{} each)",
            points.len(),
            todo.len(),
            if threads == 1 { "" } else { "s" }
        ),
    );
    let (tx, rx) = channel::<(usize, String)>();
    let mut running: HashMap<usize, Job> = HashMap::new();
    let started = Instant::now();
    loop {
        while running.len() < jobs {
            let Some(i) = todo.pop_front() else { break };
            let job = start(state, &points[i], i, threads, &tx, &mp)?;
            running.insert(i, job);
        }
        if running.is_empty() {
            break;
        }
        if let Ok((i, line)) = rx.recv_timeout(Duration::from_millis(200)) {
            follow(&mut running, &overall, i, &line);
            for (i, line) in rx.try_iter() {
                follow(&mut running, &overall, i, &line);
            }
        }
        show_run_dirs(state, points, &mut running, &mp);
        let done: Vec<usize> = running
            .iter_mut()
            .filter_map(|(&i, job)| job.child.try_wait().ok().flatten().map(|_| i))
            .collect();
        for i in done {
            let job = running.remove(&i).expect("a running job");
            finish(state, &points[i], i, job, &overall, &mp, &rx)?;
        }
    }
    overall.finish_and_clear();
    Ok(summary(state, started))
}

/// The sweep's last line: how long, and how its runs stand.
pub(super) fn summary(state: &SweepState, started: Instant) -> String {
    let count = |s| state.runs.iter().filter(|r| r.status == s).count();
    format!(
        "sweep done in {:.0} s: {} finished, {} failed, {} interrupted",
        started.elapsed().as_secs_f64(),
        count(RunStatus::Finished),
        count(RunStatus::Failed),
        count(RunStatus::Interrupted)
    )
}

/// Each running run's directory, once it exists: a line to `selm-tui attach` it by, and its
/// bar's message.
fn show_run_dirs(
    state: &SweepState,
    points: &[Point],
    running: &mut HashMap<usize, Job>,
    mp: &MultiProgress,
) {
    for (&i, job) in running.iter_mut().filter(|(_, j)| !j.dir_shown) {
        let Some(dir) = state.run_dir(&points[i].name) else {
            continue;
        };
        job.dir_shown = true;
        job.bar.set_message(dir.display().to_string());
        say(
            mp,
            format!(
                "{:>28}: running in {} (selm-tui attach {})",
                points[i].name,
                dir.display(),
                dir.display()
            ),
        );
    }
}

pub(super) fn style(counts: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix:>28}} [{{bar:30}}] {counts} {{elapsed}} ETA {{eta}} {{msg}}"
    ))
    .expect("a valid template")
    .progress_chars("=> ")
}

/// Prints a line above the bars (or plainly, without a terminal).
pub(super) fn say(mp: &MultiProgress, line: String) {
    if mp.is_hidden() {
        println!("{line}");
    } else {
        let _ = mp.println(line);
    }
}

/// Writes the config a new run of `point` starts from (`runs/<name>/sweep-config.toml`).
pub(super) fn prepare(state: &SweepState, point: &Point) -> Result<()> {
    let home = state.dir.join("runs").join(&point.name);
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    if state.run_dir(&point.name).is_none() {
        let config = home.join(POINT_CONFIG);
        crate::io::atomic_write(&config, point.config.to_toml().as_bytes())?;
    }
    Ok(())
}

/// The config [`prepare`] writes, in the point's directory.
const POINT_CONFIG: &str = "sweep-config.toml";

/// How point `name` runs, decided when it starts: a `resume` of its run directory when one
/// exists (interrupted, cancelled, requeued), else a new headless run of its config.
pub(super) fn point_command(state: &SweepState, name: &str, exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    match state.run_dir(name) {
        Some(dir) => cmd.arg("resume").arg(dir).arg("--headless"),
        None => {
            let config = state.dir.join("runs").join(name).join(POINT_CONFIG);
            cmd.arg("--config").arg(config).args(["run", "--headless"])
        }
    };
    cmd
}

/// Starts `point`: resumes its run directory when one exists, else a new run.
fn start(
    state: &mut SweepState,
    point: &Point,
    i: usize,
    threads: usize,
    tx: &Sender<(usize, String)>,
    mp: &MultiProgress,
) -> Result<Job> {
    prepare(state, point)?;
    let exe = running_exe()?;
    let mut child = point_command(state, &point.name, &exe)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            let path = std::env::current_exe().unwrap_or_default();
            format!(
                "starting a run with {} (this selm-tui, {})",
                exe.display(),
                path.display()
            )
        })?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.dir.join("runs").join(&point.name).join("sweep.log"))
        .context("opening the run's sweep.log")?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(log));
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    forward(out, i, tx.clone(), log.clone());
    forward(err, i, tx.clone(), log);
    let bar = mp.add(ProgressBar::new(units(point)));
    bar.set_style(style("{pos}/{len}"));
    bar.set_prefix(point.name.clone());
    let entry = &mut state.runs[i];
    entry.status = RunStatus::Running;
    entry.error = None;
    state.save()?;
    Ok(Job {
        child,
        bar,
        started: Instant::now(),
        last_error: None,
        dir_shown: false,
    })
}

/// The executable the runs start from: this very process's. On Linux that is
/// `/proc/self/exe`, which still opens it after its file was replaced or removed (a rebuild,
/// a `cargo install` during a long sweep); elsewhere its path.
fn running_exe() -> Result<PathBuf> {
    let this = Path::new("/proc/self/exe");
    if this.exists() {
        return Ok(this.to_path_buf());
    }
    std::env::current_exe().context("finding the selm-tui executable")
}

/// Copies a child's lines to its log and to the sweep's channel.
fn forward(
    stream: impl std::io::Read + Send + 'static,
    i: usize,
    tx: Sender<(usize, String)>,
    log: std::sync::Arc<std::sync::Mutex<std::fs::File>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut f) = log.lock() {
                let _ = writeln!(f, "{line}");
            }
            if tx.send((i, line)).is_err() {
                break;
            }
        }
    });
}

/// Moves run `i`'s bar (and the sweep's) to where its output line says it is.
fn follow(running: &mut HashMap<usize, Job>, overall: &ProgressBar, i: usize, line: &str) {
    let Some(job) = running.get_mut(&i) else {
        return;
    };
    if let Some(e) = error_text(line) {
        job.last_error = Some(e);
    }
    if let Some(done) = units_done(line)
        && done > job.bar.position()
    {
        overall.inc(done - job.bar.position());
        job.bar.set_position(done);
    }
}

/// `[  12.3s] iter 2 update ...` -> the units done once that stage finished.
pub(super) fn units_done(line: &str) -> Option<u64> {
    let rest = line.split_once("] iter ")?.1;
    let (n, rest) = rest.split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    if n == 0 {
        return rest.starts_with("eval").then_some(1);
    }
    let stage = Stage::ALL
        .iter()
        .find(|s| rest.starts_with(s.label()) && !rest.starts_with("eval"))?;
    Some(1 + (n - 1) * 6 + stage.index() as u64 + 1)
}

/// The message of an `error: ...` line (headless) or `Error: ...` (the process's exit).
pub(super) fn error_text(line: &str) -> Option<String> {
    let at = line
        .find("error: ")
        .map(|i| i + 7)
        .or_else(|| line.starts_with("Error: ").then_some(7))?;
    Some(line[at..].trim().to_string())
}

fn finish(
    state: &mut SweepState,
    point: &Point,
    i: usize,
    mut job: Job,
    overall: &ProgressBar,
    mp: &MultiProgress,
    rx: &Receiver<(usize, String)>,
) -> Result<()> {
    let status = job.child.wait().context("waiting for a run")?;
    // The readers may still hold its last lines (the error, typically).
    std::thread::sleep(Duration::from_millis(50));
    for (j, line) in rx.try_iter() {
        if j == i
            && let Some(e) = error_text(&line)
        {
            job.last_error = Some(e);
        }
    }
    let wall = job.started.elapsed().as_secs_f64();
    job.bar.finish_and_clear();
    overall.inc(units(point).saturating_sub(job.bar.position()));
    let dir = state.relative_run_dir(&point.name);
    let entry = &mut state.runs[i];
    entry.dir = dir;
    entry.wall_s = Some(wall);
    if status.success() {
        entry.status = RunStatus::Finished;
        say(mp, format!("{:>28}: finished in {wall:.0} s", point.name));
    } else {
        entry.status = RunStatus::Failed;
        let error = job
            .last_error
            .unwrap_or_else(|| format!("exited with {status}"));
        say(mp, format!("{:>28}: FAILED: {error}", point.name));
        entry.error = Some(error);
    }
    state.save()?;
    super::results::write_csv(&state.dir, state, &state.grid.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_become_progress_and_errors() {
        assert_eq!(units_done("[    8.2s] iter 0 eval: kl 0.0000"), Some(1));
        assert_eq!(
            units_done("[   14.6s] iter 1 generate       3456 responses"),
            Some(3)
        );
        assert_eq!(
            units_done("[   20.0s] iter 2 sync + eval    kl 0.1"),
            Some(13)
        );
        assert_eq!(units_done("[   20.0s] iter 2 eval: kl 0.1"), None);
        assert_eq!(units_done("[    0.0s] run /x: y"), None);
        assert_eq!(
            error_text("[   1.0s] error: iteration 1 stage `rank`: boom"),
            Some("iteration 1 stage `rank`: boom".into())
        );
        assert_eq!(error_text("Error: run stopped"), Some("run stopped".into()));
    }
}
