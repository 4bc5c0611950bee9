//! `rank.ranker = "human"` through the engine's commands and events, on the built-in tiny
//! task model: orders, skips, going back and handing off land in the records as they are
//! made; a quit in the middle of the stage resumes at the next prompt; headless refuses.

mod common;

use common::read_jsonl;

use selm_tui::backend::BackendSpec;
use selm_tui::config::{Config, RankerKind};
use selm_tui::engine::{self, Command, EngineHandle, Event, RankQuery, Start, Verdict};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded default, scaled down, ranked by hand with the oracle as fallback.
fn human_config(dir: &Path) -> Config {
    let mut c = Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 1;
    c.prompts.per_iteration = 5;
    c.prompts.eval = 4;
    c.generate.samples = 2;
    c.rank.ranker = RankerKind::Human;
    c.rank.fallback = Some(RankerKind::Oracle);
    c.validate().unwrap();
    c
}

fn spawn(start: Start) -> EngineHandle {
    let h = engine::spawn(start, BackendSpec::Flex).unwrap();
    h.commands.send(Command::Run).unwrap();
    h
}

/// The next question; engine errors on the way are kept in `errors`.
fn next_query_noting(h: &EngineHandle, errors: &mut Vec<String>) -> RankQuery {
    loop {
        match h
            .events
            .recv_timeout(Duration::from_secs(300))
            .expect("an event")
        {
            Event::RankQuery(q) => return q,
            Event::Error(e) => errors.push(e),
            Event::Finished { .. } => panic!("finished without asking"),
            _ => {}
        }
    }
}

/// The next question; panics on an engine error.
fn next_query(h: &EngineHandle) -> RankQuery {
    let mut errors = vec![];
    let q = next_query_noting(h, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    q
}

/// Waits for the end of the run; returns the errors reported on the way.
fn finish(h: EngineHandle) -> Vec<String> {
    let mut errors = vec![];
    for e in h.events.iter() {
        match e {
            Event::Error(e) => errors.push(e),
            Event::Finished { .. } => break,
            Event::RankQuery(q) => panic!("unexpected question about prompt {}", q.index),
            _ => {}
        }
    }
    h.thread.join().unwrap();
    errors
}

fn run_dir(dir: &Path) -> PathBuf {
    let runs: Vec<_> = std::fs::read_dir(dir.join("runs")).unwrap().collect();
    assert_eq!(runs.len(), 1);
    runs.into_iter().next().unwrap().unwrap().path()
}

fn send(h: &EngineHandle, v: Verdict) {
    h.commands.send(Command::Rank(v)).unwrap();
}

/// The reverse of the candidates' order: the last (y_ref) best, the first worst.
fn reversed(q: &RankQuery) -> Vec<usize> {
    (0..q.candidates.len()).rev().collect()
}

#[test]
fn orders_skips_back_and_hand_off_land_in_the_records() {
    let tmp = tempfile::tempdir().unwrap();
    let h = spawn(Start::New(Box::new(human_config(tmp.path()))));
    let q = next_query(&h);
    assert_eq!((q.index, q.total), (0, 5));
    assert!(q.candidates.last().unwrap().is_reference, "y_ref last");
    let first_order = reversed(&q);
    send(
        &h,
        Verdict::Order {
            index: 0,
            order: first_order.clone(),
        },
    );
    assert_eq!(next_query(&h).index, 1);
    send(&h, Verdict::Skip { index: 1 });
    let q = next_query(&h);
    assert_eq!(q.index, 2);
    // A stale answer is refused and changes nothing: prompt 2 is still asked.
    send(&h, Verdict::Skip { index: 0 });
    send(&h, Verdict::Back);
    let mut errors = vec![];
    let q = next_query_noting(&h, &mut errors);
    assert_eq!(q.index, 1, "back to the skipped prompt");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("prompt 1 arrived while prompt 3"),
        "{errors:?}"
    );
    assert!(
        q.candidates.iter().all(|c| c.score.is_none()),
        "skipped: no scores"
    );
    let n = q.candidates.len();
    let second: Vec<usize> = (0..n).collect();
    send(
        &h,
        Verdict::Order {
            index: 1,
            order: second,
        },
    );
    assert_eq!(next_query(&h).index, 2);
    send(&h, Verdict::HandOff);
    assert!(finish(h).is_empty());

    let run = run_dir(tmp.path());
    let rows = read_jsonl(&run.join("iter-001/candidates.jsonl"));
    let rankers: Vec<&str> = rows.iter().map(|r| r["ranker"].as_str().unwrap()).collect();
    assert_eq!(rankers, ["human", "human", "oracle", "oracle", "oracle"]);
    // Prompt 1: best first, evenly down to 0 for the worst.
    let scores: Vec<f64> = rows[0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["score"].as_f64().unwrap())
        .collect();
    for (pos, &c) in first_order.iter().enumerate() {
        let want = 1.0 - pos as f64 / (first_order.len() - 1) as f64;
        assert!((scores[c] - want).abs() < 1e-12, "{scores:?}");
    }
    let pairs = read_jsonl(&run.join("iter-001/pairs.jsonl"));
    let first = pairs
        .iter()
        .find(|p| p["prompt"] == rows[0]["prompt"])
        .unwrap();
    assert_eq!(first["ranker"], "human");
    let cands = rows[0]["candidates"].as_array().unwrap();
    assert_eq!(first["chosen"], cands[first_order[0]]["text"]);
    assert_eq!(
        first["rejected"],
        cands[*first_order.last().unwrap()]["text"]
    );
    let second = pairs
        .iter()
        .find(|p| p["prompt"] == rows[1]["prompt"])
        .unwrap();
    assert_eq!(second["chosen"], rows[1]["candidates"][0]["text"]);
    // The held-out evaluation was scored by the fallback.
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary.as_array().unwrap().len(), 2, "{summary}");
}

#[test]
fn quitting_mid_stage_loses_nothing_and_resume_asks_the_next_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let h = spawn(Start::New(Box::new(human_config(tmp.path()))));
    let mut orders = vec![];
    for index in 0..2 {
        let q = next_query(&h);
        assert_eq!(q.index, index);
        orders.push(reversed(&q));
        send(
            &h,
            Verdict::Order {
                index,
                order: orders[index].clone(),
            },
        );
    }
    assert_eq!(next_query(&h).index, 2);
    h.commands.send(Command::Quit).unwrap();
    assert!(finish(h).is_empty());

    let run = run_dir(tmp.path());
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        (state["stage"].as_str(), state["unit"].as_u64()),
        (Some("rank"), Some(2))
    );
    let rows = read_jsonl(&run.join("iter-001/candidates.jsonl"));
    let answered = |rows: &[Value]| -> Vec<Option<String>> {
        rows.iter()
            .map(|r| r["ranker"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(
        answered(&rows)[..3],
        [Some("human".into()), Some("human".into()), None]
    );

    let h = spawn(Start::Resume(run.clone()));
    let q = next_query(&h);
    assert_eq!(q.index, 2, "resume asks the first prompt not answered");
    send(&h, Verdict::HandOff);
    assert!(finish(h).is_empty());
    let rows = read_jsonl(&run.join("iter-001/candidates.jsonl"));
    let got = answered(&rows);
    assert_eq!(got[..2], [Some("human".into()), Some("human".into())]);
    assert!(
        got[2..].iter().all(|r| r.as_deref() == Some("oracle")),
        "{got:?}"
    );
    for (row, order) in rows.iter().zip(&orders) {
        assert_eq!(row["candidates"][order[0]]["score"], 1.0);
    }
}

#[test]
fn headless_refuses_the_human_ranker_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("human.toml");
    std::fs::write(&config, human_config(tmp.path()).to_toml()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .args(["--config", config.to_str().unwrap(), "run", "--headless"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rank.ranker") && stderr.contains("human") && stderr.contains("TUI"),
        "{stderr}"
    );
    assert!(!tmp.path().join("runs").exists(), "nothing was started");
    // Without a fallback the config itself is refused, naming the key.
    let mut c = human_config(tmp.path());
    c.rank.fallback = None;
    let err = format!("{:#}", c.validate().unwrap_err());
    assert!(err.contains("rank.fallback"), "{err}");
}
