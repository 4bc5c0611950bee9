//! The terminal front end. It only exchanges messages with the engine thread: the main loop
//! waits on the keyboard for at most one frame, drains whatever events the engine sent, and
//! redraws; it never waits on the engine, and the engine never waits on it.

pub mod app;
pub mod bench;
mod capture;
pub mod keys;
pub mod panels;
pub mod replay;
pub mod screenshot;
mod state;
pub mod view;

use anyhow::{Result, bail};
use crossterm::event::{self as ct, Event as CtEvent, KeyEventKind};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use crate::backend::BackendSpec;
use crate::config::Config;
use crate::engine::{self, EngineHandle, Event, LogLine, Start};
use crate::run::RunDir;
use app::{Action, App, EngineState};

/// How long the loop waits for a key before looking at the engine again.
const FRAME: Duration = Duration::from_millis(50);
/// Engine events folded in per frame at most, so a burst cannot starve the keyboard.
const EVENTS_PER_FRAME: usize = 2000;

/// The state, the terminal and (live) the engine, advanced one frame at a time.
pub struct Ui<Bk: Backend> {
    pub terminal: Terminal<Bk>,
    pub app: App,
    engine: Option<EngineHandle>,
    /// Lines other code wrote to stdout / stderr while the TUI ran.
    output: Option<Receiver<String>>,
    /// The user asked to resume the inspected run.
    pub resume_requested: bool,
    started: Instant,
    /// Run time before this TUI started (a viewer attaching to a run under way).
    elapsed_before: f64,
    dirty: bool,
    last_draw: Instant,
}

impl<Bk: Backend> Ui<Bk> {
    pub fn new(terminal: Terminal<Bk>, app: App, engine: Option<EngineHandle>) -> Self {
        let elapsed_before = if app.run.attached.is_some() {
            app.elapsed_s
        } else {
            0.0
        };
        Self {
            terminal,
            app,
            engine,
            output: None,
            resume_requested: false,
            elapsed_before,
            started: Instant::now(),
            dirty: true,
            last_draw: Instant::now(),
        }
    }

    /// Shows `lines` (captured output) in the log.
    pub fn with_output(mut self, lines: Option<Receiver<String>>) -> Self {
        self.output = lines;
        self
    }

    /// One frame: fold in engine events, apply `input`, redraw when something changed (or
    /// each second, for the clock). Returns true when the TUI should close.
    pub fn frame(&mut self, input: Option<CtEvent>) -> Result<bool> {
        let mut exit = self.drain_engine();
        if let Some(lines) = &self.output {
            for line in lines.try_iter().take(EVENTS_PER_FRAME) {
                self.app.log.push(LogLine::warn(line));
                self.dirty = true;
            }
        }
        match input {
            Some(CtEvent::Key(key)) if key.kind != KeyEventKind::Release => {
                for action in self.app.handle_key(key) {
                    match action {
                        Action::Exit => exit = true,
                        Action::Resume => {
                            self.resume_requested = true;
                            exit = true;
                        }
                        Action::Send(cmd) => {
                            if let Some(e) = &self.engine {
                                // Unbounded channel: never blocks; a closed one means the
                                // engine has stopped, which its Finished event reports.
                                let _ = e.commands.send(cmd);
                            }
                        }
                    }
                }
                self.dirty = true;
            }
            Some(CtEvent::Resize(..)) => self.dirty = true,
            _ => {}
        }
        if !self.app.read_only() && !matches!(self.app.run.state, EngineState::Finished { .. }) {
            self.app.elapsed_s = self.elapsed_before + self.started.elapsed().as_secs_f64();
        }
        if self.dirty || self.last_draw.elapsed() >= Duration::from_secs(1) {
            self.draw()?;
        }
        Ok(exit)
    }

    pub fn draw(&mut self) -> Result<()> {
        self.terminal.draw(|f| view::draw(f, &self.app))?;
        self.dirty = false;
        self.last_draw = Instant::now();
        Ok(())
    }

    /// Applies pending engine events; true when a requested quit has completed.
    fn drain_engine(&mut self) -> bool {
        let Some(engine) = &self.engine else {
            return false;
        };
        for _ in 0..EVENTS_PER_FRAME {
            match engine.events.try_recv() {
                Ok(event) => {
                    let quitting = self.app.run.state == EngineState::Quitting;
                    let finished = matches!(event, Event::Finished { .. });
                    self.app.apply(event);
                    self.dirty = true;
                    if quitting && finished {
                        return true;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if !matches!(self.app.run.state, EngineState::Finished { .. }) {
                        let was_quitting = self.app.run.state == EngineState::Quitting;
                        self.app.apply(Event::Finished { completed: false });
                        self.dirty = true;
                        return was_quitting;
                    }
                    break;
                }
            }
        }
        false
    }

    /// The engine, if it is still attached.
    pub fn engine(&self) -> Option<&EngineHandle> {
        self.engine.as_ref()
    }
}

/// Opens the TUI on a new run (`Start::New`) or a resumed one.
pub fn run(start: Start, spec: BackendSpec) -> Result<()> {
    require_terminal()?;
    let config = match &start {
        Start::New(config) => (**config).clone(),
        Start::Resume(dir) => Config::from_file(&RunDir::open(dir)?.config_path())?,
    };
    let mut app = App::new(config.live_params(), config.run.auto_pause);
    app.run.backend = spec.to_string();
    app.run.model = config.model_label();
    app.run.iterations = config.run.iterations;
    app.log.info(match start {
        Start::New(_) => "loading the model and evaluating the starting point",
        Start::Resume(_) => "loading the run and its last checkpoint",
    });
    // Started once output is captured, so nothing it prints reaches the screen.
    let ui = with_terminal(|terminal, output| {
        let handle = engine::spawn(start, spec)?;
        let handle = crate::control::serve(handle);
        event_loop(Ui::new(terminal, app, Some(handle)).with_output(output))
    })?;
    report(&ui.app);
    Ok(())
}

/// `selm-tui attach`: the TUI of a run that lives in another process, through its control
/// socket. The run's files so far, then its live events; `q` detaches.
pub fn attach(dir: &Path) -> Result<()> {
    // Whether the run is live is the first thing to say, terminal or not.
    let stream = crate::control::viewer::connect(dir)?;
    require_terminal()?;
    let remote = crate::control::viewer::attach(stream, dir)?;
    // Read after the run's hello: every event not queued for this viewer is in the files.
    let mut app = replay::load_run(dir)?;
    app.attach(remote.pid);
    let ui = with_terminal(|terminal, output| {
        event_loop(Ui::new(terminal, app, Some(remote.handle)).with_output(output))
    })?;
    match ui.app.run.state {
        EngineState::Finished { completed: true } => println!("the run finished"),
        EngineState::Finished { completed: false } | EngineState::Quitting => {
            println!(
                "the run stopped (`selm-tui resume {}` continues it)",
                dir.display()
            )
        }
        _ => println!(
            "detached; the run goes on (pid {}): `selm-tui attach {}`",
            remote.pid,
            dir.display()
        ),
    }
    if let Some(e) = &ui.app.run.last_error {
        eprintln!("error: {e}");
    }
    Ok(())
}

/// Opens a run directory read-only; an unfinished run can be resumed from there (`R`).
pub fn inspect(dir: &Path) -> Result<()> {
    // Read first: a wrong path or a corrupt file is the error shown, terminal or not.
    let app = replay::load_run(dir)?;
    if offer_attach(dir)? {
        return attach(dir);
    }
    require_terminal()?;
    let ui = with_terminal(|terminal, output| {
        event_loop(Ui::new(terminal, app, None).with_output(output))
    })?;
    if ui.resume_requested {
        let config = Config::from_file(&RunDir::open(dir)?.config_path())?;
        return run(Start::Resume(dir.to_path_buf()), config.backend()?);
    }
    Ok(())
}

/// A live run is not opened read-only without asking: the researcher may want to steer it.
/// True to attach instead.
fn offer_attach(dir: &Path) -> Result<bool> {
    use std::io::BufRead;
    let crate::control::Probe::Live(_) = crate::control::probe(dir) else {
        return Ok(false);
    };
    let live = format!(
        "{} is a live run (its process answers on {}/{})",
        dir.display(),
        dir.display(),
        crate::control::socket::SOCKET
    );
    if !std::io::stdin().is_terminal() {
        bail!("{live}; `selm-tui attach {}` opens it", dir.display());
    }
    print!("{live}.\nAttach to it (watch and steer it live) instead of reading its files? [Y/n] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(!answer.trim().to_lowercase().starts_with('n'))
}

pub(crate) fn require_terminal() -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "stdout is not a terminal: the TUI needs one. Use `selm-tui run --headless` for \
             scripts, pipes and CI."
        );
    }
    Ok(())
}

fn event_loop<Bk: Backend>(mut ui: Ui<Bk>) -> Result<Ui<Bk>> {
    loop {
        let input = if ct::poll(FRAME)? {
            Some(ct::read()?)
        } else {
            None
        };
        if ui.frame(input)? {
            return Ok(ui);
        }
    }
}

/// After the TUI closes: where the run is, and the last error if any.
fn report(app: &App) {
    if !app.run.run_dir.is_empty() {
        println!("run directory: {}", app.run.run_dir);
    }
    if let Some(e) = &app.run.last_error {
        eprintln!("error: {e}");
    }
    if app.run.state == EngineState::Quitting {
        println!("left while the engine was finishing a unit of work; files written stay valid");
    }
}

/// A panic on the engine thread is reported by the engine as an event, so only panics of
/// other threads restore the terminal; this holds the hook that was there before ours.
type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync>;
static PREVIOUS_HOOK: Mutex<Option<PanicHook>> = Mutex::new(None);

/// The TUI's writer: the real terminal, while stdout and stderr are captured.
type TermOut = Box<dyn Write + Send>;

/// Runs `body` on the alternate screen in raw mode, with other output captured (its lines
/// are `body`'s second argument); the terminal is restored on return, on error and on panic.
pub(crate) fn with_terminal<T>(
    body: impl FnOnce(Terminal<CrosstermBackend<TermOut>>, Option<Receiver<String>>) -> Result<T>,
) -> Result<T> {
    *PREVIOUS_HOOK.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::panic::take_hook());
    std::panic::set_hook(Box::new(|info| {
        if std::thread::current().name() == Some(engine::THREAD_NAME) {
            return;
        }
        capture::restore();
        restore_terminal();
        if let Some(hook) = PREVIOUS_HOOK
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            hook(info);
        }
    }));
    enable_raw_mode()?;
    let result = (|| {
        let (output, mut out): (_, TermOut) = match capture::start() {
            Ok((lines, terminal)) => (
                Some(lines),
                Box::new(std::io::BufWriter::with_capacity(1 << 16, terminal)),
            ),
            // No capture (not Unix): output goes where it went.
            Err(_) => (None, Box::new(std::io::stdout())),
        };
        crossterm::execute!(out, EnterAlternateScreen)?;
        let terminal = Terminal::new(CrosstermBackend::new(out))?;
        body(terminal, output)
    })();
    capture::restore();
    restore_terminal();
    if let Some(hook) = PREVIOUS_HOOK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        std::panic::set_hook(hook);
    }
    result
}

pub(crate) fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}
