//! `selm-tui sweep`: a grid of configs (alpha x seed by default, any keys with `--grid`) run
//! headless, several at once, each as its own `selm-tui run --headless` process (a crash
//! or a bad value fails that run only). `DIR/sweep.json` records the grid and each run's
//! status as it changes, `DIR/results.csv` one row per run and iteration. Re-running the
//! same command skips finished runs and resumes interrupted ones.

mod grid;
mod progress;
mod results;
mod slurm;
mod state;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

pub use grid::{Axis, Point, parse_axis};
pub use slurm::run_task;
pub use state::{RunEntry, RunStatus, SweepState};

/// The default grid: the paper's alpha range and five seeds.
const DEFAULT_ALPHAS: [f64; 5] = [0.0, 1e-4, 1e-3, 1e-2, 1e-1];
const DEFAULT_SEEDS: [u64; 5] = [0, 1, 2, 3, 4];

#[derive(clap::Args, Debug, Clone, Default)]
pub struct SweepArgs {
    /// Values of train.alpha, comma-separated [default: 0,1e-4,1e-3,1e-2,1e-1].
    #[arg(long, value_delimiter = ',')]
    pub alpha: Vec<f64>,
    /// Values of run.seed, comma-separated [default: 0,1,2,3,4].
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Another axis, KEY=V1,V2,... (e.g. train.beta=0.05,0.1); repeatable.
    #[arg(long = "grid", value_name = "KEY=V1,V2")]
    pub grids: Vec<String>,
    /// A value for every run, KEY=VALUE (e.g. train.beta=0.05); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Runs at once [default: one per core, each on one thread]. With Slurm: tasks of the
    /// array job running at once (`--array=...%N`) [default: as many as Slurm allows].
    #[arg(long, value_parser = crate::cli::at_least_one)]
    pub jobs: Option<usize>,
    /// Where the runs go: child processes here, or one Slurm array job (a task per point).
    #[arg(long, value_enum, default_value_t = Launcher::Local)]
    pub launcher: Launcher,
    /// With --launcher slurm: options for sbatch, as one shell-quoted string
    /// (e.g. "--partition=gpu --gres=gpu:1 --time=4:00:00 --cpus-per-task=8").
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub sbatch_args: Option<String>,
    /// The sweep directory [default: <run.out_dir>/sweep-<run.name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Where a sweep's runs go.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Launcher {
    /// Child processes of this one, `--jobs` at a time.
    #[default]
    Local,
    /// A Slurm array job, submitted with sbatch and followed until its tasks end.
    Slurm,
}

/// Runs the sweep `args` describes over `config` (the embedded default when None).
pub fn run(config: Option<&Path>, args: SweepArgs) -> Result<()> {
    let (base_name, base_text) = match config {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => (
            "configs/default.toml (embedded)".into(),
            crate::config::DEFAULT_TOML.into(),
        ),
    };
    let mut base: toml::Table =
        toml::from_str(&base_text).with_context(|| format!("invalid config {base_name}"))?;
    for set in &args.sets {
        let (key, value) = set
            .split_once('=')
            .with_context(|| format!("--set `{set}`: expected KEY=VALUE"))?;
        grid::set_key(&mut base, key.trim(), grid::parse_value(value.trim()))
            .with_context(|| format!("--set `{set}`"))?;
    }
    let base_config = crate::config::Config::from_toml(&toml::to_string(&base)?, &base_name)?;
    let axes = axes(&args)?;
    let dir = match &args.out {
        Some(d) => d.clone(),
        None => base_config
            .run
            .out_dir
            .join(format!("sweep-{}", base_config.run.name)),
    };
    let sbatch_args = match (&args.sbatch_args, args.launcher) {
        (Some(_), Launcher::Local) => bail!("--sbatch-args needs --launcher slurm"),
        (Some(s), Launcher::Slurm) => shell_words::split(s)
            .with_context(|| format!("--sbatch-args `{s}`: not shell words"))?,
        (None, _) => vec![],
    };
    // Absolute: Slurm tasks start elsewhere, and `sweep-task` finds the sweep by it.
    let dir = absolute(&dir)?;
    let points = grid::expand(&base, &axes, &dir)?;
    let mut state = SweepState::open_or_create(&dir, &base_name, &axes, &args.sets, &points)?;
    let summary = match args.launcher {
        Launcher::Local => {
            let jobs = args.jobs.unwrap_or_else(default_jobs);
            let threads = (cores() / jobs).max(1);
            progress::drive(&mut state, &points, jobs, threads)?
        }
        Launcher::Slurm => slurm::drive(&mut state, &points, args.jobs, &sbatch_args)?,
    };
    results::write_csv(&dir, &state, &axes)?;
    println!("{summary}");
    println!("sweep directory: {}", dir.display());
    let count = |s| state.runs.iter().filter(|r| r.status == s).count();
    if count(RunStatus::Failed) > 0 {
        bail!("some runs failed (their errors are in sweep.json and each run's sweep.log)");
    }
    if count(RunStatus::Interrupted) > 0 {
        bail!(
            "{} runs were interrupted (cancelled, preempted or out of time); the same sweep \
             command resumes them",
            count(RunStatus::Interrupted)
        );
    }
    Ok(())
}

/// `--alpha` and `--seeds` (or their defaults), then each `--grid`.
fn axes(args: &SweepArgs) -> Result<Vec<Axis>> {
    let alphas = if args.alpha.is_empty() {
        DEFAULT_ALPHAS.to_vec()
    } else {
        args.alpha.clone()
    };
    let seeds = if args.seeds.is_empty() {
        DEFAULT_SEEDS.to_vec()
    } else {
        args.seeds.clone()
    };
    let mut axes = vec![
        Axis {
            key: "train.alpha".into(),
            values: alphas.into_iter().map(serde_json::Value::from).collect(),
        },
        Axis {
            key: "run.seed".into(),
            values: seeds.into_iter().map(serde_json::Value::from).collect(),
        },
    ];
    for g in &args.grids {
        let axis = parse_axis(g).with_context(|| format!("--grid `{g}`"))?;
        if axes.iter().any(|a| a.key == axis.key) {
            bail!("--grid `{g}`: `{}` is already an axis", axis.key);
        }
        axes.push(axis);
    }
    Ok(axes)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One run per core, each on one thread: the small models of a sweep gain less from a
/// second thread than from a second run (measured on the default config, see the README).
fn default_jobs() -> usize {
    cores()
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("the current directory")?
        .join(p))
}
