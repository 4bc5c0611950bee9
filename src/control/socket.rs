//! The socket file `RUN_DIR/control.sock`: bound with mode 0600 (only its owner connects),
//! a stale one (its run was killed) recognised and replaced, removed when the run ends.

use anyhow::{Context, Result, bail};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The socket's name in the run directory.
pub const SOCKET: &str = "control.sock";

/// `sun_path` holds 108 bytes; deeper run directories go through `/proc/self/fd`.
const MAX_PATH: usize = 100;

pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET)
}

/// Runs `f` on a path to `dir/name` short enough for a socket address: the path itself, or
/// (Linux) the directory opened and named through `/proc/self/fd/N/name`.
fn short_path<T>(
    dir: &Path,
    name: &str,
    f: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let full = dir.join(name);
    if full.as_os_str().len() < MAX_PATH {
        return f(&full);
    }
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir)?;
    f(&PathBuf::from(format!(
        "/proc/self/fd/{}/{name}",
        handle.as_raw_fd()
    )))
}

pub fn connect(run_dir: &Path) -> std::io::Result<UnixStream> {
    short_path(run_dir, SOCKET, |p| UnixStream::connect(p))
}

/// What a run directory's socket says about its run.
#[derive(Debug)]
pub enum Probe {
    /// No socket: the run is not live (finished, never started, or from before sockets).
    Absent,
    /// A socket nobody answers on: left by a run that was killed.
    Stale,
    /// A socket this process may not use (another user's), or another error.
    Unreachable(std::io::Error),
    Live(UnixStream),
}

pub fn probe(run_dir: &Path) -> Probe {
    match connect(run_dir) {
        Ok(stream) => Probe::Live(stream),
        Err(e) if e.kind() == ErrorKind::NotFound => Probe::Absent,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Probe::Stale,
        Err(e) => Probe::Unreachable(e),
    }
}

/// The bound socket's file, removed on drop if it is still this one (a later run of the
/// same directory may have bound its own since).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: FileId,
}

/// Device, inode and change time: an inode number alone may be reused at once.
type FileId = (u64, u64, i64, i64);

fn file_id(m: &std::fs::Metadata) -> FileId {
    (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| file_id(&m) == self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds `run_dir/control.sock`. The caller holds the run's lock, so a socket already there
/// belongs to a dead process, unless something answers on it, which is refused.
pub fn bind(run_dir: &Path) -> Result<(UnixListener, SocketFile)> {
    let path = socket_path(run_dir);
    match probe(run_dir) {
        Probe::Absent => {}
        Probe::Stale => std::fs::remove_file(&path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?,
        Probe::Live(_) => bail!(
            "{} answers: another process serves this run",
            path.display()
        ),
        Probe::Unreachable(e) => bail!("{} is there but cannot be used: {e}", path.display()),
    }
    // Bound under a private name, made 0600, then renamed into place: no viewer can
    // connect before the mode is set.
    let tmp = format!(".control-{}.sock", std::process::id());
    let _ = std::fs::remove_file(run_dir.join(&tmp));
    let listener = short_path(run_dir, &tmp, |p| UnixListener::bind(p))
        .with_context(|| format!("binding {}", run_dir.join(&tmp).display()))?;
    let tmp = run_dir.join(tmp);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("placing {}", path.display()))?;
    let meta = std::fs::symlink_metadata(&path)?;
    let file = SocketFile {
        path,
        id: file_id(&meta),
    };
    Ok((listener, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_is_private_replaces_stale_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let (listener, file) = bind(dir.path()).unwrap();
        let path = socket_path(dir.path());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(probe(dir.path()), Probe::Live(_)));
        // A second bind while this one listens is refused.
        let e = bind(dir.path()).unwrap_err().to_string();
        assert!(e.contains("answers"), "{e}");
        // The listener gone but the file left (a killed run): stale, then replaced.
        drop(listener);
        std::mem::forget(file);
        assert!(matches!(probe(dir.path()), Probe::Stale));
        let (_listener, file) = bind(dir.path()).unwrap();
        assert!(matches!(probe(dir.path()), Probe::Live(_)));
        drop(file);
        assert!(!path.exists());
        assert!(matches!(probe(dir.path()), Probe::Absent));
    }

    #[test]
    fn a_deep_run_directory_still_binds() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a".repeat(60)).join("b".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        assert!(socket_path(&deep).as_os_str().len() > 108);
        let (_listener, _file) = bind(&deep).unwrap();
        assert!(matches!(probe(&deep), Probe::Live(_)));
    }

    #[test]
    fn a_newer_socket_is_not_removed_by_an_older_guard() {
        let dir = tempfile::tempdir().unwrap();
        let (l1, old) = bind(dir.path()).unwrap();
        drop(l1);
        let (_l2, _new) = bind(dir.path()).unwrap();
        drop(old);
        assert!(socket_path(dir.path()).exists());
    }
}
