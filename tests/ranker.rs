//! The external ranker protocol: the shipped scripts, and every way a child process can fail
//! (crash, malformed line, wrong count, silence), each a clear error.

mod common;

use selm_tui::ranker::process::ProcessRanker;
use selm_tui::ranker::{RankRequest, Ranker};
use selm_tui::testing::venv_bin;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn scripts() -> String {
    format!("{}/scripts", env!("CARGO_MANIFEST_DIR"))
}

fn ranker(cmd: &[&str], timeout_s: f64) -> ProcessRanker {
    ProcessRanker::new(
        "t".into(),
        cmd.iter().map(|s| s.to_string()).collect(),
        Duration::from_secs_f64(timeout_s),
    )
    .unwrap()
}

fn score(r: &mut ProcessRanker, candidates: &[&str]) -> anyhow::Result<Vec<f64>> {
    let candidates: Vec<String> = candidates.iter().map(|s| s.to_string()).collect();
    r.score(&RankRequest {
        prompt: "Say something.",
        task: None,
        reference: None,
        candidates: &candidates,
    })
}

#[test]
fn test_ranker_script_is_deterministic() {
    let script = format!("{}/test_ranker.py", scripts());
    let mut r = ranker(&["python3", &script], 30.0);
    let cands = [
        "a b c",
        "hello there my friend how are you doing today fine",
        "",
    ];
    let first = score(&mut r, &cands).unwrap();
    // The script's formula: closeness to 12 words + 0.2 * distinct share; empty is -1.
    assert_eq!(first, [0.771429, 1.057143, -1.0]);
    // Same process, same answer; a fresh process too.
    assert_eq!(score(&mut r, &cands).unwrap(), first);
    let mut again = ranker(&["python3", &script], 30.0);
    assert_eq!(score(&mut again, &cands).unwrap(), first);
}

/// scripts/pairrm_ranker.py on the trainer's environment (transformers 5, no llm-blender)
/// serving the PairRM in `dir`.
fn pairrm(dir: &Path) -> ProcessRanker {
    let python = venv_bin("torch", "python");
    let script = format!("{}/pairrm_ranker.py", scripts());
    let cmd = [
        python.to_str().unwrap(),
        &script,
        "--model",
        dir.to_str().unwrap(),
    ];
    ranker(&cmd, 300.0)
}

#[test]
fn pairrm_scores_equal_llm_blenders_on_a_tiny_random_pairrm() {
    let dir = common::fixture("tiny-pairrm");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let cases = expected["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    let mut r = pairrm(&dir);
    let mut worst = 0f64;
    for case in cases {
        let candidates: Vec<String> = case["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        let want: Vec<f64> = case["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        let got = r
            .score(&RankRequest {
                prompt: case["source"].as_str().unwrap(),
                task: None,
                reference: None,
                candidates: &candidates,
            })
            .unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            worst = worst.max((g - w).abs());
        }
        // Not a constant: the candidates are told apart.
        if want.iter().any(|w| (w - want[0]).abs() > 1e-3) {
            assert!(got.iter().any(|g| (g - got[0]).abs() > 1e-3), "{got:?}");
        }
    }
    assert!(
        worst <= 1e-5,
        "largest difference from llm-blender's scores: {worst:e}"
    );
}

#[test]
fn a_folder_that_is_not_pairrm_is_refused_with_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config =
        serde_json::json!({"ranker_type": "dual", "model_type": "deberta", "model_name": "x"});
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    let mut r = pairrm(tmp.path());
    let err = format!("{:#}", score(&mut r, &["a", "b"]).unwrap_err());
    assert!(
        err.contains("ranker_type 'dual'") && err.contains("pairranker"),
        "{err}"
    );
}

#[test]
fn pairrm_protocol_loop_with_the_model_call_replaced() {
    let code = format!(
        "import sys; sys.path.insert(0, {:?}); import pairrm_ranker as p; \
         p.serve(lambda prompt, c: [float(len(x)) if x != 'boom' else 1/0 for x in c], \
         sys.stdin, sys.stdout)",
        scripts()
    );
    let mut r = ranker(&["python3", "-c", &code], 30.0);
    assert_eq!(score(&mut r, &["ab", "abcd"]).unwrap(), [2.0, 4.0]);
    // An exception inside the scorer comes back as an error reply, and the loop goes on.
    let err = format!("{:#}", score(&mut r, &["boom"]).unwrap_err());
    assert!(err.contains("ZeroDivisionError"), "{err}");
    assert_eq!(score(&mut r, &["xyz"]).unwrap(), [3.0]);
}

#[test]
fn a_crash_is_an_error_with_the_stderr_tail() {
    let mut r = ranker(
        &["sh", "-c", "read l; echo 'CUDA out of memory' >&2; exit 3"],
        10.0,
    );
    let err = format!("{:#}", score(&mut r, &["a"]).unwrap_err());
    assert!(err.contains("exited without answering"), "{err}");
    assert!(err.contains("CUDA out of memory"), "{err}");
    let mut r = ranker(&["/nonexistent/ranker"], 10.0);
    let err = format!("{:#}", score(&mut r, &["a"]).unwrap_err());
    assert!(
        err.contains("starting ranker `/nonexistent/ranker`"),
        "{err}"
    );
}

#[test]
fn malformed_and_miscounted_replies_are_quoted() {
    let mut r = ranker(
        &["sh", "-c", "while read l; do echo 'scores: 1, 2'; done"],
        10.0,
    );
    let err = format!("{:#}", score(&mut r, &["a", "b"]).unwrap_err());
    assert!(
        err.contains("malformed") && err.contains("`scores: 1, 2`"),
        "{err}"
    );
    let mut r = ranker(
        &[
            "sh",
            "-c",
            r#"while read l; do echo '{"scores": [0.5]}'; done"#,
        ],
        10.0,
    );
    let err = format!("{:#}", score(&mut r, &["a", "b"]).unwrap_err());
    assert!(err.contains("1 scores for 2 candidates"), "{err}");
}

#[test]
fn a_silent_ranker_times_out_and_is_restarted() {
    let mut r = ranker(&["sleep", "30"], 0.5);
    let t = std::time::Instant::now();
    let err = format!("{:#}", score(&mut r, &["a"]).unwrap_err());
    assert!(err.contains("did not answer within"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
}
