//! The CSV tables: full precision, one observation a row.

use crate::compare::comparison::{Comparison, Diff, Metric};
use crate::compare::stats::{PairedDiff, RESPONSES, Stat};
use crate::run::records::HISTOGRAM_BINS;

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

pub(super) fn curves_csv(cmp: &Comparison) -> String {
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

pub(super) fn final_csv(cmp: &Comparison) -> String {
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

pub(super) fn distributions_csv(cmp: &Comparison) -> String {
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

pub(super) fn high_share_csv(cmp: &Comparison) -> String {
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

pub(super) fn implicit_csv(cmp: &Comparison) -> String {
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

pub(super) fn runs_csv(cmp: &Comparison) -> String {
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
