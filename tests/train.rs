//! The update step's safety and clipping, on the tiny Llama fixture.

mod common;

use burn::backend::Flex;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use common::*;
use selm_tui::model::CausalLm;
use selm_tui::model::load::load_hf_dir;
use selm_tui::selm::{Triple, selm_loss};
use selm_tui::train::grads::{clip_global_norm, grad_norms, total_norm};
use selm_tui::train::{CosineWithWarmup, OptimConfig, SelmTrainer};

type B = selm_tui::backend::FlexAutodiff;

fn setup(max_grad_norm: Option<f64>) -> (SelmTrainer<B>, Vec<Triple>) {
    let dir = fixture("tiny-llama");
    let policy = load_hf_dir::<B>(&dir, &Default::default()).unwrap();
    let reference = load_hf_dir::<Flex>(&dir.join("ref"), &Default::default()).unwrap();
    let optim = OptimConfig {
        max_grad_norm,
        ..OptimConfig::default()
    };
    let trainer = SelmTrainer::new(
        policy,
        reference,
        optim,
        CosineWithWarmup::new(1e-3, 0.1, 10),
    );
    let triples = fixture_triples("tiny-llama");
    (trainer, triples)
}

fn logits(model: &CausalLm<B>) -> Vec<f32> {
    let rows = token_rows(model.config.vocab_size, &[4], 0);
    logits_of(&model.valid(), &rows)
}

#[test]
fn clipping_scales_to_the_global_norm() {
    let (trainer, triples) = setup(None);
    let selm = &expected("tiny-llama")["selm"];
    let policy = trainer.policy().clone();
    let loss = selm_loss(
        &trainer.logps(&triples),
        f(&selm["alpha"]),
        f(&selm["beta"]),
    );
    let mut grads = GradientsParams::from_grads(loss.loss.backward(), &policy);
    let before = total_norm(&grad_norms(&policy, &grads));
    // The unclipped norm is PyTorch's, as the fixture has it.
    let want = f(&selm["grad_norm_total"]);
    assert_close("fixture grad norm", before, want, 1e-3, 0.0);
    assert!(before > 0.0, "the fixture loss has a gradient");
    let max_norm = before / 4.0;
    let factor = clip_global_norm(&policy, &mut grads, before, max_norm);
    assert_close("clip factor", factor, max_norm / (before + 1e-6), 1e-9, 0.0);
    let after = total_norm(&grad_norms(&policy, &grads));
    // torch's rule: scaled by max_norm / (total + 1e-6), so just under max_norm.
    assert_close(
        "clipped norm",
        after,
        max_norm * before / (before + 1e-6),
        1e-5,
        0.0,
    );
    // Below the threshold nothing changes.
    assert_eq!(
        clip_global_norm(&policy, &mut grads, after, 4.0 * after),
        1.0
    );
}

#[test]
fn a_nan_loss_leaves_the_policy_untouched() {
    let (mut trainer, triples) = setup(Some(1.0));
    let before = logits(trainer.policy());
    let err = trainer
        .step(&triples, 0.01, f64::NAN)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("loss is NaN") && err.contains("policy unchanged"),
        "{err}"
    );
    assert_eq!(trainer.step, 0);
    assert_eq!(logits(trainer.policy()), before);
    // A good step still works afterwards and does change the policy.
    let report = trainer.step(&triples, 0.01, 0.1).unwrap();
    assert_eq!(report.lr, 0.0, "first warmup step has lr 0, as in HF");
    let report = trainer.step(&triples, 0.01, 0.1).unwrap();
    assert_close("lr after warmup", report.lr, 1e-3, 1e-12, 0.0);
    assert_ne!(logits(trainer.policy()), before);
    assert_eq!(trainer.step, 2);
}

#[test]
fn reference_sync_copies_the_policy() {
    let (mut trainer, triples) = setup(Some(1.0));
    trainer.step(&triples, 0.01, 0.1).unwrap();
    trainer.step(&triples, 0.01, 0.1).unwrap();
    let h = trainer.evaluate(&triples, 0.01, 0.1);
    assert_ne!(h.policy_chosen, h.reference_chosen);
    trainer.sync_reference();
    let h = trainer.evaluate(&triples, 0.01, 0.1);
    assert_eq!(h.policy_chosen, h.reference_chosen);
    assert_eq!(h.policy_response, h.reference_response);
    // With pi_theta = pi_ref the DPO loss is log 2 and the optimism term 0.
    for l in &h.losses {
        assert_close(
            "loss at sync",
            *l as f64,
            std::f64::consts::LN_2,
            1e-6,
            1e-6,
        );
    }
}

/// The automatic micro-batch sizes a pass for the batch as it is padded: every prompt to the
/// longest prompt, every response to the longest response. A long prompt runs once per
/// triple, a long response three times; a batch mixing both pays for both.
#[test]
fn micro_batches_are_sized_for_the_padded_batch() {
    use selm_tui::train::{ACTIVATION_BUDGET, activation_bytes_per_token};
    let (trainer, _) = setup(None);
    let config = trainer.policy().config().clone();
    let triple = |prompt: usize, response: usize| Triple {
        prompt: vec![5; prompt],
        chosen: vec![6; response],
        rejected: vec![7; response],
        reference_response: vec![8; response],
        reference_logps: Default::default(),
    };
    // The estimate for a triple padded to `prompt` and `response`, and how many fit a pass.
    let per = |prompt: usize, response: usize| {
        (prompt + 3 * response) * activation_bytes_per_token(&config, prompt + response)
    };
    let fits = |bytes: usize| (ACTIVATION_BUDGET / bytes).clamp(1, 16);
    // A length (in steps of 16) at which two long-response triples fit a pass but a triple
    // padded to a long prompt and long responses does not fit twice, whatever the fixture's
    // shape (the head's vocabulary can dominate the estimate).
    let short = 10;
    let long = (1..100_000)
        .map(|k| 16 * k)
        .find(|&l| fits(per(short, l)) == 2 && fits(per(l, l)) == 1)
        .expect("a length that separates the cases");
    let long_prompts = vec![triple(long, short); 16];
    let long_responses = vec![triple(short, long); 16];
    let mixed = [&long_prompts[..8], &long_responses[..8]].concat();
    let (p, r, m) = (
        trainer.micro_batch(&long_prompts),
        trainer.micro_batch(&long_responses),
        trainer.micro_batch(&mixed),
    );
    assert_eq!(p, fits(per(long, short)));
    assert!(p > r, "a long prompt runs once: {p} vs {r}");
    assert_eq!(r, 2);
    assert_eq!(m, 1, "the mixed batch pads both");
    assert_eq!(trainer.micro_batch(&[]), 1);
}
