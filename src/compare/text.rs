//! Numbers as the compare TUI and report.md write them (the CSVs keep full precision).

use super::stats::{PairedDiff, Stat};

/// An empty cell: nothing to show (no baseline, no run reached the iteration).
pub const NONE: &str = "—";

/// Decimals that show three significant digits of the larger of `values`, so a mean and
/// its spread are written to the same precision.
fn decimals(values: &[f64]) -> usize {
    let m = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    if m == 0.0 {
        return 3;
    }
    (2 - m.log10().floor() as i64).clamp(0, 6) as usize
}

/// Whether `values` need scientific notation (too large or too small for six decimals).
fn scientific(values: &[f64]) -> bool {
    let m = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    m >= 1e5 || (m > 0.0 && m < 1e-4)
}

/// `value` to the precision [`decimals`] chose for the group it is shown with.
fn fixed(value: f64, with: &[f64]) -> String {
    if scientific(with) {
        format!("{value:.2e}")
    } else {
        format!("{value:.*}", decimals(with))
    }
}

/// `0.183 ± 0.012`, both to the same decimals; the mean alone for one run (no sd).
pub fn mean_sd(stat: Option<Stat>) -> String {
    match stat {
        None => NONE.into(),
        Some(s) if s.sd.is_finite() => {
            let both = [s.mean, s.sd];
            format!("{} ± {}", fixed(s.mean, &both), fixed(s.sd, &both))
        }
        Some(s) => fixed(s.mean, &[s.mean]),
    }
}

/// A number with its sign, so differences read as such.
pub fn signed(v: f64) -> String {
    signed_with(v, &[v])
}

fn signed_with(v: f64, with: &[f64]) -> String {
    let text = fixed(v, with);
    if v >= 0.0 { format!("+{text}") } else { text }
}

/// `+0.021 ± 0.025` (the 95% half-width); the mean alone with one pair.
pub fn diff(d: Option<PairedDiff>) -> String {
    match d {
        None => NONE.into(),
        Some(PairedDiff {
            mean,
            half_width: Some(h),
            ..
        }) => format!(
            "{} ± {}",
            signed_with(mean, &[mean, h]),
            fixed(h, &[mean, h])
        ),
        Some(d) => signed(d.mean),
    }
}

/// A share as a percentage, `18.4%`.
pub fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", v * 100.0)
    } else {
        NONE.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mean: f64, sd: f64) -> Option<Stat> {
        Some(Stat {
            n: 3,
            mean,
            sd,
            min: mean,
            max: mean,
        })
    }

    #[test]
    fn a_mean_and_its_spread_share_their_decimals() {
        assert_eq!(mean_sd(stat(0.3, 0.02)), "0.300 ± 0.020");
        assert_eq!(mean_sd(stat(-0.1, 1.7e-17)), "-0.100 ± 0.000");
        assert_eq!(mean_sd(stat(0.0213, 0.001)), "0.0213 ± 0.0010");
        assert_eq!(mean_sd(stat(152.4, 3.0)), "152 ± 3");
        assert_eq!(mean_sd(stat(2e-6, 1e-6)), "2.00e-6 ± 1.00e-6");
        assert_eq!(mean_sd(stat(0.5, f64::NAN)), "0.500");
        let d = PairedDiff {
            n: 3,
            mean: 0.09,
            half_width: Some(0.13831),
        };
        assert_eq!(diff(Some(d)), "+0.090 ± 0.138");
        assert_eq!(signed(-0.25), "-0.250");
        assert_eq!(diff(None), NONE);
    }
}
