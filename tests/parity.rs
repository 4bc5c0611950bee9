//! Parity with PyTorch + HF transformers on the tiny Llama and Qwen2 fixtures (flex backend):
//! logits, greedy tokens, sequence log-probs, SELM losses and metrics, gradient norms, and the
//! loss after one AdamW step. Tolerances are the fixtures README's.

mod common;

use burn::module::AutodiffModule;
use common::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use selm_tui::model::CausalLm;
use selm_tui::model::generate::generate;
use selm_tui::model::load::load_hf_dir;
use selm_tui::model::sampling::SamplingParams;
use selm_tui::selm::logprobs::response_token_logps;
use selm_tui::train::{CosineWithWarmup, OptimConfig, SelmTrainer};
use serde_json::Value;

type B = selm_tui::backend::FlexAutodiff;

fn load(name: &str) -> (CausalLm<B>, CausalLm<B>) {
    let dir = fixture(name);
    let device = Default::default();
    let policy = load_hf_dir::<B>(&dir, &device).expect("policy loads");
    let reference = load_hf_dir::<B>(&dir.join("ref"), &device).expect("reference loads");
    (policy, reference)
}

fn check_forward(name: &str) {
    let (policy, _) = load(name);
    check_forward_logits(&policy.valid(), name);
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

fn trainer(name: &str, selm: &Value, micro_batch: Option<usize>) -> SelmTrainer<B> {
    let (policy, reference) = load(name);
    let adamw = &selm["adamw"];
    let betas = floats(&adamw["betas"]);
    let optim = OptimConfig {
        betas: (betas[0], betas[1]),
        eps: f(&adamw["eps"]),
        weight_decay: f(&adamw["weight_decay"]),
        max_grad_norm: None, // the fixture steps without clipping
        micro_batch,
    };
    SelmTrainer::new(
        policy,
        reference.valid(),
        optim,
        CosineWithWarmup::constant(f(&adamw["lr"])),
    )
}

/// One update on the fixture's batch, in one forward/backward pass and then one triple per
/// pass (gradients accumulated): both must match PyTorch's single pass.
fn check_selm(name: &str) {
    let triples = fixture_triples(name);
    assert!(
        triples.len() > 1,
        "{name}: the fixture batch must have several triples"
    );
    check_selm_with(name, None, [false; 3]);
    check_selm_with(name, Some(1), [false; 3]);
    check_selm_with(name, None, [true; 3]);
    // As in the paper's recipe: dataset chosen / rejected, a generated y_ref.
    check_selm_with(name, None, [false, false, true]);
}

/// `carried[k]`: the triples bring pi_ref's per-token log-probs of response k (chosen,
/// rejected, y_ref) as generation records them, here from a separate forward pass, and the
/// update uses them instead of its own pass.
fn check_selm_with(name: &str, micro_batch: Option<usize>, carried: [bool; 3]) {
    let exp = expected(name);
    let selm = &exp["selm"];
    let (alpha, beta) = (f(&selm["alpha"]), f(&selm["beta"]));
    let mut triples = fixture_triples(name);
    let mut trainer = trainer(name, selm, micro_batch);
    for t in &mut triples {
        let rows = t.responses().map(|r| (t.prompt.as_slice(), r));
        let logps = response_token_logps(trainer.reference(), &rows);
        for (k, logps) in logps.into_iter().enumerate() {
            t.reference_logps[k] = carried[k].then_some(logps);
        }
    }
    let report = trainer.step(&triples, alpha, beta).expect("step");
    let h = &report.triples;
    let lists = [
        ("policy_chosen_logps", &h.policy_chosen),
        ("policy_rejected_logps", &h.policy_rejected),
        ("policy_response_logps", &h.policy_response),
        ("reference_chosen_logps", &h.reference_chosen),
        ("reference_rejected_logps", &h.reference_rejected),
        ("reference_response_logps", &h.reference_response),
        ("losses", &h.losses),
        ("dpo_losses", &h.dpo_losses),
        ("optimism_terms", &h.optimism_terms),
    ];
    for (key, got) in lists {
        let want = floats(&selm[key]);
        assert_eq!(
            want.len(),
            triples.len(),
            "{name}: {key} has one value per triple"
        );
        assert_eq!(got.len(), triples.len(), "{name}: {key}");
        for (i, want) in want.into_iter().enumerate() {
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
    let want_norms = selm["grad_norms"].as_object().unwrap();
    assert!(
        !want_norms.is_empty(),
        "{name}: no per-parameter gradient norms"
    );
    for (key, want) in want_norms {
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

/// The update takes carried reference log-probs as given: shifting each carried chosen token
/// by +0.5 moves the reported reference chosen log-prob by 0.5 per token.
#[test]
fn carried_reference_logps_are_what_the_update_uses() {
    let name = "tiny-llama";
    let exp = expected(name);
    let selm = &exp["selm"];
    let (alpha, beta) = (f(&selm["alpha"]), f(&selm["beta"]));
    let mut trainer = trainer(name, selm, None);
    let mut triples = fixture_triples(name);
    for t in &mut triples {
        let rows = t.responses().map(|r| (t.prompt.as_slice(), r));
        let mut logps = response_token_logps(trainer.reference(), &rows);
        logps[0].iter_mut().for_each(|x| *x += 0.5);
        t.reference_logps = logps
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
    }
    let report = trainer.step(&triples, alpha, beta).expect("step");
    let want = floats(&selm["reference_chosen_logps"]);
    for (i, t) in triples.iter().enumerate() {
        let shifted = want[i] + 0.5 * t.chosen.len() as f64;
        assert_close(
            &format!("shifted reference_chosen_logps[{i}]"),
            report.triples.reference_chosen[i] as f64,
            shifted,
            1e-4,
            1e-4,
        );
    }
}
