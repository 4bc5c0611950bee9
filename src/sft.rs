//! `selm-tui sft`: trains the built-in tiny task model from scratch, deterministically, and
//! stops early on purpose so that it is mediocre (mean reward around 0.3-0.6 under sampling):
//! room for alignment to show.

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

use crate::backend::{BackendSpec, OnBackend};
use crate::cli;
use crate::model::load::{random, save_hf_dir};
use crate::model::{CausalLm, ModelConfig};
use crate::selm::logprobs::sequence_logps;
use crate::tasks::{PromptSets, TaskKind, corrupt};
use crate::tokenizer::{TextTokenizer, char_tokenizer_json};
use crate::train::CosineWithWarmup;

/// Characters the built-in tasks use.
pub const TASK_ALPHABET: &str = "0123456789abcdefghijklmnopqrstuvwxyz +=:";

/// The `sft` subcommand's options; the defaults are how `assets/tiny-tasks` was made.
#[derive(Debug, Clone, clap::Args)]
pub struct SftArgs {
    /// Output HF model directory.
    #[arg(long, default_value = "assets/tiny-tasks")]
    pub out: PathBuf,
    /// Optimizer steps (at least 1).
    #[arg(long, default_value_t = 1200, value_parser = cli::at_least_one)]
    pub steps: usize,
    /// Examples per step (at least 1).
    #[arg(long, default_value_t = 32, value_parser = cli::at_least_one)]
    pub batch: usize,
    /// Peak learning rate (positive).
    #[arg(long, default_value_t = 3e-3, value_parser = cli::positive)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of training answers replaced by a plausible wrong one, in [0, 1].
    #[arg(long, default_value_t = 0.3, value_parser = cli::fraction)]
    pub noise: f64,
}

/// The tiny model's shape: 3 layers, hidden 128, 4 heads / 2 KV heads, vocab 48.
pub fn tiny_task_config(vocab: usize) -> ModelConfig {
    let mut c = ModelConfig::llama(vocab.next_multiple_of(8), 128, 384, 3, 4, 2, 32, false);
    c.max_position_embeddings = 64;
    c
}

impl OnBackend for SftArgs {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device, _spec: BackendSpec) -> Result<()> {
        let tok_json = char_tokenizer_json(TASK_ALPHABET);
        let tok = TextTokenizer::from_bytes(tok_json.as_bytes(), 2, 0)?;
        let config = tiny_task_config(tok.vocab_size());
        let mut model: CausalLm<B> = random(config, self.seed, &device);
        let data = PromptSets::new(
            &TaskKind::SFT,
            self.seed ^ 0x5f7,
            self.steps * self.batch,
            0,
        )?;
        let mut noise_rng = StdRng::seed_from_u64(self.seed ^ 0xbad);
        let examples: Vec<(Vec<u32>, Vec<u32>)> = data
            .train
            .iter()
            .map(|t| {
                let answer = if noise_rng.random_bool(self.noise) {
                    corrupt(t, &mut noise_rng)
                } else {
                    t.answer.clone()
                };
                Ok((tok.encode_prompt(&t.prompt)?, tok.encode_response(&answer)?))
            })
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(self.seed));
        let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
        let schedule = CosineWithWarmup::new(self.lr, 0.05, self.steps);
        for (step, chunk) in order.chunks(self.batch).take(self.steps).enumerate() {
            let batch: Vec<&(Vec<u32>, Vec<u32>)> = chunk.iter().map(|&i| &examples[i]).collect();
            let loss = nll(&model, &batch);
            let value: f32 = loss.clone().into_scalar().elem();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(schedule.lr(step), model, grads);
            if step % 50 == 0 || step + 1 == self.steps {
                println!(
                    "sft step {step:>4}  loss {value:.4}  lr {:.2e}",
                    schedule.lr(step)
                );
            }
        }
        save_hf_dir(&model.valid(), &self.out)?;
        crate::io::atomic_write(&self.out.join("tokenizer.json"), tok_json.as_bytes())?;
        let meta = serde_json::json!({
            "trained_by": "selm-tui sft",
            "steps": self.steps, "batch": self.batch, "lr": self.lr, "seed": self.seed, "noise": self.noise,
            "tasks": TaskKind::SFT.map(TaskKind::name),
        });
        crate::io::atomic_write(&self.out.join("sft.json"), meta.to_string().as_bytes())
            .with_context(|| format!("writing {}", self.out.display()))?;
        println!("saved {}", self.out.display());
        Ok(())
    }
}

/// Mean negative log-likelihood of the response tokens.
fn nll<B: AutodiffBackend>(model: &CausalLm<B>, batch: &[&(Vec<u32>, Vec<u32>)]) -> Tensor<B, 1> {
    let pairs: Vec<(&[u32], &[u32])> = batch
        .iter()
        .map(|(p, r)| (p.as_slice(), r.as_slice()))
        .collect();
    let count: usize = batch.iter().map(|(_, r)| r.len()).sum();
    sequence_logps(model, &pairs).sum().neg() / count as f32
}

use burn::tensor::ElementConversion as _;
