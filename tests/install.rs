//! The binary on its own: built-ins are compiled in, so a copy of the binary runs the default
//! model and prompts from any directory (as after `cargo install`); and `bench-ui` leaves no
//! run directory behind.

use std::path::Path;
use std::process::Command;

/// The embedded default, small, with its `builtin:` paths kept.
fn small_default(out_dir: &str) -> String {
    let mut c = selm_tui::config::Config::embedded_default();
    assert!(c.model.path.starts_with("builtin:"), "{}", c.model.path);
    c.run.out_dir = out_dir.into();
    c.run.iterations = 1;
    c.prompts.per_iteration = 16;
    c.prompts.eval = 8;
    c.to_toml()
}

#[test]
fn a_copied_binary_runs_the_default_from_another_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin/selm-tui");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_selm-tui"), &bin).unwrap();
    let work = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("small.toml"), small_default("runs")).unwrap();
    let cache = tmp.path().join("cache");
    let out = Command::new(&bin)
        .current_dir(&work)
        .env("SELM_CACHE", &cache)
        .env("HOME", tmp.path())
        .args(["--config", "small.toml", "run", "--headless"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The built-in model came out of the binary into the cache, not from the source tree.
    let builtins: Vec<String> = std::fs::read_dir(cache.join("builtin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        builtins.iter().any(|n| n.starts_with("tiny-tasks-")),
        "{builtins:?}"
    );
    let model = cache.join("builtin").join(
        builtins
            .iter()
            .find(|n| n.starts_with("tiny-tasks-"))
            .unwrap(),
    );
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-tasks");
    assert_eq!(
        std::fs::read(model.join("model.safetensors")).unwrap(),
        std::fs::read(shipped.join("model.safetensors")).unwrap()
    );
    assert_eq!(std::fs::read_dir(work.join("runs")).unwrap().count(), 1);
}

#[test]
fn bench_ui_leaves_no_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("small.toml"), small_default("runs")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .current_dir(tmp.path())
        .args([
            "--config",
            "small.toml",
            "bench-ui",
            "--frames",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["key_to_redraw"]["samples"].as_u64().unwrap() > 0);
    assert!(!tmp.path().join("runs").exists(), "bench-ui left a run");
}
