//! One file per panel. Each holds its own state, updated from engine events by [`App`], and
//! renders itself from that state; the view state (cursor, scroll, sort) is kept apart from
//! the copy of what the engine reported.
//!
//! [`App`]: super::app::App

pub mod eval_charts;
pub mod help;
pub mod log;
pub mod loss_chart;
pub mod metrics_table;
pub mod pair_inspector;
pub mod pair_list;
pub mod params_popup;
pub mod pipeline_bar;
pub mod rank_desk;
pub mod reward_histogram;

use ratatui::layout::Rect;
use ratatui::text::Span;

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

/// A number in at most about seven characters.
pub fn format_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e6 {
        format!("{v:.0}")
    } else if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 1e4) {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

/// A `width` x `height` rectangle in the middle of `area`.
pub(crate) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}
