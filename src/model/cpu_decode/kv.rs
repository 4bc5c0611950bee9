//! The decode path's key/value cache: every layer's keys and values in buffers sized for
//! the whole generation, written in place. (The tensor cache of [`crate::model::cache`]
//! concatenated each step, copying every key seen so far once per token.)

/// Keys and values of every layer, each `[rows, kv_heads, capacity, head_dim]`: the keys one
/// query head group attends over are contiguous.
pub struct KvStore {
    pub(super) rows: usize,
    pub(super) kv_heads: usize,
    pub(super) capacity: usize,
    pub(super) head_dim: usize,
    pub(super) layers: Vec<(Vec<f32>, Vec<f32>)>,
    /// Keys written so far (the same for every row).
    pub(super) len: usize,
}

impl KvStore {
    pub fn new(
        layers: usize,
        rows: usize,
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
    ) -> Self {
        let size = rows * kv_heads * capacity * head_dim;
        Self {
            rows,
            kv_heads,
            capacity,
            head_dim,
            layers: (0..layers)
                .map(|_| (vec![0.0; size], vec![0.0; size]))
                .collect(),
            len: 0,
        }
    }

    /// Floats per (row, kv head): `capacity * head_dim`.
    pub(super) fn slab(&self) -> usize {
        self.capacity * self.head_dim
    }

    /// Keeps rows `index`, in that order (a row may repeat: a prompt's keys shared by each
    /// of its continuations).
    pub fn select_rows(&mut self, index: &[usize]) {
        let row = self.kv_heads * self.slab();
        let used = self.len * self.head_dim;
        let pick = |from: &[f32]| {
            let mut to = vec![0.0; index.len() * row];
            for (new, &old) in index.iter().enumerate() {
                assert!(old < self.rows, "row {old} of {}", self.rows);
                for g in 0..self.kv_heads {
                    let (src, dst) = (old * row + g * self.slab(), new * row + g * self.slab());
                    to[dst..dst + used].copy_from_slice(&from[src..src + used]);
                }
            }
            to
        };
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| (pick(k), pick(v)))
            .collect();
        self.layers = layers;
        self.rows = index.len();
    }
}
