//! `sweep --launcher slurm` against a real one-node Slurm (Debian's slurm-wlm and munge,
//! started by scripts/slurm_single_node.sh; scripts/setup-tests.sh installs them; this needs root). A 2 x 2
//! grid goes in as one array job; one task is cancelled with `scancel` mid-run; the same
//! sweep again submits only that point, which resumes its run directory; a third finds
//! nothing to do; `compare` reads the sweep. Without Slurm this test fails rather than skips.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The one-node cluster, stopped on drop (a failing test leaves no daemon behind).
struct Slurm {
    state: PathBuf,
}

impl Slurm {
    fn start(state: &Path) -> Self {
        selm_tui::testing::require_program("sinfo");
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(state)
            .output()
            .expect("running scripts/slurm_single_node.sh");
        assert!(
            out.status.success(),
            "starting Slurm (scripts/setup-tests.sh installs it; this needs root): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            state: state.to_path_buf(),
        }
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg("--me").output();
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.state)
            .output();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm_single_node.sh")
}

/// Runs of 3 iterations, each long enough on one thread for a cancel to land mid-run.
fn config(dir: &Path) -> PathBuf {
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 3;
    c.prompts.per_iteration = 256;
    c.prompts.eval = 32;
    let path = dir.join("slurm.toml");
    std::fs::write(&path, c.to_toml()).unwrap();
    path
}

fn sweep(config: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selm-tui"));
    cmd.args(["--config", config.to_str().unwrap(), "sweep"])
        .args(["--alpha", "0,0.01", "--seeds", "0,1"])
        .args([
            "--launcher",
            "slurm",
            "--sbatch-args",
            "--cpus-per-task=1 --job-name 'selm test'",
        ])
        .args(["--out", out.to_str().unwrap()]);
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sweep_json(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap()
}

fn runs(out: &Path) -> Vec<Value> {
    sweep_json(out)["runs"].as_array().unwrap().clone()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "waited {timeout:?} for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_grid_runs_as_an_array_job_and_a_cancelled_task_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let _slurm = Slurm::start(&tmp.path().join("slurm-state"));
    let cfg = config(tmp.path());
    let out = tmp.path().join("sweep");

    // First sweep: follow it in the background, cancel point 1's task once it is mid-run.
    let first = sweep(&cfg, &out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut task = String::new();
    wait_for(
        "point 1's task to start its first update",
        Duration::from_secs(240),
        || {
            let Some(id) = out
                .join("sweep.json")
                .exists()
                .then(|| runs(&out)[1]["slurm"].as_str().map(String::from))
                .flatten()
            else {
                return false;
            };
            task = id;
            let log = std::fs::read_to_string(out.join("slurm").join(format!("{task}.out")));
            log.is_ok_and(|l| l.contains("iter 1 select pairs"))
        },
    );
    let cancel = Command::new("scancel").arg(&task).output().unwrap();
    assert!(cancel.status.success(), "{}", text(&cancel));
    let first = first.wait_with_output().unwrap();
    let said = text(&first);
    println!("first sweep:\n{said}");
    assert!(!first.status.success(), "{said}");
    assert!(
        said.contains("CANCELLED") && said.contains("the next sweep resumes it"),
        "{said}"
    );
    assert!(
        said.contains("3 finished, 0 failed, 1 interrupted"),
        "{said}"
    );
    let status: Vec<_> = runs(&out).iter().map(|r| r["status"].clone()).collect();
    assert_eq!(status, ["finished", "interrupted", "finished", "finished"]);
    let script = std::fs::read_to_string(out.join("slurm/array.sh")).unwrap();
    assert!(script.contains("sweep-task"), "{script}");
    let interrupted_dir = runs(&out)[1]["dir"].as_str().unwrap().to_string();

    // Second sweep: only point 1 goes in again, and resumes its run directory.
    let second = sweep(&cfg, &out).output().unwrap();
    let said = text(&second);
    println!("second sweep:\n{said}");
    assert!(second.status.success(), "{said}");
    assert!(
        said.contains("3 finished already, 0 still queued in Slurm, 1 to submit"),
        "{said}"
    );
    assert!(
        said.contains("4 finished, 0 failed, 0 interrupted"),
        "{said}"
    );
    let again = runs(&out)[1].clone();
    assert_eq!(again["dir"].as_str().unwrap(), interrupted_dir);
    assert_ne!(again["slurm"].as_str().unwrap(), task);
    let log = out
        .join("slurm")
        .join(format!("{}.out", again["slurm"].as_str().unwrap()));
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("resuming"), "{log}");
    assert!(log.contains("resumed at iteration 1"), "{log}");

    // results.csv: every run, iterations 0..=3, all finished.
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    println!("results.csv:\n{csv}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 4 * 4, "{csv}");
    assert!(
        rows.iter().all(|r| r.iter().any(|f| f == "finished")),
        "{csv}"
    );

    // A third sweep has nothing to submit; compare reads the sweep.
    let third = sweep(&cfg, &out).output().unwrap();
    let said = text(&third);
    assert!(third.status.success(), "{said}");
    assert!(
        said.contains("4 finished already, 0 still queued in Slurm, 0 to submit"),
        "{said}"
    );
    let figures = tmp.path().join("compare");
    let compare = Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .arg("compare")
        .arg(&out)
        .arg("--out")
        .arg(&figures)
        .output()
        .unwrap();
    assert!(compare.status.success(), "{}", text(&compare));
    let report = std::fs::read_to_string(figures.join("report.md")).unwrap();
    assert!(
        report.contains("0.01") && report.contains("4 runs"),
        "{report}"
    );
}
