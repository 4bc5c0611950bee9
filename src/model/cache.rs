//! Key/value cache: incremental decoding, and prompts run once for several continuations. A
//! plain struct, not a Module: it is never saved or optimized (under autodiff its tensors are
//! part of the graph, so a continuation's gradient reaches the prompt's keys and values).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use std::collections::HashMap;

/// Rows that can share one prefix pass: the index of each distinct prompt's first row, in
/// order, and each row's index among the distinct ones (for [`KvCache::select_rows`]).
pub fn distinct_rows<'a>(prompts: impl IntoIterator<Item = &'a [u32]>) -> (Vec<usize>, Vec<usize>) {
    let mut index: HashMap<&[u32], usize> = HashMap::new();
    let mut firsts = vec![];
    let of_row = prompts
        .into_iter()
        .enumerate()
        .map(|(row, p)| {
            *index.entry(p).or_insert_with(|| {
                firsts.push(row);
                firsts.len() - 1
            })
        })
        .collect();
    (firsts, of_row)
}

/// Keys and values one attention layer has seen so far, `[batch, keys, kv_heads, head_dim]`.
pub struct LayerCache<B: Backend> {
    kv: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
}

impl<B: Backend> LayerCache<B> {
    /// Appends this call's keys and values and returns all of them.
    pub fn append(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (k, v) = match self.kv.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1)),
            None => (k, v),
        };
        self.kv = Some((k.clone(), v.clone()));
        (k, v)
    }
}

/// Per layer, the keys and values seen so far.
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| LayerCache { kv: None }).collect(),
        }
    }

    pub(crate) fn layer_mut(&mut self, i: usize) -> &mut LayerCache<B> {
        &mut self.layers[i]
    }

    /// Number of cached key positions (0 when empty).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.kv.as_ref())
            .map_or(0, |(k, _)| k.dims()[1])
    }

    /// Keeps rows `index` of every layer, in that order (a row may repeat): a prompt's keys
    /// and values, computed once, shared by each continuation of it.
    pub fn select_rows(&mut self, index: Tensor<B, 1, Int>) {
        // Selected as 2-D rows: the CPU backend's gradient of a 2-D select is its fast path.
        let rows = |x: Tensor<B, 4>| {
            let [_, keys, heads, dim] = x.dims();
            let n = index.dims()[0];
            x.flatten::<2>(1, 3)
                .select(0, index.clone())
                .reshape([n, keys, heads, dim])
        };
        for layer in &mut self.layers {
            layer.kv = layer.kv.take().map(|(k, v)| (rows(k), rows(v)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
