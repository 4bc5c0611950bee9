//! The six-stage pipeline as a state machine advanced one small unit of work at a time
//! (one decode batch, one ranking chunk, one update mini-batch), so that a front end can step,
//! pause and change parameters between units.

use anyhow::{Context, Result, bail};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::time::Instant;

use super::messages::{
    Event, IterationSummary, LiveParams, PairLogps, PairView, ResponseLogps, Stage,
};
use crate::config::Config;
use crate::io::run_dir::{MetricRow, RunDir};
use crate::model::CausalLm;
use crate::model::generate::generate;
use crate::model::load::{host, load_pretrained};
use crate::model::sampling::SamplingParams;
use crate::prompts::{Prompt, PromptSets};
use crate::ranker::{RankRequest, Ranker, best_and_worst, score_checked};
use crate::selm::Triple;
use crate::selm::logprobs::response_token_logps;
use crate::tokenizer::TextTokenizer;
use crate::train::{CosineWithWarmup, OptimConfig, SelmTrainer};

/// What one call to [`Pipeline::advance`] completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    Unit,
    StageDone,
    IterationDone,
    RunDone,
}

/// One generated response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub text: String,
    pub tokens: Vec<u32>,
    /// The greedy response of pi_ref (y_ref).
    pub is_reference: bool,
    pub score: Option<f64>,
}

/// A pair as written to `pairs.jsonl`: TRL's preference fields plus ours.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairRecord {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    pub iteration: usize,
    pub chosen_score: f64,
    pub rejected_score: f64,
    pub y_ref: String,
    #[serde(deserialize_with = "crate::engine::messages::f64_or_nan")]
    pub y_ref_score: f64,
    pub candidates: Vec<Candidate>,
    pub ranker: String,
}

impl PairRecord {
    /// What the inspector shows of it.
    pub fn view(&self) -> PairView {
        PairView {
            prompt: self.prompt.clone(),
            chosen: self.chosen.clone(),
            rejected: self.rejected.clone(),
            reference_response: self.y_ref.clone(),
            chosen_score: self.chosen_score,
            rejected_score: self.rejected_score,
            reference_score: self.y_ref_score,
        }
    }
}

#[derive(Default)]
struct IterationState {
    prompts: Vec<Prompt>,
    prompt_ids: Vec<Vec<u32>>,
    /// Per prompt: K samples, then y_ref last.
    candidates: Vec<Vec<Candidate>>,
    jobs: Vec<Vec<(usize, bool)>>,
    triples: Vec<Triple>,
    batches: Vec<Vec<usize>>,
    losses: Vec<f64>,
    pairs: usize,
}

impl IterationState {
    /// Mean ranker score of this iteration's candidates.
    fn mean_score(&self) -> f64 {
        let scores: Vec<f64> = self
            .candidates
            .iter()
            .flatten()
            .filter_map(|c| c.score)
            .collect();
        scores.iter().sum::<f64>() / scores.len().max(1) as f64
    }
}

pub struct Pipeline<B: AutodiffBackend> {
    pub config: Config,
    trainer: SelmTrainer<B>,
    pub tokenizer: TextTokenizer,
    /// tokenizer.json and tokenizer_config.json, saved with every checkpoint.
    tokenizer_files: Vec<(String, String)>,
    ranker: Box<dyn Ranker>,
    sets: PromptSets,
    /// Token ids of the held-out prompts.
    eval_ids: Vec<Vec<u32>>,
    pub run: RunDir,
    pub params: LiveParams,
    pub iteration: usize,
    pub stage: Stage,
    cursor: usize,
    state: IterationState,
    pub summaries: Vec<IterationSummary>,
    started: Instant,
    global_step: usize,
    finished: bool,
}

impl<B: AutodiffBackend> Pipeline<B> {
    /// Loads the model (policy and reference), draws the prompt sets, creates the run dir.
    pub fn new(config: Config, device: &B::Device) -> Result<Self> {
        let path = config.model_dir()?;
        let (policy, tokenizer): (CausalLm<B>, _) = load_pretrained(&path, device)?;
        let tokenizer_files = vec![
            ("tokenizer.json".to_string(), tokenizer.to_json()?),
            (
                "tokenizer_config.json".to_string(),
                serde_json::to_string_pretty(&tokenizer.tokenizer_config_json())?,
            ),
        ];
        let n_train = config.prompts.per_iteration * config.run.iterations;
        let sets = match &config.prompts.file {
            Some(file) => {
                let path = crate::config::resolve_path(file)?;
                PromptSets::from_file(&path, config.run.seed, n_train, config.prompts.eval)
                    .context("key `prompts.file`")?
            }
            None => PromptSets::from_tasks(
                &config.task_kinds()?,
                config.run.seed,
                n_train,
                config.prompts.eval,
            )?,
        };
        let eval_ids = sets
            .eval
            .iter()
            .map(|p| p.encode(&tokenizer, config.prompts.chat))
            .collect::<Result<_>>()?;
        let ranker = crate::ranker::from_config(&config.rank)?;
        let optim = OptimConfig {
            max_grad_norm: config.train.max_grad_norm,
            weight_decay: config.train.weight_decay,
            ..OptimConfig::default()
        };
        let reference = policy.valid();
        let trainer = SelmTrainer::new(
            policy,
            reference,
            optim,
            CosineWithWarmup::constant(config.train.lr),
        );
        let mut run = RunDir::create(&config.run.out_dir, &config.run.name)?;
        run.write_config(&config)?;
        let params = config.live_params();
        run.push_history(serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339(), "iteration": 1, "step": 0,
            "event": "start", "alpha": params.alpha, "beta": params.beta, "lr": params.lr,
        }))?;
        Ok(Self {
            config,
            trainer,
            tokenizer,
            tokenizer_files,
            ranker,
            sets,
            eval_ids,
            run,
            params,
            iteration: 1,
            stage: Stage::SamplePrompts,
            cursor: 0,
            state: IterationState::default(),
            summaries: vec![],
            started: Instant::now(),
            global_step: 0,
            finished: false,
        })
    }

    /// The current policy pi_theta.
    pub fn policy(&self) -> &CausalLm<B> {
        self.trainer.policy()
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Changes alpha / beta / lr from the next update on, and records it.
    pub fn set_params(
        &mut self,
        alpha: Option<f64>,
        beta: Option<f64>,
        lr: Option<f64>,
    ) -> Result<LiveParams> {
        let mut next = self.params;
        if let Some(a) = alpha {
            if !(a.is_finite() && a >= 0.0) {
                bail!("alpha must be a number >= 0, got {a}");
            }
            next.alpha = a;
        }
        if let Some(b) = beta {
            if !(b.is_finite() && b > 0.0) {
                bail!("beta must be positive, got {b}");
            }
            next.beta = b;
        }
        if let Some(l) = lr {
            if !(l.is_finite() && l > 0.0) {
                bail!("lr must be positive, got {l}");
            }
            next.lr = l;
            self.trainer.schedule.peak_lr = l;
        }
        self.run.push_history(serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339(), "iteration": self.iteration,
            "step": self.global_step, "event": "set",
            "old": self.params, "new": next,
        }))?;
        self.params = next;
        Ok(next)
    }

    /// Evaluates the starting model (iteration 0) so that later iterations have a baseline.
    pub fn evaluate_start(&mut self, emit: &mut dyn FnMut(Event)) -> Result<()> {
        let summary = self.evaluate(0, f64::NAN, 0, f64::NAN)?;
        emit(Event::Iteration(summary.clone()));
        self.summaries.push(summary);
        Ok(())
    }

    /// Does one unit of work.
    pub fn advance(&mut self, emit: &mut dyn FnMut(Event)) -> Result<Advance> {
        if self.finished {
            return Ok(Advance::RunDone);
        }
        if self.cursor == 0 {
            emit(Event::StageStarted {
                iteration: self.iteration,
                stage: self.stage,
            });
        }
        let (done, total) = self.unit(emit).with_context(|| {
            format!(
                "iteration {} stage `{}`",
                self.iteration,
                self.stage.label()
            )
        })?;
        self.cursor += 1;
        emit(Event::Progress {
            iteration: self.iteration,
            stage: self.stage,
            done,
            total,
        });
        if done < total {
            return Ok(Advance::Unit);
        }
        emit(Event::StageFinished {
            iteration: self.iteration,
            stage: self.stage,
            summary: self.stage_summary(),
        });
        self.cursor = 0;
        match self.stage.next() {
            Some(next) => {
                self.stage = next;
                Ok(Advance::StageDone)
            }
            None if self.iteration == self.config.run.iterations => {
                self.finished = true;
                Ok(Advance::RunDone)
            }
            None => {
                self.iteration += 1;
                self.stage = Stage::SamplePrompts;
                Ok(Advance::IterationDone)
            }
        }
    }

    /// Runs unit number `self.cursor` of the current stage; returns (units done, units total).
    fn unit(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(usize, usize)> {
        match self.stage {
            Stage::SamplePrompts => self.sample_prompts(),
            Stage::Generate => self.generate_unit(),
            Stage::Rank => self.rank(),
            Stage::SelectPairs => self.select_pairs(emit),
            Stage::Update => self.update_unit(emit),
            Stage::SyncEval => self.sync_eval(emit),
        }
    }

    fn sample_prompts(&mut self) -> Result<(usize, usize)> {
        self.started = Instant::now();
        let per = self.config.prompts.per_iteration;
        let chunk = &self.sets.train[(self.iteration - 1) * per..self.iteration * per];
        let prompt_ids = chunk
            .iter()
            .map(|p| p.encode(&self.tokenizer, self.config.prompts.chat))
            .collect::<Result<_>>()?;
        let k = self.config.generate.samples;
        let bs = self.config.generate.batch_size;
        let greedy: Vec<(usize, bool)> = (0..chunk.len()).map(|i| (i, true)).collect();
        let sampled: Vec<(usize, bool)> = (0..chunk.len())
            .flat_map(|i| std::iter::repeat_n((i, false), k))
            .collect();
        let jobs = greedy
            .chunks(bs)
            .chain(sampled.chunks(bs))
            .map(<[_]>::to_vec)
            .collect();
        self.state = IterationState {
            prompts: chunk.to_vec(),
            prompt_ids,
            candidates: vec![vec![]; chunk.len()],
            jobs,
            ..IterationState::default()
        };
        Ok((1, 1))
    }

    fn generate_unit(&mut self) -> Result<(usize, usize)> {
        let total = self.state.jobs.len();
        let jobs = self.state.jobs[self.cursor].clone();
        let greedy = jobs[0].1;
        let g = &self.config.generate;
        let params = if greedy {
            SamplingParams::GREEDY
        } else {
            SamplingParams {
                temperature: g.temperature,
                top_p: g.top_p,
                top_k: g.top_k,
            }
        };
        // A seed per (iteration, batch): the same config gives the same samples, however
        // the run was stepped.
        let seed = self.config.run.seed ^ ((self.iteration as u64) << 32) ^ self.cursor as u64;
        let mut rng = StdRng::seed_from_u64(seed);
        let prompts: Vec<Vec<u32>> = jobs
            .iter()
            .map(|(i, _)| self.state.prompt_ids[*i].clone())
            .collect();
        let out = generate(
            self.trainer.reference(),
            &prompts,
            g.max_new_tokens,
            &params,
            &mut rng,
        );
        for ((i, is_ref), out) in jobs.iter().zip(out) {
            let text = self.tokenizer.decode(&out.tokens)?;
            self.state.candidates[*i].push(Candidate {
                text,
                tokens: out.tokens,
                is_reference: *is_ref,
                score: None,
            });
        }
        if self.cursor + 1 == total {
            // y_ref was generated first; keep it last, after the K samples.
            for c in &mut self.state.candidates {
                c.rotate_left(1);
            }
            self.write_candidates()?;
        }
        Ok((self.cursor + 1, total))
    }

    /// Candidates go to disk before ranking, so a failing ranker loses nothing.
    fn write_candidates(&self) -> Result<()> {
        #[derive(Serialize)]
        struct Row<'a> {
            iteration: usize,
            prompt: &'a str,
            candidates: &'a [Candidate],
        }
        let rows: Vec<Row> = self
            .state
            .prompts
            .iter()
            .zip(&self.state.candidates)
            .map(|(p, c)| Row {
                iteration: self.iteration,
                prompt: &p.text,
                candidates: c,
            })
            .collect();
        self.run
            .write_jsonl(self.iteration, "candidates.jsonl", &rows)
    }

    /// Prompts ranked per unit: progress to watch, and a failure redoes only its chunk.
    const RANK_CHUNK: usize = 16;

    fn rank(&mut self) -> Result<(usize, usize)> {
        let n = self.state.prompts.len();
        let total = n.div_ceil(Self::RANK_CHUNK).max(1);
        let start = self.cursor * Self::RANK_CHUNK;
        let end = (start + Self::RANK_CHUNK).min(n);
        for i in start..end {
            let prompt = &self.state.prompts[i];
            let cands = &mut self.state.candidates[i];
            let texts: Vec<String> = cands.iter().map(|c| c.text.clone()).collect();
            let req = RankRequest {
                prompt: &prompt.text,
                task: prompt.task.as_ref(),
                candidates: &texts,
            };
            let scores = score_checked(self.ranker.as_mut(), &req).with_context(|| {
                format!(
                    "ranking prompt {} of {n} (the candidates are in iter-{:03}/candidates.jsonl; \
                     step again to retry)",
                    i + 1,
                    self.iteration
                )
            })?;
            for (c, s) in cands.iter_mut().zip(scores) {
                c.score = Some(s);
            }
        }
        if self.cursor + 1 == total {
            self.write_candidates()?;
        }
        Ok((self.cursor + 1, total))
    }

    fn select_pairs(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(usize, usize)> {
        let mut records = vec![];
        let mut triples = vec![];
        for ((prompt, ids), cands) in self
            .state
            .prompts
            .iter()
            .zip(&self.state.prompt_ids)
            .zip(&self.state.candidates)
        {
            let scores: Vec<f64> = cands.iter().map(|c| c.score.unwrap_or(f64::NAN)).collect();
            let Some((best, worst)) = best_and_worst(&scores) else {
                continue;
            };
            let y_ref = cands
                .iter()
                .find(|c| c.is_reference)
                .expect("y_ref generated");
            triples.push(Triple {
                prompt: ids.clone(),
                chosen: cands[best].tokens.clone(),
                rejected: cands[worst].tokens.clone(),
                reference_response: y_ref.tokens.clone(),
            });
            records.push(PairRecord {
                prompt: prompt.text.clone(),
                chosen: cands[best].text.clone(),
                rejected: cands[worst].text.clone(),
                iteration: self.iteration,
                chosen_score: scores[best],
                rejected_score: scores[worst],
                y_ref: y_ref.text.clone(),
                y_ref_score: y_ref.score.unwrap_or(f64::NAN),
                candidates: cands.clone(),
                ranker: self.ranker.name().to_string(),
            });
        }
        self.run
            .write_jsonl(self.iteration, "pairs.jsonl", &records)?;
        let views = records.iter().map(PairRecord::view).collect();
        emit(Event::Pairs {
            iteration: self.iteration,
            pairs: views,
        });
        // One epoch over the pairs in a seeded order; a fresh optimizer and schedule per
        // iteration, as the official recipe trains each iteration as its own run.
        let mut order: Vec<usize> = (0..triples.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(
            self.config.run.seed ^ (self.iteration as u64) << 40,
        ));
        self.state.batches = order
            .chunks(self.config.train.batch_size)
            .map(<[_]>::to_vec)
            .collect();
        self.state.pairs = triples.len();
        self.state.triples = triples;
        let schedule = CosineWithWarmup::new(
            self.params.lr,
            self.config.train.warmup_ratio,
            self.state.batches.len(),
        );
        self.trainer.reset_optimizer(schedule);
        Ok((1, 1))
    }

    fn update_unit(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(usize, usize)> {
        let total = self.state.batches.len();
        if total == 0 {
            emit(Event::Log(format!(
                "iteration {}: no pairs with a preference; no update",
                self.iteration
            )));
            return Ok((1, 1));
        }
        let batch: Vec<Triple> = self.state.batches[self.cursor]
            .iter()
            .map(|&i| self.state.triples[i].clone())
            .collect();
        let report = self
            .trainer
            .step(&batch, self.params.alpha, self.params.beta)?;
        self.global_step += 1;
        self.state.losses.push(report.metrics.loss);
        let mut row = MetricRow::new();
        row.insert("kind".into(), "train".into());
        row.insert("iteration".into(), self.iteration.into());
        row.insert("step".into(), self.global_step.into());
        row.insert("batch".into(), (self.cursor + 1).into());
        if let serde_json::Value::Object(m) = serde_json::to_value(&report)? {
            row.extend(m);
        }
        self.run.push_metrics(row.clone())?;
        emit(Event::Metrics(row));
        Ok((self.cursor + 1, total))
    }

    fn sync_eval(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(usize, usize)> {
        if !self.trainer.policy_is_finite() {
            bail!(
                "the policy's weights are not finite after the update: not syncing the \
                 reference or writing a checkpoint (the last good one is iteration {})",
                self.iteration - 1
            );
        }
        let logps = self.measure_pairs()?;
        self.run
            .write_jsonl(self.iteration, "pair_logps.jsonl", &logps)?;
        emit(Event::PairLogps {
            iteration: self.iteration,
            logps,
        });
        let cand_mean = self.state.mean_score();
        let losses = &self.state.losses;
        let mean_loss = if losses.is_empty() {
            f64::NAN
        } else {
            losses.iter().sum::<f64>() / losses.len() as f64
        };
        let summary = self.evaluate(self.iteration, cand_mean, self.state.pairs, mean_loss)?;
        self.trainer.sync_reference();
        let dir = self.run.save_checkpoint(
            self.iteration,
            self.trainer.reference(),
            &self.tokenizer_files,
        )?;
        emit(Event::Log(format!("checkpoint {}", dir.display())));
        emit(Event::Iteration(summary.clone()));
        self.summaries.push(summary);
        self.run.write_json("summary.json", &self.summaries)?;
        Ok((1, 1))
    }

    /// Per-token log-probs of every pair's chosen, rejected and y_ref under the updated policy
    /// and the reference, for the inspector.
    fn measure_pairs(&self) -> Result<Vec<PairLogps>> {
        let policy = self.trainer.policy().valid();
        let reference = self.trainer.reference();
        let mut out = Vec::with_capacity(self.state.triples.len());
        for chunk in self.state.triples.chunks(self.config.train.batch_size) {
            let rows: Vec<(&[u32], &[u32])> = chunk
                .iter()
                .flat_map(|t| {
                    [&t.chosen, &t.rejected, &t.reference_response]
                        .map(|r| (t.prompt.as_slice(), r.as_slice()))
                })
                .collect();
            let pol = response_token_logps(&policy, &rows);
            let refs = response_token_logps(reference, &rows);
            let mut responses = rows
                .iter()
                .zip(pol.into_iter().zip(refs))
                .map(|((_, r), (policy, reference))| {
                    let tokens = r
                        .iter()
                        .map(|&id| self.tokenizer.token_piece(id))
                        .collect::<Result<_>>()?;
                    Ok(ResponseLogps {
                        tokens,
                        policy,
                        reference,
                    })
                })
                .collect::<Result<Vec<_>>>()?
                .into_iter();
            while let (Some(chosen), Some(rejected), Some(y_ref)) =
                (responses.next(), responses.next(), responses.next())
            {
                out.push(PairLogps {
                    beta: self.params.beta,
                    chosen,
                    rejected,
                    y_ref,
                });
            }
        }
        Ok(out)
    }

    /// kl, high_reward_fraction and reward/mean of fresh policy samples on the held-out prompts.
    fn evaluate(
        &mut self,
        iteration: usize,
        cand_mean: f64,
        pairs: usize,
        mean_loss: f64,
    ) -> Result<IterationSummary> {
        let policy = self.trainer.policy().valid();
        let e = &self.config.eval;
        let params = SamplingParams {
            temperature: e.temperature,
            top_p: 1.0,
            top_k: 0,
        };
        let mut rng =
            StdRng::seed_from_u64(self.config.run.seed ^ 0xe7a1 ^ (iteration as u64) << 24);
        let mut kl_sum = 0.0;
        let mut jobs: Vec<usize> = vec![];
        for i in 0..self.sets.eval.len() {
            jobs.extend(std::iter::repeat_n(i, e.samples));
        }
        // Each held-out prompt's samples, ranked together once all are decoded.
        let mut samples: Vec<Vec<String>> = vec![vec![]; self.sets.eval.len()];
        for chunk in jobs.chunks(self.config.generate.batch_size) {
            let prompts: Vec<Vec<u32>> = chunk.iter().map(|&i| self.eval_ids[i].clone()).collect();
            let out = generate(
                &policy,
                &prompts,
                self.config.generate.max_new_tokens,
                &params,
                &mut rng,
            );
            let pairs: Vec<(&[u32], &[u32])> = prompts
                .iter()
                .zip(&out)
                .map(|(p, g)| (p.as_slice(), g.tokens.as_slice()))
                .collect();
            let lp = host(crate::selm::logprobs::sequence_logps(&policy, &pairs)).data;
            let lr = host(crate::selm::logprobs::sequence_logps(
                self.trainer.reference(),
                &pairs,
            ))
            .data;
            kl_sum += lp.iter().zip(&lr).map(|(a, b)| (a - b) as f64).sum::<f64>();
            for (&i, g) in chunk.iter().zip(&out) {
                samples[i].push(self.tokenizer.decode(&g.tokens)?);
            }
        }
        let mut rewards = vec![];
        for (prompt, texts) in self.sets.eval.iter().zip(&samples) {
            let req = RankRequest {
                prompt: &prompt.text,
                task: prompt.task.as_ref(),
                candidates: texts,
            };
            let scores =
                score_checked(self.ranker.as_mut(), &req).context("scoring held-out samples")?;
            rewards.extend(scores);
        }
        let n = rewards.len().max(1) as f64;
        let threshold = self.config.rank.high_reward_threshold;
        let [lo, hi] = self.config.rank.score_range;
        let mut histogram = [0usize; 10];
        for r in &rewards {
            histogram[(((r.clamp(lo, hi) - lo) / (hi - lo) * 10.0) as usize).min(9)] += 1;
        }
        let summary = IterationSummary {
            iteration,
            kl: kl_sum / n,
            high_reward_fraction: rewards.iter().filter(|&&r| r >= threshold).count() as f64 / n,
            reward_mean: rewards.iter().sum::<f64>() / n,
            reward_histogram: histogram,
            histogram_range: [lo, hi],
            candidate_reward_mean: cand_mean,
            pairs,
            mean_loss,
            eval_prompts: self.sets.eval.len(),
            eval_samples: rewards.len(),
            wall_s: if iteration == 0 {
                0.0
            } else {
                self.started.elapsed().as_secs_f64()
            },
        };
        let mut row = MetricRow::new();
        row.insert("kind".into(), "eval".into());
        row.insert("iteration".into(), iteration.into());
        row.insert("step".into(), self.global_step.into());
        row.insert("kl".into(), summary.kl.into());
        row.insert(
            "high_reward_fraction".into(),
            summary.high_reward_fraction.into(),
        );
        row.insert("reward/mean".into(), summary.reward_mean.into());
        row.insert("alpha".into(), self.params.alpha.into());
        row.insert("beta".into(), self.params.beta.into());
        self.run.push_metrics(row)?;
        Ok(summary)
    }

    fn stage_summary(&self) -> String {
        let s = &self.state;
        match self.stage {
            Stage::SamplePrompts => format!("{} prompts", s.prompts.len()),
            Stage::Generate => format!(
                "{} responses",
                s.candidates.iter().map(Vec::len).sum::<usize>()
            ),
            Stage::Rank => format!("mean score {:.3}", s.mean_score()),
            Stage::SelectPairs => format!(
                "{} pairs ({} prompts without preference)",
                s.pairs,
                s.prompts.len() - s.pairs
            ),
            Stage::Update => {
                let mean = s.losses.iter().sum::<f64>() / s.losses.len().max(1) as f64;
                format!("{} updates, mean loss {mean:.4}", s.losses.len())
            }
            Stage::SyncEval => match self.summaries.last() {
                Some(x) => format!(
                    "kl {:.4}  high-reward {:.3}  reward {:.3}",
                    x.kl, x.high_reward_fraction, x.reward_mean
                ),
                None => String::new(),
            },
        }
    }
}
