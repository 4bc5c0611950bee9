//! The figures of `compare --out`, drawn once per backend (SVG, and PNG through an RGB
//! buffer the `png` crate encodes). Text uses the font embedded from `assets/fonts/`, so the
//! figures look the same on a machine without fonts (CI).

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

use rewards::{draw_rewards, reward_grid, reward_legend_height};

mod rewards;

use super::comparison::{Comparison, Metric};
use super::stats::RESPONSES;
use crate::io::atomic_write;

/// Inter (OFL 1.1), cut down to the characters figures use (assets/fonts/README.md).
const FONT: &[u8] = include_bytes!("../../../assets/fonts/Inter-Regular-subset.ttf");
/// The family name figures ask for; the embedded font is registered under it.
const FAMILY: &str = "sans-serif";

/// Tableau 10: distinct in print and for the common colour-vision deficiencies.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(g: usize) -> RGBColor {
    PALETTE[g % PALETTE.len()]
}

/// A figure of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Curves,
    Rewards,
    Implicit,
}

impl Figure {
    pub const ALL: [Figure; 3] = [Figure::Curves, Figure::Rewards, Figure::Implicit];

    /// The file name without extension.
    pub fn stem(self) -> &'static str {
        match self {
            Figure::Curves => "curves",
            Figure::Rewards => "reward_distributions",
            Figure::Implicit => "implicit_rewards",
        }
    }

    /// Whether there is anything to draw (implicit rewards need `pair_logps.jsonl`).
    pub fn available(self, cmp: &Comparison) -> bool {
        match self {
            Figure::Curves | Figure::Rewards => cmp.runs.iter().any(|r| !r.summary.is_empty()),
            Figure::Implicit => !cmp.implicit_iterations().is_empty(),
        }
    }

    /// Pixels of the PNG (and the SVG's view box).
    fn size(self, cmp: &Comparison) -> (u32, u32) {
        match self {
            Figure::Curves => (1500, 460),
            Figure::Rewards => {
                let (rows, cols) = reward_grid(cmp);
                let panel = 340 + reward_legend_height(cmp);
                (420 * cols as u32, panel * rows as u32)
            }
            Figure::Implicit => (1500, 460 * implicit_rows(cmp) as u32),
        }
    }

    fn draw<DB: DrawingBackend>(self, cmp: &Comparison, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        match self {
            Figure::Curves => draw_curves(cmp, root),
            Figure::Rewards => draw_rewards(cmp, root),
            Figure::Implicit => draw_implicit(cmp, root),
        }
    }
}

/// Writes every available figure as `<stem>.svg` and `<stem>.png` in `out`; returns the
/// files written.
pub fn write_figures(cmp: &Comparison, out: &Path) -> Result<Vec<PathBuf>> {
    register_font()?;
    let mut written = vec![];
    for figure in Figure::ALL.into_iter().filter(|f| f.available(cmp)) {
        let svg = out.join(format!("{}.svg", figure.stem()));
        write_svg(figure, cmp, &svg)?;
        let png = out.join(format!("{}.png", figure.stem()));
        write_png(figure, cmp, &png)?;
        written.extend([svg, png]);
    }
    Ok(written)
}

fn register_font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if !ok {
        return Err(anyhow!(
            "assets/fonts/Inter-Regular-subset.ttf (embedded) is not a font ab_glyph reads"
        ));
    }
    Ok(())
}

fn write_svg(figure: Figure, cmp: &Comparison, path: &Path) -> Result<()> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, figure.size(cmp)).into_drawing_area();
        figure
            .draw(cmp, &root)
            .and_then(|()| Ok(root.present()?))
            .with_context(|| format!("drawing {}", path.display()))?;
    }
    atomic_write(path, text.as_bytes())
}

fn write_png(figure: Figure, cmp: &Comparison, path: &Path) -> Result<()> {
    let (w, h) = figure.size(cmp);
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        figure
            .draw(cmp, &root)
            .and_then(|()| Ok(root.present()?))
            .with_context(|| format!("drawing {}", path.display()))?;
    }
    let bytes = crate::io::encode_png_rgb(w, h, &rgb)
        .with_context(|| format!("encoding {}", path.display()))?;
    atomic_write(path, &bytes)
}

/// `(lo, hi)` around the finite `values`, padded 5% so nothing sits on the frame, and
/// widened when flat.
pub fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6 + lo.abs() * 0.01);
    (lo - pad, hi + pad)
}

/// A group's line: per x its middle value and a band `[lo, hi]`.
struct Band {
    label: String,
    color: RGBColor,
    /// `[x, mid, lo, hi]`.
    points: Vec<[f64; 4]>,
}

/// Lines with shaded bands over iterations, a legend in the corner.
fn band_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    last: usize,
    bands: &[Band],
    zero_line: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let values = bands
        .iter()
        .flat_map(|b| b.points.iter().flat_map(|p| [p[2], p[3]]));
    let zero = zero_line.then_some(0.0);
    let (y0, y1) = padded_range(values.chain(zero));
    let x1 = last.max(1) as f64 + 0.2;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.2..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .x_labels(last.max(1) + 1)
        .x_label_formatter(&|x| integer_label(*x))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()?;
    if zero_line {
        let line = PathElement::new(vec![(-0.2, 0.0), (x1, 0.0)], BLACK.mix(0.4));
        chart.draw_series(std::iter::once(line))?;
    }
    for band in bands {
        let shade = band.points.iter().map(|p| (p[0], p[3]));
        let back = band.points.iter().rev().map(|p| (p[0], p[2]));
        let polygon = Polygon::new(shade.chain(back).collect::<Vec<_>>(), band.color.mix(0.18));
        chart.draw_series(std::iter::once(polygon))?;
        let c = band.color;
        let mid: Vec<(f64, f64)> = band.points.iter().map(|p| (p[0], p[1])).collect();
        chart
            .draw_series(LineSeries::new(mid.clone(), c.stroke_width(2)))?
            .label(band.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(mid.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    draw_legend(&mut chart)?;
    Ok(())
}

/// Tick labels at whole iterations only.
fn integer_label(x: f64) -> String {
    if (x - x.round()).abs() < 1e-6 && x >= -1e-6 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

/// high_reward_fraction, reward/mean and kl over iterations: group means, min-max over
/// seeds shaded.
fn draw_curves<DB: DrawingBackend>(cmp: &Comparison, root: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let panels = root.split_evenly((1, Metric::ALL.len()));
    for (metric, area) in Metric::ALL.into_iter().zip(&panels) {
        let bands: Vec<Band> = (0..cmp.groups.len())
            .map(|g| Band {
                label: cmp.groups[g].label.clone(),
                color: color(g),
                points: cmp
                    .curve(g, metric)
                    .iter()
                    .map(|(i, s)| [*i as f64, s.mean, s.min, s.max])
                    .collect(),
            })
            .collect();
        let title = format!("{} (mean, min-max over seeds)", metric.name());
        band_panel(area, &title, cmp.last_iteration(), &bands, false)?;
    }
    Ok(())
}

/// Rows of the implicit-reward figure: the means, and the differences to the baseline when
/// some group has one.
fn implicit_rows(cmp: &Comparison) -> usize {
    if cmp.groups.iter().any(|g| g.baseline.is_some()) {
        2
    } else {
        1
    }
}

/// Mean implicit rewards of chosen, rejected and y_ref per group over iterations (min-max
/// over seeds shaded), and below them each group's paired difference to its baseline with
/// its 95% interval shaded.
fn draw_implicit<DB: DrawingBackend>(cmp: &Comparison, root: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let rows = implicit_rows(cmp);
    let panels = root.split_evenly((rows, RESPONSES.len()));
    let iterations = cmp.implicit_iterations();
    let last = iterations.last().copied().unwrap_or(1);
    for (k, response) in RESPONSES.iter().enumerate() {
        let bands: Vec<Band> = (0..cmp.groups.len())
            .map(|g| Band {
                label: cmp.groups[g].label.clone(),
                color: color(g),
                points: iterations
                    .iter()
                    .filter_map(|&i| {
                        let s = cmp.implicit(g, i)?.stats[k]?;
                        Some([i as f64, s.mean, s.min, s.max])
                    })
                    .collect(),
            })
            .collect();
        let title = format!("implicit reward of {response}");
        band_panel(&panels[k], &title, last, &bands, true)?;
        if rows == 2 {
            let title = format!("{response}: group − baseline (95% CI)");
            let diffs = implicit_diff_bands(cmp, &iterations, k);
            band_panel(&panels[RESPONSES.len() + k], &title, last, &diffs, true)?;
        }
    }
    Ok(())
}

fn implicit_diff_bands(cmp: &Comparison, iterations: &[usize], k: usize) -> Vec<Band> {
    let mut bands = vec![];
    for (g, group) in cmp.groups.iter().enumerate() {
        let Some(b) = group.baseline else { continue };
        let points = iterations
            .iter()
            .filter_map(|&i| {
                let d = cmp.implicit(g, i)?.diff?.values[k]?;
                let (lo, hi) = d.interval().unwrap_or((d.mean, d.mean));
                Some([i as f64, d.mean, lo, hi])
            })
            .collect();
        bands.push(Band {
            label: format!("{} − {}", group.label, cmp.groups[b].label),
            color: color(g),
            points,
        });
    }
    bands
}
