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

/// The kernel set this CPU runs flex's products with, as `bench` should name it.
fn expected_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "AVX2+FMA";
        }
        "SSE2"
    }
    #[cfg(target_arch = "aarch64")]
    return "NEON";
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return "portable";
}

#[test]
fn bench_reports_its_kernel_set_and_figures() {
    let args = [
        "bench",
        "--steps",
        "1",
        "--batch",
        "1",
        "--seq",
        "4",
        "--decode-batch",
        "3",
        "--new-tokens",
        "2",
    ];
    let out = selm(&[&args[..], &["--json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kernels"], expected_kernels(), "{report}");
    assert_eq!(report["decode_batch"], 3);
    for figure in ["train_ms_per_step", "decode_tokens_per_s", "prefill_ms"] {
        let v = report[figure].as_f64().unwrap();
        assert!(v.is_finite() && v > 0.0, "{figure} = {v}");
    }
    let table = selm(&args);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("{} kernels", expected_kernels())),
        "{text}"
    );
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
