//! Building a [`CausalLm`] from named host tensors (any file format), from random weights,
//! and turning it back into HF-named tensors. Names and shapes come from the module tree
//! ([`CausalLm::skeleton`]): a tensor's field path is its HF name.

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;

use super::config::ModelConfig;
use super::llama::CausalLm;
use crate::io::weights::{HostTensor, WeightMap};

/// Loads a model and its tokenizer from an HF directory (`config.json`, safetensors,
/// `tokenizer.json`, optional `tokenizer_config.json`) or a GGUF file.
pub fn load_pretrained<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(CausalLm<B>, crate::tokenizer::TextTokenizer)> {
    let (model, tok) = if path.is_dir() {
        let model = load_hf_dir(path, device)?;
        let tok = crate::tokenizer::TextTokenizer::from_hf_dir(path, &model.config().tokens())?;
        (model, tok)
    } else {
        if !path.exists() {
            bail!("model path {} does not exist", path.display());
        }
        let mut m = super::gguf::read_gguf(path)?;
        let tok = m.tokenizer()?;
        let model = from_weights(m.config.clone(), &mut m.weights, device)
            .with_context(|| format!("loading {}", path.display()))?;
        (model, tok)
    };
    check_fits(model.config(), &tok).with_context(|| format!("loading {}", path.display()))?;
    Ok((model, tok))
}

/// The tokenizer's ids must all have an embedding: every token and the special ids below
/// the model's `vocab_size`.
pub fn check_fits(config: &ModelConfig, tok: &crate::tokenizer::TextTokenizer) -> Result<()> {
    let n = config.vocab_size;
    let top = tok
        .inner()
        .get_vocab(true)
        .into_iter()
        .max_by_key(|(_, id)| *id);
    if let Some((token, id)) = top
        && id as usize >= n
    {
        bail!(
            "the tokenizer has token id {id} ({token:?}) but the model's vocab_size is {n}: \
             this tokenizer does not belong to this model"
        );
    }
    for (name, id) in [
        ("bos", tok.bos),
        ("eos", Some(tok.eos)),
        ("pad", Some(tok.pad)),
    ] {
        if let Some(id) = id
            && id as usize >= n
        {
            bail!("the {name} token id {id} is at or above the model's vocab_size {n}");
        }
    }
    Ok(())
}

/// Loads an HF model directory (`config.json` + safetensors).
pub fn load_hf_dir<B: Backend>(dir: &Path, device: &B::Device) -> Result<CausalLm<B>> {
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let mut weights = crate::io::safetensors::read_model_dir(dir)?;
    from_weights(config, &mut weights, device).with_context(|| format!("loading {}", dir.display()))
}

/// Builds the model, consuming every tensor it expects from `weights`; leftovers are an error.
pub fn from_weights<B: Backend>(
    config: ModelConfig,
    weights: &mut WeightMap,
    device: &B::Device,
) -> Result<CausalLm<B>> {
    let what = format!("{:?} model", config.arch);
    take_all(CausalLm::skeleton(config, device), weights, device, &what)
}

/// Fills `skeleton` (any module tree of lazy parameters whose field paths are HF names, such
/// as [`CausalLm::skeleton`] or a sequence classifier's) from `weights`, consuming every
/// tensor it expects; leftovers are an error naming them as not used by `what`.
pub(crate) fn take_all<B: Backend, M: Module<B>>(
    skeleton: M,
    weights: &mut WeightMap,
    device: &B::Device,
    what: &str,
) -> Result<M> {
    let model = fill_module(skeleton, device, |name, shape, _| weights.take(name, shape))?;
    // Old checkpoints carry RoPE buffers, and tied ones sometimes a duplicate head.
    let ignorable: Vec<String> = weights
        .names()
        .filter(|n| n.ends_with("rotary_emb.inv_freq") || *n == "lm_head.weight")
        .map(str::to_string)
        .collect();
    for name in ignorable {
        weights.remove(&name);
    }
    let left: Vec<&str> = weights.names().take(5).collect();
    if !left.is_empty() {
        bail!(
            "unexpected tensor(s) not used by a {what}: {}{}",
            left.join(", "),
            if weights.len() > 5 { ", ..." } else { "" }
        );
    }
    Ok(model)
}

/// A model with random weights (normal, std 0.02; norms at 1), for benchmarks and tests.
/// Values are drawn tensor by tensor in module order, each in its HF layout.
pub fn random<B: Backend>(config: ModelConfig, seed: u64, device: &B::Device) -> CausalLm<B> {
    let mut rng = StdRng::seed_from_u64(seed);
    let model = fill(config, device, |_, shape, owner| {
        let n: usize = shape.iter().product();
        let data = if owner == "Struct:RmsNorm" {
            vec![1.0; n]
        } else {
            (0..n).map(|_| normal(&mut rng) * 0.02).collect()
        };
        Ok(HostTensor::new(shape.to_vec(), data))
    });
    model.expect("random weights cannot fail")
}

fn normal(rng: &mut StdRng) -> f32 {
    // Box-Muller; good enough for initialization.
    let u1: f32 = rng.random::<f32>().max(1e-12);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// The [`CausalLm::skeleton`] of `config` with every parameter read from `source`, in module
/// order: `source(hf_name, hf_shape, owner)` gives the tensor in HF layout, `owner` being the
/// module type holding it (`Struct:Linear`, `Struct:RmsNorm`, ...). The first error stops the
/// reading and is returned.
fn fill<B: Backend>(
    config: ModelConfig,
    device: &B::Device,
    source: impl FnMut(&str, &[usize], &str) -> Result<HostTensor>,
) -> Result<CausalLm<B>> {
    fill_module(CausalLm::<B>::skeleton(config, device), device, source)
}

/// [`fill`] for any module tree: every parameter of `skeleton` read from `source` under its
/// field path.
fn fill_module<B: Backend, M: Module<B>>(
    skeleton: M,
    device: &B::Device,
    source: impl FnMut(&str, &[usize], &str) -> Result<HostTensor>,
) -> Result<M> {
    let mut filler = Filler {
        path: HfPath::default(),
        device,
        source,
        error: None,
    };
    let model = skeleton.map(&mut filler);
    match filler.error {
        Some(e) => Err(e),
        None => Ok(model),
    }
}

/// Where a module walk is: the field path (joined by `.`, the HF tensor name) and the type of
/// the module that holds each step.
#[derive(Default)]
struct HfPath {
    names: Vec<String>,
    owners: Vec<String>,
}

impl HfPath {
    fn enter(&mut self, name: &str, container: &str) {
        self.names.push(name.to_string());
        self.owners.push(container.to_string());
    }

    fn exit(&mut self) {
        self.names.pop();
        self.owners.pop();
    }

    fn name(&self) -> String {
        self.names.join(".")
    }

    /// The type of the module holding the current tensor.
    fn owner(&self) -> &str {
        self.owners.last().map_or("", String::as_str)
    }

    /// Whether the current tensor is a [`Linear`](super::llama::Linear) weight: `[in, out]` here, `[out, in]` in HF.
    fn is_linear_weight(&self) -> bool {
        self.owner() == "Struct:Linear" && self.names.last().is_some_and(|n| n == "weight")
    }

    /// A tensor's HF shape from its shape in the model.
    fn hf_shape(&self, shape: &[usize]) -> Vec<usize> {
        if self.is_linear_weight() {
            shape.iter().rev().copied().collect()
        } else {
            shape.to_vec()
        }
    }
}

/// Replaces each lazy parameter of a skeleton by the tensor its source gives. A mapper cannot
/// fail, so the first error is kept (and later parameters left lazy) for [`fill`] to return.
struct Filler<'a, B: Backend, F> {
    path: HfPath,
    device: &'a B::Device,
    source: F,
    error: Option<anyhow::Error>,
}

impl<B, F> ModuleMapper<B> for Filler<'_, B, F>
where
    B: Backend,
    F: FnMut(&str, &[usize], &str) -> Result<HostTensor>,
{
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.error.is_some() {
            return param;
        }
        let shape = param.lazy_shape().to_vec();
        let hf_shape = self.path.hf_shape(&shape);
        match (self.source)(&self.path.name(), &hf_shape, self.path.owner()) {
            Ok(t) => {
                let t = if self.path.is_linear_weight() {
                    t.transposed()
                } else {
                    t
                };
                let tensor = Tensor::<B, D>::from_data(TensorData::new(t.data, shape), self.device);
                Param::initialized(param.id, tensor.require_grad())
            }
            Err(e) => {
                self.error = Some(e);
                param
            }
        }
    }
}

/// The model's tensors under their HF names and shapes, ready to write as safetensors; a
/// model with adapters gives its merged weights ([`super::lora::merged`]).
pub fn to_hf_tensors<B: Backend>(model: &CausalLm<B>) -> BTreeMap<String, HostTensor> {
    let mut collector = Collector {
        path: HfPath::default(),
        out: BTreeMap::new(),
    };
    if super::lora::has_adapters(model) {
        super::lora::merged(model.clone()).visit(&mut collector);
    } else {
        model.visit(&mut collector);
    }
    collector.out
}

/// Copies every parameter to the host under its HF name, linear weights transposed back.
struct Collector {
    path: HfPath,
    out: BTreeMap<String, HostTensor>,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let t = if self.path.is_linear_weight() {
            host(t.transpose())
        } else {
            host(t)
        };
        self.out.insert(self.path.name(), t);
    }
}

/// Copies a tensor to the host as f32.
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data");
    HostTensor::new(shape, data)
}

/// Writes `model` as an HF directory: `config.json` and `model.safetensors`.
pub fn save_hf_dir<B: Backend>(model: &CausalLm<B>, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::io::safetensors::write_file(&dir.join("model.safetensors"), &to_hf_tensors(model))?;
    let config = serde_json::to_string_pretty(&model.config().to_hf_json())?;
    crate::io::atomic_write(&dir.join("config.json"), config.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;
    use burn::backend::Flex;

    /// Qwen2-like: q/k/v biases, untied head, 2 layers.
    fn qwen2_like() -> ModelConfig {
        let mut c = ModelConfig::llama(32, 16, 24, 2, 4, 2, 4, false);
        c.arch = Arch::Qwen2;
        c.qkv_bias = true;
        c
    }

    fn weights_of(tensors: BTreeMap<String, HostTensor>) -> WeightMap {
        let mut weights = WeightMap::default();
        for (name, t) in tensors {
            weights.insert(name, t).unwrap();
        }
        weights
    }

    #[test]
    fn saved_names_are_the_loaded_names() {
        let device = Default::default();
        let model = random::<Flex>(qwen2_like(), 7, &device);
        let tensors = to_hf_tensors(&model);
        let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
        for want in [
            "model.embed_tokens.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.q_proj.bias",
            "model.layers.1.self_attn.v_proj.bias",
            "model.layers.1.mlp.down_proj.weight",
            "model.layers.1.post_attention_layernorm.weight",
            "model.norm.weight",
            "lm_head.weight",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("o_proj.bias")));
        // 1 embedding + 2 * (4 attn weights + 3 biases + 3 mlp + 2 norms) + norm + head.
        assert_eq!(names.len(), 1 + 2 * 12 + 2);
        assert_eq!(
            tensors["model.layers.0.self_attn.k_proj.weight"].shape,
            [8, 16]
        );
        assert_eq!(tensors["lm_head.weight"].shape, [32, 16]);

        // Loading takes every one of them, and gives back the same tensors.
        let mut weights = weights_of(tensors.clone());
        let back = from_weights::<Flex>(qwen2_like(), &mut weights, &device).unwrap();
        assert!(weights.is_empty());
        assert_eq!(to_hf_tensors(&back), tensors);
    }

    #[test]
    fn a_missing_tensor_is_named() {
        let device = Default::default();
        let tensors = to_hf_tensors(&random::<Flex>(qwen2_like(), 7, &device));
        let mut weights = weights_of(tensors);
        weights.remove("model.layers.1.self_attn.k_proj.bias");
        let err = from_weights::<Flex>(qwen2_like(), &mut weights, &device).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing tensor `model.layers.1.self_attn.k_proj.bias` (expected shape [8])"
        );
    }

    #[test]
    fn random_weights_follow_the_module_order() {
        // Norms at 1; the first draw goes to the embedding.
        let device = Default::default();
        let config = ModelConfig::tiny();
        let tensors = to_hf_tensors(&random::<Flex>(config, 1, &device));
        assert!(tensors["model.norm.weight"].data.iter().all(|&x| x == 1.0));
        let mut rng = StdRng::seed_from_u64(1);
        let first = normal(&mut rng) * 0.02;
        assert_eq!(tensors["model.embed_tokens.weight"].data[0], first);
    }
}
