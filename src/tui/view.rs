//! The frame: header, status line, the current view's panels, footer and popups. Each panel
//! draws itself; this file only lays them out.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Tabs, Wrap};

use super::app::{App, EngineState, Popup, View};
use super::keys::{Footer, footer_hints};
use super::panels::{help, reward_histogram};

/// Below this size the screen says so instead of drawing.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 20;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if too_small(frame, "selm-tui", (MIN_WIDTH, MIN_HEIGHT)) {
        return;
    }
    let [header, status, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, app, header);
    draw_status(frame, app, status);
    let it = app.selected_iteration;
    match app.view {
        View::Dashboard => draw_dashboard(frame, app, body),
        View::Pairs if app.inspecting() => {
            app.inspector.render(frame, body, &app.pairs.sorted(it), it)
        }
        View::Pairs => {
            let any = app.known_iterations().iter().any(|&i| i > 0);
            app.pairs.render(frame, body, it, any)
        }
        View::Log => app.log.render(frame, body, "Log"),
        View::Rank => app.desk.render(frame, body),
    }
    draw_footer(frame, app, footer);
    match &app.popup {
        Some(Popup::Help) => help::render(frame, area),
        Some(Popup::Params(form)) => form.render(frame, area),
        Some(Popup::ConfirmStop) => draw_confirm_stop(frame, app, area),
        None => {}
    }
}

/// Says so and returns true when the frame is smaller than `(width, height)`.
pub fn too_small(frame: &mut Frame, program: &str, (width, height): (u16, u16)) -> bool {
    let area = frame.area();
    if area.width >= width && area.height >= height {
        return false;
    }
    let msg = format!(
        "terminal too small: {}x{}, {program} needs at least {width}x{height}",
        area.width, area.height
    );
    frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
    true
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let (badge, color) = match app.run.state {
        // The engine waits for the researcher: say so, whatever view is open.
        EngineState::Running | EngineState::Paused if app.desk.query.is_some() => {
            (" YOUR RANKING ", Color::LightMagenta)
        }
        EngineState::Loading => (" LOADING ", Color::Blue),
        EngineState::Paused => (" PAUSED ", Color::Yellow),
        EngineState::Running => (" RUNNING ", Color::Green),
        EngineState::Quitting => (" QUITTING ", Color::Magenta),
        EngineState::Finished { completed: true } => (" DONE ", Color::Cyan),
        EngineState::Finished { completed: false } => (" STOPPED ", Color::Red),
        EngineState::ReadOnly => (" READ-ONLY ", Color::Cyan),
    };
    let secs = app.elapsed_s as u64;
    let clock = format!("{:02}:{:02}:{:02} ", secs / 3600, secs / 60 % 60, secs % 60);
    let [title, tabs, elapsed, state] = Layout::horizontal([
        Constraint::Length(10),
        Constraint::Min(0),
        Constraint::Length(clock.len() as u16),
        Constraint::Length(badge.len() as u16),
    ])
    .areas(area);
    frame.render_widget(Span::from(clock), elapsed);
    frame.render_widget(Span::from(" selm-tui").bold(), title);
    let selected = app.views().iter().position(|v| *v == app.view).unwrap_or(0);
    let titles = app
        .views()
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{} {}", i + 1, v.title()));
    frame.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(Style::new().reversed()),
        tabs,
    );
    frame.render_widget(
        Span::from(badge).style(Style::new().bg(color).fg(Color::Black).bold()),
        state,
    );
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let run = &app.run;
    if let Some(e) = &run.last_error {
        // Stays until the engine runs again: the stage can be retried with `s`.
        let spans = vec![
            Span::from(" error: ").bold(),
            Span::from(e.lines().next().unwrap_or_default().to_string()),
            Span::from("  (see Log; s retries)"),
        ];
        frame.render_widget(Line::from(spans).on_red().white(), area);
        return;
    }
    let p = run.params;
    let sep = Span::from(" │ ").dark_gray();
    let spans = vec![
        Span::from(format!(" {}", run.backend)).cyan(),
        sep.clone(),
        Span::from(run.model.clone()),
        sep.clone(),
        Span::from(format!("α {}  β {}  lr {:e}", p.alpha, p.beta, p.lr)).yellow(),
        sep.clone(),
        Span::from(format!(
            "iter {}/{}",
            app.pipeline.iteration, run.iterations
        )),
        sep.clone(),
        Span::from(format!(
            "auto-pause {}",
            if run.auto_pause { "on" } else { "off" }
        )),
    ];
    let mut spans = spans;
    if let Some(wait) = &app.pipeline.waiting {
        // What holds the stage, where a researcher looks: "server starting: 12 s of 600".
        spans.insert(8, Span::from(format!("{wait}")).light_yellow().bold());
        spans.insert(9, sep.clone());
    }
    if let Some(pid) = run.attached {
        spans.extend([sep, Span::from(format!("attached to pid {pid}")).green()]);
    }
    frame.render_widget(Line::from(spans).on_dark_gray().white(), area);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let footer = if app.inspecting() {
        Footer::Inspector
    } else if app.ranking() {
        Footer::Ranking
    } else if app.read_only() {
        Footer::ReadOnly
    } else {
        Footer::Live
    };
    let resume = (app.read_only() && app.run.resumable)
        .then(|| footer_hints(Footer::Resumable))
        .into_iter()
        .flatten();
    let attached = app.run.attached.is_some();
    let stop = (attached && footer == Footer::Live)
        .then(|| footer_hints(Footer::Attached))
        .into_iter()
        .flatten();
    let mut spans = vec![];
    for (key, what) in resume.chain(footer_hints(footer)).chain(stop) {
        // A viewer's `q` leaves the run going.
        let what = if attached && key == "q" {
            "detach"
        } else {
            what
        };
        spans.push(Span::from(key).reversed());
        spans.push(Span::from(format!(" {what} ")));
    }
    frame.render_widget(Line::from(spans), area);
}

fn draw_confirm_stop(frame: &mut Frame, app: &App, area: Rect) {
    let rect = super::panels::centered(area, 64, 7);
    let pid = app.run.attached.unwrap_or_default();
    let lines = vec![
        Line::from(format!("Stop the run of pid {pid}?")).bold(),
        Line::from("It ends after its current unit of work; its files stay valid"),
        Line::from("and `selm-tui resume` continues it. (q only detaches.)"),
        Line::default(),
        Line::from("y stop · any other key cancel").dark_gray(),
    ];
    frame.render_widget(ratatui::widgets::Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title("stop the run")),
        rect,
    );
}

fn draw_dashboard(frame: &mut Frame, app: &App, area: Rect) {
    let log_height = if area.height >= 40 { 10 } else { 5 };
    let [pipeline, middle, log] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(0),
        Constraint::Length(log_height),
    ])
    .areas(area);
    app.pipeline.render(frame, pipeline);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(middle);
    let [loss, evals] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(left);
    let [kl, hrf] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(evals);
    app.loss.render(frame, loss);
    let n = app.run.iterations;
    app.evals
        .render(frame, kl, "kl", |e| e.kl, Color::Magenta, n);
    app.evals.render(
        frame,
        hrf,
        "high-reward frac",
        |e| e.high_reward_fraction,
        Color::Green,
        n,
    );
    let [metrics, histogram] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(8)]).areas(right);
    app.metrics.render(frame, metrics);
    reward_histogram::render(frame, histogram, app.selected_eval());
    app.log.render(frame, log, "Log");
}
