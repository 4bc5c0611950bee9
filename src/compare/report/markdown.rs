//! `report.md`: the figures and the headline tables, with links to everything written.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::TABLES;
use crate::compare::comparison::{Comparison, Metric};
use crate::compare::plots::Figure;
use crate::compare::stats::RESPONSES;
use crate::compare::text::{self, NONE};

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

pub(super) fn report_md(cmp: &Comparison, inputs: &[PathBuf], figures: &[PathBuf]) -> String {
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
