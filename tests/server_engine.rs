//! `generate.engine = "server"` against a real OpenAI-compatible server on this CPU:
//! `transformers serve` (pip `transformers[serving]`, torch), serving the built-in model. A
//! managed server through two iterations (its greedy y_ref equal to the in-process one); a
//! running server killed mid-generation (a clear error naming the URL, and a resume that
//! goes on from the last finished batch once it is back); a managed server that never
//! becomes ready; selm-tui killed with SIGKILL while its server runs.

use selm_tui::config::{Config, GenerateEngine, ServerSection};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
#[path = "common/external.rs"]
mod external;
use common::read_jsonl;
use external::*;

fn server_section() -> ServerSection {
    toml::from_str("api = \"transformers\"\nconcurrency = 4\nready_timeout_s = 180").unwrap()
}

/// The embedded default, small: `iterations` of 8 prompts, 2 samples each plus y_ref, in
/// decode batches of 6 requests, generated on `server`.
fn config(dir: &Path, iterations: usize, server: Option<ServerSection>) -> Config {
    let mut c = Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = iterations;
    c.prompts.per_iteration = 8;
    c.prompts.eval = 8;
    c.generate.samples = 2;
    c.generate.max_new_tokens = 10;
    c.generate.batch_size = 6;
    if let Some(server) = server {
        c.generate.engine = GenerateEngine::Server;
        c.generate.server = Some(server);
    }
    c.validate().unwrap();
    c
}

fn write(config: &Config, path: &Path) -> PathBuf {
    std::fs::write(path, config.to_toml()).unwrap();
    path.to_path_buf()
}

#[test]
fn two_iterations_on_a_managed_server() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = server_section();
    server.command = Some(serve_command());
    let c = config(&tmp.path().join("server"), 2, Some(server));
    let stdout = ok(&headless(&write(&c, &tmp.path().join("server.toml"))));
    assert!(stdout.contains("iter 2 sync + eval"), "{stdout}");
    let run = run_dir(&tmp.path().join("server"));
    // Every prompt has its K samples and y_ref, in both iterations; pairs were trained on.
    for iteration in [1, 2] {
        let rows = read_jsonl(&run.join(format!("iter-{iteration:03}/candidates.jsonl")));
        assert_eq!(rows.len(), c.prompts.per_iteration);
        for row in &rows {
            let cands = row["candidates"].as_array().unwrap();
            assert_eq!(cands.len(), c.generate.samples + 1, "{row}");
            assert!(cands.iter().all(|c| c["score"].is_number()), "{row}");
        }
        assert!(
            run.join(format!("iter-{iteration:03}/pairs.jsonl"))
                .is_file()
        );
    }
    let metrics = read_jsonl(&run.join("metrics.jsonl"));
    assert!(metrics.iter().any(|m| m["kind"] == "train"));
    // The server served the starting model, then iteration 1's checkpoint, and is gone.
    let log = std::fs::read_to_string(run.join("server.log")).unwrap();
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("# selm-tui: starting"))
        .collect();
    assert_eq!(starts.len(), 2, "{log}");
    assert!(starts[1].contains("checkpoints/iter-001"), "{log}");
    assert_gone(&run.display().to_string(), Duration::from_secs(5));
    // The checkpoints load.
    let (_, tok) = selm_tui::model::load::load_pretrained::<burn::backend::Flex>(
        &run.join("checkpoints/iter-002"),
        &Default::default(),
    )
    .unwrap();
    assert!(tok.vocab_size() > 0);
    // The same starting model and prompts in-process: the same greedy y_ref (float32
    // argmax in both), prompt by prompt.
    let c = config(&tmp.path().join("local"), 1, None);
    ok(&headless(&write(&c, &tmp.path().join("local.toml"))));
    let local = run_dir(&tmp.path().join("local"));
    assert_eq!(greedy_texts(&run, 1), greedy_texts(&local, 1));
}

#[test]
fn a_server_killed_mid_generation_is_named_and_the_run_resumes_once_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = server_section();
    server.url = Some(url.clone());
    server.retries = 1;
    server.ready_timeout_s = 5.0;
    let c = config(tmp.path(), 1, Some(server));
    let path = write(&c, &tmp.path().join("url.toml"));
    let serving = start_server(port, &tmp.path().join("serve.log"));
    // Stop before the third decode batch, with two recorded; then the server goes away.
    let child = stalled_run(&path, "1:generate:2");
    child.stop();
    serving.stop();
    let run = run_dir(tmp.path());
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        (state["stage"].as_str(), state["unit"].as_u64()),
        (Some("generate"), Some(2))
    );
    // With the server down: one line naming the URL, and nothing recorded lost.
    let before = std::fs::read(run.join("iter-001/candidates.jsonl")).unwrap();
    let out = selm()
        .args(["resume", run.to_str().unwrap(), "--headless"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&url), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        std::fs::read(run.join("iter-001/candidates.jsonl")).unwrap(),
        before
    );
    // Back: the resume goes on from the third batch and finishes.
    let serving = start_server(port, &tmp.path().join("serve2.log"));
    let stdout = ok(&selm()
        .args(["resume", run.to_str().unwrap(), "--headless"])
        .output()
        .unwrap());
    serving.stop();
    assert!(
        stdout.contains("resumed at iteration 1, stage `generate`"),
        "{stdout}"
    );
    let rows = read_jsonl(&run.join("iter-001/candidates.jsonl"));
    assert_eq!(rows.len(), c.prompts.per_iteration);
    for row in rows {
        assert_eq!(
            row["candidates"].as_array().unwrap().len(),
            c.generate.samples + 1
        );
    }
}

#[test]
fn a_managed_server_that_never_answers_is_an_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = server_section();
    // A "server" that never listens; a grandchild too, which must go with its group.
    let marker = "sleep 600.25";
    server.command = Some(format!("{marker} & {marker}; echo {{checkpoint}}"));
    server.ready_timeout_s = 3.0;
    let c = config(tmp.path(), 1, Some(server));
    let start = Instant::now();
    let out = headless(&write(&c, &tmp.path().join("never.toml")));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did not answer") && stderr.contains("within 3 s"),
        "{stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(60));
    assert_gone(marker, Duration::from_secs(5));
}

#[test]
fn killing_selm_tui_takes_its_managed_server_along() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = server_section();
    server.command = Some(serve_command());
    server.port = Some(port);
    let c = config(tmp.path(), 1, Some(server));
    let path = write(&c, &tmp.path().join("kill.toml"));
    let child = stalled_run(&path, "1:generate:1");
    let needle = format!("--port {port}");
    assert!(!processes_with(&needle).is_empty(), "the server runs");
    child.stop();
    assert_gone(&needle, Duration::from_secs(15));
}

/// The next event `pred` picks within `within` (others are skipped).
fn next_event(
    events: &std::sync::mpsc::Receiver<selm_tui::engine::Event>,
    within: Duration,
    pred: impl Fn(&selm_tui::engine::Event) -> bool,
) -> selm_tui::engine::Event {
    let start = Instant::now();
    loop {
        let left = within.saturating_sub(start.elapsed());
        let e = events
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no such event within {within:?}: {e}"));
        if pred(&e) {
            return e;
        }
    }
}

/// A managed server that accepts connections and never answers, with ten minutes to become
/// ready: pause and quit act within a second all the same, the stage says what it waits on,
/// and the wait goes on (the server is not started again) when the run does.
#[test]
fn pause_and_quit_act_while_a_server_starts() {
    use selm_tui::engine::{Command, Event, Start, spawn};
    let tmp = tempfile::tempdir().unwrap();
    let mut server = server_section();
    let marker = "silent-server-0.37";
    server.command = Some(format!(
        "python3 -c 'import socket, sys, time; s = socket.socket(); s.bind((\"127.0.0.1\", \
         int(sys.argv[1]))); s.listen(64); time.sleep(600)' {{port}} {marker} {{checkpoint}}"
    ));
    server.ready_timeout_s = 600.0;
    let c = config(tmp.path(), 1, Some(server));
    let engine = spawn(Start::New(Box::new(c.clone())), c.backend().unwrap()).unwrap();
    let minute = Duration::from_secs(60);
    next_event(&engine.events, minute, |e| matches!(e, Event::Iteration(_)));
    engine.commands.send(Command::Run).unwrap();
    // Past a second, a readiness poll is in flight on the silent port.
    let first = next_event(
        &engine.events,
        minute,
        |e| matches!(e, Event::Waiting(w) if w.what == "server starting" && w.elapsed_s >= 1.0),
    );
    let Event::Waiting(first) = first else {
        unreachable!()
    };
    assert_eq!(first.limit_s, Some(600.0));

    let asked = Instant::now();
    engine.commands.send(Command::Pause).unwrap();
    next_event(&engine.events, minute, |e| matches!(e, Event::Paused));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "paused after {:?}",
        asked.elapsed()
    );
    assert!(
        !processes_with(marker).is_empty(),
        "the server goes on starting"
    );

    engine.commands.send(Command::Run).unwrap();
    let again = next_event(&engine.events, minute, |e| matches!(e, Event::Waiting(_)));
    let Event::Waiting(again) = again else {
        unreachable!()
    };
    assert!(
        again.elapsed_s >= first.elapsed_s,
        "{again:?} after {first:?}"
    );
    let run = tmp.path().join("runs");
    let run = std::fs::read_dir(&run)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log = std::fs::read_to_string(run.join("server.log")).unwrap();
    assert_eq!(log.matches("# selm-tui: starting").count(), 1, "{log}");

    let asked = Instant::now();
    engine.commands.send(Command::Quit).unwrap();
    next_event(&engine.events, minute, |e| {
        matches!(e, Event::Finished { .. })
    });
    // A second for the command, and the server's SIGTERM.
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "quit after {:?}",
        asked.elapsed()
    );
    assert_gone(marker, Duration::from_secs(5));
}
