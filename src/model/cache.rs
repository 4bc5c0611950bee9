//! Key/value cache for incremental decoding: a plain struct, not a Module, so it never
//! enters autodiff or checkpoints.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Per layer, the keys and values seen so far, `[batch, kv_heads, keys, head_dim]`.
pub struct KvCache<B: Backend> {
    layers: Vec<(Option<Tensor<B, 4>>, Option<Tensor<B, 4>>)>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| (None, None)).collect(),
        }
    }

    pub(crate) fn layer_mut(
        &mut self,
        i: usize,
    ) -> &mut (Option<Tensor<B, 4>>, Option<Tensor<B, 4>>) {
        &mut self.layers[i]
    }

    /// Number of cached key positions (0 when empty).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|(k, _)| k.as_ref())
            .map_or(0, |k| k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
