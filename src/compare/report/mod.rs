//! The tables of `compare --out` as CSV (full precision, one observation a row, for
//! pandas or R) and `report.md`, which shows the figures and the headline tables and links
//! everything: what goes into a paper or a lab notebook.

mod csv;
mod markdown;

use anyhow::Result;
use std::path::{Path, PathBuf};

use self::csv::{curves_csv, distributions_csv, final_csv, high_share_csv, implicit_csv, runs_csv};
use self::markdown::report_md;
use super::comparison::Comparison;
use crate::io::atomic_write;

/// The CSV tables, by file name, with what each holds (for the report's list).
pub const TABLES: [(&str, &str); 6] = [
    (
        "curves.csv",
        "per group, iteration and figure: n, mean, sd, min, max over seeds",
    ),
    (
        "final.csv",
        "the last iteration per group, with the paired difference to the baseline",
    ),
    (
        "reward_distributions.csv",
        "pooled held-out reward histograms as shares per bin",
    ),
    (
        "high_reward_share.csv",
        "share of held-out samples at or above the threshold",
    ),
    (
        "implicit_rewards.csv",
        "mean implicit rewards per group, iteration and response",
    ),
    (
        "runs.csv",
        "every run given, its group, or why it was not read",
    ),
];

/// Writes the CSV tables and `report.md` into `out`; `figures` are the figure files
/// written there. Returns the files written.
pub fn write_report(
    cmp: &Comparison,
    inputs: &[PathBuf],
    out: &Path,
    figures: &[PathBuf],
) -> Result<Vec<PathBuf>> {
    let tables = [
        curves_csv(cmp),
        final_csv(cmp),
        distributions_csv(cmp),
        high_share_csv(cmp),
        implicit_csv(cmp),
        runs_csv(cmp),
    ];
    let mut written = vec![];
    for ((name, _), text) in TABLES.iter().zip(tables) {
        let path = out.join(name);
        atomic_write(&path, text.as_bytes())?;
        written.push(path);
    }
    let path = out.join("report.md");
    atomic_write(&path, report_md(cmp, inputs, figures).as_bytes())?;
    written.push(path);
    Ok(written)
}
