//! The engine reads commands between units of work. A unit that waits on the outside (a
//! server starting, a batch of requests) would hold a pause or a quit back for as long as it
//! waits, so those two also raise an [`Interrupt`] that such waits poll: the wait gives up
//! within a fraction of a second, the command is applied, and the unit runs again when the
//! run goes on. Other commands (parameters, steps, rankings) wait for the unit: giving up a
//! batch of requests for them would only redo it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{SendError, Sender};

use super::messages::Command;

/// Raised when a pause or a quit is sent; lowered by the engine when it reads its commands.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicU8>);

const PAUSE: u8 = 1;
const QUIT: u8 = 2;

impl Interrupt {
    /// How far `cmd` raises the interrupt: a quit outranks a pause; others do not raise it.
    fn level(cmd: &Command) -> u8 {
        match cmd {
            Command::Pause => PAUSE,
            Command::Quit => QUIT,
            _ => 0,
        }
    }

    fn raise(&self, level: u8) {
        self.0.fetch_max(level, Ordering::SeqCst);
    }

    pub fn lower(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    /// A pause or a quit has come.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }

    /// A quit has come.
    pub fn quitting(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= QUIT
    }
}

/// The front ends' way to send the engine commands: the channel, and the interrupt raised
/// after each send (so that a wait that notices it finds the command there).
#[derive(Debug, Clone)]
pub struct Commands {
    tx: Sender<Command>,
    interrupt: Interrupt,
}

impl Commands {
    pub fn new(tx: Sender<Command>, interrupt: Interrupt) -> Self {
        Self { tx, interrupt }
    }

    /// Sends `cmd`; an error means the engine has stopped. Never blocks.
    pub fn send(&self, cmd: Command) -> Result<(), SendError<Command>> {
        let level = Interrupt::level(&cmd);
        let sent = self.tx.send(cmd);
        self.interrupt.raise(level);
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_raises_the_interrupt_after_it_is_queued() {
        let (tx, rx) = std::sync::mpsc::channel();
        let interrupt = Interrupt::default();
        let commands = Commands::new(tx, interrupt.clone());
        commands.send(Command::Run).unwrap();
        assert!(!interrupt.is_raised(), "only a pause or a quit interrupts");
        assert_eq!(rx.try_recv().unwrap(), Command::Run);
        commands.send(Command::Pause).unwrap();
        assert!(interrupt.is_raised() && !interrupt.quitting());
        assert_eq!(rx.try_recv().unwrap(), Command::Pause);
        commands.send(Command::Quit).unwrap();
        commands.send(Command::Pause).unwrap();
        assert!(
            interrupt.quitting(),
            "a quit stays raised over a later pause"
        );
        interrupt.lower();
        assert!(!interrupt.is_raised());
    }
}
