//! The numbers `compare` shows, as pure functions: summary statistics over seeds, paired
//! differences with Student t intervals, implicit rewards of a run's pairs and pooled reward
//! histograms. Nothing here reads files or knows about groups.

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::run::records::{HISTOGRAM_BINS, IterationSummary, PairLogps};

/// Mean, sample standard deviation and range of some runs' values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// How many finite values went in.
    pub n: usize,
    pub mean: f64,
    /// Sample sd (n - 1 in the denominator); NaN for a single value, where it is undefined.
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// Statistics of the finite `values` (a run that did not measure a figure writes NaN,
    /// which must not turn the group's mean into NaN); None when none is finite.
    pub fn of(values: &[f64]) -> Option<Stat> {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let n = finite.len();
        if n == 0 {
            return None;
        }
        let mean = finite.iter().sum::<f64>() / n as f64;
        let sd = if n < 2 {
            f64::NAN
        } else {
            let ss: f64 = finite.iter().map(|v| (v - mean).powi(2)).sum();
            (ss / (n - 1) as f64).sqrt()
        };
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Stat {
            n,
            mean,
            sd,
            min,
            max,
        })
    }
}

/// The mean of per-seed differences `group - baseline` with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedDiff {
    /// Seeds paired.
    pub n: usize,
    pub mean: f64,
    /// `t(0.975, n - 1) * sd / sqrt(n)`; None with fewer than two pairs (no spread to scale).
    pub half_width: Option<f64>,
}

impl PairedDiff {
    /// The interval's ends, when there is one.
    pub fn interval(&self) -> Option<(f64, f64)> {
        self.half_width.map(|h| (self.mean - h, self.mean + h))
    }
}

/// Paired differences (one per seed present in both groups): pairing by seed removes what
/// the seed alone decides (prompts, sampling), so the interval reflects the change of
/// config. None when no difference is finite.
pub fn paired_diff(diffs: &[f64]) -> Option<PairedDiff> {
    let s = Stat::of(diffs)?;
    let half_width =
        (s.n >= 2).then(|| t_quantile_975(s.n as f64 - 1.0) * s.sd / (s.n as f64).sqrt());
    Some(PairedDiff {
        n: s.n,
        mean: s.mean,
        half_width,
    })
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (statrs' inverse CDF), the
/// factor of a two-sided 95% interval.
pub fn t_quantile_975(df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .expect("df > 0 and a unit scale are valid")
        .inverse_cdf(0.975)
}

/// A run's mean implicit rewards `beta * (log pi_theta - log pi_ref)` over one iteration's
/// pairs, each pair with the beta it was trained with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImplicitMeans {
    pub pairs: usize,
    pub chosen: f64,
    pub rejected: f64,
    pub y_ref: f64,
}

impl ImplicitMeans {
    /// The three means in [`RESPONSES`] order.
    pub fn values(&self) -> [f64; 3] {
        [self.chosen, self.rejected, self.y_ref]
    }
}

/// The responses whose implicit rewards are compared, in column order.
pub const RESPONSES: [&str; 3] = ["chosen", "rejected", "y_ref"];

/// Mean implicit rewards of `pairs`; None when there are none. A y_ref without tokens (a
/// prompts file whose rows bring no reference) is left out of the y_ref mean.
pub fn implicit_means(pairs: &[PairLogps]) -> Option<ImplicitMeans> {
    if pairs.is_empty() {
        return None;
    }
    let mean = |xs: Vec<f64>| {
        if xs.is_empty() {
            f64::NAN
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    let chosen = pairs.iter().map(|p| p.chosen.implicit_reward(p.beta));
    let rejected = pairs.iter().map(|p| p.rejected.implicit_reward(p.beta));
    let y_ref = pairs
        .iter()
        .filter(|p| !p.y_ref.policy.is_empty())
        .map(|p| p.y_ref.implicit_reward(p.beta));
    Some(ImplicitMeans {
        pairs: pairs.len(),
        chosen: mean(chosen.collect()),
        rejected: mean(rejected.collect()),
        y_ref: mean(y_ref.collect()),
    })
}

/// Several runs' held-out reward histograms of one iteration, pooled.
#[derive(Debug, Clone, PartialEq)]
pub struct PooledHistogram {
    pub runs: usize,
    pub samples: usize,
    /// Share of the pooled samples in each bin (sums to 1), so groups with different
    /// numbers of runs or samples overlay on one scale.
    pub shares: [f64; HISTOGRAM_BINS],
    /// The score range the bins split (the first run's).
    pub range: [f64; 2],
    /// Share of samples at or above the high-reward threshold: the runs'
    /// `high_reward_fraction`, weighted by their sample counts (exact, unlike the bins,
    /// whose edges need not fall on the threshold).
    pub high_share: f64,
}

/// Pools the evaluations `evals` (one per run); None without samples.
pub fn pool_histograms(evals: &[&IterationSummary]) -> Option<PooledHistogram> {
    let first = evals.first()?;
    let mut counts = [0usize; HISTOGRAM_BINS];
    let (mut high, mut weight) = (0.0, 0.0);
    for e in evals {
        let n: usize = e.reward_histogram.iter().sum();
        for (c, k) in counts.iter_mut().zip(e.reward_histogram) {
            *c += k;
        }
        if e.eval.high_reward_fraction.is_finite() {
            high += e.eval.high_reward_fraction * n as f64;
            weight += n as f64;
        }
    }
    let samples: usize = counts.iter().sum();
    if samples == 0 {
        return None;
    }
    Some(PooledHistogram {
        runs: evals.len(),
        samples,
        shares: counts.map(|c| c as f64 / samples as f64),
        range: first.histogram_range,
        high_share: if weight > 0.0 {
            high / weight
        } else {
            f64::NAN
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::records::{EvalFigures, ResponseLogps};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn stat_uses_the_sample_sd_and_skips_nan() {
        let s = Stat::of(&[1.0, 2.0, f64::NAN, 6.0]).unwrap();
        assert_eq!((s.n, s.mean, s.min, s.max), (3, 3.0, 1.0, 6.0));
        // ((1-3)^2 + (2-3)^2 + (6-3)^2) / 2 = 7
        assert!(close(s.sd, 7f64.sqrt()), "{}", s.sd);
        assert!(Stat::of(&[5.0]).unwrap().sd.is_nan());
        assert!(Stat::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn paired_interval_uses_student_t() {
        // Tables: t(0.975, 1) = 12.7062, t(0.975, 2) = 4.302653, t(0.975, 9) = 2.262157.
        assert!((t_quantile_975(1.0) - 12.706205).abs() < 1e-5);
        assert!((t_quantile_975(2.0) - 4.302653).abs() < 1e-5);
        assert!((t_quantile_975(9.0) - 2.262157).abs() < 1e-5);
        let d = paired_diff(&[0.1, 0.2, 0.3]).unwrap();
        assert_eq!(d.n, 3);
        assert!(close(d.mean, 0.2));
        // sd = 0.1, half width = 4.302653 * 0.1 / sqrt(3)
        let h = d.half_width.unwrap();
        assert!((h - 4.302653 * 0.1 / 3f64.sqrt()).abs() < 1e-6, "{h}");
        let one = paired_diff(&[0.5]).unwrap();
        assert_eq!((one.n, one.mean, one.half_width), (1, 0.5, None));
        assert!(paired_diff(&[]).is_none());
    }

    fn response(policy: &[f32], reference: &[f32]) -> ResponseLogps {
        ResponseLogps {
            tokens: policy.iter().map(|_| "x".into()).collect(),
            ids: vec![],
            policy: policy.to_vec(),
            reference: reference.to_vec(),
        }
    }

    #[test]
    fn implicit_rewards_are_beta_times_summed_log_ratios() {
        let pairs = [
            PairLogps {
                beta: 0.1,
                chosen: response(&[-1.0, -1.0], &[-1.5, -1.5]), // 0.1 * 1.0
                rejected: response(&[-2.0], &[-1.0]),           // 0.1 * -1.0
                y_ref: response(&[-0.5], &[-0.5]),              // 0
            },
            PairLogps {
                beta: 0.5,
                chosen: response(&[-1.0], &[-2.0]),   // 0.5 * 1.0
                rejected: response(&[-3.0], &[-2.0]), // 0.5 * -1.0
                y_ref: ResponseLogps::default(),      // no y_ref: left out
            },
        ];
        let m = implicit_means(&pairs).unwrap();
        assert_eq!(m.pairs, 2);
        assert!(close(m.chosen, 0.3), "{}", m.chosen);
        assert!(close(m.rejected, -0.3), "{}", m.rejected);
        assert!(close(m.y_ref, 0.0), "{}", m.y_ref);
        assert!(implicit_means(&[]).is_none());
    }

    fn summary(hist: [usize; HISTOGRAM_BINS], high: f64) -> IterationSummary {
        IterationSummary {
            iteration: 1,
            eval: EvalFigures {
                kl: 0.0,
                high_reward_fraction: high,
                reward_mean: 0.5,
            },
            reward_histogram: hist,
            histogram_range: [0.0, 1.0],
            candidate_reward_mean: 0.5,
            pairs: 1,
            mean_loss: 0.69,
            eval_prompts: 1,
            eval_samples: hist.iter().sum(),
            wall_s: 1.0,
        }
    }

    #[test]
    fn histograms_pool_counts_and_weight_the_high_share_by_samples() {
        let a = summary([1, 0, 0, 0, 0, 0, 0, 0, 0, 3], 0.75);
        let b = summary([0, 0, 0, 0, 0, 0, 0, 0, 0, 4], 1.0);
        let p = pool_histograms(&[&a, &b]).unwrap();
        assert_eq!((p.runs, p.samples), (2, 8));
        assert!(close(p.shares[0], 1.0 / 8.0) && close(p.shares[9], 7.0 / 8.0));
        assert!(close(p.high_share, (0.75 * 4.0 + 1.0 * 4.0) / 8.0));
        assert!(pool_histograms(&[]).is_none());
    }
}
