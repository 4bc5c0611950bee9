//! The engine: the pipeline on its own thread, driven by [`Command`]s, reporting [`Event`]s.
//! Front ends (TUI, headless) only exchange messages with it; neither side waits on the other.

mod eval;
pub mod interrupt;
pub mod messages;
pub mod pipeline;
mod resume;
mod stages;
mod stall;
mod start;

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;

use crate::backend::{BackendSpec, OnBackend, dispatch, on_compute_pool};
use crate::config::Config;
use crate::external::wait::is_interrupted;
pub use interrupt::{Commands, Interrupt};
pub use messages::{
    Command, Event, Level, LiveParams, LogLine, Origin, RankQuery, Stage, StageSummary, Verdict,
    Wait,
};
use pipeline::{Advance, Pipeline};
use std::path::PathBuf;

/// The engine thread's name (a panic hook can tell its panics apart).
pub const THREAD_NAME: &str = "selm-engine";

/// The front end's side of a running engine.
pub struct EngineHandle {
    pub commands: Commands,
    pub events: Receiver<Event>,
    pub thread: JoinHandle<()>,
}

/// What the engine runs.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new run of this config.
    New(Box<Config>),
    /// The interrupted run in this directory, from its last stage boundary.
    Resume(PathBuf),
}

/// Starts the engine thread on the backend `spec` names. Loading happens on that thread;
/// its failure arrives as `Event::Error` then `Event::Finished`.
pub fn spawn(start: Start, spec: BackendSpec) -> Result<EngineHandle> {
    dispatch(spec, Spawn { start })
}

struct Spawn {
    start: Start,
}

impl OnBackend for Spawn {
    type Output = EngineHandle;

    fn run<B: AutodiffBackend>(self, device: B::Device, spec: BackendSpec) -> EngineHandle {
        let (cmd_tx, cmd_rx) = channel();
        let (evt_tx, evt_rx) = channel();
        let interrupt = Interrupt::default();
        let commands = Commands::new(cmd_tx, interrupt.clone());
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                // A panic becomes an error event, so the front end can report it and
                // restore the terminal; written files stay as they were.
                let events = evt_tx.clone();
                let run = std::panic::AssertUnwindSafe(|| {
                    on_compute_pool(|| {
                        worker::<B>(self.start, device, spec, (cmd_rx, interrupt), evt_tx)
                    })
                });
                if let Err(payload) = std::panic::catch_unwind(run) {
                    let msg = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    let _ = events.send(Event::Error(format!("engine panicked: {msg}")));
                    let _ = events.send(Event::Finished { completed: false });
                }
            })
            .expect("spawning the engine thread");
        EngineHandle {
            commands,
            events: evt_rx,
            thread,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Paused,
    Running,
    UntilStage,
    UntilBatch,
}

fn worker<B: AutodiffBackend>(
    start: Start,
    device: B::Device,
    spec: BackendSpec,
    (commands, interrupt): (Receiver<Command>, Interrupt),
    events: Sender<Event>,
) {
    // A closed event channel means the front end is gone; sends are then ignored.
    let mut emit = |e: Event| {
        let _ = events.send(e);
    };
    // Events of a resume's replayed stages wait until Started has gone out.
    let mut replayed = vec![];
    let opened = match &start {
        Start::New(config) => Pipeline::<B>::new((**config).clone(), &device),
        Start::Resume(dir) => Pipeline::<B>::resume(dir, &device, &mut |e| replayed.push(e)),
    };
    let mut pipeline = match opened {
        Ok(p) => p,
        Err(e) => {
            emit(Event::Error(format!("{e:#}")));
            emit(Event::Finished { completed: false });
            return;
        }
    };
    pipeline.set_interrupt(interrupt.clone());
    let mut auto_pause = pipeline.config().run.auto_pause;
    let mut mode = Mode::Paused;
    emit(Event::Started {
        run_dir: pipeline.run().path.display().to_string(),
        backend: spec.to_string(),
        model: pipeline.config().model_label(),
        iterations: pipeline.config().run.iterations,
        params: pipeline.params(),
    });
    if pipeline.summaries().is_empty() {
        // A new run, or one resumed from before its starting evaluation finished.
        if matches!(start, Start::Resume(_)) {
            emit(Event::Log(LogLine::info(
                "resumed at iteration 1, before the starting evaluation finished",
            )));
        }
        emit(Event::Log(LogLine::info(
            "evaluating the starting model on held-out prompts",
        )));
        match pipeline.evaluate_start(&mut emit) {
            // Only a quit cuts the starting evaluation short (see Pipeline::watch).
            Err(e) if is_interrupted(&e) => {
                drop(pipeline);
                emit(Event::Finished { completed: false });
                return;
            }
            Err(e) => emit(Event::Error(format!("{e:#}"))),
            Ok(()) => {}
        }
    } else {
        for summary in pipeline.summaries() {
            emit(Event::Iteration(summary.clone()));
        }
        replayed.into_iter().for_each(&mut emit);
        let (iteration, stage) = pipeline.position();
        emit(Event::Log(LogLine::info(format!(
            "resumed at iteration {iteration}, stage `{}`",
            stage.label()
        ))));
        if pipeline.unit() > 0 {
            // Inside a stage: the front end hears of it as started.
            emit(Event::StageStarted { iteration, stage });
        }
    }
    loop {
        // Lowered before reading, so that a command sent from here on interrupts the next
        // wait (a command read now needs no interruption).
        interrupt.lower();
        // Paused, or waiting for the researcher's ranking: nothing to do until told.
        let next = if mode == Mode::Paused || pipeline.awaiting_human() {
            commands.recv().map_err(|_| TryRecvError::Disconnected)
        } else {
            commands.try_recv()
        };
        match next {
            Ok(Command::Quit) | Err(TryRecvError::Disconnected) => break,
            Ok(cmd) => {
                let before = mode;
                mode = apply(cmd, mode, &mut pipeline, &mut auto_pause, &mut emit);
                announce(before, mode, &mut emit);
                continue;
            }
            Err(TryRecvError::Empty) => {}
        }
        let (_, stage) = pipeline.position();
        let before = mode;
        match pipeline.advance(&mut emit) {
            Ok(Advance::RunDone) => {
                // Whatever the pipeline holds (a server, the run's lock) goes before the
                // front end hears of the end and may exit.
                drop(pipeline);
                emit(Event::Finished { completed: true });
                return;
            }
            Ok(Advance::Unit) if mode == Mode::UntilBatch && stage == Stage::Update => {
                mode = Mode::Paused
            }
            Ok(Advance::Unit | Advance::AwaitingHuman) => {}
            Ok(Advance::StageDone) if matches!(mode, Mode::UntilStage | Mode::UntilBatch) => {
                mode = Mode::Paused
            }
            Ok(Advance::StageDone) => {}
            Ok(Advance::IterationDone) if auto_pause || mode != Mode::Running => {
                mode = Mode::Paused
            }
            Ok(Advance::IterationDone) => {}
            // A command cut a wait short; it is read next, and the unit runs again after.
            Err(e) if is_interrupted(&e) => {}
            Err(e) => {
                // A server this run started stops with the failure; a retry starts it again.
                pipeline.stop_server();
                emit(Event::Error(format!("{e:#}")));
                mode = Mode::Paused;
            }
        }
        announce(before, mode, &mut emit);
    }
    let completed = pipeline.is_finished();
    drop(pipeline);
    emit(Event::Finished { completed });
}

fn apply<B: AutodiffBackend>(
    cmd: Command,
    mode: Mode,
    pipeline: &mut Pipeline<B>,
    auto_pause: &mut bool,
    emit: &mut dyn FnMut(Event),
) -> Mode {
    match cmd {
        Command::StepStage => Mode::UntilStage,
        Command::StepBatch => Mode::UntilBatch,
        Command::Run => Mode::Running,
        Command::Pause => Mode::Paused,
        Command::SetAutoPause(on) => {
            *auto_pause = on;
            emit(Event::AutoPause(on));
            emit(Event::Log(LogLine::info(format!(
                "auto-pause between iterations {}",
                if on { "on" } else { "off" }
            ))));
            mode
        }
        Command::SetParams {
            alpha,
            beta,
            lr,
            origin,
        } => {
            match pipeline.set_params(alpha, beta, lr, origin) {
                Ok(p) => emit(Event::ParamsChanged(p)),
                Err(e) => emit(Event::Error(format!("{e:#}"))),
            }
            mode
        }
        Command::Rank(verdict) => {
            if let Err(e) = pipeline.human_verdict(verdict, emit) {
                emit(Event::Error(format!("{e:#}")));
            }
            // Answering is asking to go on: a paused engine ranks through the stage.
            if mode == Mode::Paused {
                Mode::UntilStage
            } else {
                mode
            }
        }
        Command::Quit => mode,
    }
}

fn announce(before: Mode, after: Mode, emit: &mut dyn FnMut(Event)) {
    match (before == Mode::Paused, after == Mode::Paused) {
        (false, true) => emit(Event::Paused),
        (true, false) => emit(Event::Resumed),
        _ => {}
    }
}
