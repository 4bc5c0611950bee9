//! Batched decoding with a KV cache. Prompts of different lengths are left-padded; each row's
//! RoPE positions start at its first real token, and its pads are masked, so a row decodes the
//! same tokens whatever else is in the batch. A row that ends (EOS) leaves the batch.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;
use rayon::prelude::*;

use super::cache::{KvCache, distinct_rows};
use super::llama::{AttentionPlan, CausalLm};
use super::sampling::{SamplingParams, sample_token_at, suppress};

/// One generated continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New tokens, including the EOS token when one ended the row.
    pub tokens: Vec<u32>,
    /// Whether an EOS token ended the row (else it hit `max_new_tokens`).
    pub finished: bool,
    /// Log-prob of each new token under the model's own distribution (the raw logits, before
    /// temperature, top-k / top-p and suppression): what a forward pass of the model over
    /// the response gives, up to rounding (1e-4 in the tests). Filled by [`generate_suppressing`]; empty from [`generate`].
    pub logps: Vec<f32>,
}

/// How [`decode`] runs.
#[derive(Debug, Clone, Copy)]
pub struct DecodeMode {
    /// Extend a KV cache (else recompute every position each step).
    pub cache: bool,
    /// Record each token's log-prob ([`Generation::logps`]).
    pub logps: bool,
    /// With a cache, take the CPU decode path where the model has one
    /// ([`super::cpu_decode`]); else the model's tensor ops.
    pub cpu_path: bool,
}

/// Generates up to `max_new_tokens` for each prompt, with a KV cache, any token allowed (as
/// transformers' `generate` by default: what the parity tests compare with). The loop's
/// responses use [`generate_suppressing`] with the tokenizer's
/// [`crate::tokenizer::TextTokenizer::suppressed_ids`].
pub fn generate<B: Backend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    params: &SamplingParams,
    rng: &mut impl Rng,
) -> Vec<Generation> {
    let mode = DecodeMode {
        cache: true,
        logps: false,
        cpu_path: true,
    };
    decode(model, prompts, max_new_tokens, params, &[], rng, mode)
}

/// [`generate`] never emitting the ids in `suppressed` (their logits are -inf before
/// sampling and greedy argmax, as transformers' `suppress_tokens`), recording each token's
/// log-prob.
pub fn generate_suppressing<B: Backend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    params: &SamplingParams,
    suppressed: &[u32],
    rng: &mut impl Rng,
) -> Vec<Generation> {
    decode(
        model,
        prompts,
        max_new_tokens,
        params,
        suppressed,
        rng,
        DecodeMode {
            cache: true,
            logps: true,
            cpu_path: true,
        },
    )
}

/// Decodes with or without the KV cache ([`crate::testing::generate_uncached`] checks the
/// cache against recomputation), never emitting `suppressed`.
pub fn decode<B: Backend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    params: &SamplingParams,
    suppressed: &[u32],
    rng: &mut impl Rng,
    mode: DecodeMode,
) -> Vec<Generation> {
    let use_cache = mode.cache;
    let config = model.config();
    let device = model.device();
    let pad = config.pad_id();
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows: Vec<Row> = prompts
        .iter()
        .map(|p| Row::left_padded(p, width, pad))
        .collect();
    let mut out: Vec<Generation> = prompts
        .iter()
        .map(|_| Generation {
            tokens: vec![],
            finished: false,
            logps: vec![],
        })
        .collect();
    if prompts.is_empty() || max_new_tokens == 0 {
        return out;
    }
    assert!(width > 0, "every prompt needs at least one token");
    let mut forward = Forward::new(model, use_cache, mode.cpu_path, width + max_new_tokens);
    // The outputs the rows of the batch decode for: a row that finishes leaves the batch.
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    for step in 0..max_new_tokens {
        let mut logits = forward.logits(model, prompts, &rows, &device);
        let vocab = logits.len() / rows.len();
        // One draw per row, in row order, then the rows sampled in parallel: the same tokens
        // as one row after another.
        let draws: Vec<f64> = match params.is_greedy() {
            true => vec![0.0; rows.len()],
            false => (0..rows.len()).map(|_| rng.random::<f64>()).collect(),
        };
        let picked: Vec<(u32, Option<f32>)> = logits
            .par_chunks_mut(vocab)
            .zip(draws)
            .map(|(logits, u)| {
                let lse = mode.logps.then(|| logsumexp(logits));
                suppress(logits, suppressed);
                let next = sample_token_at(logits, params, u);
                // A suppressed id is never drawn, so its logit is still the raw one.
                (next, lse.map(|lse| logits[next as usize] - lse))
            })
            .collect();
        for ((row, &b), (next, logp)) in rows.iter_mut().zip(&active).zip(picked) {
            out[b].logps.extend(logp);
            out[b].tokens.push(next);
            out[b].finished = config.is_eos(next);
            row.push(next);
        }
        if step + 1 == max_new_tokens {
            break;
        }
        let keep: Vec<usize> = (0..rows.len())
            .filter(|&i| !out[active[i]].finished)
            .collect();
        if keep.is_empty() {
            break;
        }
        if keep.len() < rows.len() {
            // Finished rows stop costing compute. The rest decode as before (up to rounding,
            // as in any batch), since a row attends only to its own keys.
            forward.keep(&keep, &device);
            rows = keep.iter().map(|&i| rows[i].clone()).collect();
            active = keep.iter().map(|&i| active[i]).collect();
        }
    }
    out
}

/// How [`decode`] runs the model: through its tensor ops (with a tensor cache or
/// recomputing every position), or on the CPU decode path where that applies.
enum Forward<B: Backend> {
    Tensors {
        cache: Option<KvCache<B>>,
        /// Tokens of each row already in the cache.
        fed: usize,
    },
    #[cfg(feature = "flex")]
    Cpu(Box<CpuForward>),
}

/// The CPU decode path's state: the decoder until the first call makes its session.
#[cfg(feature = "flex")]
struct CpuForward {
    decoder: Option<super::cpu_decode::CpuDecoder>,
    session: Option<super::cpu_decode::Session>,
    capacity: usize,
    fed: usize,
}

impl<B: Backend> Forward<B> {
    /// With a cache, the CPU decode path when the model has one, else tensors; without
    /// (the tests' reference), tensors recomputing every position.
    fn new(model: &CausalLm<B>, cache: bool, cpu_path: bool, capacity: usize) -> Self {
        #[cfg(feature = "flex")]
        if cache
            && cpu_path
            && let Some(decoder) = super::cpu_decode::CpuDecoder::new(model)
        {
            return Self::Cpu(Box::new(CpuForward {
                decoder: Some(decoder),
                session: None,
                capacity,
                fed: 0,
            }));
        }
        let _ = (capacity, cpu_path);
        Self::Tensors {
            cache: cache.then(|| KvCache::new(model.config().num_layers)),
            fed: 0,
        }
    }

    /// The logits of each row's next token, `[rows * vocab]`, feeding what the model has
    /// not seen of `rows` yet.
    fn logits(
        &mut self,
        model: &CausalLm<B>,
        prompts: &[Vec<u32>],
        rows: &[Row],
        device: &B::Device,
    ) -> Vec<f32> {
        let total = rows[0].ids.len();
        match self {
            Self::Tensors { cache, fed } => {
                let logits = match cache {
                    Some(cache) if *fed == 0 => prefill_shared(model, prompts, rows, device, cache),
                    Some(cache) => last_logits(model, rows, *fed, device, Some(cache)),
                    None => last_logits(model, rows, 0, device, None),
                };
                *fed = total;
                logits
            }
            #[cfg(feature = "flex")]
            Self::Cpu(cpu) => {
                let CpuForward {
                    decoder,
                    session,
                    capacity,
                    fed,
                } = &mut **cpu;
                let logits = match session {
                    Some(session) => cpu_logits(session, rows, *fed),
                    None => {
                        // Each distinct prompt once, then its keys and logits copied to every
                        // row that has it.
                        let (firsts, of_row) = distinct_rows(prompts.iter().map(Vec::as_slice));
                        let distinct: Vec<Row> = firsts.iter().map(|&b| rows[b].clone()).collect();
                        let decoder = decoder.take().expect("a decoder until the first call");
                        let s = session.insert(super::cpu_decode::Session::new(
                            decoder,
                            distinct.len(),
                            *capacity,
                        ));
                        let logits = cpu_logits(s, &distinct, 0);
                        if distinct.len() < rows.len() {
                            s.select_rows(&of_row);
                        }
                        spread(&logits, &of_row, distinct.len())
                    }
                };
                *fed = total;
                logits
            }
        }
    }

    /// Keeps rows `keep` of the cache.
    fn keep(&mut self, keep: &[usize], device: &B::Device) {
        match self {
            Self::Tensors {
                cache: Some(cache), ..
            } => {
                let index: Vec<i64> = keep.iter().map(|&i| i as i64).collect();
                let n = index.len();
                cache.select_rows(Tensor::from_data(TensorData::new(index, [n]), device));
            }
            Self::Tensors { cache: None, .. } => {}
            #[cfg(feature = "flex")]
            Self::Cpu(cpu) => {
                if let Some(session) = &mut cpu.session {
                    session.select_rows(keep);
                }
            }
        }
    }
}

/// Tokens `start..` of every row through the CPU decode path: the last position's logits.
#[cfg(feature = "flex")]
fn cpu_logits(session: &mut super::cpu_decode::Session, rows: &[Row], start: usize) -> Vec<f32> {
    let positions: Vec<Vec<usize>> = rows
        .iter()
        .map(|r| r.positions()[start..].to_vec())
        .collect();
    let ids: Vec<&[u32]> = rows.iter().map(|r| &r.ids[start..]).collect();
    let positions: Vec<&[usize]> = positions.iter().map(Vec::as_slice).collect();
    let valid: Vec<&[bool]> = rows.iter().map(|r| r.valid.as_slice()).collect();
    session.forward(&ids, &positions, &valid)
}

/// `log sum exp(row)`, steadied by the row's max, summed in f64.
fn logsumexp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| (x - max).exp() as f64).sum();
    max + sum.ln() as f32
}

/// The first step with a cache: each distinct prompt runs once (K samples of a prompt are K
/// rows of it), then its cache rows and logits are copied to every row that has it.
fn prefill_shared<B: Backend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    rows: &[Row],
    device: &B::Device,
    cache: &mut KvCache<B>,
) -> Vec<f32> {
    let (firsts, of_row) = distinct_rows(prompts.iter().map(Vec::as_slice));
    let distinct: Vec<Row> = firsts.iter().map(|&b| rows[b].clone()).collect();
    let logits = last_logits(model, &distinct, 0, device, Some(cache));
    if distinct.len() == rows.len() {
        return logits;
    }
    let index: Vec<i64> = of_row.iter().map(|&u| u as i64).collect();
    cache.select_rows(Tensor::from_data(
        TensorData::new(index, [rows.len()]),
        device,
    ));
    spread(&logits, &of_row, distinct.len())
}

/// Each row's logits from its distinct prompt's (`of_row[row]`), `[rows * vocab]` from
/// `[distinct * vocab]`.
fn spread(logits: &[f32], of_row: &[usize], distinct: usize) -> Vec<f32> {
    let vocab = logits.len() / distinct;
    of_row
        .iter()
        .flat_map(|&u| logits[u * vocab..(u + 1) * vocab].iter().copied())
        .collect()
}

/// A left-padded token row with per-token validity.
#[derive(Clone)]
struct Row {
    ids: Vec<u32>,
    valid: Vec<bool>,
}

impl Row {
    fn left_padded(prompt: &[u32], width: usize, pad: u32) -> Self {
        let n_pad = width - prompt.len();
        let mut ids = vec![pad; n_pad];
        ids.extend_from_slice(prompt);
        let mut valid = vec![false; n_pad];
        valid.extend(std::iter::repeat_n(true, prompt.len()));
        Self { ids, valid }
    }

    fn push(&mut self, token: u32) {
        self.ids.push(token);
        self.valid.push(true);
    }

    /// RoPE position of each token: real tokens before it (HF's `cumsum(mask) - 1`); pads
    /// reuse a neighbour's position, which does not matter since they are masked.
    fn positions(&self) -> Vec<usize> {
        let mut seen = 0usize;
        self.valid
            .iter()
            .map(|&v| {
                seen += usize::from(v);
                seen.saturating_sub(1)
            })
            .collect()
    }
}

/// Runs tokens `start..` of every row and returns the logits of the last position, `[batch * vocab]`.
fn last_logits<B: Backend>(
    model: &CausalLm<B>,
    rows: &[Row],
    start: usize,
    device: &B::Device,
    cache: Option<&mut KvCache<B>>,
) -> Vec<f32> {
    let total = rows[0].ids.len();
    let seq = total - start;
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.ids[start..].iter().map(|&t| t as i64))
        .collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows.len(), seq]), device);
    let positions: Vec<Vec<usize>> = rows
        .iter()
        .map(|r| r.positions()[start..].to_vec())
        .collect();
    let valid: Vec<Vec<bool>> = rows.iter().map(|r| r.valid.clone()).collect();
    let plan = AttentionPlan::new(model.config(), &positions, &valid, device);
    let hidden = model.hidden(ids, &plan, cache);
    let last = hidden.narrow(1, seq - 1, 1);
    let logits = model
        .head(last)
        .reshape([rows.len(), model.config().vocab_size]);
    logits
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 logits")
}
