//! Helpers of the tests that run selm-tui against external engines (a generation server, a
//! trainer): the binary, headless runs, ports, processes, and a `transformers serve` of the
//! built-in model.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn selm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_selm-tui"))
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn headless(config: &Path) -> Output {
    selm()
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap()
}

pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn run_dir(dir: &Path) -> PathBuf {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}

/// Processes whose command line holds `needle` (not zombies).
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if cmdline.contains(needle) && !zombie {
            found.push(cmdline);
        }
    }
    found
}

/// Waits until no process's command line holds `needle`.
pub fn assert_gone(needle: &str, within: Duration) {
    let start = Instant::now();
    while !processes_with(needle).is_empty() {
        assert!(
            start.elapsed() < within,
            "still running: {:?}",
            processes_with(needle)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A headless run of `config` stalled at `at` (ITERATION:STAGE:UNIT), still running.
pub fn stalled_run(config: &Path, at: &str) -> Killed {
    let mut child = Killed(
        selm()
            .args(["--config", config.to_str().unwrap(), "run", "--headless"])
            .env("SELM_STALL_AT", at)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    assert!(
        lines
            .map_while(Result::ok)
            .any(|l| l.contains("SELM_STALL_AT")),
        "never stalled at {at}"
    );
    child
}

/// A child process (a server, a stalled selm-tui) killed with SIGKILL when dropped, so a
/// failing test (a panic) leaves nothing running.
pub struct Killed(pub Child);

impl Killed {
    /// SIGKILL now, and reap it (the process going away is part of some tests).
    pub fn stop(self) {}

    fn running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `transformers serve` (the cache's torch environment) as selm-tui would run it.
pub fn serve_command() -> String {
    let bin = selm_tui::testing::venv_bin("torch", "transformers");
    format!(
        "{} serve {{checkpoint}} --port {{port}} --device cpu",
        bin.display()
    )
}

/// A running `transformers serve` of the built-in model on `port`, ready.
pub fn start_server(port: u16, log: &Path) -> Killed {
    let model = selm_tui::paths::resolve("builtin:tiny-tasks").unwrap();
    let out = std::fs::File::create(log).unwrap();
    let mut serving = Killed(
        Command::new(selm_tui::testing::venv_bin("torch", "transformers"))
            .args([
                "serve",
                model.to_str().unwrap(),
                "--port",
                &port.to_string(),
            ])
            .args(["--device", "cpu"])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting transformers serve"),
    );
    let url = format!("http://127.0.0.1:{port}/v1/models");
    let client = selm_tui::external::http::OpenAiClient::new(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(5),
        0,
    );
    let start = Instant::now();
    while client.models().is_err() {
        assert!(serving.running(), "the server exited: {url}");
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{url} never answered"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    serving
}

/// y_ref of each prompt of an iteration, from its candidates: (prompt, y_ref's text).
pub fn greedy_texts(run: &Path, iteration: usize) -> Vec<(String, String)> {
    let path = run.join(format!("iter-{iteration:03}/candidates.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let y_ref = row["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["is_reference"] == true)
                .unwrap()
                .clone();
            (
                row["prompt"].as_str().unwrap().to_string(),
                y_ref["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
