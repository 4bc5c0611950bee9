//! The real binary's argument checks: a bad value is an error naming its flag (or the path),
//! never a panic, and commands that run no model read neither the config nor the backend.

use std::process::{Command, Output};

fn selm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .args(args)
        .env_remove("SELM_BACKEND")
        .output()
        .unwrap()
}

/// Asserts a clean failure whose stderr mentions `what`; returns stderr.
#[track_caller]
fn fails_naming(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "panicked:\n{stderr}");
    assert!(
        stderr.contains(what),
        "stderr does not name {what}:\n{stderr}"
    );
    stderr
}

#[test]
fn sft_checks_noise_and_batch() {
    fails_naming(&selm(&["sft", "--noise", "2"]), "--noise");
    fails_naming(&selm(&["sft", "--batch", "0"]), "--batch");
}

#[test]
fn bench_checks_seq_and_steps() {
    fails_naming(&selm(&["bench", "--seq", "1"]), "--seq");
    fails_naming(&selm(&["bench", "--steps", "0"]), "--steps");
    fails_naming(&selm(&["bench", "--preset", "huge"]), "--preset");
}

#[test]
fn bench_names_a_missing_model() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-model");
    let out = selm(&["bench", "--model", missing.to_str().unwrap()]);
    let stderr = fails_naming(&out, "--model");
    assert!(stderr.contains("no-model"), "{stderr}");
}

#[test]
fn export_names_a_missing_run_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-run");
    let out = selm(&[
        "export",
        missing.to_str().unwrap(),
        "--iteration",
        "1",
        tmp.path().join("out").to_str().unwrap(),
    ]);
    fails_naming(&out, "no-such-run");
    assert!(!tmp.path().join("out").exists());
    fails_naming(
        &selm(&["export", "x", "--iteration", "0", "y"]),
        "--iteration",
    );
}

#[test]
fn inspect_reads_no_backend_and_no_config() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-run");
    let out = Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .args(["inspect", missing.to_str().unwrap()])
        .env("SELM_BACKEND", "bogus")
        .output()
        .unwrap();
    let stderr = fails_naming(&out, "no-such-run");
    assert!(!stderr.contains("bogus"), "{stderr}");
    // Nor a --config that does not exist.
    let out = selm(&[
        "--config",
        "/no/such/config.toml",
        "inspect",
        missing.to_str().unwrap(),
    ]);
    let stderr = fails_naming(&out, "no-such-run");
    assert!(!stderr.contains("/no/such"), "{stderr}");
}

#[test]
fn run_checks_iterations() {
    fails_naming(
        &selm(&["run", "--headless", "--iterations", "0"]),
        "--iterations",
    );
}

/// Every config the README points to parses and validates (the models they name need not be
/// fetched for that).
#[test]
fn every_shipped_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            selm_tui::config::Config::from_file(&path)
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 7, "{n} configs in {}", dir.display());
}
