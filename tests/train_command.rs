//! `train.engine = "command"` against real software on this CPU: `scripts/selm_trl.py` (TRL
//! 1.16 on torch's CPU path) as the trainer, `transformers serve` as the generation server.
//! The same pairs through the in-process update and through TRL (first step within 1e-4),
//! alone and under `accelerate launch` with two processes; two iterations on both external
//! engines; trainers that fail, print garbage, report a NaN loss or leave no model (a clear
//! error, nothing lost, and a resume that reruns the update); selm-tui killed with SIGKILL
//! while its trainer runs.

use selm_tui::config::{Config, GenerateEngine, ServerSection, TrainEngine};
use selm_tui::engine::Stage;
use selm_tui::engine::pipeline::Pipeline;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;
#[path = "common/external.rs"]
mod external;
use common::read_jsonl;
use external::*;

type B = selm_tui::backend::FlexAutodiff;

/// `scripts/selm_trl.py` in the cache's torch environment, as a `train.command`.
fn trainer() -> String {
    format!(
        "{} {}/scripts/selm_trl.py --params {{params}}",
        python().display(),
        env!("CARGO_MANIFEST_DIR")
    )
}

fn python() -> PathBuf {
    selm_tui::testing::venv_bin("torch", "python")
}

/// The embedded default, small: one iteration of 24 prompts, 3 samples each plus y_ref,
/// updates of 4 pairs.
fn config(dir: &Path, iterations: usize) -> Config {
    let mut c = Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = iterations;
    c.prompts.per_iteration = 24;
    c.prompts.eval = 4;
    c.generate.samples = 3;
    c.generate.batch_size = 32;
    c.train.batch_size = 4;
    c.eval.samples = 2;
    c.validate().unwrap();
    c
}

/// `c` generating on `server` and training with `command`.
fn external(mut c: Config, server: ServerSection, command: &str) -> Config {
    c.generate.engine = GenerateEngine::Server;
    c.generate.server = Some(server);
    c.train.engine = TrainEngine::Command;
    c.train.command = Some(command.into());
    c.validate().unwrap();
    c
}

fn server_section(extra: &str) -> ServerSection {
    toml::from_str(&format!(
        "api = \"transformers\"\nconcurrency = 4\nready_timeout_s = 180\n{extra}"
    ))
    .unwrap()
}

fn write(config: &Config, path: &Path) -> PathBuf {
    std::fs::write(path, config.to_toml()).unwrap();
    path.to_path_buf()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn train_rows(run: &Path) -> Vec<Value> {
    read_jsonl(&run.join("metrics.jsonl"))
        .into_iter()
        .filter(|m| m["kind"] == "train")
        .collect()
}

/// (chosen, rejected, y_ref) ids -> (policy, reference) log-prob sums of the three.
type Measured = HashMap<[Vec<u64>; 3], [[f64; 2]; 3]>;

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn sums(v: &Value) -> [f64; 2] {
    ["policy", "reference"].map(|k| v[k].as_array().unwrap().iter().map(f).sum())
}

/// A run's `pair_logps.jsonl`, keyed by the responses' ids.
fn run_pair_logps(run: &Path) -> Measured {
    read_jsonl(&run.join("iter-001/pair_logps.jsonl"))
        .iter()
        .map(|p| {
            let key = ["chosen", "rejected", "y_ref"].map(|r| ids(&p[r]["ids"]));
            (key, ["chosen", "rejected", "y_ref"].map(|r| sums(&p[r])))
        })
        .collect()
}

/// The trainer's `pair_logps.jsonl`, keyed by its input's ids.
fn trainer_pair_logps(train: &Path) -> Measured {
    let inputs = read_jsonl(&train.join("pairs.jsonl"));
    let measured = read_jsonl(&train.join("pair_logps.jsonl"));
    assert_eq!(inputs.len(), measured.len());
    inputs
        .iter()
        .zip(&measured)
        .map(|(i, m)| {
            let key = ["chosen_ids", "rejected_ids", "reference_ids"].map(|k| ids(&i[k]));
            (key, ["chosen", "rejected", "y_ref"].map(|r| sums(&m[r])))
        })
        .collect()
}

/// The largest differences between the run's pair log-probs (summed per response) and those
/// the trainer of `params` measured: pi_theta's, then pi_ref's.
fn pair_logps_difference(run: &Path, params: &Path) -> (f64, f64) {
    let ours = run_pair_logps(run);
    let theirs = trainer_pair_logps(params.parent().unwrap());
    assert_eq!(ours.len(), theirs.len());
    let (mut worst_policy, mut worst_reference) = (0f64, 0f64);
    for (key, want) in &ours {
        let got = theirs.get(key).expect("the same pairs");
        for (g, w) in got.iter().zip(want) {
            worst_policy = worst_policy.max((g[0] - w[0]).abs());
            worst_reference = worst_reference.max((g[1] - w[1]).abs());
        }
    }
    (worst_policy, worst_reference)
}

/// A one-iteration in-process run of `c`, which also writes the inputs the command engine
/// would hand its trainer at the update of this very iteration: their params.json and the
/// run directory.
fn in_process_run(c: Config) -> (PathBuf, PathBuf) {
    let mut p = Pipeline::<B>::new(c, &Default::default()).unwrap();
    p.evaluate_start(&mut |_| {}).unwrap();
    while p.position() != (1, Stage::Update) {
        p.advance(&mut |_| {}).unwrap();
    }
    let params = p.write_trainer_inputs().unwrap();
    while !p.is_finished() {
        p.advance(&mut |_| {}).unwrap();
    }
    (params, p.run().path.clone())
}

#[test]
fn the_trl_update_takes_the_in_process_update_s_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let (params, run) = in_process_run(config(tmp.path(), 1));
    let trl = run_trainer(Command::new(python()), &params);
    let ours = train_rows(&run);
    assert!(ours.len() >= 2, "{} steps", ours.len());
    assert_eq!(trl.len(), ours.len());
    // Step 1, before any weight moved: the same pairs, log-probs and loss, to 1e-4 (f32
    // sums over a few dozen tokens in two implementations differ by about 1e-6). Except
    // rewards/accuracies: with pi_theta = pi_ref every implicit reward is 0 up to that
    // rounding, and the fraction with chosen > rejected counts the signs of rounding errors
    // (in-process, pi_ref's log-probs come from the decode that sampled the response).
    let mut worst_step1 = 0f64;
    for (key, want) in ours[0].as_object().unwrap() {
        let Some(got) = trl[0].get(key) else { continue };
        if key == "rewards/accuracies" {
            continue;
        }
        let (got, want) = (f(got), f(want));
        worst_step1 = worst_step1.max((got - want).abs() / want.abs().max(1.0));
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "step 1 {key}: TRL {got}, in-process {want}"
        );
    }
    // Every step: the same learning rate; the same loss to 1e-4 (the policies drift apart by
    // the float rounding of a few AdamW steps, see below).
    let mut worst_loss = 0f64;
    for (step, (t, o)) in trl.iter().zip(&ours).enumerate() {
        assert!((f(&t["lr"]) - f(&o["lr"])).abs() <= 1e-12, "step {step}");
        worst_loss = worst_loss.max((f(&t["loss"]) - f(&o["loss"])).abs());
        assert!(worst_loss <= 1e-4, "step {step}: {t} vs {o}");
    }
    // The updated policies' log-probs of every pair: pi_ref's agree to float rounding (1e-4
    // on sums of f32 log-probs); pi_theta's to 2e-4 per sequence. Why wider: Adam's first
    // steps move each weight by about lr whatever its gradient's size, so where a gradient
    // is near zero its last bits decide how far the weight moves (up to lr = 1e-4 here);
    // a sequence log-prob sums many such moves. Measured here: about 1e-5.
    let (worst_policy, worst_reference) = pair_logps_difference(&run, &params);
    eprintln!(
        "{} steps; largest difference: step 1 metrics {worst_step1:.2e} (relative), loss \
         {worst_loss:.2e}, updated policy log-probs {worst_policy:.2e}, reference {worst_reference:.2e}",
        trl.len()
    );
    assert!(worst_reference <= 1e-4, "reference {worst_reference}");
    assert!(worst_policy <= 2e-4, "policy {worst_policy}");

    // The same update under `accelerate launch`, two processes (gloo on the CPU), each
    // taking half of every step's pairs: the same steps.
    let two = two_process_params(&params, "two");
    let mut launch = Command::new(selm_tui::testing::venv_bin("torch", "accelerate"));
    launch.args(["launch", "--config_file"]);
    launch.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/accelerate/cpu.yaml"
    ));
    launch.args(["--main_process_port", &free_port().to_string()]);
    let parallel = run_trainer(launch, &two);
    assert_eq!(parallel.len(), trl.len());
    for (step, (a, b)) in parallel.iter().zip(&trl).enumerate() {
        let d = (f(&a["loss"]) - f(&b["loss"])).abs();
        assert!(d <= 1e-5, "step {step}: two processes {a}, one {b}");
    }

    // The same update under DeepSpeed ZeRO-3 (parameters, gradients and moments sharded over
    // two CPU processes): the same steps, and the model it gathers and saves loads in Burn.
    let z3 = two_process_params(&params, "zero3");
    let accelerate = selm_tui::testing::venv_bin("torch", "accelerate");
    let mut launch = Command::new(&accelerate);
    // The environment's bin first on PATH, as an activated one has it: DeepSpeed builds its
    // CPU op with the `ninja` there.
    let path = std::env::var("PATH").unwrap_or_default();
    launch.env(
        "PATH",
        format!("{}:{path}", accelerate.parent().unwrap().display()),
    );
    launch.env("DS_ACCELERATOR", "cpu");
    launch.args(["launch", "--config_file"]);
    launch.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/accelerate/zero3-cpu.yaml"
    ));
    launch.args(["--main_process_port", &free_port().to_string()]);
    let sharded = run_trainer(launch, &z3);
    assert_eq!(sharded.len(), trl.len());
    let mut worst = 0f64;
    for (step, (a, b)) in sharded.iter().zip(&trl).enumerate() {
        for key in [
            "loss",
            "loss/dpo",
            "loss/optimism",
            "logps/chosen",
            "grad_norm",
        ] {
            let d = (f(&a[key]) - f(&b[key])).abs();
            worst = worst.max(d);
            assert!(d <= 1e-5, "step {step} {key}: ZeRO-3 {a}, one process {b}");
        }
    }
    eprintln!("ZeRO-3 on two processes: largest step difference {worst:.2e}");
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&z3).unwrap()).unwrap();
    let saved = Path::new(p["out"].as_str().unwrap());
    selm_tui::model::load::load_pretrained::<burn::backend::Flex>(saved, &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e:#}", saved.display()));
}

/// `[train.lora]` of rank 4 on every projection.
fn lora_section(extra: &str) -> selm_tui::config::LoraSection {
    toml::from_str(&format!("rank = 4\nalpha = 8.0\n{extra}")).unwrap()
}

#[test]
fn the_trl_lora_update_takes_the_in_process_lora_update_s_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), 1);
    c.train.lora = Some(lora_section(""));
    c.validate().unwrap();
    let (params, run) = in_process_run(c);
    let trl = run_trainer(Command::new(python()), &params);
    let ours = train_rows(&run);
    assert!(ours.len() >= 2, "{} steps", ours.len());
    assert_eq!(trl.len(), ours.len());
    // Step 1: the same loss, log-probs and gradient norm (which needs the same first
    // adapter: B is zero, so the gradient of B is A's image) to 1e-4; accuracies as above.
    for (key, want) in ours[0].as_object().unwrap() {
        let Some(got) = trl[0].get(key) else { continue };
        if key == "rewards/accuracies" {
            continue;
        }
        let (got, want) = (f(got), f(want));
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "step 1 {key}: TRL {got}, in-process {want}"
        );
    }
    let mut worst_loss = 0f64;
    for (step, (t, o)) in trl.iter().zip(&ours).enumerate() {
        worst_loss = worst_loss.max((f(&t["loss"]) - f(&o["loss"])).abs());
        assert!(worst_loss <= 1e-4, "step {step}: {t} vs {o}");
    }
    // The trained adapters: every tensor within Adam's step-rounding of the in-process
    // one (see above: a few steps of lr each), and the merged model TRL saved equals the
    // base plus its adapter.
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&params).unwrap()).unwrap();
    let out = PathBuf::from(p["out"].as_str().unwrap());
    let mine = run.join("checkpoints/iter-001/adapter");
    let worst_adapter = largest_difference(
        &adapter_tensors(&out.join("adapter")),
        &adapter_tensors(&mine),
    );
    let base = Path::new(p["model"].as_str().unwrap());
    let worst_merge = merged_difference(base, &out);
    // The updated policies' and pi_ref's log-probs of every pair, as above.
    let (worst_policy, worst_reference) = pair_logps_difference(&run, &params);
    eprintln!("policy {worst_policy:.2e}, reference {worst_reference:.2e}");
    eprintln!(
        "{} LoRA steps; largest difference: loss {worst_loss:.2e}, adapter tensors \
         {worst_adapter:.2e}, TRL's merged model vs base + its adapter {worst_merge:.2e}",
        trl.len()
    );
    assert!(worst_adapter <= 2e-4, "adapters {worst_adapter}");
    assert!(worst_merge <= 1e-5, "merged {worst_merge}");

    // With `dropout`, the adapter's inputs are dropped in training (TRL's own dropout switch
    // would zero it): step 1's loss is the base's either way (B = 0), its gradient is not.
    let dropped = two_process_params(&params, "dropout");
    let mut d: Value = serde_json::from_str(&std::fs::read_to_string(&dropped).unwrap()).unwrap();
    d["micro_batch_size"] = p["micro_batch_size"].clone();
    d["lora"]["dropout"] = 0.3.into();
    std::fs::write(&dropped, d.to_string()).unwrap();
    let with_dropout = run_trainer(Command::new(python()), &dropped);
    assert!((f(&with_dropout[0]["loss"]) - f(&trl[0]["loss"])).abs() <= 1e-6);
    let (g0, g1) = (f(&trl[0]["grad_norm"]), f(&with_dropout[0]["grad_norm"]));
    assert!(
        (g0 - g1).abs() > 1e-3 * g0,
        "grad norm {g0} with and without dropout"
    );
}

fn adapter_tensors(
    dir: &Path,
) -> std::collections::BTreeMap<String, selm_tui::io::weights::HostTensor> {
    let mut map = selm_tui::io::weights::WeightMap::default();
    selm_tui::io::safetensors::read_file_into(
        &dir.join(selm_tui::model::lora::WEIGHTS_FILE),
        &mut map,
    )
    .unwrap();
    map.into_map()
}

/// The largest difference between the model in `out` and `base` merged with `out/adapter`,
/// checked to be well below how far the adapter moved the base.
fn merged_difference(base: &Path, out: &Path) -> f32 {
    type F = burn::backend::Flex;
    let load = |d: &Path| selm_tui::model::load::load_hf_dir::<F>(d, &Default::default()).unwrap();
    let tensors = selm_tui::model::load::to_hf_tensors::<F>;
    let (adapted, _) =
        selm_tui::model::lora::attach_from(load(base), &out.join("adapter")).unwrap();
    let ours = tensors(&selm_tui::model::lora::merged(adapted));
    let theirs = tensors(&load(out));
    let moved = largest_difference(&tensors(&load(base)), &theirs);
    let worst = largest_difference(&ours, &theirs);
    assert!(
        moved > 100.0 * worst.max(1e-7),
        "merged moved {moved}, differs {worst}"
    );
    worst
}

fn largest_difference(
    a: &std::collections::BTreeMap<String, selm_tui::io::weights::HostTensor>,
    b: &std::collections::BTreeMap<String, selm_tui::io::weights::HostTensor>,
) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = 0f32;
    for (name, t) in a {
        assert_eq!(t.shape, b[name].shape, "{name}");
        for (u, v) in t.data.iter().zip(&b[name].data) {
            worst = worst.max((u - v).abs());
        }
    }
    worst
}

/// Runs `scripts/selm_trl.py --params params` under `launcher`; its metrics lines.
fn run_trainer(mut launcher: Command, params: &Path) -> Vec<Value> {
    let out = launcher
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/selm_trl.py"))
        .arg("--params")
        .arg(params)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A copy of `params` for two processes (half a step's pairs each), writing into `name`
/// beside it.
fn two_process_params(params: &Path, name: &str) -> PathBuf {
    let mut p: Value = serde_json::from_str(&std::fs::read_to_string(params).unwrap()).unwrap();
    let dir = params.parent().unwrap().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    p["micro_batch_size"] = (p["batch_size"].as_u64().unwrap() / 2).into();
    for key in ["out", "pair_logps_out", "eval_samples_out"] {
        let name = Path::new(p[key].as_str().unwrap()).file_name().unwrap();
        p[key] = dir.join(name).display().to_string().into();
    }
    let path = dir.join("params.json");
    std::fs::write(&path, p.to_string()).unwrap();
    path
}

#[test]
fn two_iterations_on_a_generation_server_and_trl() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_section(&format!("command = \"{}\"", serve_command()));
    let c = external(config(tmp.path(), 2), server, &trainer());
    let stdout = ok(&headless(&write(&c, &tmp.path().join("external.toml"))));
    assert!(stdout.contains("iter 2 sync + eval"), "{stdout}");
    let run = run_dir(tmp.path());
    let rows = train_rows(&run);
    for iteration in [1, 2] {
        let dir = run.join(format!("iter-{iteration:03}"));
        let pairs = read_jsonl(&dir.join("pairs.jsonl"));
        assert!(!pairs.is_empty());
        // One metrics row per step of the trainer, numbered on from the last iteration's.
        let steps = pairs.len().div_ceil(c.train.batch_size);
        let mine: Vec<&Value> = rows
            .iter()
            .filter(|r| r["iteration"] == iteration)
            .collect();
        assert_eq!(mine.len(), steps, "iteration {iteration}");
        assert!(mine.iter().all(|r| f(&r["loss"]).is_finite()));
        // The inspector's log-probs: one row per pair, one value per token.
        let logps = read_jsonl(&dir.join("pair_logps.jsonl"));
        assert_eq!(logps.len(), pairs.len());
        for p in &logps {
            for r in ["chosen", "rejected", "y_ref"] {
                let n = p[r]["ids"].as_array().unwrap().len();
                assert_eq!(p[r]["policy"].as_array().unwrap().len(), n);
                assert_eq!(p[r]["reference"].as_array().unwrap().len(), n);
            }
        }
        // The checkpoint loads, tokenizer and all.
        let (_, tok) = selm_tui::model::load::load_pretrained::<burn::backend::Flex>(
            &run.join(format!("checkpoints/iter-{iteration:03}")),
            &Default::default(),
        )
        .unwrap();
        assert!(tok.vocab_size() > 0);
    }
    let steps: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=rows.len() as u64).collect::<Vec<_>>());
    // Every evaluation measured: kl from the trainer's samples after each update.
    let summary: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary.len(), 3);
    assert_eq!(f(&summary[0]["kl"]), 0.0);
    assert!(summary[1..].iter().all(|s| f(&s["kl"]).is_finite()));
    assert!(summary.iter().all(|s| s["eval_samples"] == 8));
    // The trainer's output is kept; the server is gone.
    let log = std::fs::read_to_string(run.join("trainer.log")).unwrap();
    assert_eq!(log.matches("# selm-tui: starting").count(), 2, "{log}");
    assert_gone(&run.display().to_string(), Duration::from_secs(5));
}

/// A valid metrics line, for trainers that fail after one.
const LINE: &str = r#"{"loss": 0.69, "loss/dpo": 0.69, "loss/optimism": 0.0, "rewards/chosen": 0.0, "rewards/rejected": 0.0, "rewards/accuracies": 0.0, "rewards/margins": 0.0, "logps/chosen": -3.0, "logps/rejected": -4.0, "logps/pi_response": -2.0, "logps/ref_response": -2.0, "alpha": 0.001, "beta": 0.1, "grad_norm": 1.5, "lr": 1e-6}"#;

#[test]
fn failing_trainers_are_named_lose_nothing_and_resume_reruns_the_update() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let serving = start_server(port, &tmp.path().join("serve.log"));
    let cases = [
        (
            "exit",
            format!("echo '{LINE}'; echo 'CUDA out of memory' >&2; exit 1"),
            "exited with exit status: 1",
        ),
        (
            "garbage",
            "echo 'Step 1: loss 0.69'; sleep 60".into(),
            "not a JSON object",
        ),
        ("no-model", format!("echo '{LINE}'"), "left no model"),
        // Exits 0 with a model but without a step: whatever it ran, not our loss.
        ("no-step", "cp -r {model} {out}".into(), "reported no step"),
        (
            "nan",
            format!(
                "echo '{}'; sleep 60",
                LINE.replace("\"loss\": 0.69", "\"loss\": null")
            ),
            "reports loss NaN",
        ),
    ];
    for (case, failing, expected) in cases {
        let dir = tmp.path().join(case);
        std::fs::create_dir_all(&dir).unwrap();
        // The trainer fails until the test says it is fixed.
        let fixed = dir.join("fixed");
        let command = format!(
            "if [ -e '{}' ]; then {}; else {failing}; fi",
            fixed.display(),
            trainer()
        );
        let server = server_section(&format!("url = \"{url}\""));
        let c = external(config(&dir, 1), server, &command);
        let out = headless(&write(&c, &dir.join("c.toml")));
        assert!(!out.status.success(), "{case}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{case}: {stderr}");
        assert!(stderr.contains("trainer.log"), "{case}: {stderr}");
        let run = run_dir(&dir);
        let kept = [
            "iter-001/candidates.jsonl",
            "iter-001/pairs.jsonl",
            "summary.json",
        ]
        .map(|f| std::fs::read(run.join(f)).unwrap());
        assert!(!run.join("checkpoints/iter-001").exists(), "{case}");
        std::fs::write(&fixed, "").unwrap();
        let stdout = ok(&selm()
            .args(["resume", run.to_str().unwrap(), "--headless"])
            .output()
            .unwrap());
        assert!(stdout.contains("iter 1 sync + eval"), "{case}: {stdout}");
        for (file, before) in ["iter-001/candidates.jsonl", "iter-001/pairs.jsonl"]
            .iter()
            .zip(&kept)
        {
            assert_eq!(
                &std::fs::read(run.join(file)).unwrap(),
                before,
                "{case} {file}"
            );
        }
        // The rerun's steps only: the failed attempt's rows were cut.
        let pairs = read_jsonl(&run.join("iter-001/pairs.jsonl")).len();
        let rows = train_rows(&run);
        assert_eq!(rows.len(), pairs.div_ceil(c.train.batch_size), "{case}");
        assert!(rows.iter().all(|r| f(&r["loss"]) != 0.69), "{case}");
        assert!(run.join("checkpoints/iter-001/config.json").is_file());
    }
    // selm-tui killed with SIGKILL while its trainer runs: the trainer goes too.
    let dir = tmp.path().join("kill");
    std::fs::create_dir_all(&dir).unwrap();
    let marker = "sleep 600.75";
    let server = server_section(&format!("url = \"{url}\""));
    let c = external(config(&dir, 1), server, &format!("{marker} # {{params}}"));
    let child = Killed(
        selm()
            .args(["--config", write(&c, &dir.join("c.toml")).to_str().unwrap()])
            .args(["run", "--headless"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = std::time::Instant::now();
    while processes_with(marker).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(120), "no trainer");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.stop();
    assert_gone(marker, Duration::from_secs(15));
    serving.stop();
}

#[test]
fn the_cluster_recipe_parses_and_its_commands_expand() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = Config::from_file(&root.join("configs/cluster/zephyr-7b-selm.toml")).unwrap();
    assert_eq!(c.generate.engine, GenerateEngine::Server);
    assert_eq!(c.train.engine, TrainEngine::Command);
    assert_eq!(
        (c.train.alpha, c.train.beta, c.train.lr),
        (0.001, 0.01, 5e-7)
    );
    // Every placeholder expands, and what the commands name is in the repository.
    let train = c.train.command.as_deref().unwrap();
    let values: Vec<(&str, String)> = selm_tui::config::TRAIN_PLACEHOLDERS
        .iter()
        .map(|&p| (p, format!("/shared/runs/x/{p}")))
        .collect();
    let expanded = selm_tui::external::process::expand(train, &values);
    assert!(!expanded.contains('{'), "{expanded}");
    assert!(
        expanded.contains("--params /shared/runs/x/params"),
        "{expanded}"
    );
    for word in expanded.split_whitespace().filter(|w| w.contains('/')) {
        if !word.starts_with("/shared") {
            assert!(root.join(word).is_file(), "{word} is not in the repository");
        }
    }
    let server = c.generate.server.as_ref().unwrap();
    let serve = selm_tui::external::process::expand(
        server.command.as_deref().unwrap(),
        &[
            ("checkpoint", "/shared/runs/x/checkpoints/iter-001".into()),
            ("port", "8000".into()),
        ],
    );
    assert!(
        serve.contains("vllm serve /shared/runs/x/checkpoints/iter-001 --port 8000"),
        "{serve}"
    );
    assert!(root.join(&c.rank.command[1]).is_file());
}

/// The one-GPU LoRA recipe: valid, vLLM told to load adapters of its rank, the trainer one
/// process without DeepSpeed, checkpoints adapter-only.
#[test]
fn the_one_gpu_lora_recipe_parses_and_fits_its_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = Config::from_file(&root.join("configs/cluster/zephyr-7b-selm-lora-1gpu.toml")).unwrap();
    let lora = c.train.lora.as_ref().expect("[train.lora]");
    assert_eq!(lora.checkpoint, selm_tui::config::LoraCheckpoint::Adapter);
    let server = c.generate.server.as_ref().unwrap();
    assert_eq!(server.reload, Some(selm_tui::config::Reload::Lora));
    let serve = server.command.as_deref().unwrap();
    let words: Vec<&str> = serve.split_whitespace().collect();
    let after = |flag: &str| words[words.iter().position(|w| *w == flag).unwrap() + 1];
    assert!(words.contains(&"--enable-lora"), "{serve}");
    assert!(after("--max-lora-rank").parse::<usize>().unwrap() >= lora.rank);
    let train = c.train.command.as_deref().unwrap();
    assert!(!train.contains("accelerate") && train.contains("scripts/selm_trl.py"));
    assert!(root.join("scripts/selm_trl.py").is_file());
}

/// The trainer refuses what it would not train as asked: an objective it does not know.
#[test]
fn the_trainer_refuses_an_unknown_objective() {
    let tmp = tempfile::tempdir().unwrap();
    let params = tmp.path().join("params.json");
    std::fs::write(&params, r#"{"objective": "ipo", "input": "none.jsonl"}"#).unwrap();
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/selm_trl.py"))
        .arg("--params")
        .arg(&params)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("unknown objective 'ipo'"), "{stderr}");
}
