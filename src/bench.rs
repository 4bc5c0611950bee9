//! `selm-tui bench`: training and decoding throughput on random weights of a given shape, or
//! on a real checkpoint (`--model`).
//! A benchmark, not a test: it reports figures and asserts nothing.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

use crate::backend::{BackendSpec, OnBackend};
use crate::model::generate::generate;
use crate::model::load::random;
use crate::model::sampling::SamplingParams;
use crate::model::{CausalLm, ModelConfig};
use crate::selm::Triple;
use crate::train::{CosineWithWarmup, OptimConfig, SelmTrainer};

#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub preset: String,
    pub config: ModelConfig,
    /// Real weights (HF directory or GGUF) instead of random ones of `config`'s shape.
    pub model: Option<std::path::PathBuf>,
    /// Preference triples per update.
    pub batch: usize,
    /// Tokens per sequence (prompt + response); half of it is the prompt.
    pub seq: usize,
    pub train_steps: usize,
    /// Prompts decoded together.
    pub decode_batch: usize,
    pub prompt_len: usize,
    pub new_tokens: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub preset: String,
    pub backend: String,
    pub params: usize,
    pub batch: usize,
    pub seq: usize,
    /// Mean wall time of one SELM update (policy fwd+bwd on 3*batch rows, reference fwd, AdamW).
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

impl OnBackend for BenchArgs {
    type Output = BenchReport;

    fn run<B: AutodiffBackend>(self, device: B::Device, spec: BackendSpec) -> BenchReport {
        let mut policy: CausalLm<B> = match &self.model {
            Some(path) => {
                crate::model::load::load_pretrained(path, &device)
                    .expect("loading the benchmark model")
                    .0
            }
            None => random(self.config.clone(), 1, &device),
        };
        // Decode the full length every time: no EOS stop.
        policy.config.eos_token_ids.clear();
        let config = policy.config.clone();
        let params = count_params(&config);
        let mut rng = StdRng::seed_from_u64(2);
        let triples: Vec<Triple> = (0..self.batch)
            .map(|_| triple(&mut rng, &config, self.seq))
            .collect();

        let reference = policy.valid();
        let mut trainer = SelmTrainer::new(
            policy,
            reference,
            OptimConfig::default(),
            CosineWithWarmup::constant(1e-6),
        );
        trainer.step(&triples, 0.001, 0.01).expect("warm-up step");
        let start = Instant::now();
        for _ in 0..self.train_steps {
            trainer.step(&triples, 0.001, 0.01).expect("bench step");
        }
        let train_s = start.elapsed().as_secs_f64() / self.train_steps as f64;

        let inference = trainer.policy().valid();
        let prompts: Vec<Vec<u32>> = (0..self.decode_batch)
            .map(|_| tokens(&mut rng, &config, self.prompt_len))
            .collect();
        let greedy = SamplingParams::GREEDY;
        let start = Instant::now();
        let _ = generate(&inference, &prompts, 1, &greedy, &mut rng);
        let prefill_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let out = generate(&inference, &prompts, self.new_tokens, &greedy, &mut rng);
        let decode_s = start.elapsed().as_secs_f64();
        let generated: usize = out.iter().map(|g| g.tokens.len()).sum();

        BenchReport {
            preset: self.preset,
            backend: spec.to_string(),
            params,
            batch: self.batch,
            seq: self.seq,
            train_ms_per_step: train_s * 1e3,
            train_tokens_per_s: (3 * self.batch * self.seq) as f64 / train_s,
            decode_batch: self.decode_batch,
            new_tokens: self.new_tokens,
            decode_tokens_per_s: generated as f64 / decode_s,
            prefill_ms: prefill_s * 1e3,
            peak_rss_mib: peak_rss_mib(),
        }
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
    }
}

fn count_params(c: &ModelConfig) -> usize {
    crate::model::load::expected_tensors(c)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
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
            "preset {} on {} ({:.1}M params)",
            self.preset,
            self.backend,
            self.params as f64 / 1e6
        );
        println!(
            "  update  {} triples x {} tokens: {:>9.1} ms/step  {:>9.1} tokens/s",
            self.batch, self.seq, self.train_ms_per_step, self.train_tokens_per_s
        );
        println!(
            "  decode  batch {} x {} new tokens: {:>9.1} tokens/s (prefill {:.1} ms)",
            self.decode_batch, self.new_tokens, self.decode_tokens_per_s, self.prefill_ms
        );
        println!("  peak RSS {:.0} MiB", self.peak_rss_mib);
    }
}
