//! The objectives SELM is compared with (`train.objective`: dpo, xpo) and the fixed-reference
//! baseline (`train.sync_reference = false`), through headless runs of the built-in model.

mod common;

use common::read_jsonl;

use burn::backend::Flex;
use selm_tui::backend::BackendSpec;
use selm_tui::config::{Config, Objective};
use selm_tui::engine::Start;
use selm_tui::model::load::{load_hf_dir, load_pretrained};
use selm_tui::selm::logprobs::response_token_logps;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn config(dir: &Path, edit: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 2;
    c.prompts.per_iteration = 32;
    c.prompts.eval = 8;
    c.train.batch_size = 8;
    edit(&mut c);
    c.validate().unwrap();
    c
}

/// Runs `config` headless to its end; returns its run directory.
fn run(config: Config) -> PathBuf {
    let out = config.run.out_dir.clone();
    selm_tui::headless::run(Start::New(Box::new(config)), BackendSpec::Flex, false).unwrap();
    let runs: Vec<_> = std::fs::read_dir(out).unwrap().collect();
    assert_eq!(runs.len(), 1);
    runs.into_iter().next().unwrap().unwrap().path()
}

fn train_rows(run: &Path) -> Vec<Value> {
    read_jsonl(&run.join("metrics.jsonl"))
        .into_iter()
        .filter(|m| m["kind"] == "train")
        .collect()
}

/// The largest difference between iteration 2's recorded pi_ref log-probs and those `model`
/// gives the same responses.
fn reference_gap(run: &Path, model: &selm_tui::model::CausalLm<Flex>) -> f32 {
    let (_, tok) = load_pretrained::<Flex>(
        &Config::embedded_default().model_dir().unwrap(),
        &Default::default(),
    )
    .unwrap();
    let pairs = read_jsonl(&run.join("iter-002/pairs.jsonl"));
    let logps = read_jsonl(&run.join("iter-002/pair_logps.jsonl"));
    let mut gap = 0f32;
    for (pair, l) in pairs.iter().zip(&logps).take(8) {
        let prompt = tok.encode_prompt(pair["prompt"].as_str().unwrap()).unwrap();
        for part in ["chosen", "rejected", "y_ref"] {
            let ids: Vec<u32> = serde_json::from_value(l[part]["ids"].clone()).unwrap();
            let want: Vec<f32> = serde_json::from_value(l[part]["reference"].clone()).unwrap();
            let got = &response_token_logps(model, &[(&prompt, &ids)])[0];
            for (g, w) in got.iter().zip(&want) {
                gap = gap.max((g - w).abs());
            }
        }
    }
    gap
}

#[test]
fn a_fixed_reference_stays_the_start_model() {
    let tmp = tempfile::tempdir().unwrap();
    let device = Default::default();
    let (start, _) =
        load_pretrained::<Flex>(&Config::embedded_default().model_dir().unwrap(), &device).unwrap();
    let fixed = run(config(&tmp.path().join("fixed"), |c| {
        c.train.sync_reference = false
    }));
    let synced = run(config(&tmp.path().join("synced"), |_| {}));
    let after_1 =
        |run: &Path| load_hf_dir::<Flex>(&run.join("checkpoints/iter-001"), &device).unwrap();
    // Fixed: iteration 2 measured against the start model, while its policy moved on.
    assert!(reference_gap(&fixed, &start) < 1e-4);
    assert!(reference_gap(&fixed, &after_1(&fixed)) > 1e-3);
    // Synced: against iteration 1's result.
    assert!(reference_gap(&synced, &after_1(&synced)) < 1e-4);
    assert!(reference_gap(&synced, &start) > 1e-3);
}

#[test]
fn dpo_and_xpo_terms_are_in_the_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let alpha = 0.01;
    let with = |objective| {
        move |c: &mut Config| {
            c.run.iterations = 1;
            c.train.objective = objective;
            c.train.alpha = alpha;
        }
    };
    let dpo = run(config(&tmp.path().join("dpo"), with(Objective::Dpo)));
    for row in train_rows(&dpo) {
        assert_eq!(row["loss/optimism"], 0.0);
        assert_eq!(row["loss"], row["loss/dpo"]);
    }
    let xpo = run(config(&tmp.path().join("xpo"), with(Objective::Xpo)));
    let rows = train_rows(&xpo);
    assert!(!rows.is_empty());
    for row in rows {
        let f = |k: &str| row[k].as_f64().unwrap();
        // XPO: alpha * log pi_theta(y_ref), no beta, no pi_ref term.
        let want = alpha * f("logps/pi_response");
        assert!(
            (f("loss/optimism") - want).abs() < 1e-5 * want.abs().max(1.0),
            "{row}"
        );
        assert!((f("loss") - f("loss/dpo") - want).abs() < 1e-5, "{row}");
    }
}
