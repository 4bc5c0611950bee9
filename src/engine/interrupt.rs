//! The engine reads commands between units of work. A unit that waits on the outside (a
//! server starting, a batch of requests) would hold a command back for as long as it waits,
//! so every command also raises an [`Interrupt`] that such waits poll: the wait gives up
//! within a fraction of a second, the command is applied, and the unit runs again when the
//! run goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SendError, Sender};

use super::messages::Command;

/// Raised when a command is sent; lowered by the engine when it reads its commands.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn lower(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
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
        let sent = self.tx.send(cmd);
        self.interrupt.raise();
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_command_raises_the_interrupt_after_it_is_queued() {
        let (tx, rx) = std::sync::mpsc::channel();
        let interrupt = Interrupt::default();
        let commands = Commands::new(tx, interrupt.clone());
        assert!(!interrupt.is_raised());
        commands.send(Command::Pause).unwrap();
        assert!(interrupt.is_raised());
        assert_eq!(rx.try_recv().unwrap(), Command::Pause);
        interrupt.lower();
        assert!(!interrupt.is_raised());
    }
}
