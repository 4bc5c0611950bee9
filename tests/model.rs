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
use selm_tui::io::weights::{HostTensor, WeightMap};
use selm_tui::model::generate::{generate, generate_suppressing};
use selm_tui::model::load::{from_weights, load_hf_dir, save_hf_dir, to_hf_tensors};
use selm_tui::model::sampling::SamplingParams;
use selm_tui::model::{CausalLm, ModelConfig};
use selm_tui::selm::logprobs::response_token_logps;
use selm_tui::testing::generate_uncached;
use std::collections::BTreeMap;

type B = Flex;

fn tiny(name: &str) -> CausalLm<B> {
    load_hf_dir::<B>(&fixture(name), &Default::default()).expect("fixture loads")
}

/// A batch of three prompts of different lengths for fixture `name`: its `greedy` prompt
/// (whose continuation expected.json holds), then a short and a medium one drawn below its
/// vocabulary size.
fn prompts(name: &str) -> Vec<Vec<u32>> {
    let first = ids(&expected(name)["greedy"]["prompt"]);
    let short = first.len().div_ceil(3).max(1);
    let medium = (2 * first.len()).div_ceil(3).max(short + 1);
    let mut rows = vec![first];
    rows.extend(token_rows(
        fixture_config(name).vocab_size,
        &[short, medium],
        7,
    ));
    rows
}

#[test]
fn cached_decoding_matches_full_recompute() {
    for name in CAUSAL_FIXTURES {
        let model = tiny(name);
        // Repeated prompts, as the loop's K samples per prompt: the cached path prefills each
        // distinct prompt once and shares its keys and values.
        let distinct = prompts(name);
        let prompts: Vec<Vec<u32>> = [0, 1, 0, 2, 1, 0].map(|i| distinct[i].clone()).to_vec();
        let params = SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            top_k: 40,
        };
        let cached = generate(&model, &prompts, 16, &params, &mut StdRng::seed_from_u64(3));
        let full = generate_uncached(&model, &prompts, 16, &params, &mut StdRng::seed_from_u64(3));
        assert_eq!(cached, full, "{name}: cache changed the sampled tokens");
        assert!(cached.iter().all(|g| !g.tokens.is_empty()));
        let greedy = SamplingParams::GREEDY;
        let cached = generate(&model, &prompts, 16, &greedy, &mut StdRng::seed_from_u64(0));
        let full = generate_uncached(&model, &prompts, 16, &greedy, &mut StdRng::seed_from_u64(0));
        assert_eq!(cached, full, "{name}: cache changed the greedy tokens");
    }
}

/// The log-probs generation records are the model's own: a forward pass over prompt +
/// response gives the same per-token values, with temperature, top-k / top-p and suppressed
/// ids in play (they shape the sampling, not the model's distribution).
#[test]
fn recorded_logps_match_a_forward_pass() {
    for name in CAUSAL_FIXTURES {
        let model = tiny(name);
        let prompts = prompts(name);
        let params = SamplingParams {
            temperature: 1.3,
            top_p: 0.9,
            top_k: 20,
        };
        let suppressed = [0u32, 1];
        let out = generate_suppressing(
            &model,
            &prompts,
            12,
            &params,
            &suppressed,
            &mut StdRng::seed_from_u64(5),
        );
        let rows: Vec<(&[u32], &[u32])> = prompts
            .iter()
            .zip(&out)
            .map(|(p, g)| (p.as_slice(), g.tokens.as_slice()))
            .collect();
        let forward = response_token_logps(&model, &rows);
        for (g, want) in out.iter().zip(&forward) {
            assert_eq!(g.logps.len(), g.tokens.len(), "{name}");
            for (got, want) in g.logps.iter().zip(want) {
                assert!((got - want).abs() < 1e-4, "{name}: {got} vs {want}");
            }
        }
        // Plain `generate` records none.
        let plain = generate(&model, &prompts, 4, &params, &mut StdRng::seed_from_u64(5));
        assert!(plain.iter().all(|g| g.logps.is_empty()));
    }
}

/// Responses that share a prompt share its forward pass (a cached continuation after it):
/// each log-prob must still be the plain forward's log-softmax over `prompt ++ response`,
/// computed for that row alone.
#[test]
fn shared_prompt_logps_match_a_plain_forward() {
    for name in CAUSAL_FIXTURES {
        let model = tiny(name);
        let prompts = prompts(name);
        let vocab = fixture_config(name).vocab_size;
        // Long and short, a single token, none; every prompt gets several, interleaved.
        let responses = token_rows(vocab, &[7, 1, 0, 12, 3], 11);
        let pairs: Vec<(&[u32], &[u32])> = responses
            .iter()
            .flat_map(|r| prompts.iter().map(move |p| (p.as_slice(), r.as_slice())))
            .collect();
        let got = response_token_logps(&model, &pairs);
        for ((p, r), got) in pairs.iter().zip(&got) {
            assert_eq!(got.len(), r.len(), "{name}");
            if r.is_empty() {
                continue;
            }
            let logits = logits_of(&model, &[[*p, *r].concat()]);
            for (j, (&target, got)) in r.iter().zip(got).enumerate() {
                let at = &logits[(p.len() - 1 + j) * vocab..(p.len() + j) * vocab];
                let max = at.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = at.iter().map(|&x| ((x - max) as f64).exp()).sum();
                let want = at[target as usize] - max - sum.ln() as f32;
                assert!(
                    (got - want).abs() < 1e-4,
                    "{name}: token {j}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn a_rows_tokens_do_not_depend_on_the_batch() {
    for name in CAUSAL_FIXTURES {
        let model = tiny(name);
        let prompts = prompts(name);
        // Row 0 is the fixture's greedy prompt: its tokens are also checked against PyTorch.
        let want = ids(&expected(name)["greedy"]["continuation"]);
        let greedy = SamplingParams::GREEDY;
        let batch = generate(
            &model,
            &prompts,
            want.len(),
            &greedy,
            &mut StdRng::seed_from_u64(0),
        );
        for (i, p) in prompts.into_iter().enumerate() {
            let alone = generate(
                &model,
                &[p],
                want.len(),
                &greedy,
                &mut StdRng::seed_from_u64(0),
            );
            assert_eq!(
                alone[0], batch[i],
                "{name}: row {i} changed when decoded in a left-padded batch"
            );
        }
        assert_eq!(batch[0].tokens, want, "{name}: greedy continuation");
    }
}

#[test]
fn decoding_stops_at_eos() {
    let name = "tiny-llama";
    let mut model = tiny(name);
    let prompt = &prompts(name)[..1];
    let greedy = SamplingParams::GREEDY;
    // No EOS at first, so that the free run cannot stop early whatever the weights.
    model.config.eos_token_ids.clear();
    let free = generate(&model, prompt, 12, &greedy, &mut StdRng::seed_from_u64(0));
    assert_eq!(free[0].tokens.len(), 12);
    // Declare the 4th greedy token an EOS: decoding must end there, EOS included.
    let stop = free[0].tokens[3];
    model.config.eos_token_ids = vec![stop];
    let out = generate(&model, prompt, 12, &greedy, &mut StdRng::seed_from_u64(0));
    let first = free[0].tokens.iter().position(|&t| t == stop).unwrap();
    assert_eq!(out[0].tokens, free[0].tokens[..=first]);
    assert!(out[0].finished && !free[0].finished);
}

/// A row that ends leaves the batch (with its rows of the KV cache); the others must decode
/// what they decode with nobody ending: the free run, cut at each row's first EOS. Two EOS
/// ids end rows at two different steps, so rows leave twice; the uncached path must agree.
#[test]
fn rows_that_end_leave_the_others_unchanged() {
    use selm_tui::model::generate::Generation;
    for name in CAUSAL_FIXTURES {
        let mut model = tiny(name);
        let distinct = prompts(name);
        let prompts: Vec<Vec<u32>> = [1, 0, 2, 0, 1].map(|i| distinct[i].clone()).to_vec();
        let greedy = SamplingParams::GREEDY;
        let run = |model: &CausalLm<B>| {
            let mut rng = StdRng::seed_from_u64(0);
            generate_suppressing(model, &prompts, 12, &greedy, &[], &mut rng)
        };
        model.config.eos_token_ids.clear();
        let free = run(&model);
        // Tokens each row would end at, as EOS ids: where each row's run is cut.
        let cut = |g: &Generation, eos: &[u32]| {
            let first = g.tokens.iter().position(|t| eos.contains(t));
            first.map_or(g.tokens.len(), |i| i + 1)
        };
        let ends = |eos: &[u32]| {
            let mut lens: Vec<usize> = free.iter().map(|g| cut(g, eos)).collect();
            lens.retain(|&n| n < 12);
            lens.sort_unstable();
            lens.dedup();
            lens
        };
        // Two ids under which rows end at two different steps and some row runs to the end.
        let tokens: Vec<u32> = free.iter().flat_map(|g| g.tokens.clone()).collect();
        let eos = tokens
            .iter()
            .flat_map(|&a| tokens.iter().map(move |&b| vec![a, b]))
            .find(|eos| ends(eos).len() >= 2 && free.iter().any(|g| cut(g, eos) == 12))
            .expect("two EOS ids that end rows at different steps");
        model.config.eos_token_ids = eos.clone();
        let out = run(&model);
        for (i, (got, free)) in out.iter().zip(&free).enumerate() {
            let n = cut(free, &eos);
            assert_eq!(got.tokens, free.tokens[..n], "{name}: row {i}");
            assert_eq!(
                got.finished,
                eos.contains(&free.tokens[n - 1]),
                "{name}: row {i}"
            );
            assert_eq!(got.logps.len(), n, "{name}: row {i}");
            for (a, b) in got.logps.iter().zip(&free.logps[..n]) {
                assert!((a - b).abs() < 1e-5, "{name}: row {i}: {a} vs {b}");
            }
        }
        let mut rng = StdRng::seed_from_u64(0);
        let uncached = generate_uncached(&model, &prompts, 12, &greedy, &mut rng);
        for (got, want) in out.iter().zip(&uncached) {
            assert_eq!(got.tokens, want.tokens, "{name}: the uncached path");
        }
    }
}

#[test]
fn padding_does_not_change_real_logits() {
    for name in CAUSAL_FIXTURES {
        let model = tiny(name);
        let vocab = fixture_config(name).vocab_size;
        let rows = prompts(name);
        let seq = rows.iter().map(Vec::len).max().unwrap();
        assert!(rows[1].len() < seq, "row 1 must be padded");
        let alone = logits_of(&model, &rows[1..2]);
        let padded = logits_of(&model, &rows);
        assert_eq!(alone.len(), rows[1].len() * vocab);
        assert_eq!(padded.len(), rows.len() * seq * vocab);
        for t in 0..rows[1].len() {
            for v in 0..vocab {
                let a = alone[t * vocab + v];
                let p = padded[(seq + t) * vocab + v];
                assert!(
                    (a - p).abs() < 1e-5,
                    "{name}: position {t} token {v}: {a} vs {p}"
                );
            }
        }
    }
}

#[test]
fn loading_errors_name_the_tensor_and_shapes() {
    let dir = fixture("tiny-llama");
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let device = Default::default();

    let up = format!("model.layers.{}.mlp.up_proj.weight", config.num_layers - 1);
    let mut weights = read_model_dir(&dir).unwrap();
    weights.remove(&up);
    let err = format!(
        "{:#}",
        from_weights::<B>(config.clone(), &mut weights, &device).unwrap_err()
    );
    assert!(err.contains(&format!("missing tensor `{up}`")), "{err}");
    let up_shape = format!("[{}, {}]", config.intermediate_size, config.hidden_size);
    assert!(err.contains(&up_shape), "{err}");

    // q_proj with its elements regrouped into the wrong shape.
    let (rows, cols) = (config.num_heads * config.head_dim, config.hidden_size);
    let mut tensors: BTreeMap<_, _> = to_hf_tensors(&tiny("tiny-llama"));
    let q = tensors
        .get_mut("model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(q.shape, [rows, cols]);
    q.shape = vec![rows / 2, cols * 2];
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("config.json"), tmp.path().join("config.json")).unwrap();
    write_file(&tmp.path().join("model.safetensors"), &tensors).unwrap();
    let err = format!("{:#}", load_hf_dir::<B>(tmp.path(), &device).unwrap_err());
    let want = format!(
        "`model.layers.0.self_attn.q_proj.weight` has shape [{}, {}], expected [{rows}, {cols}]",
        rows / 2,
        cols * 2
    );
    assert!(err.contains(&want), "{err}");

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
    for name in CAUSAL_FIXTURES {
        let model = tiny(name);
        let tmp = tempfile::tempdir().unwrap();
        save_hf_dir(&model, tmp.path()).unwrap();
        let back = load_hf_dir::<B>(tmp.path(), &Default::default()).unwrap();
        assert_eq!(back.config, model.config);
        assert_eq!(
            logits_of(&back, &prompts(name)),
            logits_of(&model, &prompts(name)),
            "{name}"
        );
    }
}

#[test]
fn sharded_checkpoints_load() {
    let name = "tiny-qwen2";
    let model = tiny(name);
    let tensors = to_hf_tensors(&model);
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    let mut weight_map = serde_json::Map::new();
    for (i, (tensor, t)) in tensors.into_iter().enumerate() {
        let file = if i % 2 == 0 {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        weight_map.insert(tensor.clone(), file.into());
        if i % 2 == 0 {
            a.insert(tensor, t);
        } else {
            b.insert(tensor, t);
        }
    }
    assert!(!a.is_empty() && !b.is_empty());
    write_file(&tmp.path().join("model-00001-of-00002.safetensors"), &a).unwrap();
    write_file(&tmp.path().join("model-00002-of-00002.safetensors"), &b).unwrap();
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    std::fs::copy(
        fixture(name).join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let back = load_hf_dir::<B>(tmp.path(), &Default::default()).unwrap();
    assert_eq!(
        logits_of(&back, &prompts(name)),
        logits_of(&model, &prompts(name))
    );
}

/// The head's logits for one all-ones hidden state: logit `v` is the sum of row `v` of the
/// `[vocab, hidden]` matrix the head reads.
fn head_of_ones(model: &CausalLm<B>) -> Vec<f32> {
    let h = Tensor::<B, 3>::ones([1, 1, model.config.hidden_size], &Default::default());
    model.head(h).into_data().into_vec::<f32>().unwrap()
}

fn row_sums(t: &HostTensor) -> Vec<f32> {
    t.data.chunks(t.shape[1]).map(|r| r.iter().sum()).collect()
}

#[track_caller]
fn assert_reads(what: &str, got: &[f32], matrix: &HostTensor) {
    let want = row_sums(matrix);
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: one logit per vocabulary entry"
    );
    for (v, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 1e-4, "{what}: logit {v} is {g}, want {w}");
    }
}

/// The fixture's weights under `tie`: tied drops `lm_head.weight`; untied keeps the file's or,
/// for a tied fixture, adds `head`.
fn with_tie(name: &str, tie: bool, head: &HostTensor) -> CausalLm<B> {
    let mut config = fixture_config(name);
    config.tie_word_embeddings = tie;
    let mut weights = WeightMap::default();
    for (n, t) in to_hf_tensors(&tiny(name)) {
        if n != "lm_head.weight" {
            weights.insert(n, t).unwrap();
        }
    }
    if !tie {
        weights
            .insert("lm_head.weight".into(), head.clone())
            .unwrap();
    }
    from_weights::<B>(config, &mut weights, &Default::default()).expect("model builds")
}

#[test]
fn tied_head_reads_the_embedding() {
    // Both cases on every fixture, whichever its config.json names.
    for name in CAUSAL_FIXTURES {
        let config = fixture_config(name);
        let model = tiny(name);
        assert_eq!(
            model.lm_head.is_none(),
            config.tie_word_embeddings,
            "{name}: lm_head exists exactly when config.json says untied"
        );
        let tensors = to_hf_tensors(&model);
        let embed = &tensors["model.embed_tokens.weight"];
        assert_eq!(embed.shape, [config.vocab_size, config.hidden_size]);
        assert_eq!(
            tensors.contains_key("lm_head.weight"),
            !config.tie_word_embeddings,
            "{name}"
        );
        // An untied head that differs from the embedding: the file's, else the embedding
        // with its rows reversed and doubled.
        let head = tensors.get("lm_head.weight").cloned().unwrap_or_else(|| {
            let data = embed
                .data
                .chunks(config.hidden_size)
                .rev()
                .flatten()
                .map(|x| 2.0 * x)
                .collect();
            HostTensor::new(embed.shape.clone(), data)
        });
        assert_ne!(
            row_sums(&head),
            row_sums(embed),
            "{name}: heads must differ"
        );

        let loaded = if config.tie_word_embeddings {
            embed
        } else {
            &head
        };
        assert_reads(&format!("{name} as loaded"), &head_of_ones(&model), loaded);

        let tied = with_tie(name, true, &head);
        assert!(tied.lm_head.is_none(), "{name}: tied model has no lm_head");
        assert_reads(&format!("{name} tied"), &head_of_ones(&tied), embed);

        let untied = with_tie(name, false, &head);
        assert!(untied.lm_head.is_some(), "{name}: untied model has lm_head");
        assert_reads(&format!("{name} untied"), &head_of_ones(&untied), &head);
    }
}
