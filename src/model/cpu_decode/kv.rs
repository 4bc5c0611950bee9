//! The decode path's key/value cache: every layer's keys and values in buffers sized for
//! the whole generation, written in place. (The tensor cache of [`crate::model::cache`]
//! concatenated each step, copying every key seen so far once per token.)

/// Keys and values of every layer. Per (slot, kv head), a slab of `capacity * head_dim`
/// floats: the keys transposed, `[head_dim, capacity]`, so that a query's scores over the
/// keys are one vector loop per dimension; the values as rows, `[capacity, head_dim]`.
/// Row `r` of the batch lives in slot `slots[r]`: a row that leaves is dropped from `slots`
/// without moving anyone's keys.
pub struct KvStore {
    pub(super) slots: Vec<usize>,
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
            slots: (0..rows).collect(),
            kv_heads,
            capacity,
            head_dim,
            layers: (0..layers)
                .map(|_| (vec![0.0; size], vec![0.0; size]))
                .collect(),
            len: 0,
        }
    }

    /// Rows of the batch.
    pub fn rows(&self) -> usize {
        self.slots.len()
    }

    /// Floats per (slot, kv head): `capacity * head_dim`.
    pub(super) fn slab(&self) -> usize {
        self.capacity * self.head_dim
    }

    /// Offset of row `row`, kv head `g`'s slab.
    pub(super) fn at(&self, row: usize, g: usize) -> usize {
        (self.slots[row] * self.kv_heads + g) * self.slab()
    }

    /// Keeps rows `index`, in that order. Rows leaving cost nothing; a row that repeats (a
    /// prompt's keys shared by each of its continuations) is copied into slots of its own.
    pub fn select_rows(&mut self, index: &[usize]) {
        let mut seen = vec![false; self.rows()];
        let repeats = index.iter().any(|&r| std::mem::replace(&mut seen[r], true));
        if !repeats {
            self.slots = index.iter().map(|&r| self.slots[r]).collect();
            return;
        }
        let (slab, used) = (self.slab(), self.len);
        let (hd, cap) = (self.head_dim, self.capacity);
        let size = index.len() * self.kv_heads * slab;
        let mut layers = Vec::with_capacity(self.layers.len());
        for (k, v) in &self.layers {
            let (mut k2, mut v2) = (vec![0.0; size], vec![0.0; size]);
            for (new, &row) in index.iter().enumerate() {
                for g in 0..self.kv_heads {
                    let (src, dst) = (self.at(row, g), (new * self.kv_heads + g) * slab);
                    for d in 0..hd {
                        let (s, t) = (src + d * cap, dst + d * cap);
                        k2[t..t + used].copy_from_slice(&k[s..s + used]);
                    }
                    v2[dst..dst + used * hd].copy_from_slice(&v[src..src + used * hd]);
                }
            }
            layers.push((k2, v2));
        }
        self.layers = layers;
        self.slots = (0..index.len()).collect();
    }
}
