//! One viewer's connection on the run's side: the accepting thread, the handshake, the
//! viewer's commands into the engine, and the thread that writes its events.

use std::io::{BufReader, BufWriter, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::protocol::{self, ClientMsg, PROTOCOL, ServerMsg};
use crate::engine::{Command, Commands, Origin};

/// Messages queued for one viewer; a viewer this far behind is not reading and is dropped.
pub(super) const QUEUE: usize = 20_000;

/// What a connection's threads tell the hub.
pub(super) enum Note {
    Joined(Connected),
    Left { id: u64, why: String },
}

/// A viewer that said hello, as the hub keeps it.
pub(super) struct Connected {
    pub(super) id: u64,
    pub(super) pid: u32,
    pub(super) run_dir: String,
    pub(super) queue: SyncSender<Arc<str>>,
    pub(super) stream: UnixStream,
    pub(super) writer: JoinHandle<()>,
}

/// A viewer has this long to say hello, and a write to it this long to go through.
const HANDSHAKE: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until the run ends; each gets its own thread for the handshake and
/// its commands, and one that writes its events.
pub(super) struct Acceptor {
    pub(super) commands: Commands,
    pub(super) notes: Sender<Note>,
    pub(super) run_dir: PathBuf,
    pub(super) stop: Arc<AtomicBool>,
}

impl Acceptor {
    pub(super) fn run(self, listener: UnixListener) {
        // Non-blocking, so the thread notices the run's end.
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        let mut next_id = 0;
        while !self.stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    next_id += 1;
                    let conn = Connection {
                        id: next_id,
                        commands: self.commands.clone(),
                        notes: self.notes.clone(),
                        run_dir: self.run_dir.display().to_string(),
                    };
                    let _ = std::thread::Builder::new()
                        .name("selm-control-viewer".into())
                        .spawn(move || conn.run(stream));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

struct Connection {
    id: u64,
    commands: Commands,
    notes: Sender<Note>,
    run_dir: String,
}

impl Connection {
    fn run(self, stream: UnixStream) {
        let _ = stream.set_nonblocking(false);
        let Ok(mut reader) = stream.try_clone().map(BufReader::new) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(HANDSHAKE));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let pid = match self.handshake(&mut reader) {
            Ok(pid) => pid,
            Err(msg) => {
                reply(&stream, &msg);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
        };
        let _ = stream.set_read_timeout(None);
        let (queue, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let Ok(out) = stream.try_clone() else { return };
        let writer = std::thread::spawn(move || write_all(out, rx));
        let errors = queue.clone();
        let Ok(handle) = stream.try_clone() else {
            return;
        };
        let viewer = Connected {
            id: self.id,
            pid,
            run_dir: self.run_dir.clone(),
            queue,
            stream: handle,
            writer,
        };
        if self.notes.send(Note::Joined(viewer)).is_err() {
            return;
        }
        let why = self.commands_from(&mut reader, pid, &errors);
        let _ = self.notes.send(Note::Left { id: self.id, why });
    }

    /// The viewer's hello: its pid, or the answer that refuses it.
    fn handshake(&self, reader: &mut BufReader<UnixStream>) -> Result<u32, Box<ServerMsg>> {
        let error = |why: String| Box::new(ServerMsg::Error(why));
        let line = match protocol::read_line(reader) {
            Ok(Some(line)) => line,
            Ok(None) => return Err(error("closed before its hello".into())),
            Err(e) => return Err(error(format!("no hello: {e}"))),
        };
        match serde_json::from_str::<ClientMsg>(&line) {
            Ok(ClientMsg::Hello { protocol, pid, .. }) if protocol == PROTOCOL => Ok(pid),
            Ok(ClientMsg::Hello {
                protocol, client, ..
            }) => {
                let reason = format!(
                    "this run ({}) speaks control protocol {PROTOCOL}; the viewer ({client}) \
                     speaks {protocol}",
                    protocol::software()
                );
                Err(Box::new(ServerMsg::Refused {
                    protocol: PROTOCOL,
                    reason,
                }))
            }
            Ok(ClientMsg::Command(_)) => Err(error("a command before its hello".into())),
            Err(e) => Err(error(format!("not a hello ({e}): {}", clip(&line)))),
        }
    }

    /// Forwards the viewer's commands to the engine until it leaves; says how it left.
    fn commands_from(
        &self,
        reader: &mut BufReader<UnixStream>,
        pid: u32,
        errors: &SyncSender<Arc<str>>,
    ) -> String {
        loop {
            let line = match protocol::read_line(reader) {
                Ok(Some(line)) => line,
                Ok(None) => return String::new(),
                Err(e) => return format!(": {e}"),
            };
            let cmd = match serde_json::from_str::<ClientMsg>(&line) {
                Ok(ClientMsg::Command(cmd)) => cmd,
                Ok(ClientMsg::Hello { .. }) => continue,
                Err(e) => {
                    let why = format!("not a command ({e}): {}", clip(&line));
                    let msg = serde_json::to_string(&ServerMsg::Error(why.clone()))
                        .expect("a string serializes");
                    let _ = errors.try_send(msg.into());
                    return format!(", for sending {why}");
                }
            };
            let cmd = match cmd {
                // The run records who changed what: the socket says, not the viewer.
                Command::SetParams {
                    alpha, beta, lr, ..
                } => Command::SetParams {
                    alpha,
                    beta,
                    lr,
                    origin: Origin::Attach { pid },
                },
                cmd => cmd,
            };
            if self.commands.send(cmd).is_err() {
                return ": the engine has stopped".into();
            }
        }
    }
}

fn reply(stream: &UnixStream, msg: &ServerMsg) {
    let mut out = stream;
    let line = serde_json::to_string(msg).expect("a message serializes");
    let _ = writeln!(out, "{line}");
}

/// Writes queued lines, flushing whenever the queue runs dry.
fn write_all(stream: UnixStream, rx: Receiver<Arc<str>>) {
    let mut out = BufWriter::with_capacity(1 << 16, &stream);
    'outer: while let Ok(line) = rx.recv() {
        let mut next = Some(line);
        while let Some(line) = next {
            if out
                .write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .is_err()
            {
                break 'outer;
            }
            next = rx.try_recv().ok();
        }
        if out.flush().is_err() {
            break;
        }
    }
    drop(out);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// What the viewer sent, quoted and cut short, for an error line.
fn clip(line: &str) -> String {
    format!("{:?}", crate::text::clip(line, 80))
}
