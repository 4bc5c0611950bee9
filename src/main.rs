//! selm-tui command line.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use selm_tui::backend::{self, BackendSpec};
use selm_tui::bench::BenchArgs;
use selm_tui::config::Config;
use selm_tui::model::ModelConfig;

#[derive(Parser)]
#[command(
    name = "selm-tui",
    version,
    about = "Online preference alignment (SELM / iterative DPO) in a terminal"
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
    /// Training and decoding throughput on random weights (tiny or smollm2-135m shape).
    Bench {
        #[arg(long, default_value = "tiny")]
        preset: String,
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
    /// List the backends compiled into this binary.
    Backends,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::embedded_default(),
    };
    let spec: BackendSpec = match &cli.backend {
        Some(name) => name.parse().context("--backend")?,
        None => config.backend()?,
    };
    match cli.command {
        Some(Command::Backends) => println!("{}", backend::compiled_in().join("\n")),
        Some(Command::Bench {
            preset,
            batch,
            seq,
            steps,
            decode_batch,
            new_tokens,
            json,
        }) => {
            let config = match preset.as_str() {
                "tiny" => ModelConfig::tiny(),
                "smollm2-135m" => ModelConfig::smollm2_135m(),
                other => bail!("unknown preset `{other}` (tiny, smollm2-135m)"),
            };
            let args = BenchArgs {
                preset,
                config,
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
        None => bail!(
            "the online SELM loop and its TUI are not built yet; `selm-tui bench` and \
             `selm-tui backends` are available"
        ),
    }
    Ok(())
}
