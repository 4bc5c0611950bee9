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
