//! Parity with PyTorch + HF transformers on the tiny Llama and Qwen2 fixtures (flex backend):
//! logits, greedy tokens, sequence log-probs, SELM losses and metrics, gradient norms, and the
//! loss after one AdamW step. Tolerances are the fixtures README's.

mod common;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use common::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use selm_tui::model::CausalLm;
use selm_tui::model::generate::generate;
use selm_tui::model::load::load_hf_dir;
use selm_tui::model::sampling::SamplingParams;
use selm_tui::selm::Triple;
use selm_tui::train::{CosineWithWarmup, OptimConfig, SelmTrainer};
use serde_json::Value;

type B = Autodiff<Flex>;

fn load(name: &str) -> (CausalLm<B>, CausalLm<B>) {
    let dir = fixture(name);
    let device = Default::default();
    let policy = load_hf_dir::<B>(&dir, &device).expect("policy loads");
    let reference = load_hf_dir::<B>(&dir.join("ref"), &device).expect("reference loads");
    (policy, reference)
}

fn check_forward(name: &str) {
    let exp = expected(name);
    let (policy, _) = load(name);
    let fwd = &exp["forward"];
    let rows: Vec<Vec<u32>> = fwd["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    let masks: Vec<Vec<u32>> = fwd["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    // The fixture rows are right-padded; hand the model only the real tokens.
    let real: Vec<Vec<u32>> = rows
        .iter()
        .zip(&masks)
        .map(|(r, m)| {
            r.iter()
                .zip(m)
                .filter(|(_, m)| **m == 1)
                .map(|(t, _)| *t)
                .collect()
        })
        .collect();
    let (logits, lens) = policy.valid().forward_padded(&real, 0);
    let [_, seq, vocab] = logits.dims();
    let got = logits.into_data().into_vec::<f32>().unwrap();
    let mut compared = 0;
    for (b, want_row) in fwd["logits"].as_array().unwrap().iter().enumerate() {
        let want_row = want_row.as_array().unwrap();
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

fn check_greedy(name: &str) {
    let exp = expected(name);
    let (policy, _) = load(name);
    let prompt = ids(&exp["greedy"]["prompt"]);
    let want = ids(&exp["greedy"]["continuation"]);
    let mut rng = StdRng::seed_from_u64(0);
    let out = generate(
        &policy.valid(),
        &[prompt],
        want.len(),
        &SamplingParams::GREEDY,
        &mut rng,
    );
    assert_eq!(out[0].tokens, want, "{name}: greedy continuation");
}

fn triples(selm: &Value) -> Vec<Triple> {
    selm["triples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Triple {
            prompt: ids(&t["prompt"]),
            chosen: ids(&t["chosen"]),
            rejected: ids(&t["rejected"]),
            reference_response: ids(&t["reference_response"]),
        })
        .collect()
}

fn trainer(name: &str, selm: &Value) -> SelmTrainer<B> {
    let (policy, reference) = load(name);
    let adamw = &selm["adamw"];
    let betas = floats(&adamw["betas"]);
    let optim = OptimConfig {
        betas: (betas[0], betas[1]),
        eps: f(&adamw["eps"]),
        weight_decay: f(&adamw["weight_decay"]),
        max_grad_norm: None, // the fixture steps without clipping
    };
    SelmTrainer::new(
        policy,
        reference.valid(),
        optim,
        CosineWithWarmup::constant(f(&adamw["lr"])),
    )
}

fn check_selm(name: &str) {
    let exp = expected(name);
    let selm = &exp["selm"];
    let (alpha, beta) = (f(&selm["alpha"]), f(&selm["beta"]));
    let triples = triples(selm);
    let mut trainer = trainer(name, selm);
    let report = trainer.step(&triples, alpha, beta).expect("step");
    let h = &report.triples;
    let lists = [
        ("policy_chosen_logps", &h.policy_chosen),
        ("policy_rejected_logps", &h.policy_rejected),
        ("policy_response_logps", &h.policy_response),
        ("reference_chosen_logps", &h.reference_chosen),
        ("reference_rejected_logps", &h.reference_rejected),
        ("reference_response_logps", &h.reference_response),
    ];
    for (key, got) in lists {
        for (i, want) in floats(&selm[key]).into_iter().enumerate() {
            assert_close(
                &format!("{name} {key}[{i}]"),
                got[i] as f64,
                want,
                1e-4,
                1e-4,
            );
        }
    }
    let terms = [
        ("losses", &h.losses),
        ("dpo_losses", &h.dpo_losses),
        ("optimism_terms", &h.optimism_terms),
    ];
    for (key, got) in terms {
        for (i, want) in floats(&selm[key]).into_iter().enumerate() {
            assert_close(
                &format!("{name} {key}[{i}]"),
                got[i] as f64,
                want,
                1e-4,
                1e-4,
            );
        }
    }
    assert_close(
        &format!("{name} loss"),
        report.metrics.loss,
        f(&selm["loss"]),
        1e-4,
        1e-4,
    );
    let metrics = serde_json::to_value(&report.metrics).unwrap();
    let want_metrics = selm["metrics"].as_object().unwrap();
    assert!(!want_metrics.is_empty());
    for (key, want) in want_metrics {
        let got = metrics
            .get(key)
            .unwrap_or_else(|| panic!("{name}: metric {key} missing"));
        assert_close(&format!("{name} {key}"), f(got), f(want), 1e-4, 1e-4);
    }
    assert_close(
        &format!("{name} grad_norm_total"),
        report.grad_norm,
        f(&selm["grad_norm_total"]),
        1e-3,
        0.0,
    );
    for (key, want) in selm["grad_norms"].as_object().unwrap() {
        let got = report
            .grad_norms
            .iter()
            .find(|(n, _)| n == key)
            .unwrap_or_else(|| panic!("{name}: no gradient for {key}"));
        assert_close(
            &format!("{name} grad norm {key}"),
            got.1,
            f(want),
            1e-3,
            0.0,
        );
    }
    // After one AdamW step, the same triples against the same (unchanged) reference.
    let after = trainer
        .evaluate(&triples, alpha, beta)
        .metrics(alpha, beta)
        .loss;
    let want = f(&selm["adamw"]["loss_after_one_step"]);
    assert_close(
        &format!("{name} loss after one AdamW step"),
        after,
        want,
        1e-4,
        1e-4,
    );
}

#[test]
fn llama_forward_logits() {
    check_forward("tiny-llama");
}

#[test]
fn qwen2_forward_logits() {
    check_forward("tiny-qwen2");
}

#[test]
fn llama_greedy_tokens() {
    check_greedy("tiny-llama");
}

#[test]
fn qwen2_greedy_tokens() {
    check_greedy("tiny-qwen2");
}

#[test]
fn llama_selm_loss_metrics_grads_and_adamw_step() {
    check_selm("tiny-llama");
}

#[test]
fn qwen2_selm_loss_metrics_grads_and_adamw_step() {
    check_selm("tiny-qwen2");
}
