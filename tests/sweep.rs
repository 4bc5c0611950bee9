//! `selm-tui sweep` through the real binary: a 2 x 2 grid of one short iteration, re-run
//! (skips what finished), interrupted and continued, and a failing run among good ones.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One short iteration of the built-in tasks.
fn small_config(dir: &Path) -> PathBuf {
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 1;
    c.prompts.per_iteration = 16;
    c.prompts.eval = 8;
    c.train.batch_size = 8;
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("small.toml");
    std::fs::write(&path, c.to_toml()).unwrap();
    path
}

fn sweep(config: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selm-tui"));
    cmd.args(["--config", config.to_str().unwrap(), "sweep"])
        .args(["--alpha", "0,0.01", "--seeds", "0,1", "--jobs", "2"])
        .args(["--out", out.to_str().unwrap()])
        .args(extra);
    cmd
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn sweep_json(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap()
}

fn statuses(out: &Path) -> Vec<String> {
    sweep_json(out)["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

fn csv_rows(out: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let mut rows = vec![header];
    rows.extend(
        r.records()
            .map(|rec| rec.unwrap().iter().map(String::from).collect()),
    );
    rows
}

#[test]
fn a_two_by_two_grid_runs_records_and_is_not_run_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path());
    let out = tmp.path().join("sweep");
    let stdout = ok(&sweep(&config, &out, &["--set", "train.beta=0.05"])
        .output()
        .unwrap());
    assert!(stdout.contains("4 finished, 0 failed"), "{stdout}");
    let json = sweep_json(&out);
    assert_eq!(json["grid"][0]["key"], "train.alpha");
    assert_eq!(json["set"][0], "train.beta=0.05");
    let runs = json["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "alpha=0,seed=0",
            "alpha=0,seed=1",
            "alpha=0.01,seed=0",
            "alpha=0.01,seed=1"
        ]
    );
    for run in runs {
        assert_eq!(run["status"], "finished");
        let dir = out.join(run["dir"].as_str().unwrap());
        let config = selm_tui::config::Config::from_file(&dir.join("config.toml")).unwrap();
        assert_eq!(
            config.train.alpha,
            run["values"]["train.alpha"].as_f64().unwrap()
        );
        assert_eq!(config.run.seed, run["values"]["run.seed"].as_u64().unwrap());
        assert_eq!(config.train.beta, 0.05, "--set applies to every run");
    }
    // One row per run and iteration (0 = the starting model), numbers from each summary.
    let rows = csv_rows(&out);
    assert_eq!(
        rows[0],
        [
            "run",
            "train.alpha",
            "seed",
            "status",
            "iteration",
            "kl",
            "high_reward_fraction",
            "reward/mean",
            "mean_loss",
            "pairs",
            "wall_s"
        ]
    );
    assert_eq!(rows.len(), 1 + 4 * 2);
    let last = &rows[8];
    assert_eq!(
        (last[1].as_str(), last[2].as_str(), last[4].as_str()),
        ("0.01", "1", "1")
    );
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(
            out.join(runs[3]["dir"].as_str().unwrap())
                .join("summary.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        last[6].parse::<f64>().unwrap(),
        summary[1]["high_reward_fraction"].as_f64().unwrap()
    );
    // The same command again: nothing to run, nothing new on disk.
    let stdout = ok(&sweep(&config, &out, &["--set", "train.beta=0.05"])
        .output()
        .unwrap());
    assert!(stdout.contains("4 finished already, 0 to run"), "{stdout}");
    for run in runs {
        let home = out.join("runs").join(run["name"].as_str().unwrap());
        let dirs = std::fs::read_dir(home)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count();
        assert_eq!(dirs, 1);
    }
    // Another grid in the same directory is refused.
    let out2 = sweep(&config, &out, &[]).output().unwrap();
    assert!(!out2.status.success());
    assert!(String::from_utf8_lossy(&out2.stderr).contains("another sweep"));
}

#[test]
fn an_interrupted_sweep_continues_its_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path());
    let out = tmp.path().join("sweep");
    // Every run stops inside its update; then the whole sweep is killed.
    let mut child = sweep(&config, &out, &[])
        .env("SELM_STALL_AT", "1:update:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let stalled = |name: &str| {
        std::fs::read_to_string(out.join("runs").join(name).join("sweep.log"))
            .is_ok_and(|l| l.contains("SELM_STALL_AT"))
    };
    let reader = BufReader::new(child.stdout.take().unwrap());
    let _lines = std::thread::spawn(move || reader.lines().count());
    let start = std::time::Instant::now();
    while !(stalled("alpha=0,seed=0") && stalled("alpha=0,seed=1")) {
        assert!(start.elapsed().as_secs() < 300, "runs never stalled");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    child.wait().unwrap();
    assert_eq!(statuses(&out)[..2], ["running", "running"]);

    let stdout = ok(&sweep(&config, &out, &[]).output().unwrap());
    assert!(stdout.contains("0 finished already, 4 to run"), "{stdout}");
    assert_eq!(statuses(&out), ["finished"; 4]);
    let log = std::fs::read_to_string(out.join("runs/alpha=0,seed=0/sweep.log")).unwrap();
    assert!(log.contains("resumed at iteration 1"), "{log}");
}

#[test]
fn a_failing_run_is_recorded_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path());
    let out = tmp.path().join("sweep");
    let missing = tmp.path().join("no-such-model");
    let axis = format!("model.path=builtin:tiny-tasks,\"{}\"", missing.display());
    let result = Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .args(["--config", config.to_str().unwrap(), "sweep"])
        .args(["--alpha", "0.01", "--seeds", "0", "--grid", &axis])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !result.status.success(),
        "a failed run fails the sweep's exit status"
    );
    let json = sweep_json(&out);
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs[0]["status"], "finished");
    assert_eq!(runs[1]["status"], "failed");
    let error = runs[1]["error"].as_str().unwrap();
    assert!(error.contains("no-such-model"), "{error}");
    // A bad value in the grid is refused before anything runs, naming the key.
    let bad = Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .args(["--config", config.to_str().unwrap(), "sweep"])
        .args(["--grid", "train.beta=0.1,-1", "--out"])
        .arg(tmp.path().join("bad"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("beta"), "{stderr}");
    assert!(!tmp.path().join("bad").exists());
}

/// A sweep outlives a rebuild of its binary: the runs after the file was replaced still
/// start (from the running executable), and all of them finish.
#[test]
fn a_sweep_goes_on_after_its_binary_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path());
    let out = tmp.path().join("sweep");
    let bin = tmp.path().join("bin").join("selm-tui");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_selm-tui"), &bin).unwrap();
    let child = Command::new(&bin)
        .args(["--config", config.to_str().unwrap(), "sweep"])
        .args(["--alpha", "0,0.01", "--seeds", "0", "--jobs", "1"])
        .args(["--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first run has started, a "rebuild" removes the file and writes another.
    let first_log = out.join("runs/alpha=0,seed=0/sweep.log");
    let start = std::time::Instant::now();
    while !first_log.exists() {
        assert!(
            start.elapsed().as_secs() < 120,
            "the first run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::remove_file(&bin).unwrap();
    std::fs::write(&bin, "#!/bin/sh\necho stale binary >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let second_log = out.join("runs/alpha=0.01,seed=0/sweep.log");
    assert!(
        !second_log.exists(),
        "the second run started before the binary was replaced: the test proves nothing"
    );
    let result = child.wait_with_output().unwrap();
    ok(&result);
    assert_eq!(statuses(&out), ["finished"; 2]);
    let log = std::fs::read_to_string(second_log).unwrap();
    assert!(!log.contains("stale binary"), "{log}");
}
