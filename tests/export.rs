//! `export` on a hand-made run directory: where it stages its files, and what it leaves when
//! it fails. (tests/engine.rs exports a real run and reloads it.)

use selm_tui::export::export;
use selm_tui::model::ModelConfig;
use std::path::Path;

/// A run directory with one finished checkpoint (iteration 1); the model files are stand-ins,
/// since export copies them as they are.
fn run_dir(root: &Path, with_tokenizer: bool) -> std::path::PathBuf {
    let run = root.join("run");
    let ckpt = run.join("checkpoints").join("iter-001");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(run.join("config.toml"), "").unwrap();
    let config = ModelConfig::tiny().to_hf_json().to_string();
    std::fs::write(ckpt.join("config.json"), config).unwrap();
    std::fs::write(ckpt.join("model.safetensors"), b"weights").unwrap();
    if with_tokenizer {
        std::fs::write(ckpt.join("tokenizer.json"), b"{}").unwrap();
    }
    run
}

fn staging_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".selm-export-"))
        .collect()
}

#[test]
fn an_unrelated_partial_directory_beside_the_target_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(tmp.path(), true);
    let unrelated = tmp.path().join("a.partial");
    std::fs::create_dir(&unrelated).unwrap();
    std::fs::write(unrelated.join("keep.txt"), "mine").unwrap();

    let out = tmp.path().join("a.b");
    export(&run, 1, &out).unwrap();

    assert_eq!(
        std::fs::read_to_string(unrelated.join("keep.txt")).unwrap(),
        "mine"
    );
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert_eq!(staging_dirs(tmp.path()), Vec::<String>::new());
}

#[test]
fn a_failed_export_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(tmp.path(), false);
    let out = tmp.path().join("out");
    let err = format!("{:#}", export(&run, 1, &out).unwrap_err());
    assert!(err.contains("tokenizer.json"), "{err}");
    assert!(!out.exists());
    assert_eq!(staging_dirs(tmp.path()), Vec::<String>::new());
}

#[test]
fn a_missing_run_or_checkpoint_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-run");
    let err = format!(
        "{:#}",
        export(&missing, 1, &tmp.path().join("x")).unwrap_err()
    );
    assert!(err.contains("no-such-run"), "{err}");

    let run = run_dir(tmp.path(), true);
    let err = format!("{:#}", export(&run, 2, &tmp.path().join("x")).unwrap_err());
    assert!(
        err.contains("iteration 2") && err.contains("iter-001"),
        "{err}"
    );
}

/// `export --model`: any model selm-tui loads, written as an HF directory that reads back
/// with the same weights; a run export without `--iteration` is refused by name.
#[test]
fn a_model_exports_as_an_hf_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tiny");
    let bin = env!("CARGO_BIN_EXE_selm-tui");
    let run = std::process::Command::new(bin)
        .args(["export", "--model", "builtin:tiny-tasks"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    type F = burn::backend::Flex;
    let load = |p: &Path| selm_tui::model::load::load_pretrained::<F>(p, &Default::default());
    let start = selm_tui::paths::resolve("builtin:tiny-tasks").unwrap();
    let (a, ta) = load(&start).unwrap();
    let (b, tb) = load(&out).unwrap();
    let (a, b) = (
        selm_tui::model::load::to_hf_tensors(&a),
        selm_tui::model::load::to_hf_tensors(&b),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, t) in &a {
        assert_eq!(t.data, b[name].data, "{name}");
    }
    assert_eq!(ta.encode("12+7=").unwrap(), tb.encode("12+7=").unwrap());
    assert!(out.join("generation_config.json").is_file());
    let refused = std::process::Command::new(bin)
        .args(["export", "some-run", "out"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--iteration"));
}
