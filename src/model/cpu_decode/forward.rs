//! One forward call of the decode path: the team walks the layers, five stages each, with a
//! barrier between stages. Each member computes its own copy of the normed hidden states
//! (a few rows) and its share of each product's columns; attention is shared by (row, kv head).

use std::ops::Range;

use super::kv::KvStore;
use super::ops::{self, Query};
use super::team::{self, Member, Shared};
use super::tiles::{self, Out};
use super::{CpuDecoder, Projection};
use crate::backend::CpuKernels;
use crate::model::decode_matmul::kernels::Weights;

/// The tokens one call runs.
pub(super) struct Batch<'a> {
    pub ids: &'a [&'a [u32]],
    pub positions: &'a [&'a [usize]],
    pub valid: &'a [&'a [bool]],
}

/// Columns are shared out in whole vectors, so that tiles stay full.
const COLUMN_UNIT: usize = 16;

/// Runs `batch` through the model, extending `cache`; the last position's logits per row.
pub(super) fn run(
    dec: &CpuDecoder,
    cache: &mut KvStore,
    batch: &Batch<'_>,
    threads: usize,
) -> Vec<f32> {
    let c = &dec.config;
    let (rows, seq) = (batch.ids.len(), batch.ids.first().map_or(0, |r| r.len()));
    let n = rows * seq; // hidden-state rows
    let (h, hd) = (c.hidden_size, c.head_dim);
    let (qd, kvd) = (c.num_heads * hd, c.num_kv_heads * hd);
    let past = cache.len;
    assert!(
        seq > 0 && rows == cache.rows(),
        "{rows} rows for a cache of {}",
        cache.rows()
    );
    assert!(past + seq <= cache.capacity, "cache full");
    assert!(batch.ids.iter().all(|r| r.len() == seq));
    assert!(batch.valid.iter().all(|v| v.len() == past + seq));

    let mut x = vec![0f32; n * h];
    let Weights::Rows {
        data: embed,
        stride,
    } = dec.embed.view()
    else {
        unreachable!("embeddings are read as stored")
    };
    for (r, &id) in batch.ids.iter().flat_map(|r| r.iter()).enumerate() {
        let id = id as usize;
        assert!(id < c.vocab_size, "token {id} outside the vocabulary");
        x[r * h..(r + 1) * h].copy_from_slice(&embed[id * stride..][..h]);
    }
    let (cos, sin) = rope_tables(dec, batch);
    let mut qkv = vec![0f32; n * (qd + 2 * kvd)];
    let mut attn = vec![0f32; n * qd];
    let mut act = vec![0f32; n * c.intermediate_size];
    let mut logits = vec![0f32; rows * c.vocab_size];
    let slabs: Vec<usize> = (0..rows)
        .flat_map(|r| (0..c.num_kv_heads).map(move |g| (r, g)))
        .map(|(r, g)| cache.at(r, g))
        .collect();
    let capacity = cache.capacity;
    // Per row and key, 0 or -inf (padding), shared by every layer and head.
    let masks: Vec<f32> = batch
        .valid
        .iter()
        .flat_map(|v| v.iter().map(|&ok| if ok { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    let caches: Vec<(Shared<'_>, Shared<'_>)> = cache
        .layers
        .iter_mut()
        .map(|(k, v)| (Shared::new(k), Shared::new(v)))
        .collect();
    let bufs = Buffers {
        x: Shared::new(&mut x),
        qkv: Shared::new(&mut qkv),
        attn: Shared::new(&mut attn),
        act: Shared::new(&mut act),
        logits: Shared::new(&mut logits),
    };
    let step = Step {
        dec,
        rows,
        seq,
        past,
        slabs: &slabs,
        capacity,
        masks: &masks,
        cos: &cos,
        sin: &sin,
    };
    team::run(threads, |m| step.member(m, &bufs, &caches));
    cache.len += seq;
    logits
}

struct Buffers<'a> {
    /// The residual stream, `[n, hidden]`.
    x: Shared<'a>,
    /// Each row's q, k and v, `[n, q + k + v]`.
    qkv: Shared<'a>,
    /// Attention's output, `[n, heads * head_dim]`.
    attn: Shared<'a>,
    /// SiLU(gate) * up, `[n, intermediate]`.
    act: Shared<'a>,
    logits: Shared<'a>,
}

struct Step<'a> {
    dec: &'a CpuDecoder,
    rows: usize,
    seq: usize,
    past: usize,
    /// Per (row, kv head), where its cache slab starts.
    slabs: &'a [usize],
    capacity: usize,
    /// `[rows, keys]`: 0 for a real token, -inf for padding.
    masks: &'a [f32],
    /// `[n, head_dim / 2]` each.
    cos: &'a [f32],
    sin: &'a [f32],
}

impl Step<'_> {
    /// One member's walk through the layers and the head.
    fn member(&self, m: Member<'_>, b: &Buffers<'_>, caches: &[(Shared<'_>, Shared<'_>)]) {
        let (dec, c) = (self.dec, &self.dec.config);
        let isa = dec.isa;
        let n = self.rows * self.seq;
        let (h, hd) = (c.hidden_size, c.head_dim);
        let (qd, kvd, inter) = (c.num_heads * hd, c.num_kv_heads * hd, c.intermediate_size);
        let eps = c.rms_norm_eps as f32;
        let mut xn = vec![0f32; n * h];
        for (layer, (ck, cv)) in dec.layers.iter().zip(caches) {
            // SAFETY (every `read` below): the stage that wrote the buffer ended at a barrier.
            ops::rms_norm(
                isa,
                unsafe { b.x.read() },
                layer.input_norm.slice(),
                eps,
                &mut xn,
            );
            for (p, at) in [(&layer.q, 0), (&layer.k, qd), (&layer.v, qd + kvd)] {
                let cols = columns(&m, p.weight.n);
                let out = Out {
                    // SAFETY: this member's columns of q, k or v, no one else's.
                    ptr: unsafe { b.qkv.ptr().add(at + cols.start) },
                    stride: qd + 2 * kvd,
                    add: false,
                };
                project(isa, &xn, n, p, cols, out);
            }
            m.sync();
            for task in m.share(self.rows * c.num_kv_heads) {
                self.attend(task, b, ck, cv);
            }
            m.sync();
            let attn = unsafe { b.attn.read() };
            let cols = columns(&m, h);
            project(
                isa,
                attn,
                n,
                &layer.o,
                cols.clone(),
                residual(&b.x, h, cols.start),
            );
            m.sync();
            ops::rms_norm(
                isa,
                unsafe { b.x.read() },
                layer.post_norm.slice(),
                eps,
                &mut xn,
            );
            self.gate_up(isa, &m, layer, &xn, &b.act, inter);
            m.sync();
            let act = unsafe { b.act.read() };
            project(
                isa,
                act,
                n,
                &layer.down,
                cols.clone(),
                residual(&b.x, h, cols.start),
            );
            m.sync();
        }
        // The head, on each row's last position.
        let x = unsafe { b.x.read() };
        let last: Vec<f32> = (0..self.rows)
            .flat_map(|r| x[((r + 1) * self.seq - 1) * h..][..h].iter().copied())
            .collect();
        let mut normed = vec![0f32; last.len()];
        ops::rms_norm(isa, &last, dec.norm.slice(), eps, &mut normed);
        let vocab = c.vocab_size;
        let cols = columns(&m, vocab);
        let out = Out {
            ptr: unsafe { b.logits.ptr().add(cols.start) },
            stride: vocab,
            add: false,
        };
        project(isa, &normed, self.rows, &dec.head, cols, out);
    }

    /// `act[:, cols] = silu(xn Wg + bg) * (xn Wu + bu)` for this member's columns.
    fn gate_up(
        &self,
        isa: CpuKernels,
        m: &Member<'_>,
        layer: &super::Layer,
        xn: &[f32],
        act: &Shared<'_>,
        inter: usize,
    ) {
        let n = self.rows * self.seq;
        let cols = columns(m, inter);
        let width = cols.len();
        if width == 0 {
            return;
        }
        let (mut g, mut u) = (vec![0f32; n * width], vec![0f32; n * width]);
        let local = |buf: &mut Vec<f32>| Out {
            ptr: buf.as_mut_ptr(),
            stride: width,
            add: false,
        };
        project(isa, xn, n, &layer.gate, cols.clone(), local(&mut g));
        project(isa, xn, n, &layer.up, cols.clone(), local(&mut u));
        for r in 0..n {
            // SAFETY: this member's columns of act, no one else's.
            let out = unsafe { act.slice(r * inter + cols.start..r * inter + cols.end) };
            ops::silu_mul(isa, &g[r * width..][..width], &u[r * width..][..width], out);
        }
    }

    /// Attention for row `task / kv_heads`, kv head `task % kv_heads`: its new keys and
    /// values (RoPE on the keys) into the cache, then each query of the head group over them.
    fn attend(&self, task: usize, b: &Buffers<'_>, ck: &Shared<'_>, cv: &Shared<'_>) {
        let c = &self.dec.config;
        let (kvh, hd) = (c.num_kv_heads, c.head_dim);
        let (qd, kvd) = (c.num_heads * hd, kvh * hd);
        let width = qd + 2 * kvd;
        let (row, g) = (task / kvh, task % kvh);
        let (keys, cap) = (self.past + self.seq, self.capacity);
        let slab = self.slabs[task];
        // SAFETY: (row, g)'s slab of the cache is this task's alone; qkv was written before
        // the barrier; attn's (row, head group) columns are this task's alone.
        let (cache_k, cache_v) = unsafe {
            (
                ck.slice(slab..slab + hd * cap),
                cv.slice(slab..slab + keys * hd),
            )
        };
        let qkv = unsafe { b.qkv.read() };
        let half = hd / 2;
        let mut k = vec![0f32; hd];
        for t in 0..self.seq {
            let r = row * self.seq + t;
            let j = self.past + t;
            let (cos, sin) = (&self.cos[r * half..][..half], &self.sin[r * half..][..half]);
            ops::rope(&qkv[r * width + qd + g * hd..][..hd], cos, sin, 1.0, &mut k);
            for (d, &k) in k.iter().enumerate() {
                cache_k[d * cap + j] = k;
            }
            let v = &qkv[r * width + qd + kvd + g * hd..][..hd];
            cache_v[j * hd..(j + 1) * hd].copy_from_slice(v);
        }
        let group = c.num_heads / kvh;
        let scale = (hd as f32).sqrt().recip();
        let (mut q, mut scores) = (vec![0f32; hd], vec![0f32; keys]);
        for head in g * group..(g + 1) * group {
            for t in 0..self.seq {
                let r = row * self.seq + t;
                let (cos, sin) = (&self.cos[r * half..][..half], &self.sin[r * half..][..half]);
                ops::rope(&qkv[r * width + head * hd..][..hd], cos, sin, scale, &mut q);
                let query = Query {
                    q: &q,
                    cache_k,
                    cache_v,
                    capacity: cap,
                    mask: &self.masks[row * keys..(row + 1) * keys],
                    own: self.past + t,
                };
                let at = r * qd + head * hd;
                let out = unsafe { b.attn.slice(at..at + hd) };
                ops::attend(self.dec.isa, &query, &mut scores, out);
            }
        }
    }
}

/// This member's share of `n` columns, in whole vectors.
fn columns(m: &Member<'_>, n: usize) -> Range<usize> {
    let units = m.share(n.div_ceil(COLUMN_UNIT));
    (units.start * COLUMN_UNIT).min(n)..(units.end * COLUMN_UNIT).min(n)
}

/// Added into the residual stream `x` (`[n, width]`) from column `first`.
fn residual(x: &Shared<'_>, width: usize, first: usize) -> Out {
    Out {
        // SAFETY: only the member owning these columns writes them in this stage.
        ptr: unsafe { x.ptr().add(first) },
        stride: width,
        add: true,
    }
}

/// Columns `cols` of `x p.W + p.b` into `out` (which points at column `cols.start`):
/// straight from the tiles without a bias, through a scratch buffer with one (the bias
/// joins the product before anything `out` adds it to, as in `x + (y W + b)`).
fn project(isa: CpuKernels, x: &[f32], rows: usize, p: &Projection, cols: Range<usize>, out: Out) {
    if cols.is_empty() {
        return;
    }
    let (w, k) = (p.weight.view(), p.weight.k);
    let Some(bias) = &p.bias else {
        // SAFETY: `out` covers rows x cols, owned by this member in this stage.
        unsafe { tiles::product(isa, x, rows, k, w, cols, out) };
        return;
    };
    let width = cols.len();
    let mut y = vec![0f32; rows * width];
    let scratch = Out {
        ptr: y.as_mut_ptr(),
        stride: width,
        add: false,
    };
    // SAFETY: the scratch buffer is rows x width.
    unsafe { tiles::product(isa, x, rows, k, w, cols.clone(), scratch) };
    let bias = &bias.slice()[cols];
    for (r, y) in y.chunks_exact(width).enumerate() {
        for (j, (&y, &b)) in y.iter().zip(bias).enumerate() {
            // SAFETY: as above.
            unsafe {
                let p = out.ptr.add(r * out.stride + j);
                *p = if out.add { *p + (y + b) } else { y + b };
            }
        }
    }
}

/// Per hidden-state row, cos and sin of its RoPE angles (the first half's).
fn rope_tables(dec: &CpuDecoder, batch: &Batch<'_>) -> (Vec<f32>, Vec<f32>) {
    let inv_freq = dec.config.rope.inv_freq(dec.config.head_dim);
    let (mut cos, mut sin) = (vec![], vec![]);
    for &p in batch.positions.iter().flat_map(|p| p.iter()) {
        for &f in &inv_freq {
            let angle = p as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}
