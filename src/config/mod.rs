//! The TOML run configuration. Unknown keys are rejected; every error names its key. Every
//! key is documented where it is declared here, and checked in [`Config::validate`].

mod lora;
mod server;
mod validate;

pub use lora::{LoraCheckpoint, LoraSection};

pub use server::{
    GenerateEngine, PoolingEndpoint, RankInput, RankServer, Reload, ServerApi, ServerSection,
    TRAIN_PLACEHOLDERS, TrainEngine, placeholder_spans, placeholders,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::backend::BackendSpec;
use crate::tasks::TaskKind;

/// The configuration shipped in the binary (`configs/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../configs/default.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub run: RunConfig,
    #[serde(default)]
    pub runtime: Runtime,
    pub model: ModelSection,
    pub prompts: Prompts,
    pub generate: Generate,
    pub rank: Rank,
    pub train: Train,
    pub eval: Eval,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run directories are `<out_dir>/<name>-<timestamp>`.
    pub name: String,
    pub out_dir: PathBuf,
    pub seed: u64,
    pub iterations: usize,
    /// Pause between iterations (TUI), so alpha, beta and lr can be changed.
    #[serde(default)]
    pub auto_pause: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// flex, wgpu, wgpu:cpu, wgpu:N, cuda, cuda:N.
    #[serde(default = "default_backend")]
    pub backend: String,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            backend: default_backend(),
        }
    }
}

fn default_backend() -> String {
    "flex".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// An HF model directory, a GGUF file, `builtin:tiny-tasks`, or `cache:<file>` (a file
    /// in the download cache, `$SELM_CACHE` or ~/.cache/selm-tui).
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompts {
    /// Built-in tasks to draw prompts from (or use `file`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// A JSON-lines prompt file (`prompt` string, TRL conversational `prompt`, or
    /// `messages`); `builtin:prompts` is assets/prompts.jsonl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Format prompts with the model's chat template when it has one.
    #[serde(default = "yes")]
    pub chat: bool,
    pub per_iteration: usize,
    /// Rows' own `chosen` and `rejected` responses join each training prompt's candidates
    /// (the official SELM recipe: y_ref plus the dataset's pair).
    #[serde(default = "yes")]
    pub dataset_responses: bool,
    /// Held-out prompts for kl and high_reward_fraction (disjoint from training prompts).
    pub eval: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    /// K: sampled candidates per prompt (y_ref, the greedy response, is added to them, and
    /// the prompts file's `chosen` / `rejected`). 0: y_ref and the dataset's responses only.
    pub samples: usize,
    pub temperature: f32,
    pub top_p: f32,
    #[serde(default)]
    pub top_k: usize,
    pub max_new_tokens: usize,
    /// Sequences decoded together (with `engine = "server"`: requests per resumable batch).
    pub batch_size: usize,
    /// `in_process` (Burn, on the run's backend) or `server` (`[generate.server]`).
    #[serde(default)]
    pub engine: GenerateEngine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rank {
    /// `oracle`: the exact reward of the built-in tasks; `command`: an external process
    /// (JSON lines, see the README); `reward_model`: an HF sequence-classification reward
    /// model run in-process (`model`); `embedding`: the cosine similarity between a
    /// candidate's sentence embedding and the prompt's reference answer's (`model`, a
    /// sentence-transformers BERT encoder; every prompt needs a reference); `human`: the
    /// researcher, in the TUI (with `fallback`); `server`: a reward model on a server's
    /// pooling endpoint (`[rank.server]`, e.g. vLLM's `--runner pooling`).
    pub ranker: RankerKind,
    /// For `command`: the program and its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// For `reward_model`: the reward model's HF directory (`LlamaForSequenceClassification`
    /// or `Qwen2ForSequenceClassification`, one label, with its `tokenizer.json`). For
    /// `embedding`: the sentence-transformers model directory (a BERT with mean pooling,
    /// such as all-MiniLM-L6-v2), by default `cache:all-MiniLM-L6-v2`, which
    /// `scripts/fetch_minilm.sh` fills. A path, `builtin:<name>` or `cache:<dir>` as for
    /// `model.path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// For `human`: the ranker (`oracle`, `command`, `reward_model`, `embedding`, `server`, with this
    /// section's other keys) that scores the held-out samples and takes over the rest of a
    /// rank stage when the researcher hands it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<RankerKind>,
    /// The score range the reward histogram spans (scores outside go to the end bins).
    #[serde(default = "default_score_range")]
    pub score_range: [f64; 2],
    /// For `server`: the reward model's server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<RankServer>,
    /// For `command`: seconds to wait for one answer.
    #[serde(default = "default_rank_timeout")]
    pub timeout_s: f64,
    /// Responses scoring at or above this count as high-reward.
    pub high_reward_threshold: f64,
}

/// Who scores candidates (`rank.ranker`, `rank.fallback`); see [`Rank::ranker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankerKind {
    Oracle,
    Command,
    RewardModel,
    Embedding,
    Server,
    Human,
}

impl RankerKind {
    pub const ALL: [RankerKind; 6] = [
        RankerKind::Oracle,
        RankerKind::Command,
        RankerKind::RewardModel,
        RankerKind::Embedding,
        RankerKind::Server,
        RankerKind::Human,
    ];

    /// The name the config gives it (its serde name; a unit test holds the two together).
    pub fn name(self) -> &'static str {
        match self {
            RankerKind::Oracle => "oracle",
            RankerKind::Command => "command",
            RankerKind::RewardModel => "reward_model",
            RankerKind::Embedding => "embedding",
            RankerKind::Server => "server",
            RankerKind::Human => "human",
        }
    }
}

impl std::fmt::Display for RankerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Rank {
    /// Whether the researcher ranks the training candidates in the TUI.
    pub fn is_human(&self) -> bool {
        self.ranker == RankerKind::Human
    }

    /// The ranker that scores automatically: `ranker`, or for `human` its `fallback`
    /// (`None` only for a `human` ranker without one, which validation refuses).
    pub fn automatic_kind(&self) -> Option<RankerKind> {
        match self.ranker {
            RankerKind::Human => self.fallback,
            kind => Some(kind),
        }
    }
}

/// alpha / beta / lr: the parameters a researcher may change while a run is going.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiveParams {
    pub alpha: f64,
    pub beta: f64,
    pub lr: f64,
}

/// A live parameter out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name} must be {rule}, got {value}")]
pub struct ParamError {
    pub name: &'static str,
    pub rule: &'static str,
    pub value: f64,
}

impl LiveParams {
    /// The one check of alpha / beta / lr, used by the config, the engine and the TUI.
    pub fn validate(&self) -> std::result::Result<(), ParamError> {
        let checks = [
            ("alpha", self.alpha, ">= 0", self.alpha >= 0.0),
            ("beta", self.beta, "> 0", self.beta > 0.0),
            ("lr", self.lr, "> 0", self.lr > 0.0),
        ];
        for (name, value, rule, ok) in checks {
            if !(ok && value.is_finite()) {
                return Err(ParamError { name, rule, value });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    /// The preference objective: `selm` (DPO plus SELM's optimism term, weighted by `alpha`),
    /// `dpo` (alpha ignored), or `xpo` (DPO plus XPO's exploration term, weighted by
    /// `alpha`; arXiv 2405.21046).
    #[serde(default)]
    pub objective: Objective,
    /// Sync pi_ref to pi_theta after each iteration (iterative DPO / SELM); false keeps
    /// pi_ref at the starting model (an offline-reference baseline).
    #[serde(default = "yes")]
    pub sync_reference: bool,
    /// Optimism coefficient; 0 is plain DPO.
    pub alpha: f64,
    pub beta: f64,
    pub lr: f64,
    pub warmup_ratio: f64,
    /// Preference triples per update.
    pub batch_size: usize,
    /// Triples per forward/backward pass (gradients accumulate over an update's passes);
    /// absent: as many as keep a pass's activations near 1 GiB.
    #[serde(default)]
    pub micro_batch_size: Option<usize>,
    pub max_grad_norm: Option<f64>,
    #[serde(default)]
    pub weight_decay: f64,
    /// Low-rank adapters instead of full updates ([train.lora]); absent: full updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSection>,
    /// `in_process` (Burn, on the run's backend) or `command` (an external trainer such as
    /// TRL + DeepSpeed, `command`; generation then runs on a server, and selm-tui loads no
    /// weights).
    #[serde(default)]
    pub engine: TrainEngine,
    /// For `engine = "command"`: a shell command template run once per iteration, e.g.
    /// `accelerate launch --config_file configs/accelerate/zero3.yaml scripts/selm_trl.py
    /// --params {params}`. Placeholders: {input} (the pairs, TRL preference JSONL), {model}
    /// (the policy to start from), {ref_model} (pi_ref), {out} (where the updated policy
    /// goes, an HF directory), {params} (params.json, everything below and the paths),
    /// {eval_prompts}, {pair_logps_out}, {eval_samples_out}, {alpha}, {beta}, {lr},
    /// {batch_size}, {warmup_ratio}, {seed}, {objective}, {iteration}, {run_dir}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// The loss an update minimizes (see the README's Math section).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    #[default]
    Selm,
    Dpo,
    Xpo,
}

impl Objective {
    pub const ALL: [Objective; 3] = [Objective::Selm, Objective::Dpo, Objective::Xpo];

    /// The name configs and the external trainer's `params.json` give it (its serde name;
    /// a unit test holds the two together).
    pub fn name(self) -> &'static str {
        match self {
            Objective::Selm => "selm",
            Objective::Dpo => "dpo",
            Objective::Xpo => "xpo",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eval {
    /// Samples per held-out prompt.
    pub samples: usize,
    pub temperature: f32,
}

impl Config {
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config: Self = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| anyhow::anyhow!("{}", toml_error(text, &e)))
            .with_context(|| format!("invalid config {origin}"))?;
        config
            .validate()
            .with_context(|| format!("invalid config {origin}"))?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn embedded_default() -> Self {
        Self::from_toml(DEFAULT_TOML, "configs/default.toml").expect("the shipped config is valid")
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }

    pub fn backend(&self) -> Result<BackendSpec> {
        self.runtime
            .backend
            .parse()
            .context("key `runtime.backend`")
    }

    pub fn task_kinds(&self) -> Result<Vec<TaskKind>> {
        self.prompts
            .tasks
            .iter()
            .map(|t| TaskKind::parse(t))
            .collect::<Result<_>>()
            .context("key `prompts.tasks`")
    }

    /// alpha / beta / lr as the run starts.
    pub fn live_params(&self) -> LiveParams {
        LiveParams {
            alpha: self.train.alpha,
            beta: self.train.beta,
            lr: self.train.lr,
        }
    }

    /// The model as the front ends show it: `model.path`, with the LoRA rank of a LoRA run.
    pub fn model_label(&self) -> String {
        match &self.train.lora {
            Some(lora) => format!("{} + LoRA r{}", self.model.path, lora.rank),
            None => self.model.path.clone(),
        }
    }

    /// The model directory or GGUF file `model.path` names.
    pub fn model_dir(&self) -> Result<PathBuf> {
        resolve_model_path(&self.model.path).context("key `model.path`")
    }
}

/// A TOML error on one line: the key it is about, where, and what.
fn toml_error(text: &str, e: &serde_path_to_error::Error<toml::de::Error>) -> String {
    let inner = e.inner();
    let place = inner.span().map(|span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        format!(" (line {line}, column {column})")
    });
    let key = e.path().to_string();
    let key = match key.as_str() {
        "." => String::new(),
        key => format!("key `{key}`: "),
    };
    format!(
        "{key}{}{}",
        inner.message().trim_end(),
        place.unwrap_or_default()
    )
}

/// The model `path` names: an HF directory (with config.json) or a GGUF file.
pub fn resolve_model_path(path: &str) -> Result<PathBuf> {
    let p = crate::paths::resolve(path)?;
    if p.is_dir() && !p.join("config.json").exists() {
        bail!("{} is not a model directory (no config.json)", p.display());
    }
    if !p.exists() {
        let hint = if path.starts_with("cache:") {
            " (run scripts/fetch_smollm2.sh or `just fetch-smollm2` to download it)"
        } else {
            ""
        };
        bail!("{} does not exist{hint}", p.display());
    }
    if p.is_file() && p.extension().is_none_or(|e| e != "gguf") {
        bail!(
            "{} is neither a model directory nor a .gguf file",
            p.display()
        );
    }
    Ok(p)
}

fn yes() -> bool {
    true
}

fn default_score_range() -> [f64; 2] {
    [0.0, 1.0]
}

fn default_rank_timeout() -> f64 {
    120.0
}
