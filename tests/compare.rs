//! `selm-tui compare` on synthetic run directories with known numbers: grouping, statistics,
//! paired differences, implicit rewards, unreadable runs, warnings, sweeps; snapshots of its
//! views; and the files `--out` writes, through the real binary.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use selm_tui::compare::app::{CompareApp, CompareView};
use selm_tui::compare::comparison::{Comparison, Metric};
use selm_tui::compare::{compare, view};
use selm_tui::config::Config;
use selm_tui::run::records::{
    EvalFigures, HISTOGRAM_BINS, IterationSummary, PairLogps, ResponseLogps,
};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Alphas of the two groups.
const ALPHAS: [f64; 2] = [0.0, 0.001];

/// high_reward_fraction by group, seed and iteration (0 = the starting model).
const HRF: [[[f64; 3]; 3]; 2] = [
    [[0.10, 0.20, 0.30], [0.12, 0.18, 0.28], [0.08, 0.22, 0.32]],
    [[0.10, 0.25, 0.40], [0.12, 0.26, 0.42], [0.08, 0.21, 0.35]],
];

/// Held-out samples per evaluation.
const SAMPLES: usize = 100;

fn figures(group: usize, seed: usize, iteration: usize) -> EvalFigures {
    let hrf = HRF[group][seed][iteration];
    EvalFigures {
        kl: 0.01 * iteration as f64 * (1.0 + group as f64),
        high_reward_fraction: hrf,
        reward_mean: hrf + 0.3,
    }
}

/// The share of samples above the threshold is `hrf`: that many in the top bin, the rest in
/// the bottom one.
fn summary_row(group: usize, seed: usize, iteration: usize) -> IterationSummary {
    let eval = figures(group, seed, iteration);
    let top = (eval.high_reward_fraction * SAMPLES as f64).round() as usize;
    let mut reward_histogram = [0; HISTOGRAM_BINS];
    reward_histogram[0] = SAMPLES - top;
    reward_histogram[HISTOGRAM_BINS - 1] = top;
    IterationSummary {
        iteration,
        eval,
        reward_histogram,
        histogram_range: [0.0, 1.0],
        candidate_reward_mean: 0.4,
        pairs: 2,
        mean_loss: 0.69,
        eval_prompts: 10,
        eval_samples: SAMPLES,
        wall_s: 1.0,
    }
}

/// A response whose summed log-ratio `log pi_theta - log pi_ref` is `ratio`, over two tokens.
fn response(ratio: f64) -> ResponseLogps {
    ResponseLogps {
        tokens: vec!["a".into(), "</s>".into()],
        ids: vec![5, 2],
        policy: vec![-1.0, (-1.0 + ratio) as f32],
        reference: vec![-1.0, -1.0],
    }
}

/// Log-ratios of the run's pairs: the chosen ones average `1 + 0.5 group + 0.1 seed`
/// (the two pairs are 0.2 either side), the rejected `-1 - 0.2 group`, y_ref `0.1 iteration`.
fn pair_logps(group: usize, seed: usize, iteration: usize) -> Vec<PairLogps> {
    let chosen = 1.0 + 0.5 * group as f64 + 0.1 * seed as f64;
    let rejected = -1.0 - 0.2 * group as f64;
    [0.2, -0.2]
        .map(|d| PairLogps {
            beta: 0.1,
            chosen: response(chosen + d),
            rejected: response(rejected - d),
            y_ref: response(0.1 * iteration as f64),
        })
        .to_vec()
}

/// Writes a run of `group` and `seed` reaching `last` into `dir`, with `edit` applied to its
/// config.
fn write_run(dir: &Path, group: usize, seed: usize, last: usize, edit: impl FnOnce(&mut Config)) {
    std::fs::create_dir_all(dir).unwrap();
    let mut config = Config::embedded_default();
    config.train.alpha = ALPHAS[group];
    config.run.seed = seed as u64;
    config.run.name = format!("test-{group}-{seed}");
    edit(&mut config);
    std::fs::write(dir.join("config.toml"), config.to_toml()).unwrap();
    let rows: Vec<_> = (0..=last).map(|i| summary_row(group, seed, i)).collect();
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&rows).unwrap(),
    )
    .unwrap();
    for i in 1..=last {
        let iter_dir = dir.join(format!("iter-{i:03}"));
        std::fs::create_dir_all(&iter_dir).unwrap();
        let lines: Vec<String> = pair_logps(group, seed, i)
            .iter()
            .map(|p| serde_json::to_string(p).unwrap())
            .collect();
        std::fs::write(iter_dir.join("pair_logps.jsonl"), lines.join("\n") + "\n").unwrap();
    }
}

/// Two groups (alpha 0 and 0.001) x 3 seeds x iterations 0..=2, as `a<group>-s<seed>`.
fn write_grid(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![];
    for group in 0..2 {
        for seed in 0..3 {
            let dir = root.join(format!("a{group}-s{seed}"));
            write_run(&dir, group, seed, 2, |_| {});
            dirs.push(dir);
        }
    }
    dirs
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() < tol
}

fn grid() -> (tempfile::TempDir, Vec<PathBuf>, Comparison) {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = write_grid(tmp.path());
    let cmp = compare(&dirs).unwrap();
    (tmp, dirs, cmp)
}

#[test]
fn runs_are_grouped_by_what_differs_and_seeds_pooled() {
    let (_tmp, _dirs, cmp) = grid();
    assert!(cmp.skipped.is_empty(), "{:?}", cmp.skipped);
    assert!(cmp.warnings.is_empty(), "{:?}", cmp.warnings);
    assert_eq!(cmp.keys, ["train.alpha"]);
    let labels: Vec<&str> = cmp.groups.iter().map(|g| g.label.as_str()).collect();
    assert_eq!(labels, ["alpha=0", "alpha=0.001"]);
    for group in &cmp.groups {
        let seeds: Vec<u64> = group.runs.iter().map(|&r| cmp.runs[r].seed()).collect();
        assert_eq!(seeds, [0, 1, 2]);
    }
    assert!(cmp.groups[0].is_baseline && cmp.groups[0].baseline.is_none());
    assert_eq!(cmp.groups[1].baseline, Some(0));
    assert_eq!(cmp.last_iteration(), 2);
}

#[test]
fn per_iteration_means_and_sds_over_seeds() {
    let (_tmp, _dirs, cmp) = grid();
    // alpha = 0 at iteration 2: 0.30, 0.28, 0.32 -> mean 0.30, sd 0.02.
    let s = cmp.stat(0, Metric::HighRewardFraction, 2).unwrap();
    assert_eq!(s.n, 3);
    assert!(
        close(s.mean, 0.30, 1e-12) && close(s.sd, 0.02, 1e-12),
        "{s:?}"
    );
    assert!(close(s.min, 0.28, 1e-12) && close(s.max, 0.32, 1e-12));
    // alpha = 0.001: 0.40, 0.42, 0.35 -> mean 0.39, sd sqrt(0.0026 / 2).
    let s = cmp.stat(1, Metric::HighRewardFraction, 2).unwrap();
    assert!(close(s.mean, 0.39, 1e-12) && close(s.sd, 0.0013f64.sqrt(), 1e-12));
    let s = cmp.stat(1, Metric::RewardMean, 2).unwrap();
    assert!(close(s.mean, 0.69, 1e-12));
    let curve = cmp.curve(1, Metric::Kl);
    let kl: Vec<f64> = curve.iter().map(|(_, s)| s.mean).collect();
    assert_eq!(curve.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(
        close(kl[1], 0.02, 1e-12) && close(kl[2], 0.04, 1e-12),
        "{kl:?}"
    );
}

#[test]
fn the_last_iteration_difference_is_paired_by_seed_with_a_t_interval() {
    let (_tmp, _dirs, cmp) = grid();
    let row = cmp.final_row(1).unwrap();
    assert_eq!(row.iteration, 2);
    let diff = row.diff.unwrap();
    assert_eq!((diff.baseline, diff.iteration), (0, 2));
    // Per seed: 0.40 - 0.30, 0.42 - 0.28, 0.35 - 0.32 = 0.10, 0.14, 0.03.
    let d = diff.values[0].unwrap();
    assert_eq!(d.n, 3);
    assert!(close(d.mean, 0.09, 1e-12), "{d:?}");
    let sd = (0.0062f64 / 2.0).sqrt();
    let half = 4.302653 * sd / 3f64.sqrt();
    assert!(close(d.half_width.unwrap(), half, 1e-6), "{d:?} vs {half}");
    let (lo, hi) = d.interval().unwrap();
    assert!(close(lo, 0.09 - half, 1e-6) && close(hi, 0.09 + half, 1e-6));
    // reward/mean moves with it; kl differs by 0.02 on every seed: no spread.
    assert!(close(diff.values[1].unwrap().mean, 0.09, 1e-12));
    let kl = diff.values[2].unwrap();
    assert!(close(kl.mean, 0.02, 1e-12) && close(kl.half_width.unwrap(), 0.0, 1e-12));
    // The baseline has no difference of its own.
    assert!(cmp.final_row(0).unwrap().diff.is_none());
}

#[test]
fn reward_histograms_pool_the_seeds() {
    let (_tmp, _dirs, cmp) = grid();
    let p = cmp.distribution(0, 2).unwrap();
    assert_eq!((p.runs, p.samples), (3, 3 * SAMPLES));
    assert!(close(p.shares[HISTOGRAM_BINS - 1], 0.30, 1e-12), "{p:?}");
    assert!(close(p.shares[0], 0.70, 1e-12));
    assert!(close(p.high_share, 0.30, 1e-12));
    assert!(close(
        cmp.distribution(1, 2).unwrap().high_share,
        0.39,
        1e-12
    ));
}

#[test]
fn implicit_rewards_per_group_and_their_difference() {
    let (_tmp, _dirs, cmp) = grid();
    assert_eq!(cmp.implicit_iterations(), [1, 2]);
    // beta 0.1 x chosen ratios 1.0, 1.1, 1.2 (seeds) -> 0.11; with alpha 0.001 -> 0.16.
    let base = cmp.implicit(0, 1).unwrap();
    assert_eq!(base.runs, 3);
    let [chosen, rejected, y_ref] = base.stats.map(Option::unwrap);
    assert!(close(chosen.mean, 0.11, 1e-6), "{chosen:?}");
    assert!(close(chosen.sd, 0.01, 1e-6), "{chosen:?}");
    assert!(close(rejected.mean, -0.1, 1e-6), "{rejected:?}");
    assert!(close(y_ref.mean, 0.01, 1e-6), "{y_ref:?}");
    assert!(base.diff.is_none());
    let selm = cmp.implicit(1, 2).unwrap();
    assert!(close(selm.stats[0].unwrap().mean, 0.16, 1e-6));
    assert!(close(selm.stats[2].unwrap().mean, 0.02, 1e-6));
    let diff = selm.diff.unwrap();
    assert_eq!((diff.baseline, diff.iteration), (0, 2));
    let [dc, dr, dy] = diff.values.map(Option::unwrap);
    assert_eq!(dc.n, 3);
    assert!(
        close(dc.mean, 0.05, 1e-6) && close(dr.mean, -0.02, 1e-6),
        "{dc:?} {dr:?}"
    );
    assert!(close(dy.mean, 0.0, 1e-6));
}

#[test]
fn an_unfinished_run_counts_where_it_got_and_an_unreadable_one_is_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = write_grid(tmp.path());
    // Seed 3 of alpha = 0.001 stopped after iteration 1.
    let short = tmp.path().join("a1-s3");
    write_run(&short, 1, 0, 1, |c| c.run.seed = 3);
    let no_summary = tmp.path().join("broken");
    write_run(&no_summary, 0, 0, 1, |_| {});
    std::fs::remove_file(no_summary.join("summary.json")).unwrap();
    let bad_logps = tmp.path().join("bad-logps");
    write_run(&bad_logps, 0, 1, 1, |_| {});
    std::fs::write(bad_logps.join("iter-001/pair_logps.jsonl"), "{oops\n{}\n").unwrap();
    dirs.extend([
        short,
        no_summary.clone(),
        bad_logps,
        tmp.path().join("missing"),
    ]);
    let cmp = compare(&dirs).unwrap();
    assert_eq!(cmp.runs.len(), 7);
    assert_eq!(cmp.skipped.len(), 3, "{:?}", cmp.skipped);
    assert_eq!(cmp.skipped[0].path, no_summary);
    assert!(
        cmp.skipped[0].reason.contains("summary.json"),
        "{:?}",
        cmp.skipped[0]
    );
    assert!(
        cmp.skipped[1].reason.contains("pair_logps.jsonl line 1"),
        "{:?}",
        cmp.skipped[1]
    );
    assert_eq!(cmp.skipped[2].reason, "no such directory");
    // Four runs at iteration 1, three at iteration 2.
    assert_eq!(cmp.stat(1, Metric::HighRewardFraction, 1).unwrap().n, 4);
    let last = cmp.final_row(1).unwrap();
    assert_eq!(last.stats[0].unwrap().n, 3);
    assert_eq!(last.diff.unwrap().values[0].unwrap().n, 3);
}

#[test]
fn another_model_is_compared_with_a_warning_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = write_grid(tmp.path());
    let other = tmp.path().join("other-model");
    write_run(&other, 1, 0, 2, |c| c.model.path = "models/other".into());
    dirs.push(other);
    let cmp = compare(&dirs).unwrap();
    assert_eq!(cmp.keys, ["train.alpha", "model.path"]);
    assert_eq!(cmp.groups.len(), 3);
    assert_eq!(cmp.groups[2].label, "alpha=0.001, path=models/other");
    let warning = cmp.warnings.iter().find(|w| w.contains("`model.path`"));
    let warning = warning.unwrap_or_else(|| panic!("{:?}", cmp.warnings));
    assert!(
        warning.contains("builtin:tiny-tasks (6 runs)") && warning.contains("models/other (1 run)"),
        "{warning}"
    );
    // Its baseline must match the model too: there is none.
    assert_eq!(cmp.groups[2].baseline, None);
    assert_eq!(cmp.groups[1].baseline, Some(0));
}

/// A sweep directory as `selm-tui sweep` writes it: two finished runs, one failed, one
/// pending.
fn write_sweep(root: &Path) -> PathBuf {
    let sweep = root.join("sweep");
    write_run(&sweep.join("runs/alpha=0,seed=0"), 0, 0, 2, |_| {});
    write_run(&sweep.join("runs/alpha=0.001,seed=0"), 1, 0, 2, |_| {});
    let run = |name: &str, status: &str, error: Option<&str>| {
        serde_json::json!({
            "name": name, "dir": format!("runs/{name}"),
            "values": {"train.alpha": 0.0, "run.seed": 0},
            "status": status, "error": error, "wall_s": 1.5
        })
    };
    let json = serde_json::json!({
        "version": 1,
        "base_config": "configs/default.toml",
        "grid": [{"key": "train.alpha", "values": [0.0, 0.001]}, {"key": "run.seed", "values": [0, 1]}],
        "set": [],
        "runs": [
            run("alpha=0,seed=0", "finished", None),
            run("alpha=0.001,seed=0", "finished", None),
            run("alpha=0,seed=1", "failed", Some("non-finite loss at step 3")),
            run("alpha=0.001,seed=1", "pending", None),
        ]
    });
    std::fs::write(sweep.join("sweep.json"), json.to_string()).unwrap();
    sweep
}

#[test]
fn a_sweep_directory_expands_to_its_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write_sweep(tmp.path());
    // Its run given again on its own counts once.
    let again = sweep.join("runs/alpha=0,seed=0");
    let cmp = compare(&[sweep.clone(), again]).unwrap();
    let names: Vec<&str> = cmp.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["alpha=0,seed=0", "alpha=0.001,seed=0"]);
    assert_eq!(cmp.groups.len(), 2);
    assert_eq!(cmp.skipped.len(), 2, "{:?}", cmp.skipped);
    let failed = &cmp.skipped[0];
    assert_eq!(failed.path, sweep.join("runs/alpha=0,seed=1"));
    assert!(
        failed.reason.contains("failed: non-finite loss at step 3"),
        "{failed:?}"
    );
    assert!(cmp.skipped[1].reason.contains("has not started"));
    // One seed: a difference but no interval.
    let d = cmp.final_row(1).unwrap().diff.unwrap().values[0].unwrap();
    assert_eq!((d.n, d.half_width), (1, None));
    assert!(close(d.mean, 0.10, 1e-12));
}

#[test]
fn nothing_readable_is_an_error_naming_each_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let err = compare(&[tmp.path().join("nope")]).unwrap_err().to_string();
    assert!(
        err.contains("no run to compare") && err.contains("nope"),
        "{err}"
    );
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::from(code)
}

#[test]
fn keys_switch_views_and_iterations() {
    let (_tmp, _dirs, cmp) = grid();
    let mut app = CompareApp::new(cmp);
    assert_eq!((app.view, app.iteration), (CompareView::Curves, 2));
    assert!(!app.handle_key(key(KeyCode::Tab)));
    assert_eq!(app.view, CompareView::Final);
    app.handle_key(key(KeyCode::BackTab));
    app.handle_key(key(KeyCode::BackTab));
    assert_eq!(app.view, CompareView::Implicit);
    app.handle_key(key(KeyCode::Char('3')));
    assert_eq!(app.view, CompareView::Rewards);
    app.handle_key(key(KeyCode::Right));
    assert_eq!(app.iteration, 2, "stops at the last iteration");
    for _ in 0..4 {
        app.handle_key(key(KeyCode::Left));
    }
    assert_eq!(app.iteration, 0);
    assert!(app.handle_key(key(KeyCode::Char('q'))));
}

fn screen(app: &CompareApp) -> String {
    let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
    t.draw(|f| view::draw(f, app)).unwrap();
    t.backend().to_string()
}

#[test]
fn snapshot_compare_views_100x30() {
    let (_tmp, _dirs, cmp) = grid();
    let mut app = CompareApp::new(cmp);
    for (name, view) in [
        ("curves_100x30", CompareView::Curves),
        ("final_100x30", CompareView::Final),
        ("rewards_100x30", CompareView::Rewards),
        ("implicit_100x30", CompareView::Implicit),
    ] {
        app.view = view;
        insta::assert_snapshot!(name, screen(&app));
    }
}

fn run_out(dirs: &[PathBuf], out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_selm-tui"))
        .arg("compare")
        .args(dirs)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn out_writes_figures_tables_and_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = write_grid(tmp.path());
    dirs.push(tmp.path().join("not-a-run"));
    let out = tmp.path().join("report");
    let result = run_out(&dirs, &out);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(stderr.contains("not-a-run: no such directory"), "{stderr}");
    let figures = ["curves", "reward_distributions", "implicit_rewards"];
    for stem in figures {
        let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{stem}.png signature"
        );
        assert!(png.len() > 20_000, "{stem}.png is {} bytes", png.len());
        let svg = read(&out.join(format!("{stem}.svg")));
        assert!(svg.trim_start().starts_with("<svg"), "{stem}.svg root");
        assert!(
            svg.trim_end().ends_with("</svg>") && svg.len() > 5_000,
            "{stem}.svg"
        );
        // Text is drawn: the group labels are in the SVG.
        assert!(svg.contains("alpha=0.001"), "{stem}.svg has no legend");
    }
    check_csvs(&out);
    let report = read(&out.join("report.md"));
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "report.md" {
            assert!(
                report.contains(&format!("]({name})")),
                "report.md does not link {name}"
            );
        }
    }
    assert!(report.contains("not-a-run"), "the unreadable run is listed");
    assert!(
        report.contains("+0.090 ± 0.138"),
        "the hrf difference:\n{report}"
    );
}

fn check_csvs(out: &Path) {
    let curves = read(&out.join("curves.csv"));
    let lines: Vec<&str> = curves.lines().collect();
    assert_eq!(lines[0], "group,iteration,metric,n,mean,sd,min,max");
    assert_eq!(lines.len(), 1 + 2 * 3 * 3, "{curves}");
    // alpha = 0, iteration 2: n 3, mean 0.30, sd 0.02, min 0.28, max 0.32.
    let row = lines
        .iter()
        .find(|l| l.starts_with("alpha=0,2,high_reward_fraction,3,"))
        .unwrap_or_else(|| panic!("{curves}"));
    let numbers: Vec<f64> = row.split(',').skip(4).map(|v| v.parse().unwrap()).collect();
    for (got, want) in numbers.iter().zip([0.30, 0.02, 0.28, 0.32]) {
        assert!(close(*got, want, 1e-12), "{row}");
    }
    let final_csv = read(&out.join("final.csv"));
    let lines: Vec<&str> = final_csv.lines().collect();
    assert!(lines[0].starts_with("group,iteration,metric,n,mean,sd,min,max,baseline,"));
    assert_eq!(lines.len(), 1 + 2 * 3);
    let row: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("alpha=0.001,2,high_reward_fraction"))
        .unwrap()
        .split(',')
        .collect();
    // baseline, diff_iteration, diff_n, diff_mean, ci low, ci high
    assert_eq!(&row[8..11], ["alpha=0", "2", "3"]);
    let mean: f64 = row[11].parse().unwrap();
    let (lo, hi): (f64, f64) = (row[12].parse().unwrap(), row[13].parse().unwrap());
    assert!(
        close(mean, 0.09, 1e-9)
            && close(hi - mean, mean - lo, 1e-9)
            && close(hi - mean, 0.138310, 1e-5)
    );
    let dist = read(&out.join("reward_distributions.csv"));
    assert!(dist.starts_with("group,iteration,runs,samples,bin,bin_low,bin_high,share\n"));
    assert_eq!(dist.lines().count(), 1 + 2 * 3 * HISTOGRAM_BINS);
    let implicit = read(&out.join("implicit_rewards.csv"));
    assert!(implicit.starts_with("group,iteration,response,n,mean,sd,min,max,baseline,"));
    assert_eq!(implicit.lines().count(), 1 + 2 * 2 * 3);
    let runs = read(&out.join("runs.csv"));
    assert_eq!(runs.lines().count(), 1 + 6 + 1);
    assert!(runs.lines().last().unwrap().contains(",unreadable,"));
}
