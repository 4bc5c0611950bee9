//! LoRA parity with peft on the `tiny-llama-lora` fixture (flex backend): a frozen base with
//! pi_theta's and pi_ref's PEFT adapters read from their files; per-token log-probs, the SELM
//! losses and metrics, every adapter tensor's gradient, and one AdamW step on the adapters
//! only. Then the PEFT files written back, a merged model, and bad adapters refused with the
//! tensor named. Shapes, names and settings come from the fixture.

mod common;

use burn::module::Param;
use burn::tensor::Tensor;
use common::*;
use selm_tui::model::CausalLm;
use selm_tui::model::llama::Linear;
use selm_tui::model::load::{host, load_hf_dir, to_hf_tensors};
use selm_tui::model::lora;
use selm_tui::selm::logprobs::response_token_logps;
use selm_tui::selm::{TripleLogps, preference_loss};
use selm_tui::train::{CosineWithWarmup, OptimConfig, SelmTrainer};
use serde_json::Value;
use std::path::Path;

type B = selm_tui::backend::FlexAutodiff;
type I = burn::backend::Flex;

const NAME: &str = "tiny-llama-lora";

/// The base with the adapter in `dir/<adapter>`.
fn adapted<BB: burn::tensor::backend::Backend>(adapter: &str) -> CausalLm<BB> {
    let dir = fixture(NAME);
    let base = load_hf_dir::<BB>(&dir, &Default::default()).expect("base loads");
    let (model, shape) = lora::attach_from(base, &dir.join(adapter)).expect("adapter loads");
    let exp = &expected(NAME)["lora"];
    assert_eq!(shape.rank as u64, exp["r"].as_u64().unwrap());
    assert_close("scale", shape.scale(), f(&exp["scale"]), 1e-12, 0.0);
    model
}

/// Each adapted projection of `model` by its PEFT tensor prefix
/// (`base_model.model.model.layers.0.self_attn.q_proj`).
fn adapters<BB: burn::tensor::backend::Backend>(
    model: &CausalLm<BB>,
) -> Vec<(String, &Linear<BB>)> {
    lora::projections_of(model)
        .into_iter()
        .filter(|(_, p)| p.lora.is_some())
        .map(|(name, p)| (format!("base_model.model.{name}"), p))
        .collect()
}

fn trainer() -> SelmTrainer<B> {
    let adamw = &expected(NAME)["selm"]["adamw"];
    let betas = floats(&adamw["betas"]);
    let optim = OptimConfig {
        betas: (betas[0], betas[1]),
        eps: f(&adamw["eps"]),
        weight_decay: f(&adamw["weight_decay"]),
        max_grad_norm: None,
        micro_batch: None,
    };
    SelmTrainer::new(
        adapted::<B>("policy"),
        adapted::<I>("ref"),
        optim,
        CosineWithWarmup::constant(f(&adamw["lr"])),
    )
}

fn close_lists(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(&format!("{what}[{i}]"), *g as f64, *w, 1e-4, 1e-4);
    }
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        v => vec![f(v)],
    }
}

#[test]
fn per_token_logps_equal_peft() {
    let exp = expected(NAME);
    let policy = adapted::<I>("policy");
    let triples = fixture_triples(NAME);
    let want = exp["token_logps"]["policy_chosen"].as_array().unwrap();
    assert_eq!(want.len(), triples.len());
    for (i, (t, w)) in triples.iter().zip(want).enumerate() {
        let got = &response_token_logps(&policy, &[(&t.prompt, &t.chosen)])[0];
        close_lists(&format!("token log-probs of chosen {i}"), got, &floats(w));
    }
}

#[test]
fn selm_loss_metrics_adapter_gradients_and_one_adamw_step_equal_peft() {
    let exp = expected(NAME);
    let selm = &exp["selm"];
    let (alpha, beta) = (f(&selm["alpha"]), f(&selm["beta"]));
    let triples = fixture_triples(NAME);
    let mut trainer = trainer();

    // The adapters' gradients, tensor by tensor, under PEFT's names and layouts.
    let logps: TripleLogps<B> = trainer.logps(&triples);
    let grads = preference_loss(&logps, trainer.objective, alpha, beta)
        .loss
        .backward();
    let want = selm["grads"].as_object().unwrap();
    let mut seen = 0;
    for (prefix, linear) in adapters(trainer.policy()) {
        let l = linear.lora.as_ref().unwrap();
        for (which, p) in [("A", &l.a), ("B", &l.b)] {
            let key = format!("{prefix}.lora_{which}.weight");
            let w = flat(
                want.get(&key)
                    .unwrap_or_else(|| panic!("no gradient {key} in the fixture")),
            );
            let g = grad(p, &grads);
            close_lists(&format!("gradient of {key}"), &g, &w);
            seen += 1;
        }
        // The base weight is frozen: no gradient.
        assert!(
            linear.weight.grad(&grads).is_none(),
            "{prefix}: base weight has a gradient"
        );
    }
    assert_eq!(
        seen,
        want.len(),
        "every adapter tensor of the fixture compared"
    );

    // The step: losses, metrics, the global norm over the adapters, the loss after AdamW.
    let report = trainer.step(&triples, alpha, beta).expect("step");
    let h = &report.triples;
    for (key, got) in [
        ("policy_chosen_logps", &h.policy_chosen),
        ("policy_rejected_logps", &h.policy_rejected),
        ("policy_response_logps", &h.policy_response),
        ("reference_chosen_logps", &h.reference_chosen),
        ("reference_rejected_logps", &h.reference_rejected),
        ("reference_response_logps", &h.reference_response),
        ("losses", &h.losses),
    ] {
        close_lists(key, got, &floats(&selm[key]));
    }
    assert_close("loss", report.metrics.loss, f(&selm["loss"]), 1e-4, 1e-4);
    let metrics = serde_json::to_value(&report.metrics).unwrap();
    for (key, want) in selm["metrics"].as_object().unwrap() {
        assert_close(key, f(&metrics[key]), f(want), 1e-4, 1e-4);
    }
    assert_close(
        "grad norm",
        report.grad_norm,
        f(&selm["grad_norm_total"]),
        1e-3,
        0.0,
    );
    let after = trainer
        .evaluate(&triples, alpha, beta)
        .metrics(alpha, beta)
        .loss;
    let adamw = &selm["adamw"];
    assert_close(
        "loss after one AdamW step",
        after,
        f(&adamw["loss_after_one_step"]),
        1e-4,
        1e-4,
    );
    for (prefix, linear) in adapters(trainer.policy()) {
        let l = linear.lora.as_ref().unwrap();
        for (which, p) in [("A", &l.a), ("B", &l.b)] {
            let key = format!("{prefix}.lora_{which}.weight");
            let norm = p.val().inner().square().sum().sqrt().into_scalar() as f64;
            assert_close(
                &format!("{key} after the step"),
                norm,
                f(&adamw["norms_after"][&key]),
                1e-4,
                1e-5,
            );
        }
    }
}

fn grad(
    p: &Param<Tensor<B, 2>>,
    grads: &<B as burn::tensor::backend::AutodiffBackend>::Gradients,
) -> Vec<f32> {
    // PEFT stores A as [r, in] and B as [out, r]: ours transposed.
    let g = p.grad(grads).unwrap_or_else(|| panic!("no gradient"));
    host(g.transpose()).data
}

#[test]
fn adapters_round_trip_through_peft_files_and_merge_into_the_base() {
    let dir = fixture(NAME);
    let policy = adapted::<I>("policy");
    let tmp = tempfile::tempdir().unwrap();
    let shape = lora::read_shape(&dir.join("policy")).unwrap();
    assert_eq!(lora::shape_of(&policy), Some(shape));
    lora::save_adapter(&policy, "base", tmp.path()).unwrap();
    let again = lora::attach_from(
        load_hf_dir::<I>(&dir, &Default::default()).unwrap(),
        tmp.path(),
    )
    .unwrap()
    .0;
    let ours = lora::to_peft_tensors(&again);
    let theirs = read_tensors(&dir.join("policy").join(lora::WEIGHTS_FILE));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (k, t) in &ours {
        assert_eq!(t.shape, theirs[k].shape, "{k}");
        assert_eq!(t.data, theirs[k].data, "{k}: bit for bit");
    }
    // Merged: the base weights plus scale * A B, with the adapted model's logits.
    let rows = vec![vec![3u32, 9, 17, 4, 22], vec![5, 6, 7]];
    let merged = lora::merged(policy.clone());
    assert!(!lora::has_adapters(&merged));
    let (a, b) = (logits_of(&policy, &rows), logits_of(&merged, &rows));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_close(
            &format!("merged logit {i}"),
            *y as f64,
            *x as f64,
            1e-4,
            1e-4,
        );
    }
    // An adapted model saves as its merged weights, never its adapter tensors.
    let saved = to_hf_tensors(&policy);
    assert!(
        saved.keys().all(|k| !k.contains("lora")),
        "{:?}",
        saved.keys().collect::<Vec<_>>()
    );
}

fn read_tensors(
    path: &Path,
) -> std::collections::BTreeMap<String, selm_tui::io::weights::HostTensor> {
    let mut map = selm_tui::io::weights::WeightMap::default();
    selm_tui::io::safetensors::read_file_into(path, &mut map).unwrap();
    map.into_map()
}

#[test]
fn bad_adapters_are_refused_with_the_reason() {
    let dir = fixture(NAME);
    let base = || load_hf_dir::<I>(&dir, &Default::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let copy = |name: &str, edit: &dyn Fn(&mut Value)| -> std::path::PathBuf {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(
            dir.join("policy").join(lora::WEIGHTS_FILE),
            d.join(lora::WEIGHTS_FILE),
        )
        .unwrap();
        let mut c: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("policy").join(lora::CONFIG_FILE)).unwrap(),
        )
        .unwrap();
        edit(&mut c);
        std::fs::write(d.join(lora::CONFIG_FILE), c.to_string()).unwrap();
        d
    };
    let err = |d: &Path| match lora::attach_from(base(), d) {
        Ok(_) => panic!("{} was accepted", d.display()),
        Err(e) => format!("{e:#}"),
    };
    // A rank that does not match the tensors: the tensor and both shapes named.
    let e = err(&copy("rank", &|c| c["r"] = 8.into()));
    assert!(e.contains("lora_A.weight") && e.contains("expected"), "{e}");
    // Fewer targets than the file has: the leftover tensors named.
    let e = err(&copy("targets", &|c| {
        c["target_modules"] = serde_json::json!(["q_proj"])
    }));
    assert!(
        e.contains("target_modules") && e.contains("down_proj.lora_A.weight"),
        "{e}"
    );
    // An unknown projection name.
    let e = err(&copy("unknown", &|c| {
        c["target_modules"] = serde_json::json!(["qkv"])
    }));
    assert!(e.contains("unknown LoRA target module `qkv`"), "{e}");
    // Not LoRA, or LoRA with arithmetic of its own.
    let e = err(&copy("ia3", &|c| c["peft_type"] = "IA3".into()));
    assert!(e.contains("peft_type"), "{e}");
    for (key, value) in [
        ("alpha_pattern", serde_json::json!({"q_proj": 32})),
        ("rank_pattern", serde_json::json!({"v_proj": 2})),
        ("layers_to_transform", serde_json::json!([0])),
        ("use_dora", serde_json::json!(true)),
        ("bias", serde_json::json!("all")),
    ] {
        let e = err(&copy(key, &|c| c[key] = value.clone()));
        assert!(
            e.contains(&format!("`{key}`")) && e.contains("plain LoRA"),
            "{e}"
        );
    }
}

/// A headless LoRA run of the built-in model, two iterations: each checkpoint is the merged
/// model with its adapter beside it in PEFT's format; the base stayed frozen (every tensor an
/// adapter does not touch is the start model's, bit for bit, and each adapted weight is the
/// start's plus scale A B); the adapter, read back onto the start model, is the checkpoint.
#[test]
fn a_lora_run_trains_adapters_on_a_frozen_base() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = tmp.path().join("runs");
    c.run.iterations = 2;
    c.prompts.per_iteration = 32;
    c.prompts.eval = 8;
    c.train.batch_size = 16;
    c.train.lr = 1e-3;
    c.train.lora = Some(
        toml::from_str(
            "rank = 4\nalpha = 8.0\ntarget_modules = [\"q_proj\", \"v_proj\", \"down_proj\"]",
        )
        .unwrap(),
    );
    let config = tmp.path().join("lora.toml");
    std::fs::write(&config, c.to_toml()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap();
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
    let start_dir = c.model_dir().unwrap();
    let start = read_tensors(&start_dir.join("model.safetensors"));
    for it in [1, 2] {
        let ckpt = run.join(format!("checkpoints/iter-{it:03}"));
        // The adapter in a folder of its own: loaders read the top level as the model.
        let top: Vec<String> = std::fs::read_dir(&ckpt)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!top.iter().any(|f| f.starts_with("adapter_")), "{top:?}");
        let adapter_dir = ckpt.join(selm_tui::run::ADAPTER_DIR);
        let shape = lora::read_shape(&adapter_dir).unwrap();
        assert_eq!((shape.rank, shape.targets.len()), (4, 3));
        let merged = read_tensors(&ckpt.join("model.safetensors"));
        let adapter = read_tensors(&adapter_dir.join(lora::WEIGHTS_FILE));
        assert_eq!(
            merged.keys().collect::<Vec<_>>(),
            start.keys().collect::<Vec<_>>()
        );
        let mut adapted = 0;
        for (name, t) in &merged {
            let prefix = format!("base_model.model.{}", name.trim_end_matches(".weight"));
            match (
                adapter.get(&format!("{prefix}.lora_A.weight")),
                adapter.get(&format!("{prefix}.lora_B.weight")),
            ) {
                (Some(a), Some(b)) => {
                    // W' = W + scale B A in HF's [out, in] layout.
                    let (r, inp, out) = (a.shape[0], a.shape[1], b.shape[0]);
                    let mut moved = 0f32;
                    for o in 0..out {
                        for i in 0..inp {
                            let ba: f32 = (0..r)
                                .map(|k| b.data[o * r + k] * a.data[k * inp + i])
                                .sum();
                            let want = start[name].data[o * inp + i] + shape.scale() as f32 * ba;
                            assert_close(name, t.data[o * inp + i] as f64, want as f64, 1e-5, 1e-6);
                            moved = moved
                                .max((t.data[o * inp + i] - start[name].data[o * inp + i]).abs());
                        }
                    }
                    assert!(
                        moved > 0.0,
                        "{name}: the adapter of iteration {it} is still a no-op"
                    );
                    adapted += 1;
                }
                _ => assert_eq!(
                    t.data, start[name].data,
                    "{name} moved: the base is not frozen"
                ),
            }
        }
        let layers = selm_tui::model::ModelConfig::from_file(&start_dir.join("config.json"))
            .unwrap()
            .num_layers;
        assert_eq!(adapted, 3 * layers);
    }
}

/// The first adapter an external trainer gets is drawn from the model's config alone, and
/// is the one the in-process update attaches, bit for bit.
#[test]
fn a_fresh_adapter_drawn_without_weights_is_the_in_process_one() {
    let config = fixture_config(NAME);
    for targets in ["", "target_modules = [\"k_proj\", \"up_proj\"]"] {
        let section: selm_tui::config::LoraSection =
            toml::from_str(&format!("rank = 3\nalpha = 5.0\n{targets}")).unwrap();
        let shape = section.shape();
        let tmp = tempfile::tempdir().unwrap();
        lora::save_fresh_adapter(&config, &shape, 7, "base", tmp.path()).unwrap();
        let base = load_hf_dir::<I>(&fixture(NAME), &Default::default()).unwrap();
        let attached = lora::attach_new(base, &shape, 7).unwrap();
        let ours = lora::to_peft_tensors(&attached);
        let drawn = read_tensors(&tmp.path().join(lora::WEIGHTS_FILE));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            drawn.keys().collect::<Vec<_>>()
        );
        for (name, t) in &ours {
            assert_eq!(
                (&t.shape, &t.data),
                (&drawn[name].shape, &drawn[name].data),
                "{name}"
            );
        }
        assert_eq!(lora::read_shape(tmp.path()).unwrap(), shape);
    }
}

/// `checkpoint = "adapter"`: checkpoints hold the adapter only (no model weights), and
/// `export` writes the start model merged with the adapter.
#[test]
fn adapter_only_checkpoints_export_as_the_merged_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, run) = small_lora_run(tmp.path(), "runs", 2, "rank = 4\ncheckpoint = \"adapter\"");
    for it in [1, 2] {
        let ckpt = run.join(format!("checkpoints/iter-{it:03}"));
        assert!(!ckpt.join("model.safetensors").exists(), "iteration {it}");
        assert!(ckpt.join("adapter").join(lora::CONFIG_FILE).is_file());
    }
    let exported = tmp.path().join("export");
    selm_tui::export::export(&run, 2, &exported).unwrap();
    type F = burn::backend::Flex;
    let (start, _) =
        selm_tui::model::load::load_pretrained::<F>(&c.model_dir().unwrap(), &Default::default())
            .unwrap();
    let (adapted, _) = lora::attach_from(start, &run.join("checkpoints/iter-002/adapter")).unwrap();
    let want = selm_tui::model::load::to_hf_tensors(&lora::merged(adapted));
    let got = read_tensors(&exported.join("model.safetensors"));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (name, t) in &want {
        assert_eq!(t.data, got[name].data, "{name}");
    }
    assert!(exported.join("tokenizer.json").is_file());
}

/// `dropout`: the update's adapters see dropped inputs (step 1's gradient, through A's
/// image of the input, changes), from masks seeded per step: the same run twice takes the
/// same steps.
#[test]
fn adapter_dropout_changes_the_steps_and_repeats_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = |name: &str, dropout: f64| -> Vec<(f64, f64)> {
        let lora = format!("rank = 4\ndropout = {dropout}");
        let (_, run) = small_lora_run(tmp.path(), name, 1, &lora);
        read_jsonl(&run.join("metrics.jsonl"))
            .iter()
            .filter(|m| m["kind"] == "train")
            .map(|m| (f(&m["loss"]), f(&m["grad_norm"])))
            .collect()
    };
    let plain = steps("plain", 0.0);
    let dropped = steps("dropped", 0.3);
    assert!(plain.len() >= 2, "{plain:?}");
    // Step 1: B is zero, so the loss is the base's either way; the gradient is not.
    assert_eq!(plain[0].0, dropped[0].0);
    assert!(
        (plain[0].1 - dropped[0].1).abs() > 1e-6 * plain[0].1,
        "{plain:?} {dropped:?}"
    );
    assert_eq!(dropped, steps("again", 0.3));
}

/// A headless LoRA run of the built-in model (16 prompts an iteration, updates of 8 pairs)
/// in `root/name` with `[train.lora]` `lora`: its config and run directory.
fn small_lora_run(
    root: &Path,
    name: &str,
    iterations: usize,
    lora: &str,
) -> (selm_tui::config::Config, std::path::PathBuf) {
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = root.join(name);
    c.run.iterations = iterations;
    c.prompts.per_iteration = 16;
    c.prompts.eval = 4;
    c.train.batch_size = 8;
    c.train.lr = 1e-3;
    c.train.lora = Some(toml::from_str(lora).unwrap());
    let config = root.join(format!("{name}.toml"));
    std::fs::write(&config, c.to_toml()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run = std::fs::read_dir(&c.run.out_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    (c, run)
}
