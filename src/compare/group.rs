//! Groups of runs: runs whose configs agree on every key but the seed (and the keys that
//! only name or place a run) are one configuration, and their seeds are pooled. A group is
//! labelled by the keys that differ between runs (`alpha=0.001`), and matched to the
//! baseline it is compared with (`alpha = 0` or `objective = dpo`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::load::RunData;
use crate::config::Objective;

/// Keys that differ between runs of one configuration: the seed, and where or how a run was
/// named, paused or computed.
pub const IGNORED_KEYS: [&str; 5] = [
    "run.seed",
    "run.name",
    "run.out_dir",
    "run.auto_pause",
    "runtime.backend",
];

/// Keys whose difference makes runs measure different things (another model, other tasks):
/// still compared, with a warning naming the key.
pub const WARN_KEYS: [&str; 3] = ["model.path", "prompts.tasks", "prompts.file"];

/// A key a run's config does not set (an optional key left out).
const UNSET: &str = "unset";

/// Runs of one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// `alpha=0.001, beta=0.05`; `all runs` when the configs do not differ.
    pub label: String,
    /// The group's value of each grouping key, in the order of [`grouping_keys`].
    pub values: Vec<(String, String)>,
    /// Indices into the runs, in the order given.
    pub runs: Vec<usize>,
    /// Its runs have `train.alpha = 0` or `train.objective = dpo`: a reference others are
    /// compared with.
    pub is_baseline: bool,
    /// The group this one's differences are taken against.
    pub baseline: Option<usize>,
}

/// A run's value of `key`.
fn value_of<'a>(run: &'a RunData, key: &str) -> &'a str {
    run.keys.get(key).map_or(UNSET, String::as_str)
}

/// The config keys whose values differ between `runs`, except [`IGNORED_KEYS`]; `train.*`
/// first (what a comparison is usually about), then the rest alphabetically.
pub fn grouping_keys(runs: &[RunData]) -> Vec<String> {
    let all: std::collections::BTreeSet<&String> =
        runs.iter().flat_map(|r| r.keys.keys()).collect();
    let mut keys: Vec<String> = all
        .into_iter()
        .filter(|k| !IGNORED_KEYS.contains(&k.as_str()))
        .filter(|k| {
            let first = runs.first().map(|r| value_of(r, k));
            runs.iter().any(|r| Some(value_of(r, k)) != first)
        })
        .cloned()
        .collect();
    keys.sort_by_key(|k| (!k.starts_with("train."), k.clone()));
    keys
}

/// Splits `runs` into groups by their values of `keys`, ordered by those values (numbers as
/// numbers, so `alpha=0` comes before `alpha=0.001`), with their baselines matched.
pub fn group_runs(runs: &[RunData], keys: &[String]) -> Vec<Group> {
    let mut by_values: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        let values = keys.iter().map(|k| value_of(run, k).to_string()).collect();
        by_values.entry(values).or_default().push(i);
    }
    let names = short_names(keys);
    let mut groups: Vec<Group> = by_values
        .into_iter()
        .map(|(values, members)| {
            let label = label(&names, &values);
            let first = &runs[members[0]];
            Group {
                label,
                values: keys.iter().cloned().zip(values).collect(),
                runs: members,
                is_baseline: first.config.train.alpha == 0.0
                    || first.config.train.objective == Objective::Dpo,
                baseline: None,
            }
        })
        .collect();
    groups.sort_by(|a, b| compare_values(&a.values, &b.values));
    for g in 0..groups.len() {
        groups[g].baseline = find_baseline(&groups, g);
    }
    groups
}

/// `alpha=0, beta=0.05`.
fn label(names: &[String], values: &[String]) -> String {
    if names.is_empty() {
        return "all runs".into();
    }
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each key's last part (`alpha` for `train.alpha`), or the whole key where two keys would
/// read the same (`generate.temperature`, `eval.temperature`).
fn short_names(keys: &[String]) -> Vec<String> {
    let last = |k: &String| k.rsplit('.').next().unwrap_or(k).to_string();
    keys.iter()
        .map(|k| {
            let short = last(k);
            let clash = keys.iter().filter(|o| last(o) == short).count() > 1;
            if clash { k.clone() } else { short }
        })
        .collect()
}

/// Orders groups by their values, key by key, numerically where both values are numbers.
fn compare_values(a: &[(String, String)], b: &[(String, String)]) -> Ordering {
    for ((_, x), (_, y)) in a.iter().zip(b) {
        let order = match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// The keys a baseline may differ in: what makes it a baseline.
const BASELINE_KEYS: [&str; 2] = ["train.alpha", "train.objective"];

/// The baseline group of group `g`: a baseline group with the same values on every
/// grouping key but alpha and the objective; among several, the one agreeing on more keys
/// (DPO at the same alpha before DPO at another). None for a baseline itself.
fn find_baseline(groups: &[Group], g: usize) -> Option<usize> {
    let this = &groups[g];
    if this.is_baseline {
        return None;
    }
    let agree = |h: &Group, all: bool| {
        this.values
            .iter()
            .zip(&h.values)
            .filter(|((k, a), (_, b))| a == b && (all || !BASELINE_KEYS.contains(&k.as_str())))
            .count()
    };
    let others = this
        .values
        .iter()
        .filter(|(k, _)| !BASELINE_KEYS.contains(&k.as_str()))
        .count();
    groups
        .iter()
        .enumerate()
        .filter(|(h, group)| *h != g && group.is_baseline && agree(group, false) == others)
        .max_by_key(|(h, group)| (agree(group, true), std::cmp::Reverse(*h)))
        .map(|(h, _)| h)
}

/// What the reader should know before trusting a comparison: runs of another model or
/// other tasks, a seed that appears twice in a group, no baseline to take differences
/// against.
pub fn warnings(runs: &[RunData], keys: &[String], groups: &[Group]) -> Vec<String> {
    let mut out = vec![];
    for key in keys.iter().filter(|k| WARN_KEYS.contains(&k.as_str())) {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for run in runs {
            *counts.entry(value_of(run, key)).or_default() += 1;
        }
        let values: Vec<String> = counts
            .iter()
            .map(|(v, n)| format!("{v} ({n} run{})", if *n == 1 { "" } else { "s" }))
            .collect();
        out.push(format!(
            "runs differ in `{key}`: {}; compared anyway",
            values.join(", ")
        ));
    }
    for group in groups {
        let mut seen = std::collections::BTreeSet::new();
        for &r in &group.runs {
            if !seen.insert(runs[r].seed()) {
                out.push(format!(
                    "group {} has more than one run with seed {}: pairing by seed uses the \
                     first ({})",
                    group.label,
                    runs[r].seed(),
                    runs[group.runs[0]].name
                ));
            }
        }
    }
    if groups.len() > 1
        && groups
            .iter()
            .all(|g| g.baseline.is_none() && !g.is_baseline)
    {
        out.push(
            "no group has train.alpha = 0 or train.objective = dpo: differences are left empty"
                .into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn run(alpha: f64, beta: f64, seed: u64, objective: Objective) -> RunData {
        let mut config = Config::embedded_default();
        config.train.alpha = alpha;
        config.train.beta = beta;
        config.train.objective = objective;
        config.run.seed = seed;
        config.run.name = format!("run-{seed}");
        RunData {
            name: format!("a{alpha}-b{beta}-s{seed}"),
            dir: "x".into(),
            keys: super::super::load::flatten_config(&config),
            config,
            summary: vec![],
            implicit: Default::default(),
            note: None,
        }
    }

    #[test]
    fn groups_follow_the_keys_that_differ_and_find_their_baseline() {
        let s = Objective::Selm;
        let runs = vec![
            run(0.001, 0.1, 0, s),
            run(0.0, 0.1, 0, s),
            run(0.001, 0.05, 0, s),
            run(0.0, 0.05, 1, s),
            run(0.001, 0.1, 1, s),
        ];
        let keys = grouping_keys(&runs);
        assert_eq!(keys, ["train.alpha", "train.beta"]);
        let groups = group_runs(&runs, &keys);
        let labels: Vec<&str> = groups.iter().map(|g| g.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "alpha=0, beta=0.05",
                "alpha=0, beta=0.1",
                "alpha=0.001, beta=0.05",
                "alpha=0.001, beta=0.1"
            ]
        );
        assert_eq!(groups[3].runs, [0, 4]);
        assert_eq!(groups[2].baseline, Some(0));
        assert_eq!(groups[3].baseline, Some(1));
        assert!(groups[0].is_baseline && groups[0].baseline.is_none());
        assert!(warnings(&runs, &keys, &groups).is_empty());
    }

    #[test]
    fn dpo_is_the_baseline_of_selm_at_the_same_alpha() {
        let runs = vec![
            run(0.001, 0.1, 0, Objective::Selm),
            run(0.001, 0.1, 0, Objective::Dpo),
        ];
        let keys = grouping_keys(&runs);
        assert_eq!(keys, ["train.objective"]);
        let groups = group_runs(&runs, &keys);
        assert_eq!(groups[0].label, "objective=dpo");
        assert_eq!(groups[1].baseline, Some(0));
    }

    #[test]
    fn identical_configs_are_one_group_and_duplicate_seeds_are_warned() {
        let runs = vec![
            run(0.001, 0.1, 0, Objective::Selm),
            run(0.001, 0.1, 0, Objective::Selm),
        ];
        let keys = grouping_keys(&runs);
        assert!(keys.is_empty(), "{keys:?}");
        let groups = group_runs(&runs, &keys);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].label, "all runs");
        let w = warnings(&runs, &keys, &groups);
        assert!(w[0].contains("seed 0"), "{w:?}");
    }

    #[test]
    fn clashing_short_names_keep_the_whole_key() {
        let keys = [
            "eval.temperature".to_string(),
            "generate.temperature".into(),
        ];
        assert_eq!(short_names(&keys), keys);
        assert_eq!(short_names(&["train.alpha".into()]), ["alpha"]);
    }
}
