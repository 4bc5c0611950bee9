//! Reading a BERT's tensors by their HF names into the module tree.

use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use std::path::Path;

use crate::io::safetensors::read_bytes_into_except;
use crate::io::weights::WeightMap;
use crate::model::llama::{Embedding, Linear};

use super::*;

/// Reads a safetensors file into a [`WeightMap`], without the integer buffers transformers
/// saves with the weights (`embeddings.position_ids`, `token_type_ids`: constants, not
/// parameters; the reader takes float tensors only).
pub(super) fn read_weights(path: &Path) -> Result<WeightMap> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let is_buffer = |name: &str| name.ends_with("position_ids") || name.ends_with("token_type_ids");
    let mut map = WeightMap::default();
    read_bytes_into_except(&bytes, &path.display().to_string(), &mut map, &is_buffer)?;
    Ok(map)
}

/// Takes a BERT's tensors by HF name out of a [`WeightMap`] and puts them on the device.
pub(super) struct Loader<'a, B: Backend> {
    pub(super) weights: &'a mut WeightMap,
    /// `bert.` for a `BertFor*` checkpoint, else empty.
    pub(super) prefix: &'static str,
    pub(super) device: &'a B::Device,
}

impl<B: Backend> Loader<'_, B> {
    fn param<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<B, D>>> {
        let t = self
            .weights
            .take(&format!("{}{name}", self.prefix), &shape)?;
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(t.data, shape),
            self.device,
        )))
    }

    /// An HF `nn.Linear` (`weight` `[out, in]`, `bias` `[out]`), stored as `[in, out]`.
    fn linear(&mut self, name: &str, inp: usize, out: usize) -> Result<Linear<B>> {
        let full = format!("{}{name}.weight", self.prefix);
        let weight = self.weights.take(&full, &[out, inp])?.transposed();
        let weight = Tensor::from_data(TensorData::new(weight.data, [inp, out]), self.device);
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias: Some(self.param(&format!("{name}.bias"), [out])?),
            lora: None,
        })
    }

    fn layer_norm(&mut self, name: &str, size: usize, eps: f64) -> Result<LayerNorm<B>> {
        Ok(LayerNorm {
            weight: self.param(&format!("{name}.weight"), [size])?,
            bias: self.param(&format!("{name}.bias"), [size])?,
            eps,
        })
    }

    fn embedding(&mut self, name: &str, rows: usize, hidden: usize) -> Result<Embedding<B>> {
        Ok(Embedding {
            weight: self.param(&format!("embeddings.{name}.weight"), [rows, hidden])?,
        })
    }

    pub(super) fn embeddings(&mut self, c: &BertConfig) -> Result<BertEmbeddings<B>> {
        let h = c.hidden_size;
        Ok(BertEmbeddings {
            word_embeddings: self.embedding("word_embeddings", c.vocab_size, h)?,
            position_embeddings: self.embedding(
                "position_embeddings",
                c.max_position_embeddings,
                h,
            )?,
            token_type_embeddings: self.embedding("token_type_embeddings", c.type_vocab_size, h)?,
            layer_norm: self.layer_norm("embeddings.LayerNorm", h, c.layer_norm_eps)?,
        })
    }

    pub(super) fn layer(&mut self, c: &BertConfig, i: usize) -> Result<BertLayer<B>> {
        let (h, inter, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        let at = |part: &str| format!("encoder.layer.{i}.{part}");
        Ok(BertLayer {
            query: self.linear(&at("attention.self.query"), h, h)?,
            key: self.linear(&at("attention.self.key"), h, h)?,
            value: self.linear(&at("attention.self.value"), h, h)?,
            attention_output: self.linear(&at("attention.output.dense"), h, h)?,
            attention_norm: self.layer_norm(&at("attention.output.LayerNorm"), h, eps)?,
            intermediate: self.linear(&at("intermediate.dense"), h, inter)?,
            output: self.linear(&at("output.dense"), inter, h)?,
            output_norm: self.layer_norm(&at("output.LayerNorm"), h, eps)?,
            num_heads: c.num_attention_heads,
            head_dim: c.head_dim(),
        })
    }

    /// Every expected tensor is taken; the pooler may be left, nothing else.
    pub(super) fn finish(self) -> Result<()> {
        let pooler = format!("{}pooler.", self.prefix);
        let left: Vec<&str> = self
            .weights
            .names()
            .filter(|n| !n.starts_with(&pooler))
            .collect();
        if !left.is_empty() {
            bail!(
                "unexpected tensor(s) not used by a BERT encoder: {}{}",
                left[..left.len().min(5)].join(", "),
                if left.len() > 5 { ", ..." } else { "" }
            );
        }
        Ok(())
    }
}
