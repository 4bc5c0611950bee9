//! The run's side of the control socket. A hub thread stands between the engine and the
//! run's own front end: it forwards every event to that front end and to each attached
//! viewer, and viewers' commands go straight into the engine's command channel. A viewer
//! that disconnects, hangs or sends garbage is dropped; nothing the hub does waits on one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::time::{Duration, Instant};

use super::catch_up::CatchUp;
use super::connection::{Acceptor, Connected, Note, QUEUE};
use super::protocol::{self, PROTOCOL, ServerMsg};
use super::socket::{self, SocketFile};
use crate::engine::{Commands, EngineHandle, Event, LogLine};

/// Puts the control socket between `engine` and the front end that called: the returned
/// handle's events are the engine's, all of them, in order.
pub fn serve(engine: EngineHandle) -> EngineHandle {
    let (local_tx, local_rx) = std::sync::mpsc::channel();
    let (notes_tx, notes_rx) = std::sync::mpsc::channel();
    let hub = Hub {
        commands: engine.commands.clone(),
        local: local_tx,
        notes: notes_tx,
        viewers: vec![],
        catch_up: CatchUp::default(),
        socket: None,
    };
    let events = engine.events;
    std::thread::Builder::new()
        .name("selm-control".into())
        .spawn(move || hub.run(events, notes_rx))
        .expect("spawning the control thread");
    EngineHandle {
        commands: engine.commands,
        events: local_rx,
        thread: engine.thread,
    }
}

/// The bound socket and its accepting thread.
struct Listening {
    /// Held for its drop, which removes the socket file.
    _file: SocketFile,
    stop: Arc<AtomicBool>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Hub {
    commands: Commands,
    local: Sender<Event>,
    notes: Sender<Note>,
    viewers: Vec<Connected>,
    catch_up: CatchUp,
    socket: Option<Listening>,
}

impl Hub {
    fn run(mut self, events: Receiver<Event>, notes: Receiver<Note>) {
        loop {
            for note in notes.try_iter() {
                self.note(note);
            }
            match events.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Finished { completed }) => {
                    self.finish(Event::Finished { completed });
                    return;
                }
                Ok(event) => {
                    if let Event::Started { run_dir, .. } = &event {
                        self.listen(Path::new(run_dir));
                    }
                    self.publish(event);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish(Event::Finished { completed: false });
                    return;
                }
            }
        }
    }

    /// Binds the run's socket; without one the run goes on, unreachable, and says why.
    fn listen(&mut self, run_dir: &Path) {
        match socket::bind(run_dir) {
            Ok((listener, file)) => {
                let stop = Arc::new(AtomicBool::new(false));
                let accept = Acceptor {
                    commands: self.commands.clone(),
                    notes: self.notes.clone(),
                    run_dir: run_dir.to_path_buf(),
                    stop: stop.clone(),
                };
                std::thread::Builder::new()
                    .name("selm-control-accept".into())
                    .spawn(move || accept.run(listener))
                    .expect("spawning the control socket's thread");
                self.socket = Some(Listening { _file: file, stop });
            }
            Err(e) => {
                let _ = self.local.send(Event::Log(LogLine::warn(format!(
                    "no control socket, `selm-tui attach` cannot reach this run: {e:#}"
                ))));
            }
        }
    }

    fn note(&mut self, note: Note) {
        match note {
            Note::Joined(viewer) => {
                let pid = viewer.pid;
                // The hello goes out here, after every event not in the viewer's queue: a
                // viewer reads the run directory once it has the hello, and finds them there.
                let hello = ServerMsg::Hello {
                    protocol: PROTOCOL,
                    server: protocol::software(),
                    pid: std::process::id(),
                    run_dir: viewer.run_dir.clone(),
                };
                let _ = viewer
                    .queue
                    .try_send(serde_json::to_string(&hello).expect("a hello").into());
                for event in &self.catch_up.events {
                    // A new queue holds the whole catch-up (it is capped well below QUEUE).
                    let _ = viewer.queue.try_send(encode(event));
                }
                self.viewers.push(viewer);
                self.publish(Event::Log(LogLine::info(format!(
                    "viewer attached (pid {pid})"
                ))));
            }
            Note::Left { id, why } => {
                if let Some(i) = self.viewers.iter().position(|v| v.id == id) {
                    let v = self.viewers.swap_remove(i);
                    let _ = v.stream.shutdown(std::net::Shutdown::Both);
                    self.publish(Event::Log(LogLine::info(format!(
                        "viewer detached (pid {}){why}",
                        v.pid
                    ))));
                }
            }
        }
    }

    /// To the front end and every viewer; a viewer that cannot take it is dropped.
    fn publish(&mut self, event: Event) {
        self.catch_up.observe(&event);
        if !self.viewers.is_empty() {
            let line = encode(&event);
            let mut dropped = vec![];
            self.viewers
                .retain(|v| match v.queue.try_send(line.clone()) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        let _ = v.stream.shutdown(std::net::Shutdown::Both);
                        dropped.push(v.pid);
                        false
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                });
            for pid in dropped {
                let line = LogLine::warn(format!(
                    "viewer pid {pid} fell {QUEUE} events behind (not reading): disconnected"
                ));
                self.catch_up.observe(&Event::Log(line.clone()));
                let _ = self.local.send(Event::Log(line));
            }
        }
        // A front end that has gone (the TUI left at once) leaves the viewers watching.
        let _ = self.local.send(event);
    }

    /// The run ended: the socket goes first (no viewer may mistake it for live), viewers get
    /// the end and a moment to read it, then the front end hears of it.
    fn finish(&mut self, finished: Event) {
        self.socket = None;
        let line = encode(&finished);
        let deadline = Instant::now() + Duration::from_secs(1);
        for v in std::mem::take(&mut self.viewers) {
            let _ = v.queue.try_send(line.clone());
            // The connection's reader holds a sender too: ending its read lets the queue
            // close, so the writer stops once the end is written.
            let _ = v.stream.shutdown(std::net::Shutdown::Read);
            drop(v.queue);
            while !v.writer.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = v.stream.shutdown(std::net::Shutdown::Both);
        }
        let _ = self.local.send(finished);
    }
}

fn encode(event: &Event) -> Arc<str> {
    let msg = ServerMsg::Event(event.clone());
    serde_json::to_string(&msg)
        .unwrap_or_else(|e| {
            serde_json::to_string(&ServerMsg::Error(format!("an event not sent: {e}")))
                .expect("a string serializes")
        })
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Command;
    use crate::engine::LiveParams;
    use crate::engine::Origin;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;

    /// A hub in front of a stand-in engine: its event sender and command receiver.
    fn hub_on(dir: &Path) -> (Sender<Event>, Receiver<Command>, EngineHandle) {
        let (evt_tx, evt_rx) = std::sync::mpsc::channel();
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
        let engine = EngineHandle {
            commands: crate::engine::Commands::new(cmd_tx, Default::default()),
            events: evt_rx,
            thread: std::thread::spawn(|| {}),
        };
        let front = serve(engine);
        evt_tx
            .send(Event::Started {
                run_dir: dir.display().to_string(),
                backend: "flex".into(),
                model: "m".into(),
                iterations: 1,
                params: LiveParams {
                    alpha: 0.1,
                    beta: 0.1,
                    lr: 1e-6,
                },
            })
            .unwrap();
        assert!(matches!(
            front.events.recv().unwrap(),
            Event::Started { .. }
        ));
        (evt_tx, cmd_rx, front)
    }

    fn hello(dir: &Path, pid: u32) -> (UnixStream, BufReader<UnixStream>) {
        let stream = socket::connect(dir).unwrap();
        let msg = format!(r#"{{"hello":{{"protocol":{PROTOCOL},"client":"test","pid":{pid}}}}}"#);
        writeln!(&stream, "{msg}").unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        assert!(first.starts_with(r#"{"hello""#), "{first}");
        (stream, reader)
    }

    fn until(front: &EngineHandle, f: impl Fn(&Event) -> bool) {
        loop {
            let e = front
                .events
                .recv_timeout(Duration::from_secs(10))
                .expect("an event within 10 s");
            if f(&e) {
                return;
            }
        }
    }

    #[test]
    fn a_viewer_that_does_not_read_is_dropped_and_blocks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (events, _commands, front) = hub_on(dir.path());
        let (_stream, _reader) = hello(dir.path(), 77);
        until(
            &front,
            |e| matches!(e, Event::Log(l) if l.text.contains("pid 77")),
        );
        // Far more than the socket buffer and the queue hold; the viewer reads none of it.
        let line = "x".repeat(1000);
        let start = Instant::now();
        for i in 0..QUEUE + 5000 {
            events
                .send(Event::Log(LogLine::info(format!("{i} {line}"))))
                .unwrap();
        }
        let last = format!("{} ", QUEUE + 4999);
        let mut dropped = false;
        loop {
            let Ok(Event::Log(l)) = front.events.recv_timeout(Duration::from_secs(10)) else {
                panic!("the front end stopped receiving");
            };
            dropped |= l.text.contains("viewer pid 77 fell");
            if l.text.starts_with(&last) {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert!(dropped, "the hung viewer was not dropped");
        // Others still attach.
        let (_other, _r) = hello(dir.path(), 78);
        until(
            &front,
            |e| matches!(e, Event::Log(l) if l.text.contains("pid 78")),
        );
        events.send(Event::Finished { completed: true }).unwrap();
        until(&front, |e| matches!(e, Event::Finished { .. }));
        assert!(!socket::socket_path(dir.path()).exists());
    }

    #[test]
    fn commands_reach_the_engine_with_the_viewer_as_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        let (events, commands, front) = hub_on(dir.path());
        let (stream, mut reader) = hello(dir.path(), 4321);
        let set =
            r#"{"command":{"set_params":{"alpha":0.5,"beta":null,"lr":null,"origin":"tui"}}}"#;
        writeln!(&stream, "{set}").unwrap();
        writeln!(&stream, r#"{{"command":"step_batch"}}"#).unwrap();
        let got = commands.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            got,
            Command::SetParams {
                alpha: Some(0.5),
                beta: None,
                lr: None,
                origin: Origin::Attach { pid: 4321 },
            }
        );
        assert_eq!(
            commands.recv_timeout(Duration::from_secs(10)).unwrap(),
            Command::StepBatch
        );
        // The viewer sees the run's events; the catch-up came first (Started).
        events.send(Event::Paused).unwrap();
        let mut seen = vec![];
        for _ in 0..3 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            seen.push(line);
        }
        assert!(seen[0].contains("started"), "{seen:?}");
        assert!(
            seen.iter().any(|l| l.contains(r#""event":"paused""#)),
            "{seen:?}"
        );
        drop(front);
    }
}
