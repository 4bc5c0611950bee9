//! Named float tensors on the host, whatever file they came from: the meeting point of the
//! safetensors and GGUF readers and the model builder.

use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// A host tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// Transposes a 2-D tensor.
    pub fn transposed(&self) -> Self {
        let [rows, cols] = [self.shape[0], self.shape[1]];
        let mut out = vec![0.0; self.data.len()];
        for r in 0..rows {
            for c in 0..cols {
                out[c * rows + r] = self.data[r * cols + c];
            }
        }
        Self::new(vec![cols, rows], out)
    }
}

/// Tensors by HF name. The builder `take`s what it expects; whatever is left is unexpected.
#[derive(Debug, Default)]
pub struct WeightMap {
    tensors: BTreeMap<String, HostTensor>,
}

impl WeightMap {
    pub fn insert(&mut self, name: String, tensor: HostTensor) -> Result<()> {
        if self.tensors.contains_key(&name) {
            bail!("tensor `{name}` appears twice");
        }
        self.tensors.insert(name, tensor);
        Ok(())
    }

    /// Removes and returns `name`, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let Some(t) = self.tensors.remove(name) else {
            bail!("missing tensor `{name}` (expected shape {shape:?})");
        };
        if t.shape != shape {
            bail!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                t.shape
            );
        }
        Ok(t)
    }

    pub fn remove(&mut self, name: &str) -> Option<HostTensor> {
        self.tensors.remove(name)
    }

    /// Every tensor, by name.
    pub fn into_map(self) -> BTreeMap<String, HostTensor> {
        self.tensors
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}
