//! `selm-tui bench`: training and decoding throughput on random weights of a given shape, or
//! on a real checkpoint (`--model`).
//! A benchmark, not a test: it reports figures and asserts nothing.

use anyhow::{Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

use crate::backend::{self, BackendSpec, OnBackend};
use crate::cli;
use crate::config::resolve_model_path;
use crate::model::generate::{DecodeMode, decode};
use crate::model::load::random;
use crate::model::lora::{self, LoraShape, TARGETS};
use crate::model::sampling::SamplingParams;
use crate::model::{CausalLm, ModelConfig};
use crate::selm::Triple;
use crate::selm::logprobs::response_token_logps;
use crate::train::{CosineWithWarmup, OptimConfig, SelmTrainer};

/// A model shape to benchmark with random weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The tiny fixture shape: 2 layers, hidden 64, vocab 128.
    Tiny,
    /// SmolLM2-135M's shape: 30 layers, hidden 576, vocab 49152.
    #[value(name = "smollm2-135m")]
    Smollm2_135m,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tiny => "tiny",
            Self::Smollm2_135m => "smollm2-135m",
        }
    }

    pub fn config(self) -> ModelConfig {
        match self {
            Self::Tiny => ModelConfig::tiny(),
            Self::Smollm2_135m => ModelConfig::smollm2_135m(),
        }
    }
}

/// The `bench` subcommand's options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Model shape for random weights.
    #[arg(long, value_enum, default_value_t = Preset::Tiny)]
    pub preset: Preset,
    /// Real weights instead of random ones: an HF directory or a GGUF file
    /// (`cache:SmolLM2-135M-Instruct.Q4_1.gguf` after scripts/fetch_smollm2.sh).
    #[arg(long)]
    pub model: Option<String>,
    /// Preference triples per update (at least 1).
    #[arg(long, default_value_t = 8, value_parser = cli::at_least_one)]
    pub batch: usize,
    /// Tokens per sequence, half prompt and half response (at least 2).
    #[arg(long, default_value_t = 128, value_parser = cli::at_least_two)]
    pub seq: usize,
    /// Triples per forward/backward pass (gradients accumulate); absent: as many as keep a
    /// pass's activations near 1 GiB, as `train.micro_batch_size` does.
    #[arg(long, value_parser = cli::at_least_one)]
    pub micro_batch: Option<usize>,
    /// Recompute pi_ref's log-probs in every update, as for dataset responses, instead of
    /// carrying them from generation as the loop does for sampled ones.
    #[arg(long)]
    pub reference_forward: bool,
    /// Timed updates (at least 1; one more runs first as a warm-up).
    #[arg(long, default_value_t = 3, value_parser = cli::at_least_one)]
    pub steps: usize,
    /// Prompts decoded together (at least 1).
    #[arg(long, default_value_t = 8, value_parser = cli::at_least_one)]
    pub decode_batch: usize,
    /// Tokens generated per prompt (at least 1).
    #[arg(long, default_value_t = 64, value_parser = cli::at_least_one)]
    pub new_tokens: usize,
    /// Train LoRA adapters of this rank (alpha = 2 x rank, every projection) on the frozen
    /// model instead of every weight; pi_ref is the model without them.
    #[arg(long, value_parser = cli::at_least_one)]
    pub lora_rank: Option<usize>,
    /// Decode through the model's tensor ops, the path every backend has, instead of the
    /// CPU decode path (flex only): what the latter buys, in one binary.
    #[arg(long)]
    pub tensor_decode: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Prompt tokens per decoded row.
const PROMPT_LEN: usize = 16;

impl BenchArgs {
    /// Runs the benchmark on `spec`.
    pub fn run(self, spec: BackendSpec) -> Result<BenchReport> {
        let model = match &self.model {
            Some(m) => Some(resolve_model_path(m).context("--model")?),
            None => None,
        };
        backend::on_compute_pool(|| backend::dispatch(spec, Bench { args: self, model }))?
    }
}

/// [`BenchArgs`] with `--model` resolved to a path.
struct Bench {
    args: BenchArgs,
    model: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub preset: String,
    pub backend: String,
    /// The SIMD kernel set the CPU backend ran with (`AVX-512`, `AVX2+FMA`, ...), or `device`
    /// on a GPU backend.
    pub kernels: String,
    pub params: usize,
    /// The LoRA rank trained (None: full updates).
    pub lora_rank: Option<usize>,
    /// Parameters the update trains (all of them, or the adapters').
    pub trainable_params: usize,
    pub batch: usize,
    pub seq: usize,
    /// Triples per forward/backward pass of an update.
    pub micro_batch: usize,
    /// Whether each update ran pi_ref's forward pass (else its log-probs were carried).
    pub reference_forward: bool,
    /// Mean wall time of one SELM update (policy fwd+bwd on 3*batch rows, reference fwd unless
    /// carried, AdamW).
    pub train_ms_per_step: f64,
    /// Policy tokens (3 * batch * seq) per second of update time.
    pub train_tokens_per_s: f64,
    pub decode_batch: usize,
    pub new_tokens: usize,
    /// Generated tokens per second, prefill included.
    pub decode_tokens_per_s: f64,
    pub prefill_ms: f64,
    /// Peak resident memory of the process (VmHWM), MiB; host memory, so GPU memory is not in it.
    pub peak_rss_mib: f64,
}

impl OnBackend for Bench {
    type Output = Result<BenchReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device, spec: BackendSpec) -> Result<BenchReport> {
        let Bench { args, model } = self;
        let (mut policy, label): (CausalLm<B>, String) = match &model {
            Some(path) => {
                let (model, _) = crate::model::load::load_pretrained(path, &device)
                    .with_context(|| format!("--model {}", path.display()))?;
                (model, path.display().to_string())
            }
            None => (
                random(args.preset.config(), 1, &device),
                args.preset.name().into(),
            ),
        };
        // Decode the full length every time: no EOS stop.
        policy.config.eos_token_ids.clear();
        let config = policy.config.clone();
        let params = policy.num_params();
        let mut rng = StdRng::seed_from_u64(2);
        let mut triples: Vec<Triple> = (0..args.batch)
            .map(|_| triple(&mut rng, &config, args.seq))
            .collect();

        let reference = policy.valid();
        let policy = match args.lora_rank {
            Some(rank) => {
                let shape = LoraShape {
                    rank,
                    alpha: 2.0 * rank as f64,
                    rslora: false,
                    targets: TARGETS.iter().map(|t| t.to_string()).collect(),
                };
                lora::attach_new(policy, &shape, 3)?
            }
            None => policy,
        };
        let trainable_params = policy.num_params() - lora_frozen(&policy);
        if !args.reference_forward {
            carry_reference_logps(&reference, &mut triples);
        }
        let mut trainer = SelmTrainer::new(
            policy,
            reference,
            OptimConfig {
                micro_batch: args.micro_batch,
                ..OptimConfig::default()
            },
            CosineWithWarmup::constant(1e-6),
        );
        let micro_batch = trainer.micro_batch(&triples);
        trainer
            .step(&triples, 0.001, 0.01)
            .context("warm-up update")?;
        let start = Instant::now();
        for _ in 0..args.steps {
            trainer
                .step(&triples, 0.001, 0.01)
                .context("timed update")?;
        }
        let train_s = start.elapsed().as_secs_f64() / args.steps as f64;

        let inference = trainer.policy().valid();
        let prompts: Vec<Vec<u32>> = (0..args.decode_batch)
            .map(|_| tokens(&mut rng, &config, PROMPT_LEN))
            .collect();
        let greedy = SamplingParams::GREEDY;
        let mode = DecodeMode {
            cache: true,
            logps: false,
            cpu_path: !args.tensor_decode,
        };
        let run =
            |n: usize, rng: &mut StdRng| decode(&inference, &prompts, n, &greedy, &[], rng, mode);
        let start = Instant::now();
        let _ = run(1, &mut rng);
        let prefill_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let out = run(args.new_tokens, &mut rng);
        let decode_s = start.elapsed().as_secs_f64();
        let generated: usize = out.iter().map(|g| g.tokens.len()).sum();

        Ok(BenchReport {
            preset: label,
            backend: spec.to_string(),
            kernels: match spec {
                BackendSpec::Flex => backend::CpuKernels::detect().to_string(),
                _ => "device".into(),
            },
            params,
            lora_rank: args.lora_rank,
            trainable_params,
            batch: args.batch,
            seq: args.seq,
            micro_batch,
            reference_forward: args.reference_forward,
            train_ms_per_step: train_s * 1e3,
            train_tokens_per_s: (3 * args.batch * args.seq) as f64 / train_s,
            decode_batch: args.decode_batch,
            new_tokens: args.new_tokens,
            decode_tokens_per_s: generated as f64 / decode_s,
            prefill_ms: prefill_s * 1e3,
            peak_rss_mib: peak_rss_mib(),
        })
    }
}

/// Parameters of `model` that take no gradient (a LoRA policy's frozen base).
fn lora_frozen<B: AutodiffBackend>(model: &CausalLm<B>) -> usize {
    struct Frozen(usize);
    impl<B: AutodiffBackend> burn::module::ModuleVisitor<B> for Frozen {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<B, D>>,
        ) {
            if !param.is_require_grad() {
                self.0 += param.shape().num_elements();
            }
        }
    }
    let mut v = Frozen(0);
    model.visit(&mut v);
    v.0
}

/// What generation records for the loop's samples: pi_ref's log-prob of every response token.
fn carry_reference_logps<B: burn::tensor::backend::Backend>(
    reference: &CausalLm<B>,
    triples: &mut [Triple],
) {
    for t in triples {
        let rows = t.responses().map(|r| (t.prompt.as_slice(), r));
        let logps = response_token_logps(reference, &rows);
        let [c, r, y] = <[Vec<f32>; 3]>::try_from(logps).expect("three responses");
        t.reference_logps = [Some(c), Some(r), Some(y)];
    }
}

fn tokens(rng: &mut StdRng, config: &ModelConfig, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| rng.random_range(3..config.vocab_size as u32))
        .collect()
}

fn triple(rng: &mut StdRng, config: &ModelConfig, seq: usize) -> Triple {
    let half = seq / 2;
    Triple {
        prompt: tokens(rng, config, half),
        chosen: tokens(rng, config, seq - half),
        rejected: tokens(rng, config, seq - half),
        reference_response: tokens(rng, config, seq - half),
        reference_logps: Default::default(),
    }
}

/// Peak resident set size from /proc (Linux); 0 elsewhere.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

impl BenchReport {
    pub fn print(&self) {
        println!(
            "preset {} on {} ({} kernels, {:.1}M params)",
            self.preset,
            self.backend,
            self.kernels,
            self.params as f64 / 1e6
        );
        if let Some(rank) = self.lora_rank {
            println!(
                "  LoRA rank {rank}: {:.2}M trainable parameters",
                self.trainable_params as f64 / 1e6
            );
        }
        println!(
            "  update  {} triples x {} tokens ({} per pass, pi_ref {}): {:>9.1} ms/step  {:>9.1} tokens/s",
            self.batch,
            self.seq,
            self.micro_batch,
            if self.reference_forward {
                "forward"
            } else {
                "carried"
            },
            self.train_ms_per_step,
            self.train_tokens_per_s
        );
        println!(
            "  decode  batch {} x {} new tokens: {:>9.1} tokens/s (prefill {:.1} ms)",
            self.decode_batch, self.new_tokens, self.decode_tokens_per_s, self.prefill_ms
        );
        println!("  peak RSS {:.0} MiB", self.peak_rss_mib);
    }
}
