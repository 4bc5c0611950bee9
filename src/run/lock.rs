//! `RUN_DIR/lock`: one process writes a run at a time; a lock whose process is gone (killed)
//! is taken over.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Holds `RUN_DIR/lock` while a process writes the run: a second process refuses. A lock
/// left by a process that no longer exists (killed) is taken over.
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    pub fn acquire(run: &Path) -> Result<Self> {
        let path = run.join("lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    writeln!(f, "{}", std::process::id())?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    match holder.trim().parse::<u32>() {
                        Ok(pid) if process_alive(pid) => bail!(
                            "{} is in use by another selm-tui (pid {pid}; lock file {}); \
                             `selm-tui attach {}` opens it while it runs",
                            run.display(),
                            path.display(),
                            run.display()
                        ),
                        // Stale (its process is gone) or unreadable: take it over.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!("could not take the lock {}", path.display())
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` exists (signal 0 probes without sending anything).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for the process; no memory is involved.
    let r = unsafe { libc::kill(pid, 0) };
    let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !zombie(pid)
}

/// Whether `pid` has exited and waits to be reaped (Linux's `Z` state): a killed run whose
/// parent died too stays a zombie where PID 1 does not reap, and holds no lock.
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // `pid (comm) state ...`; comm may hold spaces and parentheses.
            let after = s.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|st| st == "Z")
        })
        .unwrap_or(false)
}
