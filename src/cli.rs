//! Value checks for the subcommands' clap arguments. Used as `value_parser`s, so a bad value
//! is a usage error that names its flag (`invalid value '0' for '--steps <STEPS>': must be
//! at least 1`).

/// An integer `>= 1`.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    at_least(s, 1)
}

/// An integer `>= 2`.
pub fn at_least_two(s: &str) -> Result<usize, String> {
    at_least(s, 2)
}

fn at_least(s: &str, min: usize) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if n < min {
        return Err(format!("must be at least {min}"));
    }
    Ok(n)
}

/// A number in `[0, 1]`.
pub fn fraction(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.0..=1.0).contains(&x) {
        return Err("must be between 0 and 1".into());
    }
    Ok(x)
}

/// A finite number `> 0`.
pub fn positive(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(x.is_finite() && x > 0.0) {
        return Err("must be a positive number".into());
    }
    Ok(x)
}

/// A screen size `WIDTHxHEIGHT` in cells, at least the TUI's minimum.
pub fn screen_size(s: &str) -> Result<(u16, u16), String> {
    use crate::tui::view::{MIN_HEIGHT, MIN_WIDTH};
    let (w, h) = s
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse::<u16>().ok()?, h.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT (e.g. 110x34)"))?;
    if w < MIN_WIDTH || h < MIN_HEIGHT {
        return Err(format!("must be at least {MIN_WIDTH}x{MIN_HEIGHT}"));
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_sizes() {
        assert_eq!(screen_size("110x34"), Ok((110, 34)));
        assert!(screen_size("110").unwrap_err().contains("WIDTHxHEIGHT"));
        assert!(screen_size("20x10").unwrap_err().contains("at least"));
    }

    #[test]
    fn checks_ranges() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").unwrap_err().contains("at least 1"));
        assert!(at_least_two("1").unwrap_err().contains("at least 2"));
        assert!(at_least_one("-1").is_err());
        assert_eq!(fraction("0"), Ok(0.0));
        assert_eq!(fraction("1"), Ok(1.0));
        assert!(fraction("2").is_err());
        assert!(fraction("NaN").is_err());
        assert!(positive("0").is_err());
        assert!(positive("inf").is_err());
        assert_eq!(positive("3e-3"), Ok(3e-3));
    }
}
