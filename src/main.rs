//! selm-tui command line. Each subcommand has one clap struct that checks its own values;
//! `--config` and `--backend` are global, but only the commands that run a model read them.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use selm_tui::backend::{self, BackendSpec};
use selm_tui::bench::BenchArgs;
use selm_tui::cli;
use selm_tui::config::Config;
use selm_tui::engine::Start;
use selm_tui::run::RunDir;
use selm_tui::sft::SftArgs;
use selm_tui::tui::screenshot::{Shot, ShotView};

#[derive(Parser)]
#[command(
    name = "selm-tui",
    version,
    about = "Online preference alignment (SELM / iterative DPO) of language models"
)]
struct Cli {
    #[command(flatten)]
    runtime: Runtime,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where a model runs: read by `run` (and plain `selm-tui`), `bench`, `bench-ui` and `sft`.
#[derive(clap::Args)]
struct Runtime {
    /// Configuration file (TOML); the embedded configs/default.toml when absent.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Backend, overriding the config's `runtime.backend`: flex, wgpu, wgpu:cpu, wgpu:N,
    /// cuda, cuda:N (must be compiled in).
    #[arg(long, global = true, env = "SELM_BACKEND")]
    backend: Option<String>,
}

impl Runtime {
    /// The run configuration and the backend to run it on.
    fn load(&self) -> Result<(Config, BackendSpec)> {
        let config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::embedded_default(),
        };
        let spec = match &self.backend {
            Some(name) => name.parse().context("--backend")?,
            None => config.backend()?,
        };
        Ok((config, spec))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the online loop (the TUI unless --headless; plain `selm-tui` is `selm-tui run`).
    Run(RunArgs),
    /// Write one iteration's policy as an HF model directory transformers loads.
    Export(ExportArgs),
    /// Open a finished or interrupted run's directory in the TUI, read-only.
    Inspect(InspectArgs),
    /// Continue an interrupted run (killed, crashed, quit) from its last stage boundary.
    Resume(ResumeArgs),
    /// Open the TUI on a live run of another process (headless, a sweep's, a cluster job's)
    /// through its control socket: watch it, step it, change alpha; `q` detaches.
    Attach(AttachArgs),
    /// Train the built-in tiny task model from scratch (writes an HF model directory).
    Sft(SftArgs),
    /// Training and decoding throughput on random weights (tiny or smollm2-135m shape).
    Bench(BenchArgs),
    /// Dashboard render time with a full history, and key-to-redraw latency during an update.
    BenchUi(BenchUiArgs),
    /// Run a grid of configs (alpha x seed, or any keys) headless, several at once.
    Sweep(selm_tui::sweep::SweepArgs),
    /// Compare runs and sweeps: curves, final table, reward distributions, implicit rewards.
    Compare(selm_tui::compare::CompareArgs),
    /// List the backends compiled into this binary.
    Backends,
    /// One task of a `sweep --launcher slurm` array job: runs (or resumes) point INDEX of the
    /// sweep in DIR.
    #[command(hide = true)]
    SweepTask { dir: PathBuf, index: usize },
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Plain progress lines and a final summary table instead of the TUI.
    #[arg(long)]
    headless: bool,
    /// With --headless: pause after the starting evaluation and wait for commands from
    /// `selm-tui attach RUN_DIR` (errors then wait for a retry instead of ending the run).
    #[arg(long, requires = "headless")]
    paused: bool,
    /// Override `run.iterations` (at least 1).
    #[arg(long, value_parser = cli::at_least_one)]
    iterations: Option<usize>,
    /// Override `run.out_dir`.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// The run directory (with --iteration), or with --model the directory to write.
    run_dir: PathBuf,
    /// Which iteration's checkpoint (1 = after the first update).
    #[arg(long, value_parser = cli::at_least_one, required_unless_present = "model")]
    iteration: Option<usize>,
    /// Export this model instead of a run's checkpoint (an HF directory, a GGUF file, a
    /// `builtin:` or `cache:` name): float32 weights, a GGUF's dequantized. Then the one
    /// positional argument is where to write.
    #[arg(long, conflicts_with = "iteration")]
    model: Option<String>,
    /// Where to write (must not exist, or be empty).
    #[arg(required_unless_present = "model")]
    out_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ResumeArgs {
    /// The run directory (runs/<name>-<timestamp>).
    run_dir: PathBuf,
    /// Plain progress lines and a final summary table instead of the TUI.
    #[arg(long)]
    headless: bool,
    /// With --headless: wait paused for commands from `selm-tui attach RUN_DIR`.
    #[arg(long, requires = "headless")]
    paused: bool,
}

#[derive(clap::Args)]
struct AttachArgs {
    /// The live run's directory (runs/<name>-<timestamp>).
    run_dir: PathBuf,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// The run directory (runs/<name>-<timestamp>).
    run_dir: PathBuf,
    /// Draw one view to FILE (.svg, or .png) instead of opening the TUI; no terminal needed.
    #[arg(long, value_name = "FILE")]
    screenshot: Option<PathBuf>,
    /// With --screenshot: which view.
    #[arg(long, value_enum, default_value = "dashboard", requires = "screenshot")]
    view: ShotView,
    /// With --screenshot: the screen size in cells, WIDTHxHEIGHT.
    #[arg(long, default_value = "110x34", value_parser = cli::screen_size, requires = "screenshot")]
    size: (u16, u16),
    /// With --screenshot: the iteration shown (default: the last).
    #[arg(long, value_parser = cli::at_least_one, requires = "screenshot")]
    iteration: Option<usize>,
    /// With --screenshot: the pair (pair, pairs views; in reward-margin order) or the prompt
    /// (rank view), counted from 1.
    #[arg(long, value_parser = cli::at_least_one, requires = "screenshot")]
    item: Option<usize>,
}

#[derive(clap::Args)]
struct BenchUiArgs {
    #[arg(long, default_value_t = 200)]
    width: u16,
    #[arg(long, default_value_t = 50)]
    height: u16,
    /// Frames drawn per view (at least 1).
    #[arg(long, default_value_t = 200, value_parser = cli::at_least_one)]
    frames: usize,
    /// Skip the latency run (which trains the configured model up to its update stage).
    #[arg(long)]
    no_latency: bool,
    #[arg(long)]
    json: bool,
}

/// Errors end the process as one line on stderr, with each cause after a colon.
fn main() -> std::process::ExitCode {
    match run_command() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command() -> Result<()> {
    backend::tune_allocator();
    let cli = Cli::parse();
    let runtime = &cli.runtime;
    match cli.command {
        None => run(runtime, RunArgs::default()),
        Some(Command::Run(args)) => run(runtime, args),
        Some(Command::Export(args)) => {
            let out = match (&args.model, args.iteration, args.out_dir) {
                (Some(model), _, None) => {
                    let path = selm_tui::paths::resolve(model).context("--model")?;
                    selm_tui::export::export_model(&path, &args.run_dir)?;
                    args.run_dir
                }
                (None, Some(iteration), Some(out)) => {
                    selm_tui::export::export(&args.run_dir, iteration, &out)?;
                    out
                }
                _ => anyhow::bail!(
                    "export RUN_DIR --iteration N OUT_DIR, or export --model PATH OUT_DIR"
                ),
            };
            println!("wrote {}", out.display());
            Ok(())
        }
        Some(Command::Inspect(args)) => inspect(args),
        Some(Command::Sft(args)) => {
            let (_, spec) = runtime.load()?;
            backend::on_compute_pool(|| backend::dispatch(spec, args))?
        }
        Some(Command::Bench(args)) => {
            let (_, spec) = runtime.load()?;
            let json = args.json;
            let report = args.run(spec)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                report.print();
            }
            Ok(())
        }
        Some(Command::Resume(args)) => resume(runtime, args),
        Some(Command::Attach(args)) => selm_tui::tui::attach(&args.run_dir),
        Some(Command::BenchUi(args)) => bench_ui(runtime, args),
        Some(Command::Sweep(args)) => selm_tui::sweep::run(runtime.config.as_deref(), args),
        Some(Command::Compare(args)) => selm_tui::compare::run(args),
        Some(Command::SweepTask { dir, index }) => selm_tui::sweep::run_task(&dir, index),
        Some(Command::Backends) => {
            println!("{}", backend::compiled_in().join("\n"));
            Ok(())
        }
    }
}

/// `run`, and plain `selm-tui` (with the default [`RunArgs`]).
fn run(runtime: &Runtime, args: RunArgs) -> Result<()> {
    let (mut config, spec) = runtime.load()?;
    if let Some(n) = args.iterations {
        config.run.iterations = n;
    }
    if let Some(dir) = args.out_dir {
        config.run.out_dir = dir;
    }
    config.validate()?;
    if args.headless {
        refuse_human_ranker(&config)?;
    }
    let start = Start::New(Box::new(config));
    if args.headless {
        selm_tui::headless::run(start, spec, args.paused)?;
    } else {
        selm_tui::tui::run(start, spec)?;
    }
    Ok(())
}

/// `resume`: the run's own config.toml; the backend it names unless `--backend` is given.
fn resume(runtime: &Runtime, args: ResumeArgs) -> Result<()> {
    if runtime.config.is_some() {
        bail!("resume continues with the run's own config.toml; --config does not apply");
    }
    let run = RunDir::open(&args.run_dir)?;
    let config = Config::from_file(&run.config_path()).with_context(|| {
        format!(
            "this version of selm-tui cannot read {}",
            run.config_path().display()
        )
    })?;
    let spec = match &runtime.backend {
        Some(name) => name.parse().context("--backend")?,
        None => config.backend()?,
    };
    if args.headless {
        refuse_human_ranker(&config)?;
    }
    let start = Start::Resume(args.run_dir);
    if args.headless {
        selm_tui::headless::run(start, spec, args.paused)?;
    } else {
        selm_tui::tui::run(start, spec)?;
    }
    Ok(())
}

/// Nobody answers a human ranker's questions without the TUI.
fn refuse_human_ranker(config: &Config) -> Result<()> {
    if config.rank.is_human() {
        bail!(
            "key `rank.ranker`: the `human` ranker asks the researcher in the TUI; run without \
             --headless, or set `rank.ranker` to an automatic ranker (its fallback is `{}`)",
            config.rank.fallback.map_or("unset", |f| f.name())
        );
    }
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<()> {
    let Some(out) = args.screenshot else {
        return selm_tui::tui::inspect(&args.run_dir);
    };
    let shot = Shot {
        view: args.view,
        width: args.size.0,
        height: args.size.1,
        iteration: args.iteration,
        item: args.item,
    };
    selm_tui::tui::screenshot::screenshot(&args.run_dir, shot, &out)?;
    println!("wrote {}", out.display());
    Ok(())
}

fn bench_ui(runtime: &Runtime, args: BenchUiArgs) -> Result<()> {
    let live = if args.no_latency {
        None
    } else {
        let (config, spec) = runtime.load()?;
        config.validate()?;
        Some((config, spec))
    };
    let report = selm_tui::tui::bench::run(args.width, args.height, args.frames, live)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report:#?}");
    }
    Ok(())
}
