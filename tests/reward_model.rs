//! The `reward_model` ranker: parity of the sequence classifier with transformers on the
//! `tiny-llama-rm` fixture, the `tiny-qwen2` causal model made a classifier of its family and
//! checked against its hidden states, the errors bad reward models give, the formats
//! candidates are scored in, and a headless run of the real binary ranking with a reward
//! model. Shapes, ids, lengths and architectures come from the fixtures.

mod common;

use burn::backend::Flex;
use common::{assert_close, expected, fixture, token_rows};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use selm_tui::config::{Config, Rank, RankerKind};
use selm_tui::io::weights::HostTensor;
use selm_tui::model::classifier::SequenceClassifier;
use selm_tui::model::llama::AttentionPlan;
use selm_tui::model::load::{host, load_hf_dir};
use selm_tui::ranker::reward_model::RewardModelRanker;
use selm_tui::ranker::{RankRequest, Ranker, from_config};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

type B = Flex;

const RM_FIXTURE: &str = "tiny-llama-rm";

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// Every tensor of an HF directory, by name.
fn tensors_of(dir: &Path) -> BTreeMap<String, HostTensor> {
    selm_tui::io::safetensors::read_model_dir(dir)
        .unwrap()
        .into_map()
}

fn write_tensors(dir: &Path, tensors: &BTreeMap<String, HostTensor>) {
    selm_tui::io::safetensors::write_file(&dir.join("model.safetensors"), tensors).unwrap();
}

/// A `[num_labels, hidden]` score head, seeded.
fn random_score(num_labels: usize, hidden: usize, seed: u64) -> HostTensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..num_labels * hidden)
        .map(|_| rng.random_range(-0.5f32..0.5))
        .collect();
    HostTensor::new(vec![num_labels, hidden], data)
}

/// A copy of the reward-model fixture in `dir`, its config.json changed by `edit` and its
/// tensors by `edit_tensors`.
fn fixture_copy(
    dir: &Path,
    edit: impl FnOnce(&mut Value),
    edit_tensors: impl FnOnce(&mut BTreeMap<String, HostTensor>),
) -> PathBuf {
    let src = fixture(RM_FIXTURE);
    let dst = dir.join("rm");
    std::fs::create_dir_all(&dst).unwrap();
    let mut config = read_json(&src.join("config.json"));
    edit(&mut config);
    write_json(&dst.join("config.json"), &config);
    let mut tensors = tensors_of(&src);
    edit_tensors(&mut tensors);
    write_tensors(&dst, &tensors);
    dst
}

/// The fixture's rows, without their padding.
fn fixture_rows() -> Vec<Vec<u32>> {
    common::unpadded_rows(&expected(RM_FIXTURE))
}

#[test]
fn scores_match_transformers_on_the_fixture() {
    let dir = fixture(RM_FIXTURE);
    let device = Default::default();
    let model = SequenceClassifier::<B>::load_hf_dir(&dir, &device).unwrap();
    let raw = read_json(&dir.join("config.json"));
    let named: Vec<&str> = raw["architectures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(named.contains(&model.config().architecture.as_str()));
    assert_eq!(model.config().num_labels, 1);

    let rows = fixture_rows();
    let want: Vec<f64> = expected(RM_FIXTURE)["scores"]
        .as_array()
        .expect("scores")
        .iter()
        .map(common::f)
        .collect();
    assert_eq!(want.len(), rows.len());
    // One right-padded batch, as transformers scored them.
    let got = model.scores(&rows).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(&format!("score of row {i}"), *g as f64, *w, 1e-4, 1e-4);
    }
    // Each row alone gives the same.
    for (i, row) in rows.iter().enumerate() {
        let alone = model.scores(std::slice::from_ref(row)).unwrap()[0];
        assert_close(&format!("row {i} alone"), alone as f64, want[i], 1e-4, 1e-4);
    }
}

#[test]
fn the_ranker_batches_in_chunks_and_keeps_the_order() {
    // score_rows sorts by length and chunks; the scores come back in the rows' order.
    let tmp = tempfile::tempdir().unwrap();
    let dir = builtin_reward_model(tmp.path(), 3);
    let device = Default::default();
    let ranker = RewardModelRanker::<B>::load(&dir, &device).unwrap();
    let vocab = ranker.model().model_config().vocab_size;
    let rows = token_rows(vocab, &[7, 2, 11, 4, 9, 1, 6], 5);
    let whole = ranker.score_rows(&rows).unwrap();
    let ranker = ranker.with_batch_size(2);
    let chunked = ranker.score_rows(&rows).unwrap();
    for (i, row) in rows.iter().enumerate() {
        let alone = ranker.model().scores(std::slice::from_ref(row)).unwrap()[0] as f64;
        assert_close(&format!("row {i} batched"), whole[i], alone, 1e-5, 1e-5);
        assert_close(&format!("row {i} chunked"), chunked[i], alone, 1e-5, 1e-5);
    }
}

/// `tiny-qwen2` as the sequence classifier of its own family (its `architectures` with
/// `ForCausalLM` made `ForSequenceClassification`) with a random score head, in `dir`;
/// returns the directory, the architecture and the head.
fn causal_as_classifier(dir: &Path) -> (PathBuf, String, HostTensor) {
    let src = fixture("tiny-qwen2");
    let dst = dir.join("classifier");
    std::fs::create_dir_all(&dst).unwrap();
    let mut config = read_json(&src.join("config.json"));
    let causal = config["architectures"][0].as_str().unwrap();
    assert!(causal.ends_with("ForCausalLM"), "{causal}");
    let architecture = causal.replace("ForCausalLM", "ForSequenceClassification");
    config["architectures"] = json!([architecture]);
    config["num_labels"] = json!(1);
    // A causal config may carry transformers' default two labels.
    for key in ["id2label", "label2id"] {
        config.as_object_mut().unwrap().remove(key);
    }
    let hidden = config["hidden_size"].as_u64().unwrap() as usize;
    write_json(&dst.join("config.json"), &config);
    let mut tensors = tensors_of(&src);
    tensors.remove("lm_head.weight");
    let score = random_score(1, hidden, 11);
    tensors.insert("score.weight".into(), score.clone());
    write_tensors(&dst, &tensors);
    (dst, architecture, score)
}

/// A supported classifier architecture of another family than `model_type`'s.
fn classifier_of_another_family(model_type: &str) -> &'static str {
    match model_type {
        "llama" => "Qwen2ForSequenceClassification",
        _ => "LlamaForSequenceClassification",
    }
}

#[test]
fn a_causal_lm_as_classifier_applies_the_head_to_the_last_hidden_state() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, architecture, score) = causal_as_classifier(tmp.path());
    let device = Default::default();
    let model = SequenceClassifier::<B>::load_hf_dir(&dir, &device).unwrap();
    assert_eq!(model.config().architecture, architecture);
    let causal = load_hf_dir::<B>(&fixture("tiny-qwen2"), &device).unwrap();
    let config = causal.config().clone();
    let rows = token_rows(config.vocab_size, &[6, 11, 3, 9], 17);
    let got = model.scores(&rows).unwrap();
    for (i, row) in rows.iter().enumerate() {
        // The causal model's final hidden state at the row's last token, alone, and the head
        // applied on the host.
        let n = row.len();
        let ids = burn::tensor::Tensor::<B, 2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(row.iter().map(|&t| t as i64).collect(), [1, n]),
            &device,
        );
        let plan = AttentionPlan::<B>::right_padded(&config, &[n], n, &device);
        let hidden = host(causal.hidden(ids, &plan, None));
        let h = config.hidden_size;
        let last = &hidden.data[(n - 1) * h..n * h];
        let want: f64 = last
            .iter()
            .zip(&score.data)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        assert_close(&format!("row {i}"), got[i] as f64, want, 1e-4, 1e-4);
    }
}

/// The error `reward_model` ranker construction gives for the reward model in `dir`.
fn load_error(dir: &Path) -> String {
    let rank = Rank {
        ranker: RankerKind::RewardModel,
        command: vec![],
        model: Some(dir.display().to_string()),
        fallback: None,
        server: None,
        score_range: [0.0, 1.0],
        timeout_s: 1.0,
        high_reward_threshold: 0.5,
    };
    let device = Default::default();
    match from_config::<B>(&rank, &device, std::path::Path::new(".")) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

/// The fixture copy with the built-in model's tokenizer.json, one token of which gets id
/// `vocab_size + 2`.
fn with_oversized_tokenizer(dir: &Path) -> (PathBuf, u64) {
    let rm = fixture_copy(dir, |_| {}, |_| {});
    let vocab = read_json(&rm.join("config.json"))["vocab_size"]
        .as_u64()
        .unwrap();
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-tasks");
    let mut tok = read_json(&builtin.join("tokenizer.json"));
    tok["model"]["vocab"]["\u{e9}"] = json!(vocab + 2);
    write_json(&rm.join("tokenizer.json"), &tok);
    (rm, vocab)
}

#[test]
fn bad_reward_models_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let hidden = |c: &Value| c["hidden_size"].as_u64().unwrap() as usize;

    // Two labels (and a head to match).
    let dir = tmp.path().join("labels");
    let src = read_json(&fixture(RM_FIXTURE).join("config.json"));
    let h = hidden(&src);
    let rm = fixture_copy(
        &dir,
        |c| {
            c["num_labels"] = json!(2);
            c["id2label"] = json!({"0": "LABEL_0", "1": "LABEL_1"});
            c["label2id"] = json!({"LABEL_0": 0, "LABEL_1": 1});
        },
        |t| {
            t.insert("score.weight".into(), random_score(2, h, 1));
        },
    );
    let e = load_error(&rm);
    assert!(
        e.contains("num_labels is 2") && e.contains("rank.model"),
        "{e}"
    );

    // No score head.
    let dir = tmp.path().join("headless");
    let rm = fixture_copy(
        &dir,
        |_| {},
        |t| {
            t.remove("score.weight");
        },
    );
    let e = load_error(&rm);
    assert!(e.contains("missing tensor `score.weight`"), "{e}");

    // A causal LM of the fixture's own family, not a classifier.
    let own = src["architectures"][0].as_str().unwrap();
    let causal = own.replace("ForSequenceClassification", "ForCausalLM");
    assert_ne!(causal, own, "the fixture is a sequence classifier");
    let dir = tmp.path().join("causal");
    let rm = fixture_copy(&dir, |c| c["architectures"] = json!([causal]), |_| {});
    let e = load_error(&rm);
    assert!(
        e.contains(&causal) && e.contains("not a sequence classifier"),
        "{e}"
    );
    // No architectures at all.
    let dir = tmp.path().join("unnamed");
    let rm = fixture_copy(
        &dir,
        |c| {
            c.as_object_mut().unwrap().remove("architectures");
        },
        |_| {},
    );
    let e = load_error(&rm);
    assert!(
        e.contains("no `architectures`") && e.contains("rank.model"),
        "{e}"
    );
    // An architecture that contradicts model_type: a classifier of the other family.
    let other = classifier_of_another_family(src["model_type"].as_str().unwrap());
    let dir = tmp.path().join("mismatch");
    let rm = fixture_copy(&dir, |c| c["architectures"] = json!([other]), |_| {});
    let e = load_error(&rm);
    assert!(e.contains(other) && e.contains("model_type"), "{e}");

    // A tokenizer with ids past the model's vocabulary.
    let dir = tmp.path().join("tokenizer");
    let (rm, vocab) = with_oversized_tokenizer(&dir);
    let e = load_error(&rm);
    assert!(
        e.contains(&format!("token id {}", vocab + 2))
            && e.contains(&format!("vocab_size is {vocab}")),
        "{e}"
    );

    // No tokenizer at all (the copy has config.json and the weights only).
    let rm = fixture_copy(&tmp.path().join("no-tokenizer"), |_| {}, |_| {});
    assert!(!rm.join("tokenizer.json").exists());
    let e = load_error(&rm);
    assert!(e.contains("tokenizer.json"), "{e}");

    // The config asks for a directory.
    let mut c = Config::embedded_default();
    c.rank.ranker = RankerKind::RewardModel;
    let e = format!(
        "{:#}",
        Config::from_toml(&c.to_toml(), "t.toml").unwrap_err()
    );
    assert!(e.contains("rank.model"), "{e}");
    c.rank.model = Some("some/dir".into());
    let back = Config::from_toml(&c.to_toml(), "t.toml").unwrap();
    assert_eq!(back.rank.model.as_deref(), Some("some/dir"));
}

fn builtin_reward_model(dir: &Path, seed: u64) -> PathBuf {
    selm_tui::testing::builtin_reward_model(dir, seed).unwrap()
}

#[test]
fn candidates_are_scored_in_the_reward_models_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = builtin_reward_model(tmp.path(), 1);
    let device = Default::default();
    let ranker = RewardModelRanker::<B>::load(&dir, &device).unwrap();
    let tok = ranker.tokenizer().clone();
    // No chat template: the prompt text then the response, with the tokenizer's BOS.
    assert!(tok.chat.is_none());
    assert_eq!(
        ranker.encode("12+3=", "15").unwrap(),
        tok.encode_prompt("12+3=15").unwrap()
    );
    // With one: the conversation, no generation prompt.
    let template = "{% for m in messages %}{{ m['role'][0] + ':' + m['content'] + ';' }}{% endfor %}\
                    {% if add_generation_prompt %}{{ 'a:' }}{% endif %}";
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({"chat_template": template}),
    );
    let mut ranker = RewardModelRanker::<B>::load(&dir, &device).unwrap();
    assert_eq!(
        ranker.encode("12+3=", "15").unwrap(),
        tok.encode("u:12+3=;a:15;").unwrap()
    );
    let candidates = vec!["15".to_string(), "16".to_string(), "1".to_string()];
    let req = RankRequest {
        prompt: "12+3=",
        task: None,
        reference: None,
        candidates: &candidates,
    };
    let scores = ranker.score(&req).unwrap();
    let rows: Vec<Vec<u32>> = candidates
        .iter()
        .map(|c| ranker.encode("12+3=", c).unwrap())
        .collect();
    let direct = ranker.model().scores(&rows).unwrap();
    assert_eq!(ranker.name(), RankerKind::RewardModel.name());
    for (s, d) in scores.iter().zip(direct) {
        assert_close("ranker score", *s, d as f64, 1e-5, 1e-5);
    }
}

#[test]
fn a_headless_run_ranks_with_the_reward_model() {
    let tmp = tempfile::tempdir().unwrap();
    let rm = builtin_reward_model(tmp.path(), 7);
    let mut c = Config::embedded_default();
    c.run.out_dir = tmp.path().join("runs");
    c.run.iterations = 1;
    c.prompts.per_iteration = 16;
    c.prompts.eval = 8;
    c.rank.ranker = RankerKind::RewardModel;
    c.rank.model = Some(rm.display().to_string());
    let config = tmp.path().join("rm.toml");
    std::fs::write(&config, c.to_toml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<_> = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let pairs = std::fs::read_to_string(runs[0].join("iter-001/pairs.jsonl")).unwrap();
    let rows: Vec<Value> = pairs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!rows.is_empty(), "no pairs");
    for r in &rows {
        assert_eq!(r["ranker"], "reward_model", "{r}");
        let (chosen, rejected) = (
            r["chosen_score"].as_f64().unwrap(),
            r["rejected_score"].as_f64().unwrap(),
        );
        assert!(
            chosen.is_finite() && rejected.is_finite() && chosen > rejected,
            "{r}"
        );
    }
}

#[test]
fn the_example_config_names_a_reward_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/reward-model.toml");
    let c = Config::from_file(&path).unwrap();
    assert_eq!(c.rank.ranker, RankerKind::RewardModel);
    assert!(c.rank.model.is_some());
}
