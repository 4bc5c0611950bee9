//! Everything `compare` shows, from the runs read: the groups, and per group and iteration
//! the figures' statistics over seeds, the last iteration's table with paired differences,
//! pooled reward histograms and implicit rewards. The TUI, the figures and the report all
//! read it, so they show the same numbers.

use super::group::{self, Group};
use super::load::{Loaded, RunData, Skipped};
use super::stats::{self, PairedDiff, PooledHistogram, Stat};
use crate::run::records::EvalFigures;

/// A held-out figure of `summary.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    HighRewardFraction,
    RewardMean,
    Kl,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::HighRewardFraction, Metric::RewardMean, Metric::Kl];

    pub fn of(self, e: &EvalFigures) -> f64 {
        match self {
            Metric::HighRewardFraction => e.high_reward_fraction,
            Metric::RewardMean => e.reward_mean,
            Metric::Kl => e.kl,
        }
    }

    /// The figure's name as `summary.json` and `metrics.jsonl` spell it ([`EvalFigures`]'
    /// serde names; a test holds the two together).
    pub fn name(self) -> &'static str {
        match self {
            Metric::HighRewardFraction => "high_reward_fraction",
            Metric::RewardMean => "reward/mean",
            Metric::Kl => "kl",
        }
    }
}

/// Differences of a group to its baseline at one iteration, paired by seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diff {
    /// The baseline group.
    pub baseline: usize,
    /// The iteration compared.
    pub iteration: usize,
    /// One per column of the table it belongs to (metrics, or implicit-reward responses).
    pub values: [Option<PairedDiff>; 3],
}

/// A group's row of the last-iteration table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinalRow {
    /// The last iteration any of the group's runs reached.
    pub iteration: usize,
    /// Per [`Metric::ALL`], over the runs that reached it.
    pub stats: [Option<Stat>; 3],
    pub diff: Option<Diff>,
}

/// A group's implicit rewards at one iteration (per [`stats::RESPONSES`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImplicitRow {
    /// Runs with pairs at this iteration.
    pub runs: usize,
    pub stats: [Option<Stat>; 3],
    pub diff: Option<Diff>,
}

/// The runs read, grouped, with what could not be read and what to beware of.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub runs: Vec<RunData>,
    pub skipped: Vec<Skipped>,
    /// The config keys that differ between runs (what the groups are labelled by).
    pub keys: Vec<String>,
    pub groups: Vec<Group>,
    pub warnings: Vec<String>,
}

impl Comparison {
    pub fn new(loaded: Loaded) -> Self {
        let keys = group::grouping_keys(&loaded.runs);
        let groups = group::group_runs(&loaded.runs, &keys);
        let warnings = group::warnings(&loaded.runs, &keys, &groups);
        Self {
            runs: loaded.runs,
            skipped: loaded.skipped,
            keys,
            groups,
            warnings,
        }
    }

    fn members(&self, g: usize) -> impl Iterator<Item = &RunData> {
        self.groups[g].runs.iter().map(|&r| &self.runs[r])
    }

    /// The last iteration any run reached.
    pub fn last_iteration(&self) -> usize {
        self.runs
            .iter()
            .filter_map(RunData::last_iteration)
            .max()
            .unwrap_or(0)
    }

    /// The last iteration any of group `g`'s runs reached.
    pub fn group_last_iteration(&self, g: usize) -> Option<usize> {
        self.members(g).filter_map(RunData::last_iteration).max()
    }

    /// The high-reward threshold (`rank.high_reward_threshold`) of the first run; a run
    /// with another one is in another group.
    pub fn threshold(&self) -> f64 {
        self.runs
            .first()
            .map_or(f64::NAN, |r| r.config.rank.high_reward_threshold)
    }

    /// `metric` at `iteration` over the group's runs that reached it.
    pub fn stat(&self, g: usize, metric: Metric, iteration: usize) -> Option<Stat> {
        let values: Vec<f64> = self
            .members(g)
            .filter_map(|r| r.eval(iteration))
            .map(|e| metric.of(&e.eval))
            .collect();
        Stat::of(&values)
    }

    /// `metric` over iterations, where any run measured it.
    pub fn curve(&self, g: usize, metric: Metric) -> Vec<(usize, Stat)> {
        (0..=self.group_last_iteration(g).unwrap_or(0))
            .filter_map(|i| Some((i, self.stat(g, metric, i)?)))
            .collect()
    }

    /// Group `g` at its last iteration, with its difference to its baseline at the last
    /// iteration both reached.
    pub fn final_row(&self, g: usize) -> Option<FinalRow> {
        let iteration = self.group_last_iteration(g)?;
        let stats = Metric::ALL.map(|m| self.stat(g, m, iteration));
        let diff = self.groups[g].baseline.and_then(|b| {
            let common = iteration.min(self.group_last_iteration(b)?);
            Some(Diff {
                baseline: b,
                iteration: common,
                values: Metric::ALL
                    .map(|m| self.paired(g, b, |r| r.eval(common).map(|e| m.of(&e.eval)))),
            })
        });
        Some(FinalRow {
            iteration,
            stats,
            diff,
        })
    }

    /// Group `g`'s held-out rewards at `iteration`, pooled over its runs that reached it.
    pub fn distribution(&self, g: usize, iteration: usize) -> Option<PooledHistogram> {
        let evals: Vec<_> = self.members(g).filter_map(|r| r.eval(iteration)).collect();
        stats::pool_histograms(&evals)
    }

    /// The iterations any run has pairs for.
    pub fn implicit_iterations(&self) -> Vec<usize> {
        let set: std::collections::BTreeSet<usize> = self
            .runs
            .iter()
            .flat_map(|r| r.implicit.keys().copied())
            .collect();
        set.into_iter().collect()
    }

    /// Group `g`'s mean implicit rewards at `iteration` (the mean over its runs of each
    /// run's mean over pairs), with the paired difference to its baseline.
    pub fn implicit(&self, g: usize, iteration: usize) -> Option<ImplicitRow> {
        let means: Vec<_> = self
            .members(g)
            .filter_map(|r| r.implicit.get(&iteration))
            .collect();
        if means.is_empty() {
            return None;
        }
        let stats =
            [0, 1, 2].map(|k| Stat::of(&means.iter().map(|m| m.values()[k]).collect::<Vec<_>>()));
        let diff = self.groups[g].baseline.map(|b| Diff {
            baseline: b,
            iteration,
            values: [0, 1, 2]
                .map(|k| self.paired(g, b, |r| r.implicit.get(&iteration).map(|m| m.values()[k]))),
        });
        Some(ImplicitRow {
            runs: means.len(),
            stats,
            diff,
        })
    }

    /// `value(group run) - value(baseline run)` for each seed both groups have a value
    /// for (the first run of a seed, if a group has two).
    fn paired(
        &self,
        g: usize,
        b: usize,
        value: impl Fn(&RunData) -> Option<f64>,
    ) -> Option<PairedDiff> {
        let first_by_seed = |group: usize| {
            let mut map = std::collections::BTreeMap::new();
            for r in self.members(group) {
                map.entry(r.seed()).or_insert(r);
            }
            map
        };
        let base = first_by_seed(b);
        let diffs: Vec<f64> = first_by_seed(g)
            .into_iter()
            .filter_map(|(seed, r)| Some(value(r)? - value(base.get(&seed)?)?))
            .collect();
        stats::paired_diff(&diffs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_the_serde_names() {
        // Distinct values, so each serialized key is found by its figure's value.
        let figures = EvalFigures {
            kl: 1.0,
            high_reward_fraction: 2.0,
            reward_mean: 3.0,
        };
        let value = serde_json::to_value(figures).unwrap();
        for m in Metric::ALL {
            assert_eq!(
                value[m.name()].as_f64(),
                Some(m.of(&figures)),
                "{}",
                m.name()
            );
        }
        assert_eq!(value.as_object().unwrap().len(), Metric::ALL.len());
    }
}
