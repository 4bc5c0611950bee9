//! The tables of `compare --out` as CSV (full precision, one observation a row, for
//! pandas or R) and `report.md`, which shows the figures and the headline tables and links
//! everything: what goes into a paper or a lab notebook.

use anyhow::Result;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::comparison::{Comparison, Diff, Metric};
use super::plots::Figure;
use super::stats::{PairedDiff, RESPONSES, Stat};
use super::text::{self, NONE};
use crate::io::atomic_write;
use crate::io::records::HISTOGRAM_BINS;

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

/// One CSV field: quoted when it holds a comma, quote or line break (group labels have
/// commas).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A number at full precision; empty when not measured.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

fn line(out: &mut String, fields: &[String]) {
    let row: Vec<String> = fields.iter().map(|f| field(f)).collect();
    out.push_str(&row.join(","));
    out.push('\n');
}

fn stat_fields(s: &Stat) -> [String; 5] {
    [
        s.n.to_string(),
        num(s.mean),
        num(s.sd),
        num(s.min),
        num(s.max),
    ]
}

/// `baseline, [iteration,] n, mean, low, high` of a difference; empty without one.
fn diff_fields(cmp: &Comparison, diff: Option<&Diff>, k: usize) -> [String; 5] {
    let Some(d) = diff else {
        return Default::default();
    };
    let baseline = cmp.groups[d.baseline].label.clone();
    let Some(PairedDiff { n, mean, .. }) = d.values[k] else {
        return [
            baseline,
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ];
    };
    let (lo, hi) = d.values[k]
        .and_then(|v| v.interval())
        .unwrap_or((f64::NAN, f64::NAN));
    [baseline, n.to_string(), num(mean), num(lo), num(hi)]
}

fn curves_csv(cmp: &Comparison) -> String {
    let mut out = "group,iteration,metric,n,mean,sd,min,max\n".to_string();
    for (g, group) in cmp.groups.iter().enumerate() {
        for metric in Metric::ALL {
            for (i, s) in cmp.curve(g, metric) {
                let mut row = vec![group.label.clone(), i.to_string(), metric.name().into()];
                row.extend(stat_fields(&s));
                line(&mut out, &row);
            }
        }
    }
    out
}

fn final_csv(cmp: &Comparison) -> String {
    let mut out = "group,iteration,metric,n,mean,sd,min,max,baseline,diff_iteration,diff_n,\
                   diff_mean,diff_ci_low,diff_ci_high\n"
        .to_string();
    for (g, group) in cmp.groups.iter().enumerate() {
        let Some(row) = cmp.final_row(g) else {
            continue;
        };
        for (k, metric) in Metric::ALL.into_iter().enumerate() {
            let Some(s) = row.stats[k] else { continue };
            let mut fields = vec![
                group.label.clone(),
                row.iteration.to_string(),
                metric.name().into(),
            ];
            fields.extend(stat_fields(&s));
            let [baseline, rest @ ..] = diff_fields(cmp, row.diff.as_ref(), k);
            fields.push(baseline);
            fields.push(row.diff.map_or(String::new(), |d| d.iteration.to_string()));
            fields.extend(rest);
            line(&mut out, &fields);
        }
    }
    out
}

fn distributions_csv(cmp: &Comparison) -> String {
    let mut out = "group,iteration,runs,samples,bin,bin_low,bin_high,share\n".to_string();
    for (g, group) in cmp.groups.iter().enumerate() {
        for i in 0..=cmp.last_iteration() {
            let Some(p) = cmp.distribution(g, i) else {
                continue;
            };
            let step = (p.range[1] - p.range[0]) / HISTOGRAM_BINS as f64;
            for b in 0..HISTOGRAM_BINS {
                let lo = p.range[0] + step * b as f64;
                line(
                    &mut out,
                    &[
                        group.label.clone(),
                        i.to_string(),
                        p.runs.to_string(),
                        p.samples.to_string(),
                        b.to_string(),
                        num(lo),
                        num(lo + step),
                        num(p.shares[b]),
                    ],
                );
            }
        }
    }
    out
}

fn high_share_csv(cmp: &Comparison) -> String {
    let mut out = "group,iteration,runs,samples,threshold,share\n".to_string();
    for (g, group) in cmp.groups.iter().enumerate() {
        for i in 0..=cmp.last_iteration() {
            let Some(p) = cmp.distribution(g, i) else {
                continue;
            };
            line(
                &mut out,
                &[
                    group.label.clone(),
                    i.to_string(),
                    p.runs.to_string(),
                    p.samples.to_string(),
                    num(cmp.threshold()),
                    num(p.high_share),
                ],
            );
        }
    }
    out
}

fn implicit_csv(cmp: &Comparison) -> String {
    let mut out = "group,iteration,response,n,mean,sd,min,max,baseline,diff_n,diff_mean,\
                   diff_ci_low,diff_ci_high\n"
        .to_string();
    for (g, group) in cmp.groups.iter().enumerate() {
        for i in cmp.implicit_iterations() {
            let Some(row) = cmp.implicit(g, i) else {
                continue;
            };
            for (k, response) in RESPONSES.iter().enumerate() {
                let Some(s) = row.stats[k] else { continue };
                let mut fields = vec![group.label.clone(), i.to_string(), response.to_string()];
                fields.extend(stat_fields(&s));
                fields.extend(diff_fields(cmp, row.diff.as_ref(), k));
                line(&mut out, &fields);
            }
        }
    }
    out
}

fn runs_csv(cmp: &Comparison) -> String {
    let mut out = "run,group,seed,last_iteration,status,dir,reason\n".to_string();
    for group in &cmp.groups {
        for &r in &group.runs {
            let run = &cmp.runs[r];
            line(
                &mut out,
                &[
                    run.name.clone(),
                    group.label.clone(),
                    run.seed().to_string(),
                    run.last_iteration()
                        .map_or(String::new(), |i| i.to_string()),
                    run.note.clone().unwrap_or_else(|| "read".into()),
                    run.dir.display().to_string(),
                    String::new(),
                ],
            );
        }
    }
    for s in &cmp.skipped {
        let fields = [
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            "unreadable".into(),
            s.path.display().to_string(),
            s.reason.clone(),
        ];
        line(&mut out, &fields);
    }
    out
}

/// A markdown table cell (a `|` would end the cell).
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn md_table(out: &mut String, head: &[String], rows: &[Vec<String>]) {
    let row = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    out.push_str(&row(head));
    out.push_str(&format!("|{}\n", " --- |".repeat(head.len())));
    for r in rows {
        out.push_str(&row(r));
    }
    out.push('\n');
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn report_md(cmp: &Comparison, inputs: &[PathBuf], figures: &[PathBuf]) -> String {
    let mut out = String::from("# selm-tui compare\n\n");
    md_inputs(&mut out, cmp, inputs);
    md_groups(&mut out, cmp);
    out.push_str("## Held-out figures per iteration\n\n");
    md_figure(&mut out, Figure::Curves, figures, "curves.csv");
    md_final(&mut out, cmp);
    out.push_str("## Reward distributions\n\n");
    md_figure(
        &mut out,
        Figure::Rewards,
        figures,
        "reward_distributions.csv",
    );
    md_high_shares(&mut out, cmp);
    out.push_str("## Implicit rewards\n\n");
    md_figure(&mut out, Figure::Implicit, figures, "implicit_rewards.csv");
    md_implicit(&mut out, cmp);
    md_method(&mut out);
    out
}

fn md_inputs(out: &mut String, cmp: &Comparison, inputs: &[PathBuf]) {
    let differ = if cmp.keys.is_empty() {
        "configs that do not differ".to_string()
    } else {
        let keys: Vec<String> = cmp.keys.iter().map(|k| format!("`{k}`")).collect();
        format!("configs that differ in {}", keys.join(", "))
    };
    let _ = writeln!(
        out,
        "{} runs in {} groups, {differ}. Read from:\n",
        cmp.runs.len(),
        cmp.groups.len()
    );
    for dir in inputs {
        let _ = writeln!(out, "- `{}`", dir.display());
    }
    out.push('\n');
    if !cmp.warnings.is_empty() {
        out.push_str("**Warnings**\n\n");
        for w in &cmp.warnings {
            let _ = writeln!(out, "- {w}");
        }
        out.push('\n');
    }
    if !cmp.skipped.is_empty() {
        out.push_str("**Not compared**\n\n");
        for s in &cmp.skipped {
            let _ = writeln!(out, "- `{}`: {}", s.path.display(), s.reason);
        }
        out.push('\n');
    }
}

fn md_groups(out: &mut String, cmp: &Comparison) {
    out.push_str("## Groups\n\n");
    let head = strings(&["group", "runs", "seeds", "last iteration", "baseline"]);
    let rows: Vec<Vec<String>> = cmp
        .groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let seeds: Vec<String> = group
                .runs
                .iter()
                .map(|&r| cmp.runs[r].seed().to_string())
                .collect();
            let baseline = match group.baseline {
                Some(b) => cmp.groups[b].label.clone(),
                None if group.is_baseline => "(is one)".into(),
                None => NONE.into(),
            };
            vec![
                group.label.clone(),
                group.runs.len().to_string(),
                seeds.join(", "),
                cmp.group_last_iteration(g)
                    .map_or(NONE.into(), |i| i.to_string()),
                baseline,
            ]
        })
        .collect();
    md_table(out, &head, &rows);
    out.push_str("Every run: [runs.csv](runs.csv).\n\n");
}

/// The figure's PNG shown, its SVG and data linked; or why there is none.
fn md_figure(out: &mut String, figure: Figure, figures: &[PathBuf], csv: &str) {
    let stem = figure.stem();
    let has = |ext: &str| {
        figures.iter().any(|f| {
            f.file_name()
                .is_some_and(|n| n == format!("{stem}.{ext}").as_str())
        })
    };
    if has("png") {
        let _ = writeln!(out, "![{stem}]({stem}.png)\n");
    }
    let mut links = vec![];
    if has("svg") {
        links.push(format!("[{stem}.svg]({stem}.svg)"));
    }
    if has("png") {
        links.push(format!("[{stem}.png]({stem}.png)"));
    }
    links.push(format!("data: [{csv}]({csv})"));
    if !has("png") && !has("svg") {
        out.push_str("No figure: no run has the data for it.\n\n");
    }
    let _ = writeln!(out, "{}\n", links.join(" · "));
}

fn md_final(out: &mut String, cmp: &Comparison) {
    out.push_str("## Last iteration\n\n");
    out.push_str(
        "Mean ± sd over seeds at each group's last iteration (n: runs that reached it).\n\n",
    );
    let mut head = strings(&["group", "iteration", "n"]);
    head.extend(Metric::ALL.map(|m| m.name().to_string()));
    let rows: Vec<Vec<String>> = (0..cmp.groups.len())
        .filter_map(|g| {
            let row = cmp.final_row(g)?;
            let n = row.stats.iter().flatten().map(|s| s.n).max().unwrap_or(0);
            let mut cells = vec![
                cmp.groups[g].label.clone(),
                row.iteration.to_string(),
                n.to_string(),
            ];
            cells.extend(row.stats.map(text::mean_sd));
            Some(cells)
        })
        .collect();
    md_table(out, &head, &rows);
    out.push_str(
        "Difference to the baseline group at the last iteration both reached, paired by seed: \
         mean ± 95% Student t half-width (n: seeds paired; one pair gives no interval).\n\n",
    );
    let mut head = strings(&["group", "baseline", "iteration", "n"]);
    head.extend(Metric::ALL.map(|m| format!("Δ {}", m.name())));
    let rows: Vec<Vec<String>> = (0..cmp.groups.len())
        .filter_map(|g| {
            let d = cmp.final_row(g)?.diff?;
            let n = d.values.iter().flatten().map(|v| v.n).max().unwrap_or(0);
            let mut cells = vec![
                cmp.groups[g].label.clone(),
                cmp.groups[d.baseline].label.clone(),
                d.iteration.to_string(),
                n.to_string(),
            ];
            cells.extend(d.values.map(text::diff));
            Some(cells)
        })
        .collect();
    if rows.is_empty() {
        out.push_str(
            "No group has a baseline (alpha = 0 or objective = dpo, the other keys equal).\n\n",
        );
    } else {
        md_table(out, &head, &rows);
    }
    out.push_str("Data: [final.csv](final.csv).\n\n");
}

fn md_high_shares(out: &mut String, cmp: &Comparison) {
    let _ = writeln!(
        out,
        "Share of held-out samples at or above the high-reward threshold ({}), pooled over \
         each group's runs:\n",
        cmp.threshold()
    );
    let last = cmp.last_iteration();
    let mut head = strings(&["group"]);
    head.extend((0..=last).map(|i| format!("iter {i}")));
    let rows: Vec<Vec<String>> = (0..cmp.groups.len())
        .map(|g| {
            let mut cells = vec![cmp.groups[g].label.clone()];
            cells.extend((0..=last).map(|i| {
                cmp.distribution(g, i)
                    .map_or(NONE.into(), |p| text::percent(p.high_share))
            }));
            cells
        })
        .collect();
    md_table(out, &head, &rows);
    out.push_str("Data: [high_reward_share.csv](high_reward_share.csv).\n\n");
}

fn md_implicit(out: &mut String, cmp: &Comparison) {
    if cmp.implicit_iterations().is_empty() {
        out.push_str("No run has `iter-NNN/pair_logps.jsonl`.\n\n");
        return;
    }
    out.push_str(
        "Mean implicit reward β·(log πθ(y|x) − log πref(y|x)) of each run's pairs, then mean ± sd \
         over seeds; Δ: group minus its baseline (SELM minus DPO), paired by seed, 95% t \
         interval.\n\n",
    );
    let mut head = strings(&["iteration", "group", "n"]);
    head.extend(RESPONSES.map(String::from));
    head.extend(RESPONSES.map(|r| format!("Δ {r}")));
    let mut rows = vec![];
    for i in cmp.implicit_iterations() {
        for (g, group) in cmp.groups.iter().enumerate() {
            let Some(row) = cmp.implicit(g, i) else {
                continue;
            };
            let mut cells = vec![i.to_string(), group.label.clone(), row.runs.to_string()];
            cells.extend(row.stats.map(text::mean_sd));
            match row.diff {
                Some(d) => cells.extend(d.values.map(text::diff)),
                None => cells.extend([NONE; 3].map(String::from)),
            }
            rows.push(cells);
        }
    }
    md_table(out, &head, &rows);
}

fn md_method(out: &mut String) {
    out.push_str(
        "## How these were computed\n\n\
         - Runs whose configs agree on every key but `run.seed`, `run.name`, `run.out_dir`, \
         `run.auto_pause` and `runtime.backend` form a group; its seeds are pooled. An \
         unfinished run counts at the iterations it reached.\n\
         - Bands: min-max over a group's seeds (curves, implicit rewards), 95% interval \
         (differences).\n\
         - Baseline of a group: the group with `train.alpha = 0` or `train.objective = dpo` \
         whose other grouping keys are equal.\n\
         - Paired differences: per seed present in both groups, group minus baseline; mean ± \
         t(0.975, n − 1) · sd / √n (statrs' Student t quantile).\n\n\
         Tables:\n\n",
    );
    for (name, what) in TABLES {
        let _ = writeln!(out, "- [{name}]({name}): {what}");
    }
}
