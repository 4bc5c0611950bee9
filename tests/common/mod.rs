//! Shared helpers for the parity tests: where the PyTorch fixtures live and how close is close.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;

/// `../shared/fixtures`, or `$SELM_FIXTURES`. Missing fixtures fail the test, never skip it.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("SELM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    assert!(
        dir.join("README.md").exists(),
        "PyTorch fixtures not found at {} (set SELM_FIXTURES to their folder)",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    let dir = fixtures_dir().join(name);
    assert!(dir.exists(), "fixture {} is missing", dir.display());
    dir
}

pub fn expected(name: &str) -> Value {
    let path = fixture(name).join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("expected.json parses")
}

pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("number list").iter().map(f).collect()
}

/// `|got - want| <= max(abs, rel * |want|)`, with a message naming what differs.
#[track_caller]
pub fn assert_close(what: &str, got: f64, want: f64, rel: f64, abs: f64) {
    let tol = abs.max(rel * want.abs());
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (diff {:.3e} > tol {tol:.1e})",
        (got - want).abs()
    );
}
