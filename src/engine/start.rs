//! What a pipeline starts from: the starting model and its tokenizer (only the tokenizer for
//! an external trainer), and the training and held-out prompt sets.

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use super::pipeline::Pipeline;
use crate::config::{Config, LoraCheckpoint, RankerKind, TrainEngine};
use crate::model::load::load_pretrained;
use crate::model::{CausalLm, ModelConfig};
use crate::prompts::PromptSets;
use crate::tokenizer::TextTokenizer;

/// The starting model in Burn (None for an external trainer, which loads it itself: only
/// its tokenizer is read) and its tokenizer.
pub(super) fn load_start<B: AutodiffBackend>(
    config: &Config,
    device: &B::Device,
) -> Result<(Option<CausalLm<B>>, TextTokenizer)> {
    let path = config.model_dir()?;
    if config.train.engine == TrainEngine::InProcess {
        let (model, tokenizer) = load_pretrained(&path, device)?;
        return Ok((Some(model), tokenizer));
    }
    if !path.join("config.json").is_file() {
        anyhow::bail!(
            "key `model.path`: `train.engine = \"command\"` needs an HF model directory (the \
             trainer and the server load it); {} is not one",
            path.display()
        );
    }
    let model = ModelConfig::from_file(&path.join("config.json"))?;
    let tokenizer = TextTokenizer::from_hf_dir(&path, &model.tokens())?;
    Ok((None, tokenizer))
}

/// Salt of the run seed that draws fresh adapters.
const LORA_SALT: u64 = 0x4c6f_5241;

/// The seed a run's fresh adapters are drawn from (in-process, and for an external
/// trainer's first adapter).
pub(super) fn lora_seed(config: &Config) -> u64 {
    config.run.seed ^ LORA_SALT
}

/// The policy and reference a run starts from `start`: with `[train.lora]` the policy is
/// `start` (frozen) with fresh adapters, drawn from the run's seed, and the reference
/// `start` alone; the two share its weights.
pub(super) fn start_models<B: AutodiffBackend>(
    config: &Config,
    start: CausalLm<B>,
) -> Result<(CausalLm<B>, CausalLm<B::InnerBackend>)> {
    let reference = start.valid();
    let policy = match &config.train.lora {
        Some(lora) => crate::model::lora::with_dropout(
            crate::model::lora::attach_new(start, &lora.shape(), lora_seed(config))
                .context("key `train.lora`")?,
            lora.dropout,
        ),
        None => start,
    };
    Ok((policy, reference))
}

/// The training and held-out prompts `config` describes.
pub(super) fn prompt_sets(config: &Config) -> Result<PromptSets> {
    let sets = read_prompt_sets(config)?;
    let has_dataset_pair =
        |p: &crate::prompts::Prompt| p.responses.chosen.is_some() || p.responses.rejected.is_some();
    if config.generate.samples == 0
        && !(config.prompts.dataset_responses && sets.train.iter().any(has_dataset_pair))
    {
        anyhow::bail!(
            "key `generate.samples`: 0 leaves y_ref as each prompt's only candidate, and no \
             training prompt brings `chosen` / `rejected` responses (with \
             `prompts.dataset_responses = true`)"
        );
    }
    // The ranker that scores held-out samples and, after a hand-off, training candidates.
    if config.rank.automatic_kind() == Some(RankerKind::Embedding) {
        let missing = sets.eval.iter().chain(&sets.train);
        if let Some(p) = missing.into_iter().find(|p| p.reference_answer().is_none()) {
            anyhow::bail!(
                "key `prompts.file`: {} line {} has no reference answer (`reference` or \
                 `chosen`), which the `embedding` ranker compares candidates with",
                config.prompts.file.as_deref().unwrap_or("the prompts file"),
                p.line.unwrap_or(0)
            );
        }
    }
    Ok(sets)
}

fn read_prompt_sets(config: &Config) -> Result<PromptSets> {
    let n_train = config.prompts.per_iteration * config.run.iterations;
    match &config.prompts.file {
        Some(file) => {
            let path = crate::paths::resolve(file)?;
            PromptSets::from_file(&path, config.run.seed, n_train, config.prompts.eval)
                .context("key `prompts.file`")
        }
        None => PromptSets::from_tasks(
            &config.task_kinds()?,
            config.run.seed,
            n_train,
            config.prompts.eval,
        ),
    }
}

impl<B: AutodiffBackend> Pipeline<B> {
    /// The architecture of the policy: the in-process model's, else the starting model's
    /// `config.json` (an external trainer's run loads no weights).
    pub(super) fn model_config(&self) -> Result<ModelConfig> {
        match self.burn() {
            Ok(t) => Ok(t.policy().config().clone()),
            Err(_) => ModelConfig::from_file(&self.config.model_dir()?.join("config.json")),
        }
    }

    /// How checkpoints of this run's policy are written.
    pub(super) fn save_as(&self) -> Result<crate::run::SaveAs> {
        let lora = self.config.train.lora.as_ref();
        Ok(crate::run::SaveAs {
            base: self.base_model()?,
            merged: lora.is_none_or(|l| l.checkpoint == LoraCheckpoint::Merged),
        })
    }

    /// The starting model's absolute path: the base a LoRA checkpoint's adapter names.
    pub(super) fn base_model(&self) -> Result<String> {
        let dir = self.config.model_dir()?;
        Ok(std::path::absolute(&dir)
            .unwrap_or(dir)
            .display()
            .to_string())
    }
}
