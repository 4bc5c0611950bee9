//! `selm-tui inspect RUN --screenshot FILE`: one view of a run directory drawn off-screen, as
//! the TUI would show it, and written as SVG (colours, bold and dim kept; text stays text) or,
//! for viewers that take no SVG, as PNG.

pub mod palette;
mod png;
pub mod svg;

use anyhow::{Context, Result, bail};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use std::path::Path;

use crate::tui::app::{App, View};
use crate::tui::replay;

use crate::engine::RankQuery;
use crate::run::RunDir;

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShotView {
    /// The dashboard: pipeline, loss, kl, high-reward fraction, metrics, histogram, log.
    Dashboard,
    /// The selected iteration's pairs, sorted by implicit reward margin.
    Pairs,
    /// The pair inspector on one pair, tokens coloured by their log-ratio.
    Pair,
    /// The rank desk on one prompt, its candidates in the ranker's order.
    Rank,
    /// The log.
    Log,
}

/// A screenshot's settings; `None` picks the last iteration / the first pair or prompt.
#[derive(Debug, Clone, Copy)]
pub struct Shot {
    pub view: ShotView,
    pub width: u16,
    pub height: u16,
    pub iteration: Option<usize>,
    /// 1-based: the pair in margin order (`pair`, `pairs`) or the prompt (`rank`).
    pub item: Option<usize>,
}

/// Draws `shot` of the run at `dir` into `out` (`.svg` or `.png`).
pub fn screenshot(dir: &Path, shot: Shot, out: &Path) -> Result<()> {
    let format = match out.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => Format::Svg,
        Some(e) if e.eq_ignore_ascii_case("png") => Format::Png,
        _ => bail!(
            "--screenshot {}: the file must end in .svg or .png",
            out.display()
        ),
    };
    let buffer = frame(dir, shot)?;
    let bytes = match format {
        Format::Svg => svg::render(&buffer).into_bytes(),
        Format::Png => png::render(&buffer)?,
    };
    crate::io::atomic_write(out, &bytes).with_context(|| format!("writing {}", out.display()))
}

enum Format {
    Svg,
    Png,
}

/// The cells of `shot`: the run at `dir` replayed, put in the view's state, drawn.
pub fn frame(dir: &Path, shot: Shot) -> Result<Buffer> {
    let mut app = replay::load_run(dir)?;
    select(&mut app, dir, shot)?;
    draw(&app, shot.width, shot.height)
}

/// Puts `app` in the state the view shows, as the keys would.
fn select(app: &mut App, dir: &Path, shot: Shot) -> Result<()> {
    if let Some(it) = shot.iteration {
        if !app.known_iterations().contains(&it) {
            bail!(
                "--iteration {it}: the run has iterations {:?}",
                app.known_iterations()
            );
        }
        app.selected_iteration = it;
    }
    let it = app.selected_iteration;
    match shot.view {
        ShotView::Dashboard => app.view = View::Dashboard,
        ShotView::Log => app.view = View::Log,
        ShotView::Pairs | ShotView::Pair => {
            app.view = View::Pairs;
            app.pairs.sort = crate::tui::panels::pair_list::PairSort::RewardMargin;
            let n = app.pairs.sorted(it).len();
            if n == 0 {
                bail!("iteration {it} of {} has no pairs", dir.display());
            }
            let k = item_index(shot.item, n, "pairs")?;
            app.pairs.cursor = k;
            if shot.view == ShotView::Pair {
                app.inspector.open(k);
            }
        }
        ShotView::Rank => {
            let run = RunDir::open(dir)?;
            let rows = run.read_candidates(it)?;
            if rows.is_empty() {
                bail!("iteration {it} of {} has no candidates", dir.display());
            }
            let k = item_index(shot.item, rows.len(), "prompts")?;
            let row = &rows[k];
            app.desk.ask(RankQuery {
                iteration: it,
                index: k,
                total: rows.len(),
                prompt: row.prompt.clone(),
                candidates: row.candidates.clone(),
            });
            app.view = View::Rank;
        }
    }
    Ok(())
}

/// `item` (1-based, default 1) as an index below `n`, the number of `what` there are.
fn item_index(item: Option<usize>, n: usize, what: &str) -> Result<usize> {
    match item.unwrap_or(1) {
        k @ 1.. if k <= n => Ok(k - 1),
        k => bail!("--item {k}: there are {n} {what} (1..={n})"),
    }
}

/// The frame the TUI would draw at `width` x `height`.
pub fn draw(app: &App, width: u16, height: u16) -> Result<Buffer> {
    let mut terminal = Terminal::new(TestBackend::new(width, height))?;
    terminal.draw(|f| crate::tui::view::draw(f, app))?;
    Ok(terminal.backend().buffer().clone())
}
