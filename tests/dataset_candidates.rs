//! The paper's candidate recipe: a prompts file's own `chosen` and `rejected` responses join
//! the candidates (with `generate.samples = 0`, y_ref and those two only), are ranked, paired
//! and trained on like generated ones.

mod common;

use common::read_jsonl;

use selm_tui::backend::FlexAutodiff;
use selm_tui::config::{Config, RankerKind};
use selm_tui::engine::pipeline::Pipeline;
use selm_tui::model::ModelConfig;
use selm_tui::tokenizer::TextTokenizer;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Scores a candidate 1 when it is the sum the prompt asks for, else 0 (JSON-lines ranker).
const SUM_RANKER: &str = r#"
import json, sys
for line in sys.stdin:
    req = json.loads(line)
    a, b = req["prompt"].rstrip("=").split("+")
    want = str(int(a) + int(b))
    print(json.dumps({"scores": [1.0 if c.strip() == want else 0.0 for c in req["candidates"]]}), flush=True)
"#;

/// Rows `a+b=` with the right sum as `chosen` (a string) and a wrong one as `rejected` (a
/// TRL conversation); `reference` on none.
fn prompts_file(dir: &Path, n: usize) -> PathBuf {
    let rows: String = (0..n)
        .map(|i| {
            let (a, b) = (i * 7 % 50 + 1, i * 3 % 40 + 2);
            let row = json!({
                "prompt": format!("{a}+{b}="),
                "chosen": (a + b).to_string(),
                "rejected": [{"role": "assistant", "content": (a + b + 1).to_string()}],
            });
            format!("{row}\n")
        })
        .collect();
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, rows).unwrap();
    path
}

fn config(dir: &Path, samples: usize) -> Config {
    let ranker = dir.join("sum_ranker.py");
    std::fs::write(&ranker, SUM_RANKER).unwrap();
    let mut c = Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 1;
    c.prompts.tasks = vec![];
    c.prompts.file = Some(prompts_file(dir, 16).display().to_string());
    c.prompts.per_iteration = 12;
    c.prompts.eval = 4;
    c.generate.samples = samples;
    c.rank.ranker = RankerKind::Command;
    c.rank.command = vec!["python3".into(), ranker.display().to_string()];
    c.validate().unwrap();
    c
}

fn headless(config: &Config, dir: &Path) -> std::process::Output {
    let path = dir.join("run.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .args(["--config", path.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap()
}

#[test]
fn dataset_responses_are_candidates_ranked_paired_and_trained_on() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), 0);
    let out = headless(&c, tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let model_dir = c.model_dir().unwrap();
    let model_config = ModelConfig::from_file(&model_dir.join("config.json")).unwrap();
    let tokenizer = TextTokenizer::from_hf_dir(&model_dir, &model_config.tokens()).unwrap();
    let rows = read_jsonl(&run.join("iter-001/candidates.jsonl"));
    assert_eq!(rows.len(), c.prompts.per_iteration);
    for row in &rows {
        let cands = row["candidates"].as_array().unwrap();
        let labels: Vec<&Value> = cands.iter().map(|c| &c["dataset"]).collect();
        assert_eq!(
            labels,
            [&json!("chosen"), &json!("rejected"), &Value::Null],
            "{row}"
        );
        assert_eq!(cands[2]["is_reference"], true, "y_ref last");
        for c in &cands[..2] {
            // The text's tokens and the EOS a finished reply ends with.
            let want = tokenizer
                .encode_response(c["text"].as_str().unwrap())
                .unwrap();
            let got: Vec<u32> = serde_json::from_value(c["tokens"].clone()).unwrap();
            assert_eq!(got, want);
        }
        assert_eq!(cands[0]["score"], 1.0);
        assert_eq!(cands[1]["score"], 0.0);
    }
    // Every prompt has a preference (the right sum beats the wrong one): each is a pair,
    // and the update trained on all of them.
    let pairs = read_jsonl(&run.join("iter-001/pairs.jsonl"));
    assert_eq!(pairs.len(), rows.len());
    for (p, row) in pairs.iter().zip(&rows) {
        assert_eq!(p["chosen"], row["candidates"][0]["text"]);
    }
    let metrics = read_jsonl(&run.join("metrics.jsonl"));
    let train = metrics.iter().filter(|m| m["kind"] == "train").count();
    assert_eq!(train, pairs.len().div_ceil(c.train.batch_size));
}

#[test]
fn samples_zero_needs_dataset_responses() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), 0);
    c.prompts.dataset_responses = false;
    let out = headless(&c, tmp.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("generate.samples") && stderr.contains("chosen"),
        "{stderr}"
    );
}

/// `config` with row 5 of its prompts file stripped of its responses: nothing to compare
/// candidates with for the embedding judge.
fn without_reference_on_line_5(dir: &Path) -> Config {
    let c = config(dir, 3);
    let file = c.prompts.file.clone().unwrap();
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines[4] = r#"{"prompt": "9+9="}"#.into();
    std::fs::write(&file, lines.join("\n")).unwrap();
    c
}

#[test]
fn the_embedding_judge_names_a_row_without_a_reference_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = without_reference_on_line_5(tmp.path());
    c.rank.ranker = RankerKind::Embedding;
    let out = headless(&c, tmp.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pairs.jsonl line 5") && stderr.contains("reference"),
        "{stderr}"
    );
}

/// The embedding judge as a human ranker's fallback scores the held-out samples and any
/// handed-off prompt: the same start-of-run check applies, before anything is generated.
#[test]
fn an_embedding_fallback_is_checked_for_reference_answers_at_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = without_reference_on_line_5(tmp.path());
    c.rank.ranker = RankerKind::Human;
    c.rank.fallback = Some(RankerKind::Embedding);
    c.validate().unwrap();
    let err = match Pipeline::<FlexAutodiff>::new(c, &Default::default()) {
        Ok(_) => panic!("a run started with a prompt the fallback cannot score"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("pairs.jsonl line 5") && err.contains("embedding"),
        "{err}"
    );
}
