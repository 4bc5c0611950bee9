//! Model behaviour beyond the fixtures' numbers: KV-cache decoding equals recomputation,
//! batching does not change a row's tokens, loading errors name the tensor, checkpoints
//! and shards round-trip.

mod common;

use burn::backend::Flex;
use burn::tensor::Tensor;
use common::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use selm_tui::io::safetensors::{read_model_dir, write_file};
use selm_tui::model::generate::generate;
use selm_tui::model::load::{from_weights, load_hf_dir, save_hf_dir, to_hf_tensors};
use selm_tui::model::sampling::SamplingParams;
use selm_tui::model::{CausalLm, ModelConfig};
use selm_tui::testing::generate_uncached;
use std::collections::BTreeMap;

type B = Flex;

fn tiny(name: &str) -> CausalLm<B> {
    load_hf_dir::<B>(&fixture(name), &Default::default()).expect("fixture loads")
}

fn prompts() -> Vec<Vec<u32>> {
    vec![
        vec![71, 76, 9, 29, 107, 80],
        vec![5, 9],
        vec![100, 3, 44, 45],
    ]
}

#[test]
fn cached_decoding_matches_full_recompute() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let model = tiny(name);
        let params = SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            top_k: 40,
        };
        let cached = generate(
            &model,
            &prompts(),
            16,
            &params,
            &mut StdRng::seed_from_u64(3),
        );
        let full = generate_uncached(
            &model,
            &prompts(),
            16,
            &params,
            &mut StdRng::seed_from_u64(3),
        );
        assert_eq!(cached, full, "{name}: cache changed the sampled tokens");
        assert!(cached.iter().all(|g| !g.tokens.is_empty()));
        let greedy = SamplingParams::GREEDY;
        let cached = generate(
            &model,
            &prompts(),
            16,
            &greedy,
            &mut StdRng::seed_from_u64(0),
        );
        let full = generate_uncached(
            &model,
            &prompts(),
            16,
            &greedy,
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(cached, full, "{name}: cache changed the greedy tokens");
    }
}

#[test]
fn a_rows_tokens_do_not_depend_on_the_batch() {
    let model = tiny("tiny-llama");
    let greedy = SamplingParams::GREEDY;
    let batch = generate(
        &model,
        &prompts(),
        12,
        &greedy,
        &mut StdRng::seed_from_u64(0),
    );
    for (i, p) in prompts().into_iter().enumerate() {
        let alone = generate(&model, &[p], 12, &greedy, &mut StdRng::seed_from_u64(0));
        assert_eq!(
            alone[0], batch[i],
            "row {i} changed when decoded in a left-padded batch"
        );
    }
    let want = ids(&expected("tiny-llama")["greedy"]["continuation"]);
    assert_eq!(batch[0].tokens, want);
}

#[test]
fn decoding_stops_at_eos() {
    let mut model = tiny("tiny-llama");
    let greedy = SamplingParams::GREEDY;
    let free = generate(
        &model,
        &prompts()[..1],
        12,
        &greedy,
        &mut StdRng::seed_from_u64(0),
    );
    // Declare the 4th greedy token an EOS: decoding must end there, EOS included.
    let stop = free[0].tokens[3];
    model.config.eos_token_ids = vec![stop];
    let out = generate(
        &model,
        &prompts()[..1],
        12,
        &greedy,
        &mut StdRng::seed_from_u64(0),
    );
    let first = free[0].tokens.iter().position(|&t| t == stop).unwrap();
    assert_eq!(out[0].tokens, free[0].tokens[..=first]);
    assert!(out[0].finished && !free[0].finished);
}

#[test]
fn padding_does_not_change_real_logits() {
    let model = tiny("tiny-qwen2");
    let rows = prompts();
    let alone = logits_of(&model, &rows[1..2]);
    let padded = logits_of(&model, &rows);
    let vocab = 128;
    let seq = 6;
    for t in 0..rows[1].len() {
        for v in 0..vocab {
            let a = alone[t * vocab + v];
            let p = padded[(seq + t) * vocab + v];
            assert!((a - p).abs() < 1e-5, "position {t} token {v}: {a} vs {p}");
        }
    }
}

#[test]
fn loading_errors_name_the_tensor_and_shapes() {
    let dir = fixture("tiny-llama");
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let device = Default::default();

    let mut weights = read_model_dir(&dir).unwrap();
    weights.remove("model.layers.1.mlp.up_proj.weight");
    let err = format!(
        "{:#}",
        from_weights::<B>(config.clone(), &mut weights, &device).unwrap_err()
    );
    assert!(
        err.contains("missing tensor `model.layers.1.mlp.up_proj.weight`"),
        "{err}"
    );
    assert!(err.contains("[160, 64]"), "{err}");

    let mut tensors: BTreeMap<_, _> = to_hf_tensors(&tiny("tiny-llama"));
    let q = tensors
        .get_mut("model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    q.shape = vec![32, 128];
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("config.json"), tmp.path().join("config.json")).unwrap();
    write_file(&tmp.path().join("model.safetensors"), &tensors).unwrap();
    let err = format!("{:#}", load_hf_dir::<B>(tmp.path(), &device).unwrap_err());
    assert!(
        err.contains(
            "`model.layers.0.self_attn.q_proj.weight` has shape [32, 128], expected [64, 64]"
        ),
        "{err}"
    );

    let mut tensors = to_hf_tensors(&tiny("tiny-llama"));
    let extra = tensors["model.norm.weight"].clone();
    tensors.insert("model.layers.0.mystery.weight".into(), extra);
    write_file(&tmp.path().join("model.safetensors"), &tensors).unwrap();
    let err = format!("{:#}", load_hf_dir::<B>(tmp.path(), &device).unwrap_err());
    assert!(
        err.contains("unexpected tensor(s)") && err.contains("model.layers.0.mystery.weight"),
        "{err}"
    );

    std::fs::write(
        tmp.path().join("model.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage",
    )
    .unwrap();
    let err = format!("{:#}", load_hf_dir::<B>(tmp.path(), &device).unwrap_err());
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn save_then_load_gives_the_same_logits() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let model = tiny(name);
        let tmp = tempfile::tempdir().unwrap();
        save_hf_dir(&model, tmp.path()).unwrap();
        let back = load_hf_dir::<B>(tmp.path(), &Default::default()).unwrap();
        assert_eq!(back.config, model.config);
        assert_eq!(
            logits_of(&back, &prompts()),
            logits_of(&model, &prompts()),
            "{name}"
        );
    }
}

#[test]
fn sharded_checkpoints_load() {
    let model = tiny("tiny-qwen2");
    let tensors = to_hf_tensors(&model);
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in tensors.into_iter().enumerate() {
        let file = if i % 2 == 0 {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        weight_map.insert(name.clone(), file.into());
        if i % 2 == 0 {
            a.insert(name, t);
        } else {
            b.insert(name, t);
        }
    }
    write_file(&tmp.path().join("model-00001-of-00002.safetensors"), &a).unwrap();
    write_file(&tmp.path().join("model-00002-of-00002.safetensors"), &b).unwrap();
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    std::fs::copy(
        fixture("tiny-qwen2").join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let back = load_hf_dir::<B>(tmp.path(), &Default::default()).unwrap();
    assert_eq!(logits_of(&back, &prompts()), logits_of(&model, &prompts()));
}

#[test]
fn tied_head_reads_the_embedding() {
    let model = tiny("tiny-qwen2");
    assert!(model.lm_head.is_none());
    let h = Tensor::<B, 3>::ones([1, 1, 64], &Default::default());
    let logits = model.head(h).into_data().into_vec::<f32>().unwrap();
    let e = model
        .model
        .embed_tokens
        .weight
        .val()
        .sum_dim(1)
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    for (l, s) in logits.iter().zip(&e) {
        assert!((l - s).abs() < 1e-4);
    }
}
