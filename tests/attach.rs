//! `selm-tui attach`: the real binary, a headless run waiting paused, viewers in tmux panes.
//! Steps and steers the run from a viewer (alpha changed mid-run, found in history.jsonl and
//! in the next update's metrics), detaches and re-attaches, two viewers at once, one killed
//! with SIGKILL, raw clients that send garbage or speak another protocol version, a hung
//! client, stopping the run from a viewer; then a socket left by `kill -9` of a run.
//! Needs tmux (.ci/run installs it).

#[path = "common/external.rs"]
mod external;
#[path = "common/tmux.rs"]
mod tmux;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use external::{Killed, selm};
use selm_tui::control::protocol::PROTOCOL;
use tmux::Tmux;

const LONG: Duration = Duration::from_secs(120);

/// The embedded default, scaled down: 2 iterations of 32 prompts in updates of 8 pairs,
/// 16 held-out.
fn config(dir: &Path) -> PathBuf {
    let mut c = selm_tui::config::Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 2;
    c.prompts.per_iteration = 32;
    c.prompts.eval = 16;
    c.train.batch_size = 8;
    let path = dir.join("attach.toml");
    std::fs::write(&path, c.to_toml()).unwrap();
    path
}

/// `run --headless --paused`, its output in `log`; returns it with its run directory once
/// the starting evaluation is done.
fn paused_run(config: &Path, log: &Path, extra: &[&str]) -> (Killed, PathBuf) {
    let out = std::fs::File::create(log).unwrap();
    let child = Killed(
        selm()
            .args(["--config", config.to_str().unwrap(), "run", "--headless"])
            .args(extra)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    let text = wait_in_file(log, "iter 0 eval");
    let dir = text
        .lines()
        .find_map(|l| l.split_once("] run ")?.1.split_once(':').map(|(d, _)| d))
        .expect("the run directory line");
    (child, PathBuf::from(dir))
}

fn wait_in_file(path: &Path, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < LONG,
            "no {needle:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn viewer(name: &str, run: &Path) -> Tmux {
    let exe = env!("CARGO_BIN_EXE_selm-tui");
    let command = format!("{exe} attach {}; echo EXITED: $?; sleep 600", run.display());
    Tmux::new(name, &command, 120, 40)
}

/// A raw client: says `hello` with `protocol`, returns the stream and the first line back.
fn raw_client(run: &Path, protocol: u32) -> (UnixStream, String) {
    let stream = UnixStream::connect(run.join("control.sock")).unwrap();
    let hello = format!(r#"{{"hello":{{"protocol":{protocol},"client":"raw test","pid":1}}}}"#);
    writeln!(&stream, "{hello}").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut first = String::new();
    BufReader::new(&stream).read_line(&mut first).unwrap();
    (stream, first)
}

/// The newest selm-tui process whose command line holds `needle` (not the shell around it).
fn pid_of(needle: &str) -> i32 {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let ours = cmd.contains(needle) && cmd.starts_with(env!("CARGO_BIN_EXE_selm-tui"));
            ours.then(|| e.file_name().to_str()?.parse().ok()).flatten()
        })
        .max()
        .unwrap_or_else(|| panic!("no process with {needle:?}"))
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn viewers_step_steer_detach_and_stop_a_headless_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let log = tmp.path().join("run.log");
    let (run, dir) = paused_run(&cfg, &log, &["--paused"]);
    let sock = dir.join("control.sock");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is its owner's only");

    // A viewer steps to the update, changes alpha, runs one mini-batch.
    let a = viewer("a", &dir);
    let screen = a.wait_for("attached to pid", LONG);
    assert!(screen.contains("PAUSED"), "{screen}");
    for stage in ["sample prompts", "generate", "rank", "select pairs"] {
        a.keys(&["s"]);
        a.wait_for(&format!("iter 1 {stage}:"), LONG);
    }
    a.keys(&["e"]);
    a.wait_for("parameters", LONG);
    a.keys(&["BSpace"; 6]);
    a.keys(&["0", ".", "0", "3", "Enter"]);
    a.wait_for("set alpha 0.03", LONG);
    a.keys(&["b"]);
    let screen = a.wait_for("step 1)", LONG);
    println!("viewer a after one mini-batch:\n{screen}");
    wait_in_file(&log, "set alpha 0.03");

    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let set = history.lines().last().unwrap();
    let set: serde_json::Value = serde_json::from_str(set).unwrap();
    assert_eq!(set["event"], "set");
    assert_eq!(set["new"]["alpha"], 0.03);
    let viewer_pid = pid_of(&format!("attach {}", dir.display()));
    assert_eq!(set["source"], format!("attach (pid {viewer_pid})"));
    let rows = jsonl(&dir.join("metrics.jsonl"));
    let first = rows.iter().find(|r| r["kind"] == "train").unwrap();
    assert_eq!(
        (first["step"].as_u64(), first["alpha"].as_f64()),
        (Some(1), Some(0.03))
    );

    // q detaches; the run goes on.
    a.keys(&["q"]);
    let screen = a.wait_for("EXITED: 0", LONG);
    assert!(screen.contains("detached; the run goes on"), "{screen}");
    assert!(sock.exists());

    // Two viewers at once; a re-attached one shows the run so far from its files.
    let b = viewer("b", &dir);
    let c = viewer("c", &dir);
    let screen = b.wait_for("attached to pid", LONG);
    assert!(screen.contains("α 0.03"), "{screen}");
    assert!(
        screen.contains("step 1)"),
        "the loss chart from metrics.jsonl:\n{screen}"
    );
    c.wait_for("attached to pid", LONG);

    // Raw clients: another protocol version is refused with both versions named; garbage
    // after a hello closes that connection only; a client that never reads blocks nothing.
    let (_, refused) = raw_client(&dir, 99);
    assert!(
        refused.contains("refused") && refused.contains(&format!("protocol {PROTOCOL}")),
        "{refused}"
    );
    assert!(refused.contains("speaks 99"), "{refused}");
    let (garbage, hello) = raw_client(&dir, PROTOCOL);
    assert!(hello.starts_with(r#"{"hello""#), "{hello}");
    writeln!(&garbage, "this is not json").unwrap();
    let (_hung, _) = raw_client(&dir, PROTOCOL);
    b.wait_for("not a command", LONG);

    // SIGKILL one viewer; the other steps the rest of the update.
    let c_pid = pid_of(&format!("attach {}", dir.display()));
    unsafe { libc::kill(c_pid, libc::SIGKILL) };
    b.wait_for("viewer detached", LONG);
    b.keys(&["s"]);
    wait_in_file(&log, "iter 1 update");
    let screen = b.wait_for("PAUSED", LONG);
    println!("viewer b after the update:\n{screen}");
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("iter 1 sync")
    );

    // S asks, y stops the run: the headless process ends unfinished, the socket goes.
    b.keys(&["S"]);
    b.wait_for("Stop the run of pid", LONG);
    b.keys(&["y"]);
    let screen = b.wait_for("EXITED: 0", LONG);
    assert!(screen.contains("the run stopped"), "{screen}");
    let mut run = run;
    let status = run.0.wait().unwrap();
    assert!(!status.success());
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(out.contains("stopped before its end"), "{out}");
    assert!(!sock.exists(), "the socket outlived its run");
    drop(c);

    // The stopped run resumes headless to its end.
    let out = selm()
        .args(["resume", dir.to_str().unwrap(), "--headless"])
        .output()
        .unwrap();
    external::ok(&out);
    assert!(!sock.exists());
}

#[test]
fn a_socket_left_by_a_killed_run_is_not_taken_for_a_live_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let log = tmp.path().join("run.log");
    let (run, dir) = paused_run(&cfg, &log, &["--paused"]);
    let sock = dir.join("control.sock");

    // `inspect` of a live run without a terminal says it is live and how to attach.
    let out = selm()
        .args(["inspect", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is a live run") && err.contains("selm-tui attach"),
        "{err}"
    );

    run.stop();
    assert!(sock.exists(), "kill -9 leaves the socket file");
    let out = selm()
        .args(["attach", dir.to_str().unwrap()])
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("left by a run that was killed"), "{err}");
    println!("attach to a killed run: {err}");
    let a = viewer("stale", &dir);
    let screen = a.wait_for("EXITED: 1", LONG);
    assert!(screen.contains("left by a run that was killed"), "{screen}");

    // resume replaces it, serves, and removes it at the end.
    let out = selm()
        .args(["resume", dir.to_str().unwrap(), "--headless"])
        .output()
        .unwrap();
    let stdout = external::ok(&out);
    assert!(stdout.contains("iter 2 eval"), "{stdout}");
    assert!(!stdout.contains("no control socket"), "{stdout}");
    assert!(!sock.exists());
}
