//! End to end: the real binary in a tmux pane, driven by keys. Steps one full iteration stage
//! by stage, changes alpha, opens a pair, quits; then checks the screen and the run directory;
//! then opens the stopped run with `inspect`, resumes it with `R` and runs it to the end.
//! Needs tmux (.ci/run installs it); without it this test fails rather than skips.

#[path = "common/tmux.rs"]
mod tmux;

use std::path::{Path, PathBuf};
use std::time::Duration;
use tmux::Tmux;

/// The embedded default, scaled down: 2 iterations of 32 prompts, 16 held-out.
fn config(dir: &Path) -> PathBuf {
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 2;
    c.prompts.per_iteration = 32;
    c.prompts.eval = 16;
    let path = dir.join("e2e.toml");
    std::fs::write(&path, c.to_toml()).unwrap();
    path
}

#[test]
fn step_an_iteration_change_alpha_open_a_pair_and_quit() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let bin = env!("CARGO_BIN_EXE_selm-tui");
    let command = format!("{bin} --config {}; echo EXITED:$?; sleep 60", cfg.display());
    let tmux = Tmux::new("run", &command, 100, 30);
    let long = Duration::from_secs(300);
    tmux.wait_for("PAUSED", long);
    tmux.wait_for("iter 0 eval", long);

    // One stage per `s`; each logs "iter 1 <stage>: <summary>" when done.
    for (i, stage) in [
        "sample prompts",
        "generate",
        "rank",
        "select pairs",
        "update",
        "sync + eval",
    ]
    .iter()
    .enumerate()
    {
        if i == 4 {
            // Before the update: alpha 0.001 -> 0.002 in the popup.
            tmux.keys(&["e"]);
            tmux.wait_for("parameters", long);
            tmux.keys(&["BSpace"; 5]);
            tmux.keys(&["0", ".", "0", "0", "2", "Enter"]);
            tmux.wait_for("set alpha 0.002", long);
        }
        tmux.keys(&["s"]);
        tmux.wait_for(&format!("iter 1 {stage}:"), long);
    }
    let dashboard = tmux.wait_for("iter 1 eval: kl", long);
    assert!(dashboard.contains("α 0.002"), "{dashboard}");

    // The pair list, then the first pair's inspector with its measured log-probs.
    tmux.keys(&["Tab"]);
    tmux.wait_for("pairs, iteration 1", long);
    tmux.keys(&["Enter"]);
    let pair = tmux.wait_for("log π_ref", long);
    for needle in [
        "prompt",
        "chosen",
        "rejected",
        "y_ref",
        "reward β·Δ",
        "log π_θ",
    ] {
        assert!(pair.contains(needle), "{needle}:\n{pair}");
    }

    tmux.keys(&["q"]);
    let end = tmux.wait_for("EXITED:", long);
    assert!(end.contains("EXITED:0"), "{end}");
    let run_dir = end
        .lines()
        .find_map(|l| l.strip_prefix("run directory: "))
        .unwrap_or_else(|| panic!("the run directory is printed on exit:\n{end}"))
        .trim()
        .to_string();
    let run = Path::new(&run_dir);
    for f in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "iter-001/candidates.jsonl",
        "iter-001/pairs.jsonl",
        "iter-001/pair_logps.jsonl",
        "checkpoints/iter-001/model.safetensors",
    ] {
        assert!(run.join(f).is_file(), "{f} in {run_dir}");
    }
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    let set = history
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "set")
        .expect("the alpha change is in history.jsonl");
    assert_eq!(set["new"]["alpha"], 0.002);
    assert_eq!(set["old"]["alpha"], 0.001);
    // The update ran with the new alpha: the iteration's eval row records it.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let eval1 = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|m| m["kind"] == "eval" && m["iteration"] == 1)
        .expect("iteration 1's eval row");
    assert_eq!(eval1["alpha"], 0.002);
    // Iteration 2 was never started: nothing of it on disk.
    assert!(!run.join("iter-002").exists());
    drop(tmux);
    inspect_and_resume(run);
}

/// `inspect` on the stopped run offers `R`; it resumes in the TUI, runs to the end.
fn inspect_and_resume(run: &Path) {
    let bin = env!("CARGO_BIN_EXE_selm-tui");
    let command = format!("{bin} inspect {}; echo EXITED:$?; sleep 60", run.display());
    let tmux = Tmux::new("inspect", &command, 100, 30);
    let long = Duration::from_secs(300);
    let screen = tmux.wait_for("READ-ONLY", long);
    assert!(screen.contains("R resume"), "{screen}");
    tmux.keys(&["R"]);
    tmux.wait_for("resumed at iteration 2", long);
    tmux.keys(&["r"]);
    tmux.wait_for("run complete", long);
    tmux.keys(&["q"]);
    let end = tmux.wait_for("EXITED:", long);
    assert!(end.contains("EXITED:0"), "{end}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["finished"], true);
    assert!(run.join("checkpoints/iter-002/model.safetensors").is_file());
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    assert!(history.contains(r#""event":"resume""#), "{history}");
}

/// Output a library prints while the TUI runs goes to the log panel, not over the screen:
/// the tokenizers crate prints a warning for a vocabulary with a hole (no `j` here).
#[test]
fn library_output_shows_in_the_log_panel() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-tasks");
    let model = tmp.path().join("holey");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), model.join(f)).unwrap();
    }
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    assert!(
        tok["model"]["vocab"]
            .as_object_mut()
            .unwrap()
            .remove("j")
            .is_some()
    );
    std::fs::write(model.join("tokenizer.json"), tok.to_string()).unwrap();
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = tmp.path().join("runs");
    c.prompts.eval = 8;
    c.model.path = model.display().to_string();
    let cfg = tmp.path().join("holey.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    let bin = env!("CARGO_BIN_EXE_selm-tui");
    let command = format!("{bin} --config {}; echo EXITED:$?; sleep 60", cfg.display());
    let tmux = Tmux::new("output", &command, 100, 30);
    let long = Duration::from_secs(300);
    let screen = tmux.wait_for("PAUSED", long);
    let log = tmux.wait_for("contains holes", long);
    // Drawn inside the log panel's border, and the header is intact.
    let line = log.lines().find(|l| l.contains("contains holes")).unwrap();
    assert!(line.starts_with('│'), "{log}");
    assert!(
        screen.lines().next().unwrap().starts_with(" selm-tui"),
        "{screen}"
    );
    tmux.keys(&["q"]);
    let end = tmux.wait_for("EXITED:", long);
    assert!(end.contains("EXITED:0"), "{end}");
}

/// `rank.ranker = "human"`: the rank stage asks in the Rank view; rank two prompts by keys,
/// skip one, go back to it and rank it, hand the rest to the oracle, run to the end.
#[test]
fn rank_prompts_by_hand_in_the_tui() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = tmp.path().join("runs");
    c.run.iterations = 1;
    c.prompts.per_iteration = 6;
    c.prompts.eval = 8;
    c.generate.samples = 2;
    c.rank.ranker = selm_tui::config::RankerKind::Human;
    c.rank.fallback = Some(selm_tui::config::RankerKind::Oracle);
    let cfg = tmp.path().join("human.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    let bin = env!("CARGO_BIN_EXE_selm-tui");
    let command = format!("{bin} --config {}; echo EXITED:$?; sleep 60", cfg.display());
    let tmux = Tmux::new("human", &command, 100, 30);
    let long = Duration::from_secs(300);
    tmux.wait_for("iter 0 eval", long);
    tmux.keys(&["r"]);
    tmux.wait_for("prompt 1 of 6", long);
    // Prompt 1: the highlighted (first) candidate to the bottom, submit.
    tmux.keys(&["-", "Enter"]);
    tmux.wait_for("prompt 2 of 6", long);
    tmux.keys(&["Enter"]);
    tmux.wait_for("prompt 3 of 6", long);
    tmux.keys(&["x"]);
    tmux.wait_for("prompt 4 of 6", long);
    tmux.keys(&["u"]);
    tmux.wait_for("prompt 3 of 6", long);
    tmux.keys(&["j", "+", "Enter"]);
    tmux.wait_for("prompt 4 of 6", long);
    tmux.keys(&["H"]);
    tmux.wait_for("run complete", long);
    tmux.keys(&["q"]);
    let end = tmux.wait_for("EXITED:", long);
    assert!(end.contains("EXITED:0"), "{end}");
    let run = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(run.join("iter-001/candidates.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let rankers: Vec<&str> = rows.iter().map(|r| r["ranker"].as_str().unwrap()).collect();
    assert_eq!(
        rankers,
        ["human", "human", "human", "oracle", "oracle", "oracle"]
    );
    let scores = |r: &serde_json::Value| -> Vec<f64> {
        r["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["score"].as_f64().unwrap())
            .collect()
    };
    // Candidate order [1, 2, 0] for prompt 1; as shown for prompt 2; [1, 0, 2] for prompt 3.
    assert_eq!(scores(&rows[0]), [0.0, 1.0, 0.5]);
    assert_eq!(scores(&rows[1]), [1.0, 0.5, 0.0]);
    assert_eq!(scores(&rows[2]), [0.5, 1.0, 0.0]);
}
