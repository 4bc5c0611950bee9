//! Crash and resume, through the real binary on a small config: a run killed with SIGKILL at
//! several moments and resumed gives the same files, bit for bit, as one that ran through;
//! and resuming refuses what it must (a finished run, a missing or corrupt state, a run
//! another process holds).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn selm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_selm-tui"))
}

/// The embedded default, scaled down: 2 iterations of 32 prompts, 16 held-out, updates of
/// 8 triples (so an update has several units to be killed between).
fn write_config(dir: &Path) -> PathBuf {
    write_config_with(dir, |_| {})
}

/// [`write_config`] changed by `edit`.
fn write_config_with(dir: &Path, edit: fn(&mut selm_tui::config::Config)) -> PathBuf {
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 2;
    c.prompts.per_iteration = 32;
    c.prompts.eval = 16;
    c.train.batch_size = 8;
    edit(&mut c);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("small.toml");
    std::fs::write(&path, c.to_toml()).unwrap();
    path
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The one run directory under `dir/runs`.
fn run_dir(dir: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// A whole run, uninterrupted.
fn full_run(dir: &Path) -> PathBuf {
    let config = write_config(dir);
    ok(&selm()
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap());
    run_dir(dir)
}

/// Runs selm-tui with `args` until it stalls at `at` (ITERATION:STAGE:UNIT), then kills it
/// with SIGKILL.
fn killed_run(args: &[&str], at: &str) {
    let mut child = selm()
        .args(args)
        .env("SELM_STALL_AT", at)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = vec![];
    for line in stdout.lines() {
        let line = line.unwrap();
        let stalled = line.contains("SELM_STALL_AT");
        seen.push(line);
        if stalled {
            break;
        }
    }
    // Child::kill sends SIGKILL: no destructor, no flush, no lock removal.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.last().is_some_and(|l| l.contains("SELM_STALL_AT")),
        "never stalled at {at}:\n{}",
        seen.join("\n")
    );
}

/// How many resumes `history.jsonl` records.
fn resume_entries(run: &Path) -> usize {
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    history
        .lines()
        .filter(|l| l.contains(r#""event":"resume""#))
        .count()
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The resumed run must equal the uninterrupted one: the same files; pairs, candidates,
/// per-token log-probs, metrics and checkpoints byte for byte; the summary but for wall
/// times; history.jsonl the same plus one resume entry.
fn assert_same_run(reference: &Path, resumed: &Path) {
    assert_eq!(files(reference), files(resumed));
    for f in files(reference) {
        let name = f.to_string_lossy();
        if ["history.jsonl", "summary.json", "config.toml"].contains(&name.as_ref()) {
            continue;
        }
        assert!(
            std::fs::read(reference.join(&f)).unwrap() == std::fs::read(resumed.join(&f)).unwrap(),
            "{name} differs"
        );
    }
    let strip = |mut v: serde_json::Value| {
        for row in v.as_array_mut().unwrap() {
            row.as_object_mut().unwrap().remove("wall_s");
        }
        v
    };
    assert_eq!(
        strip(json(&reference.join("summary.json"))),
        strip(json(&resumed.join("summary.json")))
    );
    assert_eq!(resume_entries(resumed), 1);
    assert!(!resumed.join("lock").exists(), "the lock is released");
    assert_eq!(json(&resumed.join("state.json"))["finished"], true);
}

#[test]
fn killed_at_any_point_and_resumed_equals_the_uninterrupted_run() {
    let base = tempfile::tempdir().unwrap();
    let reference = full_run(&base.path().join("ref"));
    // Before the starting evaluation, and after its metrics row but before its summary and
    // state (a run at its start: evaluated again, the row not doubled); after the generate
    // stage; inside generation and inside ranking (both go on from the next batch or chunk);
    // inside an update (its first mini-batch's metrics row is on disk and must go); between
    // update and sync (the saved policy); at the start of iteration 2.
    for at in [
        "0:sync_eval:0",
        "0:sync_eval:1",
        "1:rank:0",
        "1:generate:1",
        "1:rank:1",
        "1:update:1",
        "1:sync_eval:0",
        "2:sample_prompts:0",
    ] {
        let dir = base.path().join(at.replace(':', "-"));
        let config = write_config(&dir);
        killed_run(
            &["--config", config.to_str().unwrap(), "run", "--headless"],
            at,
        );
        let run = run_dir(&dir);
        assert!(
            run.join("lock").exists(),
            "{at}: a killed run leaves its lock"
        );
        let out = selm()
            .args(["resume", run.to_str().unwrap(), "--headless"])
            .output()
            .unwrap();
        ok(&out);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("resumed at iteration"),
            "{at}"
        );
        assert_same_run(&reference, &run);
    }
}

/// A LoRA run (the start model frozen, adapters trained; checkpoints merged, with the
/// adapters in PEFT's format): killed inside an update, between update and sync, and in
/// iteration 2, and resumed, it equals the uninterrupted run byte for byte, adapters included.
#[test]
fn a_lora_run_resumes_to_the_same_adapters() {
    let base = tempfile::tempdir().unwrap();
    let lora = |c: &mut selm_tui::config::Config| {
        // With dropout: a resumed step draws the same masks.
        c.train.lora = Some(toml::from_str("rank = 4\nalpha = 8.0\ndropout = 0.1").unwrap());
        c.train.lr = 1e-3;
    };
    let ref_dir = base.path().join("ref");
    let config = write_config_with(&ref_dir, lora);
    ok(&selm()
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap());
    let reference = run_dir(&ref_dir);
    assert!(
        reference
            .join("checkpoints/iter-002/adapter/adapter_model.safetensors")
            .is_file()
    );
    for at in ["1:update:1", "1:sync_eval:0", "2:generate:1", "2:update:1"] {
        let dir = base.path().join(at.replace(':', "-"));
        let config = write_config_with(&dir, lora);
        killed_run(
            &["--config", config.to_str().unwrap(), "run", "--headless"],
            at,
        );
        let run = run_dir(&dir);
        ok(&selm()
            .args(["resume", run.to_str().unwrap(), "--headless"])
            .output()
            .unwrap());
        assert_same_run(&reference, &run);
    }
}

/// pi_ref fixed at the start model (and the XPO objective): a resume must take pi_ref from
/// the start model and pi_theta from the checkpoint, not both from the checkpoint.
#[test]
fn a_fixed_reference_run_resumes_with_the_start_model_as_reference() {
    let base = tempfile::tempdir().unwrap();
    let fixed = |c: &mut selm_tui::config::Config| {
        c.train.sync_reference = false;
        c.train.objective = selm_tui::config::Objective::Xpo;
    };
    let ref_dir = base.path().join("ref");
    let config = write_config_with(&ref_dir, fixed);
    ok(&selm()
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap());
    let reference = run_dir(&ref_dir);
    for at in ["2:generate:1", "2:update:1", "2:sync_eval:0"] {
        let dir = base.path().join(at.replace(':', "-"));
        let config = write_config_with(&dir, fixed);
        killed_run(
            &["--config", config.to_str().unwrap(), "run", "--headless"],
            at,
        );
        let run = run_dir(&dir);
        ok(&selm()
            .args(["resume", run.to_str().unwrap(), "--headless"])
            .output()
            .unwrap());
        assert_same_run(&reference, &run);
    }
}

#[test]
fn killed_twice_in_one_stage_still_resumes() {
    let base = tempfile::tempdir().unwrap();
    let reference = full_run(&base.path().join("ref"));
    let dir = base.path().join("twice");
    let config = write_config(&dir);
    killed_run(
        &["--config", config.to_str().unwrap(), "run", "--headless"],
        "1:update:1",
    );
    let run = run_dir(&dir);
    let run_arg = run.to_str().unwrap().to_string();
    killed_run(&["resume", &run_arg, "--headless"], "1:update:2");
    ok(&selm()
        .args(["resume", &run_arg, "--headless"])
        .output()
        .unwrap());
    assert_same_run_but_resumes(&reference, &run, 2);
}

fn assert_same_run_but_resumes(reference: &Path, resumed: &Path, resumes: usize) {
    for f in [
        "metrics.jsonl",
        "metrics.csv",
        "iter-001/pairs.jsonl",
        "iter-002/pairs.jsonl",
    ] {
        assert!(
            std::fs::read(reference.join(f)).unwrap() == std::fs::read(resumed.join(f)).unwrap(),
            "{f} differs"
        );
    }
    assert_eq!(resume_entries(resumed), resumes);
}

#[test]
fn resume_refuses_what_it_cannot_continue() {
    let base = tempfile::tempdir().unwrap();
    let run = full_run(base.path());
    let resume = |dir: &Path| {
        let out = selm()
            .args(["resume", dir.to_str().unwrap(), "--headless"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains("panicked"), "{stderr}");
        // One line saying what and why; no progress lines, no empty table.
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    };
    let e = resume(&run);
    assert!(e.contains("is finished"), "{e}");
    // A corrupt state file is named.
    let state = run.join("state.json");
    let good = std::fs::read_to_string(&state).unwrap();
    std::fs::write(
        &state,
        good.replace("\"finished\": true", "\"finished\": tru"),
    )
    .unwrap();
    let e = resume(&run);
    assert!(
        e.contains("state.json") && e.contains("not a valid run state"),
        "{e}"
    );
    // A newer format is refused as such.
    std::fs::write(&state, good.replace("\"version\": 1", "\"version\": 99")).unwrap();
    let e = resume(&run);
    assert!(e.contains("state format 99 is newer"), "{e}");
    // A missing one too.
    std::fs::remove_file(&state).unwrap();
    let e = resume(&run);
    assert!(e.contains("state.json"), "{e}");
    // A config this version cannot read.
    std::fs::write(&state, &good).unwrap();
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(
        run.join("config.toml"),
        format!("{config}\n[future]\nkey = 1\n"),
    )
    .unwrap();
    let e = resume(&run);
    assert!(
        e.contains("cannot read") && e.contains("config.toml"),
        "{e}"
    );
    // Not a run directory at all.
    let e = resume(&base.path().join("nothing"));
    assert!(e.contains("not a run directory"), "{e}");
}

#[test]
fn a_second_process_on_the_same_run_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path();
    let config = write_config(dir);
    killed_run(
        &["--config", config.to_str().unwrap(), "run", "--headless"],
        "1:rank:0",
    );
    let run = run_dir(dir);
    let run_arg = run.to_str().unwrap().to_string();
    // One resume holds the run (stalled), a second one is refused and changes nothing.
    let mut holder = selm()
        .args(["resume", &run_arg, "--headless"])
        .env("SELM_STALL_AT", "1:rank:1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("SELM_STALL_AT")));
    let before = std::fs::read(run.join("metrics.jsonl")).unwrap();
    let out = selm()
        .args(["resume", &run_arg, "--headless"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another selm-tui"), "{stderr}");
    assert_eq!(std::fs::read(run.join("metrics.jsonl")).unwrap(), before);
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The lock of a killed process is stale: the next resume takes it over and finishes.
    ok(&selm()
        .args(["resume", &run_arg, "--headless"])
        .output()
        .unwrap());
    assert_eq!(json(&run.join("state.json"))["finished"], true);
}
