//! selm-tui command line.

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use selm_tui::backend::{self, BackendSpec};
use selm_tui::bench::BenchArgs;
use selm_tui::model::ModelConfig;

#[derive(Parser)]
#[command(name = "selm-tui", version, about = "Online preference alignment (SELM / iterative DPO) in a terminal")]
struct Cli {
    /// Backend: flex, wgpu, wgpu:cpu, wgpu:N, cuda, cuda:N (must be compiled in).
    #[arg(long, global = true, default_value = "flex", env = "SELM_BACKEND")]
    backend: String,
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
    let spec: BackendSpec = cli.backend.parse()?;
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
        None => {
            bail!("the online loop and the TUI are not built yet; try `selm-tui bench`")
        }
    }
    Ok(())
}
