//! HF sequence classifiers (`LlamaForSequenceClassification`, `Qwen2ForSequenceClassification`),
//! the usual shape of a reward model: the causal LM's decoder (`model.embed_tokens`,
//! `model.layers.*`, `model.norm`) and a linear `score` head (`score.weight`,
//! `[num_labels, hidden]`, no bias) in place of `lm_head`. A row's logits are the head applied
//! to the final hidden state (after the last norm) at its last non-padding token, as
//! transformers pools them; a reward model has one label, its score.
//!
//! The decoder is [`CausalLm`]'s, loaded by the same module-tree walk ([`super::load`]): the
//! tree `{ model: Transformer, score: Linear }` names every tensor.

use anyhow::{Context, Result, bail, ensure};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use std::path::Path;

use super::config::{Arch, ModelConfig};
use super::llama::{AttentionPlan, CausalLm, Linear, Transformer, right_pad};
use crate::io::weights::WeightMap;

/// The sequence-classification architectures (HF `architectures`) and the decoder each has.
pub const ARCHITECTURES: [(&str, Arch); 2] = [
    ("LlamaForSequenceClassification", Arch::Llama),
    ("Qwen2ForSequenceClassification", Arch::Qwen2),
];

/// A sequence classifier's `config.json`: the decoder's [`ModelConfig`], the architecture it
/// names and its number of labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierConfig {
    pub model: ModelConfig,
    /// One of [`ARCHITECTURES`].
    pub architecture: String,
    /// `num_labels`, else the size of `id2label`, else transformers' default 2.
    pub num_labels: usize,
}

impl ClassifierConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("in {}", path.display()))
    }

    /// A config that names one of [`ARCHITECTURES`], matching its `model_type`.
    pub fn from_json(text: &str) -> Result<Self> {
        let model = ModelConfig::from_json(text)?;
        let raw: serde_json::Value = serde_json::from_str(text).context("parsing config.json")?;
        let known = ARCHITECTURES.map(|(name, _)| name).join(" or ");
        let named: Vec<&str> = raw["architectures"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let Some((architecture, arch)) = named
            .iter()
            .find_map(|n| ARCHITECTURES.iter().find(|(a, _)| a == n))
        else {
            match named.as_slice() {
                [] => bail!(
                    "no `architectures` given: a reward model is a sequence classifier ({known})"
                ),
                names => bail!(
                    "architecture {} is not a sequence classifier ({known}): not a reward model",
                    names.join(", ")
                ),
            }
        };
        ensure!(
            *arch == model.arch,
            "architecture {architecture} does not match model_type `{}`",
            raw["model_type"].as_str().unwrap_or_default()
        );
        let from_map = raw["id2label"].as_object().map(|m| m.len());
        let num_labels = match (raw["num_labels"].as_u64(), from_map) {
            (Some(n), Some(m)) if n as usize != m => {
                bail!("num_labels ({n}) and id2label ({m} entries) disagree")
            }
            (Some(n), _) => n as usize,
            (None, Some(m)) => m,
            // transformers' PretrainedConfig default.
            (None, None) => 2,
        };
        Ok(Self {
            model,
            architecture: architecture.to_string(),
            num_labels,
        })
    }
}

/// The module tree the weights are named after.
#[derive(Module, Debug)]
struct ClassifierTree<B: Backend> {
    model: Transformer<B>,
    score: Linear<B>,
}

/// A loaded sequence classifier: the decoder (as a head-less [`CausalLm`]) and the `score`
/// head.
#[derive(Debug)]
pub struct SequenceClassifier<B: Backend> {
    lm: CausalLm<B>,
    score: Linear<B>,
    config: ClassifierConfig,
}

impl<B: Backend> SequenceClassifier<B> {
    /// Loads an HF directory (`config.json` + safetensors).
    pub fn load_hf_dir(dir: &Path, device: &B::Device) -> Result<Self> {
        let config = ClassifierConfig::from_file(&dir.join("config.json"))?;
        Self::load_weights(config, dir, device)
    }

    /// Loads the safetensors of HF directory `dir` for its already read `config`.
    pub fn load_weights(config: ClassifierConfig, dir: &Path, device: &B::Device) -> Result<Self> {
        let mut weights = crate::io::safetensors::read_model_dir(dir)?;
        Self::from_weights(config, &mut weights, device)
            .with_context(|| format!("loading {}", dir.display()))
    }

    /// Builds the classifier, consuming every tensor it expects from `weights` (a leftover
    /// `lm_head.weight` is ignored, as transformers does); other leftovers are an error.
    pub fn from_weights(
        config: ClassifierConfig,
        weights: &mut WeightMap,
        device: &B::Device,
    ) -> Result<Self> {
        let model_config = config.model.clone();
        let tree = ClassifierTree {
            model: CausalLm::<B>::skeleton(model_config.clone(), device).model,
            score: Linear {
                weight: Param::from_tensor(Tensor::zeros(
                    [model_config.hidden_size, config.num_labels],
                    device,
                )),
                bias: None,
                lora: None,
            },
        };
        let tree = super::load::take_all(tree, weights, device, &config.architecture)?;
        Ok(Self {
            lm: CausalLm {
                model: tree.model,
                lm_head: None,
                config: model_config,
            },
            score: tree.score,
            config,
        })
    }

    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// The decoder's config.
    pub fn model_config(&self) -> &ModelConfig {
        &self.config.model
    }

    pub fn device(&self) -> B::Device {
        self.lm.device()
    }

    /// The decoder with no head: its [`CausalLm::hidden`] gives the states the score reads.
    pub fn decoder(&self) -> &CausalLm<B> {
        &self.lm
    }

    /// Where transformers pools each row: with a `pad_token_id`, the last token that is not
    /// it (the first token when all are); without one, the last token.
    pub fn pooled_positions(&self, rows: &[Vec<u32>]) -> Vec<usize> {
        let pad = self.config.model.pad_token_id;
        rows.iter()
            .map(|row| match pad {
                Some(p) => row.iter().rposition(|&t| t != p).unwrap_or(0),
                None => row.len().saturating_sub(1),
            })
            .collect()
    }

    /// Logits `[rows, num_labels]` of token rows (one batch, right-padded), on the host.
    pub fn logits(&self, rows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        if rows.is_empty() {
            return Ok(vec![]);
        }
        if let Some(i) = rows.iter().position(Vec::is_empty) {
            bail!("row {i} has no tokens to score");
        }
        let vocab = self.config.model.vocab_size;
        if let Some(&t) = rows.iter().flatten().find(|&&t| t as usize >= vocab) {
            bail!("token id {t} is at or above the reward model's vocab_size {vocab}");
        }
        let device = self.device();
        let (ids, lens, seq) = right_pad::<B>(rows, self.config.model.pad_id(), &device);
        let plan = AttentionPlan::right_padded(&self.config.model, &lens, seq, &device);
        let hidden = self.lm.hidden(ids, &plan, None);
        let [b, t, h] = hidden.dims();
        let at: Vec<i64> = self
            .pooled_positions(rows)
            .iter()
            .enumerate()
            .map(|(row, &p)| (row * t + p) as i64)
            .collect();
        let at = Tensor::<B, 1, Int>::from_data(TensorData::new(at, [b]), &device);
        let pooled = hidden.reshape([b * t, h]).select(0, at).reshape([b, 1, h]);
        let n = self.config.num_labels;
        let flat = self
            .score
            .forward(pooled)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading scores: {e:?}"))?;
        Ok(flat.chunks(n).map(<[f32]>::to_vec).collect())
    }

    /// The score of each row: its single logit. Needs `num_labels` 1.
    pub fn scores(&self, rows: &[Vec<u32>]) -> Result<Vec<f32>> {
        ensure!(
            self.config.num_labels == 1,
            "num_labels is {}: a reward model has one",
            self.config.num_labels
        );
        Ok(self.logits(rows)?.into_iter().map(|l| l[0]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<ClassifierConfig> {
        ClassifierConfig::from_json(&format!(
            r#"{{"model_type":"llama","vocab_size":8,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2{extra}}}"#
        ))
    }

    #[test]
    fn reads_the_architecture_and_the_labels() {
        let arch = r#","architectures":["LlamaForSequenceClassification"]"#;
        let c = config(&format!(r#"{arch},"id2label":{{"0":"LABEL_0"}}"#)).unwrap();
        assert_eq!(c.architecture, "LlamaForSequenceClassification");
        assert_eq!(c.num_labels, 1);
        assert_eq!(
            config(&format!(r#"{arch},"num_labels":1"#))
                .unwrap()
                .num_labels,
            1
        );
        // transformers' default when neither is given.
        assert_eq!(config(arch).unwrap().num_labels, 2);
        let e = config(&format!(r#"{arch},"num_labels":3,"id2label":{{"0":"a"}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("disagree"), "{e}");
        let e = config(r#","architectures":["LlamaForCausalLM"]"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("LlamaForCausalLM") && e.contains("not a sequence classifier"),
            "{e}"
        );
    }
}
