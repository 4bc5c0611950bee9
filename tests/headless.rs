//! The real binary, headless, on the built-in tiny task model: a short run end to end, and
//! config errors that name their key.

use std::path::Path;
use std::process::Command;

fn selm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_selm-tui"))
}

/// The embedded default, scaled down: 2 iterations of 32 prompts, 16 held-out.
fn short_config(dir: &Path) -> String {
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 2;
    c.prompts.per_iteration = 32;
    c.prompts.eval = 16;
    c.to_toml()
}

#[test]
fn headless_run_writes_a_complete_run_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("short.toml");
    std::fs::write(&config, short_config(tmp.path())).unwrap();
    let out = selm()
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("iter  pairs  mean loss"), "{stdout}");
    assert!(stdout.contains("iter 2 sync + eval"), "{stdout}");

    let runs: Vec<_> = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    for f in [
        "config.toml",
        "metrics.jsonl",
        "metrics.csv",
        "history.jsonl",
        "summary.json",
        "iter-001/candidates.jsonl",
        "iter-001/pairs.jsonl",
        "iter-002/pairs.jsonl",
        "checkpoints/iter-001/model.safetensors",
        "checkpoints/iter-002/config.json",
        "checkpoints/iter-002/tokenizer.json",
    ] {
        assert!(run.join(f).exists(), "missing {f}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let rows = summary.as_array().unwrap();
    assert_eq!(rows.len(), 3, "iterations 0, 1, 2");
    for r in rows {
        let hrf = r["high_reward_fraction"].as_f64().unwrap();
        let reward = r["reward/mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&hrf) && (0.0..=1.0).contains(&reward));
        assert_eq!(r["eval_samples"], 16 * 8);
    }
    // The built-in model is mediocre on purpose: neither hopeless nor solved.
    let start = rows[0]["reward/mean"].as_f64().unwrap();
    assert!((0.25..0.7).contains(&start), "starting reward {start}");
    assert!(
        !std::fs::read_dir(run).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp"))
    );
}

#[test]
fn config_errors_name_the_key_and_exit_nonzero() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    let text = short_config(tmp.path()).replace("[train]\n", "[train]\nbetta = 2.0\n");
    assert!(text.contains("betta"), "no [train] table in\n{text}");
    std::fs::write(&config, text).unwrap();
    let out = selm()
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("betta"), "{stderr}");
    // `backends` lists exactly the features this binary was built with.
    let out = selm().arg("backends").output().unwrap();
    assert!(out.status.success());
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let built: Vec<&str> = [
        ("flex", cfg!(feature = "flex")),
        ("wgpu", cfg!(feature = "wgpu")),
        ("cuda", cfg!(feature = "cuda")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    assert_eq!(listed, built);
    let out = selm()
        .args(["--backend", "cuda", "bench", "--steps", "1"])
        .output()
        .unwrap();
    if !cfg!(feature = "cuda") {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("--features cuda"),
            "{stderr}"
        );
    }
}

#[test]
fn the_tui_without_a_terminal_points_to_headless() {
    // Output captured by a pipe: not a terminal. `inspect` reads the run first.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.toml"), short_config(tmp.path())).unwrap();
    let run = tmp.path().to_str().unwrap();
    for args in [&[][..], &["inspect", run][..]] {
        let out = selm().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("not a terminal") && stderr.contains("--headless"),
            "{args:?}: {stderr}"
        );
    }
}

/// A copy of the built-in model whose tokenizer.json has a hole in its vocabulary (no `j`):
/// the tokenizers crate prints a warning to stdout when it serializes such a vocabulary.
fn holey_model(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-tasks");
    let dst = dir.join("holey");
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
    assert!(vocab.remove("j").is_some(), "the char vocabulary has `j`");
    std::fs::write(dst.join("tokenizer.json"), tok.to_string()).unwrap();
    dst
}

/// A one-iteration, 16-prompt config on `model`, written into `dir`.
fn config_on(dir: &Path, model: &Path) -> std::path::PathBuf {
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 1;
    c.prompts.per_iteration = 16;
    c.prompts.eval = 8;
    c.model.path = model.display().to_string();
    let path = dir.join("on-model.toml");
    std::fs::write(&path, c.to_toml()).unwrap();
    path
}

/// stdout and stderr of a headless run of `config`, and whether it succeeded.
fn headless(config: &Path) -> (bool, String) {
    let out = selm()
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn library_output_does_not_hang_a_headless_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config_on(tmp.path(), &holey_model(tmp.path()));
    let mut child = selm()
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang shows as a run that never ends: give it far longer than it needs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the headless run hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("contains holes"),
        "the library's warning: {stdout}"
    );
    assert!(stdout.contains("iter 1 sync + eval"), "{stdout}");
}

#[test]
fn an_engine_that_fails_at_once_reports_its_own_error() {
    // Whatever the timing of the first command, the error is the engine's, not the channel's.
    let tmp = tempfile::tempdir().unwrap();
    let config = config_on(tmp.path(), &tmp.path().join("no-such-model"));
    for _ in 0..12 {
        let (ok, text) = headless(&config);
        assert!(!ok);
        assert!(text.contains("no-such-model"), "{text}");
        assert!(!text.contains("closed channel"), "{text}");
    }
}

#[test]
fn a_tokenizer_that_does_not_fit_the_model_names_both_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = holey_model(tmp.path());
    // The tokenizer gains a token past the model's embeddings.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let n = config["vocab_size"].as_u64().unwrap();
    let path = model.join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    tok["model"]["vocab"]["j"] = (n + 2).into();
    std::fs::write(&path, tok.to_string()).unwrap();
    let (ok, text) = headless(&config_on(tmp.path(), &model));
    assert!(!ok);
    assert!(
        text.contains(&format!("token id {}", n + 2))
            && text.contains(&format!("vocab_size is {n}")),
        "{text}"
    );
}

/// An iteration of one update step with a warmup ratio above 0 trains at lr 0: said, with the
/// numbers, and the metrics show it.
#[test]
fn warmup_that_takes_every_step_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = tmp.path().join("runs");
    c.run.iterations = 1;
    c.prompts.per_iteration = 8;
    c.prompts.eval = 4;
    c.train.batch_size = 64;
    c.train.warmup_ratio = 0.1;
    let config = tmp.path().join("one-step.toml");
    std::fs::write(&config, c.to_toml()).unwrap();
    let (ok, stdout) = headless(&config);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("1 update step(s) with train.warmup_ratio 0.1: warmup takes all of them"),
        "{stdout}"
    );
    let run = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let step: serde_json::Value = serde_json::from_str(
        metrics
            .lines()
            .find(|l| l.contains("\"kind\":\"train\""))
            .expect("a train row"),
    )
    .unwrap();
    assert_eq!(step["lr"], 0.0, "{step}");
}
