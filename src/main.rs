//! selm-tui command line.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use selm_tui::backend::{self, BackendSpec};
use selm_tui::bench::BenchArgs;
use selm_tui::config::Config;
use selm_tui::model::ModelConfig;
use selm_tui::sft::SftArgs;

#[derive(Parser)]
#[command(
    name = "selm-tui",
    version,
    about = "Online preference alignment (SELM / iterative DPO) of language models"
)]
struct Cli {
    /// Configuration file (TOML); the embedded configs/default.toml when absent.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Backend, overriding the config's `runtime.backend`: flex, wgpu, wgpu:cpu, wgpu:N,
    /// cuda, cuda:N (must be compiled in).
    #[arg(long, global = true, env = "SELM_BACKEND")]
    backend: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the online loop (the TUI unless --headless; plain `selm-tui` is `selm-tui run`).
    Run {
        /// Plain progress lines and a final summary table instead of the TUI.
        #[arg(long)]
        headless: bool,
        /// Override `run.iterations`.
        #[arg(long)]
        iterations: Option<usize>,
        /// Override `run.out_dir`.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Write one iteration's policy as an HF model directory transformers loads.
    Export {
        /// The run directory.
        run_dir: PathBuf,
        /// Which iteration's checkpoint (1 = after the first update).
        #[arg(long)]
        iteration: usize,
        /// Where to write (must not exist, or be empty).
        out_dir: PathBuf,
    },
    /// Open a finished or interrupted run's directory in the TUI, read-only.
    Inspect {
        /// The run directory (runs/<name>-<timestamp>).
        run_dir: PathBuf,
    },
    /// Train the built-in tiny task model from scratch (writes an HF model directory).
    Sft(SftArgs),
    /// Training and decoding throughput on random weights (tiny or smollm2-135m shape).
    Bench {
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Real weights instead of random ones: an HF directory or a GGUF file
        /// (`cache:SmolLM2-135M-Instruct.Q4_1.gguf` after scripts/fetch_smollm2.sh).
        #[arg(long)]
        model: Option<String>,
        /// Preference triples per update.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Tokens per sequence (half prompt, half response).
        #[arg(long, default_value_t = 128)]
        seq: usize,
        #[arg(long, default_value_t = 3)]
        steps: usize,
        #[arg(long, default_value_t = 8)]
        decode_batch: usize,
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Dashboard render time with a full history, and key-to-redraw latency during an update.
    BenchUi {
        #[arg(long, default_value_t = 200)]
        width: u16,
        #[arg(long, default_value_t = 50)]
        height: u16,
        #[arg(long, default_value_t = 200)]
        frames: usize,
        /// Skip the latency run (which trains the configured model up to its update stage).
        #[arg(long)]
        no_latency: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the backends compiled into this binary.
    Backends,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::embedded_default(),
    };
    let spec: BackendSpec = match &cli.backend {
        Some(name) => name.parse().context("--backend")?,
        None => config.backend()?,
    };
    match cli.command {
        Some(Command::Run {
            headless,
            iterations,
            out_dir,
        }) => {
            if let Some(n) = iterations {
                config.run.iterations = n;
            }
            if let Some(dir) = out_dir {
                config.run.out_dir = dir;
            }
            config.validate()?;
            if headless {
                selm_tui::headless::run(config, spec)?;
            } else {
                selm_tui::tui::run(config, spec)?;
            }
        }
        None => {
            config.validate()?;
            selm_tui::tui::run(config, spec)?;
        }
        Some(Command::Inspect { run_dir }) => selm_tui::tui::inspect(&run_dir)?,
        Some(Command::Export {
            run_dir,
            iteration,
            out_dir,
        }) => {
            selm_tui::export::export(&run_dir, iteration, &out_dir)?;
            println!("wrote {}", out_dir.display());
        }
        Some(Command::BenchUi {
            width,
            height,
            frames,
            no_latency,
            json,
        }) => {
            if frames == 0 {
                bail!("--frames must be at least 1");
            }
            config.validate()?;
            let live = (!no_latency).then_some((config, spec));
            let report = selm_tui::tui::bench::run(width, height, frames, live)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{report:#?}");
            }
        }
        Some(Command::Sft(args)) => backend::dispatch(spec, args)??,
        Some(Command::Backends) => println!("{}", backend::compiled_in().join("\n")),
        Some(Command::Bench {
            preset,
            model,
            batch,
            seq,
            steps,
            decode_batch,
            new_tokens,
            json,
        }) => {
            if steps == 0 {
                bail!("--steps must be at least 1");
            }
            let config = match preset.as_str() {
                "tiny" => ModelConfig::tiny(),
                "smollm2-135m" => ModelConfig::smollm2_135m(),
                other => bail!("unknown preset `{other}` (tiny, smollm2-135m)"),
            };
            let model = match model {
                Some(m) => Some(selm_tui::config::resolve_model_path(&m).context("--model")?),
                None => None,
            };
            let preset = match &model {
                Some(m) => m.display().to_string(),
                None => preset,
            };
            let args = BenchArgs {
                preset,
                config,
                model,
                batch,
                seq,
                train_steps: steps,
                decode_batch,
                prompt_len: 16,
                new_tokens,
            };
            let report = backend::dispatch(spec, args)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                report.print();
            }
        }
    }
    Ok(())
}
