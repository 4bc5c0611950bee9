//! Child processes selm-tui owns (a generation server, a trainer): each runs as `sh -c COMMAND` in a
//! process group of its own, with its output appended to a log file, and dies with selm-tui
//! however selm-tui ends. A normal end stops the group (SIGTERM, then SIGKILL after a grace
//! period). For an abrupt one (a panic that aborts, SIGKILL), a watchdog `sh` waits on a pipe
//! whose write end only selm-tui holds: when selm-tui is gone the pipe closes, and the
//! watchdog kills the group, so no orphan server is left holding a GPU.

use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::config::placeholder_spans;

/// Kills process group `$1` once its standard input closes.
// (dash, Debian's sh, takes no `--` before a negative pid.)
const WATCHDOG: &str = "read _; kill -TERM -$1 2>/dev/null; sleep 5; kill -KILL -$1 2>/dev/null";

/// A command running in its own process group.
pub struct GroupChild {
    child: Child,
    command: String,
    log: PathBuf,
    watchdog: Child,
    /// The watchdog's standard input: closed when selm-tui ends.
    _lifeline: ChildStdin,
    stopped: bool,
}

impl GroupChild {
    /// Starts `command` under `sh -c`, its stdout and stderr appended to `log`.
    pub fn spawn(command: &str, log: &Path) -> Result<Self> {
        Self::spawn_env(command, log, &[])
    }

    /// [`Self::spawn`] with variables added to the environment.
    pub fn spawn_env(command: &str, log: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let out = open_log(log)?;
        Self::start(command, log, out.try_clone()?.into(), env)
    }

    /// Starts `command` with its stdout on a pipe returned to the caller (who keeps it in
    /// the log), its stderr appended to `log`.
    pub fn spawn_piped(command: &str, log: &Path) -> Result<(Self, ChildStdout)> {
        let mut this = Self::start(command, log, Stdio::piped(), &[])?;
        let stdout = this.child.stdout.take().expect("piped");
        Ok((this, stdout))
    }

    fn start(command: &str, log: &Path, stdout: Stdio, env: &[(&str, &str)]) -> Result<Self> {
        let child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(open_log(log)?)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting `{command}`"))?;
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(child.id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: a Ctrl-C meant for selm-tui must not take the watchdog first.
            .process_group(0)
            .spawn();
        let mut watchdog = match watchdog {
            Ok(w) => w,
            Err(e) => {
                signal_group(child.id() as libc::pid_t, libc::SIGKILL);
                let mut child = child;
                let _ = child.wait();
                return Err(e).context("starting the watchdog of a child process");
            }
        };
        let lifeline = watchdog.stdin.take().expect("piped");
        Ok(Self {
            child,
            command: command.to_string(),
            log: log.to_path_buf(),
            watchdog,
            _lifeline: lifeline,
            stopped: false,
        })
    }

    /// The process group's id (the `sh` leader's pid).
    pub fn pgid(&self) -> u32 {
        self.child.id()
    }

    pub fn command(&self) -> &str {
        &self.command
    }

    /// The exit status, once the command has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `n` lines of the log, for an error message.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Stops the whole group: SIGTERM, then SIGKILL after `grace`. The leader is reaped as
    /// soon as it exits (a zombie leader would keep the group alive to `kill`); its id, the
    /// group's, is not handed out again while any member lives. The watchdog goes last, so
    /// an exit of selm-tui halfway through still leaves it to finish.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        let pgid = self.pgid() as libc::pid_t;
        signal_group(pgid, libc::SIGTERM);
        let start = Instant::now();
        while self.group_alive() && start.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.group_alive() {
            signal_group(pgid, libc::SIGKILL);
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = self.child.wait();
        self.stopped = true;
    }
}

impl GroupChild {
    /// Whether any process of the group runs, the leader reaped first if it has exited.
    fn group_alive(&mut self) -> bool {
        let _ = self.child.try_wait();
        group_alive(self.pgid() as libc::pid_t)
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

fn open_log(log: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))
}

/// `template` with each `{name}` of `values` replaced by its value, shell-quoted (paths may
/// hold spaces), in one pass: a value's own braces are never expanded.
pub fn expand(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut at = 0;
    for (span, name) in placeholder_spans(template) {
        if let Some((_, value)) = values.iter().find(|(n, _)| *n == name) {
            out.push_str(&template[at..span.start]);
            out.push_str(&shell_quote(value));
            at = span.end;
        }
    }
    out.push_str(&template[at..]);
    out
}

/// `value` as one word for `sh` or bash: bare when it is plain, else in single quotes.
/// Stricter than `shell_words::quote`, which leaves `{a,b}` bare for bash to brace-expand.
pub fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@%".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` to its end and returns its output, as `Command::output` does, unless it takes
/// longer than `limit`: then it is killed and that is the error.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Result<std::process::Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    // Read on threads of their own, so that a full pipe cannot stall the child.
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = vec![];
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{program} did not finish within {} s", limit.as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Appends `text` to the log at `path`.
pub fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    open_log(path)?
        .write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Whether any process of group `pgid` is still running: from /proc where there is one
/// (Linux), where zombies can be told apart (an init that never reaps orphans leaves them
/// in the group for good); elsewhere (macOS) from signal 0 to the group, which every Unix
/// answers.
pub fn group_alive(pgid: libc::pid_t) -> bool {
    running_in_proc(pgid).unwrap_or_else(|| {
        // SAFETY: kill(2) with signal 0 only checks that the group exists; nothing is sent.
        let r = unsafe { libc::kill(-pgid, 0) };
        // EPERM: members exist that we may not signal (alive all the same).
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    })
}

/// Whether /proc lists a process of group `pgid` that is not a zombie; None without /proc.
fn running_in_proc(pgid: libc::pid_t) -> Option<bool> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let pgid = pgid.to_string();
    Some(entries.filter_map(|e| e.ok()).any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so read after its `)`.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_to_shell_words() {
        let t = "trainer --in {input} --alpha {alpha} --json '{\"a\": 1}'";
        let values = [
            ("input", "runs/my run/x.jsonl".to_string()),
            ("alpha", "0.001".into()),
        ];
        assert_eq!(
            expand(t, &values),
            "trainer --in 'runs/my run/x.jsonl' --alpha 0.001 --json '{\"a\": 1}'"
        );
        assert_eq!(expand("{v}", &[("v", "it's".into())]), r"'it'\''s'");
        assert_eq!(expand("{v}", &[("v", String::new())]), "''");
        // One pass: a value holding a placeholder's text stays as it is; ${VAR} is the shell's.
        let values = [("out", "runs/{seed}".to_string()), ("seed", "1".into())];
        assert_eq!(
            expand("t {out} {seed} ${HOME}", &values),
            "t 'runs/{seed}' 1 ${HOME}"
        );
    }

    /// The check that works without /proc (macOS) sees a running group and its end.
    #[test]
    fn signal_zero_tells_a_live_group() {
        // `exec`: the group is the one process, gone once reaped.
        let mut group = Command::new("sh")
            .args(["-c", "exec sleep 300"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = group.id() as libc::pid_t;
        // SAFETY: signal 0, as group_alive sends it without /proc.
        assert_eq!(unsafe { libc::kill(-pgid, 0) }, 0);
        signal_group(pgid, libc::SIGKILL);
        group.wait().unwrap();
        assert_ne!(unsafe { libc::kill(-pgid, 0) }, 0);
        assert!(!group_alive(pgid));
    }

    #[test]
    fn output_within_returns_the_output_or_names_the_timeout() {
        let out = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"out\n"[..], &b"err\n"[..])
        );
        let start = Instant::now();
        let err =
            output_within(Command::new("sleep").arg("30"), Duration::from_millis(300)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            format!("{err:#}").contains("sleep did not finish within 0.3 s"),
            "{err:#}"
        );
    }

    #[test]
    fn a_stopped_group_leaves_no_process() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("child.log");
        // A grandchild too: the group goes, not just the shell.
        let mut child = GroupChild::spawn("echo started; sleep 300 & sleep 300", &log).unwrap();
        let pgid = child.pgid() as libc::pid_t;
        let start = Instant::now();
        while !child.log_tail(1).contains("started") {
            assert!(start.elapsed() < Duration::from_secs(10), "never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(group_alive(pgid));
        child.stop(Duration::from_secs(5));
        assert!(!group_alive(pgid));
    }

    #[test]
    fn the_watchdog_kills_the_group_when_its_lifeline_closes() {
        // What selm-tui's death does to its children: the write end closes, nothing else.
        let mut group = Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = group.id() as libc::pid_t;
        let mut watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(pgid.to_string())
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(group_alive(pgid));
        drop(watchdog.stdin.take());
        watchdog.wait().unwrap();
        let _ = group.wait();
        assert!(!group_alive(pgid));
    }
}
