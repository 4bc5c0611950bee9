//! The reward-distribution figure: per iteration, the groups' held-out reward histograms as
//! bars side by side in each bin, the threshold marked, a legend under each panel.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{FAMILY, color};
use crate::compare::comparison::Comparison;
use crate::run::records::HISTOGRAM_BINS;

/// Iteration panels for the reward figure: up to four a row.
pub(super) fn reward_grid(cmp: &Comparison) -> (usize, usize) {
    let panels = cmp.last_iteration() + 1;
    let cols = panels.min(4);
    (panels.div_ceil(cols), cols)
}

/// Pixels under each reward panel for its legend: a line per group.
pub(super) fn reward_legend_height(cmp: &Comparison) -> u32 {
    REWARD_LEGEND_LINE * cmp.groups.len() as u32 + 12
}

const REWARD_LEGEND_LINE: u32 = 20;

/// Per iteration, the groups' held-out reward histograms (shares of samples) as bars side by
/// side in each bin, so no group hides another; the high-reward threshold marked; under each
/// panel, off the data, a legend with each group's share at or above the threshold.
pub(super) fn draw_rewards<DB: DrawingBackend>(
    cmp: &Comparison,
    root: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let panels = root.split_evenly(reward_grid(cmp));
    let top = (0..=cmp.last_iteration())
        .flat_map(|i| (0..cmp.groups.len()).filter_map(move |g| cmp.distribution(g, i)))
        .flat_map(|p| p.shares)
        .fold(0.0f64, f64::max);
    for (iteration, area) in (0..=cmp.last_iteration()).zip(&panels) {
        let height = area.dim_in_pixel().1;
        let (plot, legend) =
            area.split_vertically(height.saturating_sub(reward_legend_height(cmp)));
        reward_panel(cmp, iteration, &plot, (top * 1.1).max(0.05))?;
        reward_legend(cmp, iteration, &legend)?;
    }
    Ok(())
}

fn reward_panel<DB: DrawingBackend>(
    cmp: &Comparison,
    iteration: usize,
    area: &DrawingArea<DB, Shift>,
    top: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let pooled: Vec<_> = (0..cmp.groups.len())
        .map(|g| cmp.distribution(g, iteration))
        .collect();
    let range = pooled
        .iter()
        .flatten()
        .map(|p| p.range)
        .next()
        .unwrap_or([0.0, 1.0]);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("iteration {iteration}"), (FAMILY, 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(range[0]..range[1], 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("held-out reward")
        .y_desc("share of samples")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()?;
    // Each bin holds one bar per group, in group order, with a margin between bins.
    let groups = pooled.len().max(1) as f64;
    let step = (range[1] - range[0]) / HISTOGRAM_BINS as f64;
    let slot = |b: usize, g: usize| {
        let left = range[0] + step * (b as f64 + 0.08);
        let width = step * 0.84 / groups;
        (left + width * g as f64, left + width * (g + 1) as f64)
    };
    for (g, p) in pooled.iter().enumerate() {
        let Some(p) = p else { continue };
        let c = color(g);
        chart.draw_series((0..HISTOGRAM_BINS).map(|b| {
            let (x0, x1) = slot(b, g);
            Rectangle::new([(x0, 0.0), (x1, p.shares[b])], c.filled())
        }))?;
    }
    let threshold = cmp.threshold();
    if threshold.is_finite() {
        let mark = PathElement::new(vec![(threshold, 0.0), (threshold, top)], BLACK.mix(0.5));
        chart.draw_series(std::iter::once(mark))?;
    }
    Ok(())
}

/// A panel's legend, below its axis: each group's colour, label and share at or above the
/// threshold in that iteration.
fn reward_legend<DB: DrawingBackend>(
    cmp: &Comparison,
    iteration: usize,
    area: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let threshold = cmp.threshold();
    let style = TextStyle::from((FAMILY, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (g, group) in cmp.groups.iter().enumerate() {
        let y = (REWARD_LEGEND_LINE * g as u32 + REWARD_LEGEND_LINE / 2) as i32;
        let share = match cmp.distribution(g, iteration) {
            Some(p) => format!("{:.1}% ≥ {threshold}", p.high_share * 100.0),
            None => "no evaluation".into(),
        };
        area.draw(&Rectangle::new(
            [(66, y - 6), (78, y + 6)],
            color(g).filled(),
        ))?;
        area.draw(&Text::new(
            format!("{}: {share}", group.label),
            (86, y),
            &style,
        ))?;
    }
    Ok(())
}
