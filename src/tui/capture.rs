//! While the TUI owns the terminal, anything else that writes to stdout or stderr (a
//! library's `println!`, a warning) would scribble over the screen. [`start`] moves file
//! descriptors 1 and 2 onto a pipe whose lines a thread reads for the log panel, and hands
//! the TUI its own descriptor of the real terminal; [`restore`] puts them back (also from
//! the panic hook, before the terminal is restored).

use std::fs::File;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, channel};

/// The original stdout and stderr while captured.
static SAVED: Mutex<Option<(i32, i32)>> = Mutex::new(None);

/// Starts capturing; returns the captured lines and a writer on the real terminal.
pub fn start() -> std::io::Result<(Receiver<String>, File)> {
    use std::io::BufRead;
    use std::os::fd::FromRawFd;
    // SAFETY: plain descriptor calls on descriptors this function owns or on 1 and 2; each
    // result is checked before use.
    unsafe {
        let check = |r: i32| {
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(r)
            }
        };
        let out = check(libc::dup(1))?;
        let err = check(libc::dup(2))?;
        let terminal = check(libc::dup(1))?;
        let mut fds = [0i32; 2];
        check(libc::pipe(fds.as_mut_ptr()))?;
        let [read, write] = fds;
        check(libc::dup2(write, 1))?;
        check(libc::dup2(write, 2))?;
        libc::close(write);
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some((out, err));
        let (tx, rx) = channel();
        let reader = std::io::BufReader::new(File::from_raw_fd(read));
        std::thread::Builder::new()
            .name("selm-output".into())
            .spawn(move || {
                // Ends when the pipe's last writer (fds 1 and 2) is restored away.
                for line in reader.lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        Ok((rx, File::from_raw_fd(terminal)))
    }
}

/// Puts the original stdout and stderr back (idempotent).
pub fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((out, err)) = saved {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: `out` and `err` are descriptors `start` duplicated and nobody else closes.
        unsafe {
            libc::dup2(out, 1);
            libc::dup2(err, 2);
            libc::close(out);
            libc::close(err);
        }
    }
}
