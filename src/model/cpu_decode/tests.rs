//! The decode path against the tensor forward pass, and against itself across thread counts.

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};

use super::{CpuDecoder, KvStore, forward};
use crate::model::ModelConfig;
use crate::model::cache::KvCache;
use crate::model::llama::{AttentionPlan, CausalLm};
use crate::model::load::random;
use crate::model::lora::{LoraShape, TARGETS, attach_new};

/// Left-padded rows: per row, its ids, RoPE positions and key validity.
struct Rows {
    ids: Vec<Vec<u32>>,
    valid: Vec<Vec<bool>>,
}

impl Rows {
    fn left_padded(prompts: &[&[u32]], pad: u32) -> Self {
        let width = prompts.iter().map(|p| p.len()).max().unwrap();
        let ids = prompts
            .iter()
            .map(|p| [vec![pad; width - p.len()], p.to_vec()].concat())
            .collect();
        let valid = prompts
            .iter()
            .map(|p| [vec![false; width - p.len()], vec![true; p.len()]].concat())
            .collect();
        Self { ids, valid }
    }

    fn positions(&self) -> Vec<Vec<usize>> {
        self.valid
            .iter()
            .map(|v| {
                let mut seen = 0usize;
                v.iter()
                    .map(|&v| {
                        seen += usize::from(v);
                        seen.saturating_sub(1)
                    })
                    .collect()
            })
            .collect()
    }

    fn push(&mut self, tokens: &[u32]) {
        for ((ids, valid), &t) in self.ids.iter_mut().zip(&mut self.valid).zip(tokens) {
            ids.push(t);
            valid.push(true);
        }
    }
}

/// Logits of tokens `start..` of every row's last position through the decode path.
fn cpu(
    dec: &CpuDecoder,
    cache: &mut KvStore,
    rows: &Rows,
    start: usize,
    threads: usize,
) -> Vec<f32> {
    let positions = rows.positions();
    let ids: Vec<&[u32]> = rows.ids.iter().map(|r| &r[start..]).collect();
    let positions: Vec<&[usize]> = positions.iter().map(|p| &p[start..]).collect();
    let valid: Vec<&[bool]> = rows.valid.iter().map(Vec::as_slice).collect();
    let batch = forward::Batch {
        ids: &ids,
        positions: &positions,
        valid: &valid,
    };
    forward::run(dec, cache, &batch, threads)
}

/// The same through the model's tensor ops.
fn tensors(
    model: &CausalLm<Flex>,
    cache: &mut KvCache<Flex>,
    rows: &Rows,
    start: usize,
) -> Vec<f32> {
    let device = Default::default();
    let seq = rows.ids[0].len() - start;
    let flat: Vec<i64> = rows
        .ids
        .iter()
        .flat_map(|r| r[start..].iter().map(|&t| t as i64))
        .collect();
    let ids =
        Tensor::<Flex, 2, Int>::from_data(TensorData::new(flat, [rows.ids.len(), seq]), &device);
    let positions: Vec<Vec<usize>> = rows
        .positions()
        .iter()
        .map(|p| p[start..].to_vec())
        .collect();
    let plan = AttentionPlan::new(model.config(), &positions, &rows.valid, &device);
    let logits = model.forward(ids, &plan, Some(cache));
    let vocab = model.config().vocab_size;
    let all = logits.into_data().into_vec::<f32>().unwrap();
    all.chunks(seq * vocab)
        .flat_map(|r| r[(seq - 1) * vocab..].to_vec())
        .collect()
}

fn configs() -> Vec<(&'static str, ModelConfig)> {
    let untied = ModelConfig::tiny();
    let mut tied_biased = ModelConfig::llama(96, 48, 80, 3, 6, 2, 8, true);
    tied_biased.qkv_bias = true;
    tied_biased.o_bias = true;
    tied_biased.mlp_bias = true;
    // Widths past a tile and a vector: column tails everywhere.
    let odd = ModelConfig::llama(131, 72, 200, 2, 3, 3, 24, false);
    vec![
        ("untied", untied),
        ("tied, biases", tied_biased),
        ("odd widths", odd),
    ]
}

#[test]
fn decoding_gives_the_tensor_forwards_logits_at_every_thread_count() {
    for (name, config) in configs() {
        let model = random::<Flex>(config.clone(), 11, &Default::default());
        let dec = CpuDecoder::new(&model).expect("a flex f32 model without adapters");
        let prompts: [&[u32]; 3] = [&[5, 9, 17, 3, 22], &[7, 2], &[40, 41, 42, 43]];
        let mut rows = Rows::left_padded(&prompts, 0);
        let capacity = rows.ids[0].len() + 4;
        let c = &config;
        let mut caches: Vec<KvStore> = (0..3)
            .map(|_| KvStore::new(c.num_layers, 3, c.num_kv_heads, capacity, c.head_dim))
            .collect();
        let mut tensor_cache = KvCache::new(c.num_layers);
        let mut start = 0;
        for step in 0..4 {
            let want = tensors(&model, &mut tensor_cache, &rows, start);
            let per_threads: Vec<Vec<f32>> = caches
                .iter_mut()
                .enumerate()
                .map(|(t, cache)| cpu(&dec, cache, &rows, start, t + 1))
                .collect();
            for (t, got) in per_threads.iter().enumerate() {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(got),
                    bits(&per_threads[0]),
                    "{name} step {step}: {} threads",
                    t + 1
                );
            }
            let diff = want
                .iter()
                .zip(&per_threads[0])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-5, "{name} step {step}: logits differ by {diff}");
            start = rows.ids[0].len();
            let next: Vec<u32> = (0..3).map(|r| (step * 7 + r * 13) as u32 % 90).collect();
            rows.push(&next);
        }
    }
}

#[test]
fn models_the_path_does_not_cover_take_the_tensor_forward() {
    let model = random::<Flex>(ModelConfig::tiny(), 1, &Default::default());
    let shape = LoraShape {
        rank: 2,
        alpha: 4.0,
        rslora: false,
        targets: TARGETS.iter().map(|t| t.to_string()).collect(),
    };
    let adapted = attach_new(model, &shape, 3).unwrap();
    assert!(
        CpuDecoder::new(&adapted).is_none(),
        "adapters: tensor forward"
    );
    let autodiff =
        random::<crate::backend::FlexAutodiff>(ModelConfig::tiny(), 1, &Default::default());
    assert!(
        CpuDecoder::new(&autodiff).is_none(),
        "autodiff: tensor forward"
    );
}
