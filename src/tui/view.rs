//! Drawing the [`App`] state: pure functions of the state onto a ratatui frame.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Bar, BarChart, BarGroup, Block, Borders, Cell, Chart, Clear, Dataset, Gauge, GraphType,
    Paragraph, Row, Table, TableState, Tabs, Wrap,
};

use super::app::{App, EngineState, KEYS, ParamsForm, Popup, View, stage_index};
use crate::engine::{PairLogps, PairView, ResponseLogps, Stage};

/// Below this size the screen says so instead of drawing.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 20;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small: {}x{}, selm-tui needs at least {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
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
    match (app.view, app.open_pair) {
        (View::Dashboard, _) => draw_dashboard(frame, app, body),
        (View::Pairs, None) => draw_pairs(frame, app, body),
        (View::Pairs, Some(i)) => draw_pair_detail(frame, app, body, i),
        (View::Log, _) => draw_log(frame, app, body, "Log"),
    }
    draw_footer(frame, app, footer);
    match &app.popup {
        Some(Popup::Help) => draw_help(frame, area),
        Some(Popup::Params(form)) => draw_params(frame, area, form),
        None => {}
    }
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let (badge, color) = match app.state {
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
    let selected = View::ALL.iter().position(|v| *v == app.view).unwrap_or(0);
    let titles = View::ALL
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
    let p = app.params;
    let sep = Span::from(" │ ").dark_gray();
    let spans = vec![
        Span::from(format!(" {}", app.backend)).cyan(),
        sep.clone(),
        Span::from(app.model.clone()),
        sep.clone(),
        Span::from(format!("α {}  β {}  lr {:e}", p.alpha, p.beta, p.lr)).yellow(),
        sep.clone(),
        Span::from(format!("iter {}/{}", app.iteration, app.iterations)),
        sep.clone(),
        Span::from(format!(
            "auto-pause {}",
            if app.auto_pause { "on" } else { "off" }
        )),
    ];
    let mut spans = spans;
    if let Some(e) = &app.last_error {
        // Stays until the engine runs again: the stage can be retried with `s`.
        spans = vec![
            Span::from(" error: ").bold(),
            Span::from(e.lines().next().unwrap_or_default().to_string()),
            Span::from("  (see Log; s retries)"),
        ];
        frame.render_widget(Line::from(spans).on_red().white(), area);
        return;
    }
    frame.render_widget(Line::from(spans).on_dark_gray().white(), area);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let hints: &[(&str, &str)] = if app.open_pair.is_some() && app.view == View::Pairs {
        &[
            ("Esc", "back"),
            ("t", "tokens"),
            ("n/N", "pair"),
            ("j/k", "scroll"),
            ("?", "help"),
            ("q", "quit"),
        ]
    } else if app.read_only() {
        &[
            ("Tab", "view"),
            ("←→", "iteration"),
            ("Enter", "open"),
            ("o", "sort"),
            ("?", "help"),
            ("q", "quit"),
        ]
    } else {
        &[
            ("s", "stage"),
            ("b", "batch"),
            ("r", "run"),
            ("p", "pause"),
            ("a", "auto-pause"),
            ("e", "params"),
            ("Tab", "view"),
            ("?", "help"),
            ("q", "quit"),
        ]
    };
    let mut spans = vec![];
    for (key, what) in hints {
        spans.push(Span::from(*key).reversed());
        spans.push(Span::from(format!(" {what} ")));
    }
    frame.render_widget(Line::from(spans), area);
}

fn draw_dashboard(frame: &mut Frame, app: &App, area: Rect) {
    let log_height = if area.height >= 40 { 10 } else { 5 };
    let [pipeline, middle, log] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(0),
        Constraint::Length(log_height),
    ])
    .areas(area);
    draw_pipeline(frame, app, pipeline);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(middle);
    let [loss, evals] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(left);
    let [kl, hrf] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(evals);
    draw_loss_chart(frame, app, loss);
    draw_eval_chart(frame, app, kl, "kl", |s| s.kl, Color::Magenta);
    draw_eval_chart(
        frame,
        app,
        hrf,
        "high-reward frac",
        |s| s.high_reward_fraction,
        Color::Green,
    );
    let [metrics, histogram] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(8)]).areas(right);
    draw_metrics(frame, app, metrics);
    draw_histogram(frame, app, histogram);
    draw_log(frame, app, log, "Log");
}

fn draw_pipeline(frame: &mut Frame, app: &App, area: Rect) {
    let cells = Layout::horizontal([Constraint::Ratio(1, 6); 6]).split(area);
    for (stage, cell) in Stage::ALL.iter().zip(cells.iter()) {
        let s = &app.stages[stage_index(*stage)];
        let active = app.stage == Some(*stage) && !s.finished;
        let (style, ratio, label) = if s.finished {
            (Style::new().fg(Color::Green), 1.0, "done".to_string())
        } else if active {
            let ratio = if s.total == 0 {
                0.0
            } else {
                s.done as f64 / s.total as f64
            };
            let label = if s.total > 0 {
                format!("{}/{}", s.done, s.total)
            } else {
                "…".into()
            };
            (Style::new().fg(Color::Yellow).bold(), ratio, label)
        } else {
            (Style::new().fg(Color::DarkGray), 0.0, String::new())
        };
        let title = if cell.width >= 16 {
            stage.label()
        } else {
            stage.short_label()
        };
        let block = Block::bordered()
            .title(title)
            .border_style(style)
            .title_style(style);
        frame.render_widget(
            Gauge::default()
                .block(block)
                .gauge_style(style)
                .ratio(ratio.clamp(0.0, 1.0))
                .label(label),
            *cell,
        );
    }
}

/// `[lo, hi]` around finite `values`, padded so a flat line is visible.
fn bounds(values: impl Iterator<Item = f64>) -> [f64; 2] {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return [0.0, 1.0];
    }
    let pad = ((hi - lo) * 0.05).max(1e-6 + lo.abs() * 0.01);
    [lo - pad, hi + pad]
}

fn axis_labels(b: [f64; 2]) -> Vec<Span<'static>> {
    vec![
        Span::from(format_num(b[0])),
        Span::from(format_num((b[0] + b[1]) / 2.0)),
        Span::from(format_num(b[1])),
    ]
}

fn format_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e6 {
        format!("{v:.0}")
    } else if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 1e4) {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

fn draw_loss_chart(frame: &mut Frame, app: &App, area: Rect) {
    let series = |f: fn(&super::app::StepPoint) -> f64| -> Vec<(f64, f64)> {
        app.steps
            .iter()
            .filter(|p| f(p).is_finite())
            .map(|p| (p.step, f(p)))
            .collect()
    };
    let loss = series(|p| p.loss);
    let dpo = series(|p| p.dpo);
    let opt = series(|p| p.optimism);
    let x = bounds(app.steps.iter().map(|p| p.step));
    // The optimism term is orders of magnitude below the DPO loss: its own axis.
    let [main, side] =
        Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(area);
    let title = match app.steps.last() {
        Some(p) => format!("loss (last {:.4}, step {})", p.loss, p.step),
        None => "loss per step".into(),
    };
    let chart = step_chart(
        title,
        x,
        vec![
            line_dataset("total", &loss, Color::Cyan),
            line_dataset("dpo", &dpo, Color::Yellow),
        ],
        bounds(loss.iter().chain(&dpo).map(|p| p.1)),
    )
    .legend_position(Some(ratatui::widgets::LegendPosition::TopRight))
    .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)));
    frame.render_widget(chart, main);
    let title = match opt.last() {
        Some((_, v)) => format!("optimism {}", format_num(*v)),
        None => "optimism".into(),
    };
    let y = bounds(opt.iter().map(|p| p.1));
    let mut chart = step_chart(title, x, vec![line_dataset("", &opt, Color::Magenta)], y);
    if side.width < 36 {
        // Too narrow for readable labels: the title carries the last value.
        chart = chart.y_axis(Axis::default().bounds(y).style(Style::new().dark_gray()));
    }
    frame.render_widget(chart, side);
}

fn step_chart<'a>(title: String, x: [f64; 2], data: Vec<Dataset<'a>>, y: [f64; 2]) -> Chart<'a> {
    Chart::new(data)
        .block(Block::bordered().title(title))
        .x_axis(Axis::default().bounds(x).style(Style::new().dark_gray()))
        .y_axis(
            Axis::default()
                .bounds(y)
                .labels(axis_labels(y))
                .style(Style::new().dark_gray()),
        )
}

fn line_dataset<'a>(name: &'a str, data: &'a [(f64, f64)], color: Color) -> Dataset<'a> {
    Dataset::default()
        .name(name)
        .marker(symbols::Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(color))
        .data(data)
}

fn draw_eval_chart(
    frame: &mut Frame,
    app: &App,
    area: Rect,
    name: &str,
    value: fn(&crate::engine::IterationSummary) -> f64,
    color: Color,
) {
    let points: Vec<(f64, f64)> = app
        .evals
        .iter()
        .map(|s| (s.iteration as f64, value(s)))
        .filter(|p| p.1.is_finite())
        .collect();
    let title = match points.last() {
        Some((i, v)) => format!("{name} {v:.4} (iter {i})"),
        None => name.to_string(),
    };
    let x = [0.0, (app.iterations.max(1)) as f64];
    let y = bounds(points.iter().map(|p| p.1));
    let data = Dataset::default()
        .marker(symbols::Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(color))
        .data(&points);
    let dots = Dataset::default()
        .marker(symbols::Marker::Dot)
        .graph_type(GraphType::Scatter)
        .style(Style::new().fg(color).bold())
        .data(&points);
    let chart = Chart::new(vec![data, dots])
        .block(Block::bordered().title(title))
        .x_axis(
            Axis::default()
                .bounds(x)
                .labels(["0".to_string(), format!("{}", app.iterations)])
                .style(Style::new().dark_gray()),
        )
        .y_axis(
            Axis::default()
                .bounds(y)
                .labels([format_num(y[0]), format_num(y[1])])
                .style(Style::new().dark_gray()),
        );
    frame.render_widget(chart, area);
}

fn draw_metrics(frame: &mut Frame, app: &App, area: Rect) {
    let rows = app.last_metrics.iter().map(|(k, v)| {
        Row::new([
            Cell::from(k.clone()),
            Cell::from(Line::from(format_num(*v)).alignment(Alignment::Right)),
        ])
    });
    let table = Table::new(rows, [Constraint::Min(10), Constraint::Length(10)])
        .block(Block::bordered().title("metrics (last update)"));
    frame.render_widget(table, area);
}

fn draw_histogram(frame: &mut Frame, app: &App, area: Rect) {
    let it = app.selected_iteration;
    let summary = app
        .data
        .get(&it)
        .and_then(|d| d.summary.as_ref())
        .or_else(|| app.evals.last());
    let title = match summary {
        Some(s) => format!(
            "held-out rewards, iter {} ({}, {}..{})",
            s.iteration,
            s.reward_histogram.iter().sum::<usize>(),
            format_num(s.histogram_range[0]),
            format_num(s.histogram_range[1]),
        ),
        None => "held-out rewards".into(),
    };
    let block = Block::bordered().title(title);
    let Some(s) = summary else {
        frame.render_widget(Paragraph::new("no evaluation yet").block(block), area);
        return;
    };
    let inner = block.inner(area).width as usize;
    // Ten bars with one-column gaps; widen them when there is room.
    let width = ((inner.saturating_sub(9)) / 10).clamp(1, 6) as u16;
    let bars: Vec<Bar> = s
        .reward_histogram
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            Bar::default()
                .value(n as u64)
                .label(Line::from(format!("{}", i)))
                .text_value(String::new())
        })
        .collect();
    let chart = BarChart::default()
        .block(block)
        .bar_width(width)
        .bar_gap(1)
        .bar_style(Style::new().fg(Color::Green))
        .value_style(Style::new().black().on_green())
        .data(BarGroup::default().bars(&bars));
    frame.render_widget(chart, area);
}

fn draw_log(frame: &mut Frame, app: &App, area: Rect, title: &str) {
    let height = area.height.saturating_sub(2) as usize;
    let end = app.log.len().saturating_sub(app.log_scroll);
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = app
        .log
        .range(start..end)
        .map(|l| {
            if l.starts_with("error") {
                Line::from(l.as_str()).red()
            } else {
                Line::from(l.as_str())
            }
        })
        .collect();
    let title = if app.log_scroll > 0 {
        format!("{title} (↑{})", app.log_scroll)
    } else {
        title.to_string()
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

fn draw_pairs(frame: &mut Frame, app: &App, area: Rect) {
    let rows = app.sorted_pairs();
    let measured = rows.iter().any(|r| r.2.is_some());
    let title = format!(
        "pairs, iteration {} ({}), sorted by {}{}",
        app.selected_iteration,
        rows.len(),
        app.pair_sort.label(),
        if measured {
            ""
        } else {
            "; margins after the update"
        }
    );
    let block = Block::bordered().title(title);
    if rows.is_empty() {
        let known = app.known_iterations();
        let msg = if known.iter().any(|&i| i > 0) {
            "no pairs for this iteration yet (← → to browse)"
        } else {
            "no pairs yet: they appear after the select-pairs stage"
        };
        frame.render_widget(Paragraph::new(msg).block(block), area);
        return;
    }
    let header = Row::new(["#", "gap", "margin", "chosen", "rejected", "prompt"]).bold();
    let table_rows = rows.iter().map(|(i, p, l)| {
        Row::new([
            Cell::from(format!("{}", i + 1)),
            Cell::from(format!("{:.3}", p.chosen_score - p.rejected_score)),
            Cell::from(l.map_or("—".into(), |l| format!("{:+.3}", l.reward_margin()))),
            Cell::from(format!("{:.3}", p.chosen_score)),
            Cell::from(format!("{:.3}", p.rejected_score)),
            Cell::from(one_line(&p.prompt)),
        ])
    });
    let widths = [
        Constraint::Length(4),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Min(10),
    ];
    let table = Table::new(table_rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().reversed())
        .highlight_symbol("▶ ");
    let mut state = TableState::default().with_selected(Some(app.pair_cursor));
    frame.render_stateful_widget(table, area, &mut state);
}

fn one_line(s: &str) -> String {
    s.replace('\n', "⏎ ")
}

fn draw_pair_detail(frame: &mut Frame, app: &App, area: Rect, index: usize) {
    let rows = app.sorted_pairs();
    let Some((i, pair, logps)) = rows.get(index.min(rows.len().saturating_sub(1))) else {
        frame.render_widget(Paragraph::new("no pair"), area);
        return;
    };
    let title = format!(
        "pair {} of {}, iteration {}{}",
        i + 1,
        rows.len(),
        app.selected_iteration,
        if app.token_view {
            "  (tokens colored by log π_θ − log π_ref)"
        } else {
            ""
        }
    );
    let lines = pair_lines(pair, *logps, app.token_view);
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(title))
            .wrap(Wrap { trim: false })
            .scroll((app.detail_scroll, 0)),
        area,
    );
}

/// The inspector's text: the prompt, then chosen, rejected and y_ref with their figures.
pub fn pair_lines<'a>(
    pair: &'a PairView,
    logps: Option<&'a PairLogps>,
    tokens: bool,
) -> Vec<Line<'a>> {
    let mut lines = vec![Line::from("prompt").bold().underlined()];
    lines.extend(pair.prompt.lines().map(Line::from));
    let beta = logps.map_or(f64::NAN, |l| l.beta);
    let parts = [
        (
            "chosen",
            &pair.chosen,
            pair.chosen_score,
            logps.map(|l| &l.chosen),
            Color::Green,
        ),
        (
            "rejected",
            &pair.rejected,
            pair.rejected_score,
            logps.map(|l| &l.rejected),
            Color::Red,
        ),
        (
            "y_ref",
            &pair.reference_response,
            pair.reference_score,
            logps.map(|l| &l.y_ref),
            Color::Blue,
        ),
    ];
    for (name, text, score, r, color) in parts {
        lines.push(Line::default());
        let mut head = vec![
            Span::from(name).bold().fg(color),
            Span::from(format!("  score {score:.3}")),
        ];
        match r {
            Some(r) => head.push(Span::from(format!(
                "  reward β·Δ {:+.4}  log π_θ {:.3}  log π_ref {:.3}",
                r.implicit_reward(beta),
                r.policy_sum(),
                r.reference_sum()
            ))),
            None => head.push(Span::from("  (log-probs after the update)").dark_gray()),
        }
        lines.push(Line::from(head));
        match r {
            Some(r) if tokens => lines.extend(token_lines(r)),
            _ => lines.extend(text.lines().map(Line::from)),
        }
    }
    if tokens && logps.is_some() {
        lines.push(Line::default());
        lines.push(Line::from(vec![
            Span::from("log-ratio: "),
            Span::from(" < -1 ").on_red().black(),
            Span::from(" < -0.1 ").light_red(),
            Span::from(" ~0 "),
            Span::from(" > 0.1 ").light_green(),
            Span::from(" > 1 ").on_green().black(),
        ]));
    }
    lines
}

/// A response as colored token spans, split into lines at newline tokens.
fn token_lines(r: &ResponseLogps) -> Vec<Line<'static>> {
    let mut lines = vec![];
    let mut spans = vec![];
    for (tok, ratio) in r.tokens.iter().zip(r.log_ratios()) {
        let style = ratio_style(ratio);
        let mut parts = tok.split('\n').peekable();
        while let Some(part) = parts.next() {
            if !part.is_empty() {
                spans.push(Span::styled(part.to_string(), style));
            }
            if parts.peek().is_some() {
                spans.push(Span::styled("⏎", style));
                lines.push(Line::from(std::mem::take(&mut spans)));
            }
        }
    }
    if !spans.is_empty() || lines.is_empty() {
        lines.push(Line::from(spans));
    }
    lines
}

pub fn ratio_style(ratio: f64) -> Style {
    match ratio {
        r if r <= -1.0 => Style::new().bg(Color::Red).fg(Color::Black),
        r if r <= -0.1 => Style::new().fg(Color::LightRed),
        r if r >= 1.0 => Style::new().bg(Color::Green).fg(Color::Black),
        r if r >= 0.1 => Style::new().fg(Color::LightGreen),
        _ => Style::new().add_modifier(Modifier::UNDERLINED),
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let rect = centered(area, 64, KEYS.len() as u16 + 2);
    let rows = KEYS
        .iter()
        .map(|(k, what)| Row::new([Cell::from(*k).bold().yellow(), Cell::from(*what)]));
    let table = Table::new(rows, [Constraint::Length(17), Constraint::Min(10)])
        .block(Block::bordered().title("keys (Esc to close)"));
    frame.render_widget(Clear, rect);
    frame.render_widget(table, rect);
}

fn draw_params(frame: &mut Frame, area: Rect, form: &ParamsForm) {
    let rect = centered(area, 50, 9);
    let mut lines = vec![];
    for (i, (label, value)) in ParamsForm::LABELS.iter().zip(&form.fields).enumerate() {
        let focused = i == form.focus;
        let field = Span::from(format!(" {value:<20}"));
        lines.push(Line::from(vec![
            Span::from(format!("{}{label:>6} ", if focused { "▶" } else { " " })),
            if focused {
                field.reversed()
            } else {
                field.underlined()
            },
        ]));
    }
    lines.push(Line::default());
    lines.push(match &form.error {
        Some(e) => Line::from(e.as_str()).red(),
        None => Line::from("effective from the next update").dark_gray(),
    });
    lines.push(Line::from("Enter apply · Tab next field · Esc cancel").dark_gray());
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().borders(Borders::ALL).title("parameters")),
        rect,
    );
}
