//! The viewer's side of the control socket (`selm-tui attach`): a hello, then the run's
//! events arrive on a channel and commands leave on one, as with an engine in-process.

use anyhow::{Context, Result, bail};
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use super::protocol::{self, ClientMsg, PROTOCOL, ServerMsg};
use super::socket::{self, Probe};
use crate::engine::{Command, EngineHandle, Event, LogLine};

/// How long a run has to answer the hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(15);

/// A live run, attached.
pub struct Attached {
    /// Events from the run, commands to it.
    pub handle: EngineHandle,
    /// The run's process.
    pub pid: u32,
}

/// Connects to the run in `run_dir`; an error says why it is not live (and what to do).
pub fn connect(run_dir: &Path) -> Result<UnixStream> {
    Ok(match socket::probe(run_dir) {
        Probe::Live(stream) => stream,
        Probe::Absent => bail!(
            "no run is live in {dir} (no {sock}): it finished, was never started there, or \
             stopped; `selm-tui inspect {dir}` opens its files, `selm-tui resume {dir}` \
             continues an unfinished run",
            dir = run_dir.display(),
            sock = socket::SOCKET
        ),
        Probe::Unreachable(e) => bail!(
            "cannot connect to {}: {e}",
            socket::socket_path(run_dir).display()
        ),
        Probe::Stale => bail!(
            "no run is live in {dir}: {sock} was left by a run that was killed (nothing \
             answers on it); `selm-tui resume {dir}` continues the run and replaces it. (A \
             socket answers only on the machine its run is on: for a run on a cluster node, \
             attach there, e.g. `srun --jobid=JOB --overlap --pty selm-tui attach {dir}`.)",
            dir = run_dir.display(),
            sock = socket::SOCKET
        ),
    })
}

/// Attaches on `stream` (from [`connect`]): the hello, then events and commands flow.
pub fn attach(stream: UnixStream, run_dir: &Path) -> Result<Attached> {
    let (mut reader, pid) =
        hello(&stream).with_context(|| format!("attaching to the run in {}", run_dir.display()))?;
    let (cmd_tx, cmd_rx) = channel();
    let (evt_tx, evt_rx) = channel();
    let out = stream.try_clone()?;
    std::thread::spawn(move || send_commands(out, cmd_rx));
    let thread = std::thread::spawn(move || receive_events(&mut reader, evt_tx));
    Ok(Attached {
        handle: EngineHandle {
            commands: crate::engine::Commands::new(cmd_tx, Default::default()),
            events: evt_rx,
            thread,
        },
        pid,
    })
}

/// Says hello; the run's pid, or why it refused.
fn hello(stream: &UnixStream) -> Result<(BufReader<UnixStream>, u32)> {
    let msg = ClientMsg::Hello {
        protocol: PROTOCOL,
        client: protocol::software(),
        pid: std::process::id(),
    };
    writeln!(&*stream, "{}", serde_json::to_string(&msg)?).context("sending the hello")?;
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let line = match protocol::read_line(&mut reader) {
        Ok(Some(line)) => line,
        Ok(None) => bail!("the run closed the connection without a hello"),
        Err(e) => bail!("no hello from the run within {HELLO_TIMEOUT:?}: {e}"),
    };
    stream.set_read_timeout(None)?;
    match serde_json::from_str::<ServerMsg>(&line) {
        Ok(ServerMsg::Hello { protocol, pid, .. }) if protocol == PROTOCOL => Ok((reader, pid)),
        Ok(ServerMsg::Hello {
            protocol, server, ..
        }) => bail!(
            "the run ({server}) speaks control protocol {protocol}; this selm-tui ({}) \
             speaks {PROTOCOL}",
            protocol::software()
        ),
        Ok(ServerMsg::Refused { reason, .. }) => bail!("refused: {reason}"),
        Ok(ServerMsg::Error(e)) => bail!("the run says: {e}"),
        Ok(ServerMsg::Event(_)) => bail!("the run sent an event before its hello"),
        Err(e) => bail!("the run's first line is not a hello ({e})"),
    }
}

fn send_commands(stream: UnixStream, commands: Receiver<Command>) {
    let mut out = &stream;
    for cmd in commands {
        let line = serde_json::to_string(&ClientMsg::Command(cmd)).expect("a command");
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
}

/// Passes the run's events on until it ends; a connection lost before the run's end is
/// reported as the run stopping.
fn receive_events(reader: &mut BufReader<UnixStream>, events: Sender<Event>) {
    let lost = loop {
        let line = match protocol::read_line(reader) {
            Ok(Some(line)) => line,
            Ok(None) => break "the connection to the run closed".to_string(),
            Err(e) => break format!("the connection to the run broke: {e}"),
        };
        let event = match serde_json::from_str::<ServerMsg>(&line) {
            Ok(ServerMsg::Event(e)) => e,
            Ok(ServerMsg::Error(e)) => Event::Log(LogLine::error(format!("the run: {e}"))),
            Ok(other) => Event::Log(LogLine::warn(format!("unexpected from the run: {other:?}"))),
            Err(e) => Event::Log(LogLine::warn(format!(
                "an event this viewer cannot read ({e}); is the run another version?"
            ))),
        };
        let finished = matches!(event, Event::Finished { .. });
        if events.send(event).is_err() || finished {
            return;
        }
    };
    let _ = events.send(Event::Error(format!(
        "{lost} before the run ended (was it killed?); its files hold everything written"
    )));
    let _ = events.send(Event::Finished { completed: false });
}
