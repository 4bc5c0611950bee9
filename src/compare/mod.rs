//! `selm-tui compare`: runs and sweeps side by side. Runs are grouped by what differs in
//! their configs (seeds pooled) and shown as per-iteration curves, a last-iteration table
//! with differences to the alpha = 0 / DPO group paired by seed, held-out reward
//! distributions and implicit rewards: in a TUI, or with `--out` as figures, CSV tables and
//! a `report.md`.

pub mod app;
pub mod comparison;
pub mod group;
pub mod load;
pub mod plots;
pub mod report;
pub mod stats;
pub mod text;
pub mod view;

use anyhow::{Context, Result, anyhow, bail};
use crossterm::event::{self as ct, Event as CtEvent, KeyEventKind};
use ratatui::Terminal;
use ratatui::backend::Backend;
use std::path::{Path, PathBuf};

use app::CompareApp;
use comparison::Comparison;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Run directories and sweep directories.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Write figures (PNG, SVG), tables (CSV) and report.md here instead of opening the TUI.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: CompareArgs) -> Result<()> {
    // Read first: what cannot be compared is reported whether or not there is a terminal.
    let cmp = compare(&args.dirs)?;
    match &args.out {
        Some(out) => write_out(&cmp, &args.dirs, out),
        None => tui(cmp),
    }
}

/// Reads and groups the directories; an error only when no run at all can be read.
pub fn compare(dirs: &[PathBuf]) -> Result<Comparison> {
    let cmp = Comparison::new(load::load(dirs));
    if cmp.runs.is_empty() {
        let reasons: Vec<String> = cmp
            .skipped
            .iter()
            .map(|s| format!("  {}: {}", s.path.display(), s.reason))
            .collect();
        bail!("no run to compare:\n{}", reasons.join("\n"));
    }
    Ok(cmp)
}

/// `--out`: the figures, tables and report, then what was written and what to beware of.
pub fn write_out(cmp: &Comparison, inputs: &[PathBuf], out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let figures = plots::write_figures(cmp, out)?;
    let tables = report::write_report(cmp, inputs, out, &figures)?;
    for w in &cmp.warnings {
        eprintln!("warning: {w}");
    }
    for s in &cmp.skipped {
        eprintln!("not compared: {}: {}", s.path.display(), s.reason);
    }
    println!(
        "compared {} runs in {} groups; wrote {} files to {} (see report.md)",
        cmp.runs.len(),
        cmp.groups.len(),
        figures.len() + tables.len(),
        out.display()
    );
    Ok(())
}

/// The TUI, on the shared terminal set-up (restored on return, error and panic).
fn tui(cmp: Comparison) -> Result<()> {
    // The shared check's advice (`run --headless`) is not compare's.
    crate::tui::require_terminal().map_err(|_| {
        anyhow!(
            "stdout is not a terminal: the compare TUI needs one. `--out DIR` writes the \
             figures, tables and report.md instead."
        )
    })?;
    let mut app = CompareApp::new(cmp);
    crate::tui::with_terminal(|mut terminal, _output| event_loop(&mut terminal, &mut app))
}

/// Redraws after each key or resize; nothing else changes the screen.
fn event_loop<B: Backend>(terminal: &mut Terminal<B>, app: &mut CompareApp) -> Result<()> {
    loop {
        terminal.draw(|f| view::draw(f, app))?;
        if let CtEvent::Key(key) = ct::read()?
            && key.kind != KeyEventKind::Release
            && app.handle_key(key)
        {
            return Ok(());
        }
    }
}
