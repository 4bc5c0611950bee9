//! RoPE as a checkpoint describes it (`rope_theta`, `rope_parameters` or `rope_scaling`,
//! `rope_type` default or llama3), and the inverse frequencies HF derives from it.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::RawConfig;

/// Rotary embedding parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub theta: f64,
    pub scaling: RopeScaling,
}

/// Frequency scaling applied to the rotary embedding (`rope_type`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    Default,
    /// Llama 3.1 style: low frequencies divided by `factor`, smooth ramp in between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRope {
    pub(super) rope_theta: Option<f64>,
    #[serde(alias = "type")]
    pub(super) rope_type: Option<String>,
    pub(super) factor: Option<f64>,
    pub(super) low_freq_factor: Option<f64>,
    pub(super) high_freq_factor: Option<f64>,
    pub(super) original_max_position_embeddings: Option<f64>,
}

/// The rotary parameters of `raw`, from either spelling transformers writes.
pub(super) fn resolve_rope(raw: &RawConfig) -> Result<Rope> {
    // Newer transformers write `rope_parameters`; older ones `rope_theta` + `rope_scaling`.
    let params = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
    let theta = params
        .and_then(|p| p.rope_theta)
        .or(raw.rope_theta)
        .unwrap_or(10_000.0);
    if !(theta.is_finite() && theta > 0.0) {
        bail!("rope_theta must be a positive number, got {theta}");
    }
    let kind = params
        .and_then(|p| p.rope_type.as_deref())
        .unwrap_or("default");
    let scaling = match kind {
        "default" => RopeScaling::Default,
        "llama3" => {
            let p = params.expect("rope_type came from params");
            let need = |v: Option<f64>, name: &str| {
                v.with_context(|| format!("rope_type llama3 needs `{name}`"))
            };
            RopeScaling::Llama3 {
                factor: need(p.factor, "factor")?,
                low_freq_factor: need(p.low_freq_factor, "low_freq_factor")?,
                high_freq_factor: need(p.high_freq_factor, "high_freq_factor")?,
                original_max_position_embeddings: need(
                    p.original_max_position_embeddings,
                    "original_max_position_embeddings",
                )?,
            }
        }
        other => bail!("rope_type `{other}` is not supported (default and llama3 are)"),
    };
    Ok(Rope { theta, scaling })
}

impl Rope {
    /// Inverse frequencies for each rotary pair, as HF computes them (in f32).
    pub fn inv_freq(&self, head_dim: usize) -> Vec<f32> {
        let base: Vec<f32> = (0..head_dim / 2)
            .map(|i| {
                let exponent = (2 * i) as f32 / head_dim as f32;
                1.0 / (self.theta as f32).powf(exponent)
            })
            .collect();
        match self.scaling {
            RopeScaling::Default => base,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_ctx,
            } => {
                let low_wavelen = old_ctx / low_freq_factor;
                let high_wavelen = old_ctx / high_freq_factor;
                base.into_iter()
                    .map(|f| {
                        let f = f as f64;
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        let smooth = (old_ctx / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        let medium = (high_wavelen..=low_wavelen).contains(&wavelen);
                        let out = if medium {
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        };
                        out as f32
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv_freq_matches_hf_formula() {
        let rope = Rope {
            theta: 10_000.0,
            scaling: RopeScaling::Default,
        };
        let f = rope.inv_freq(16);
        assert_eq!(f.len(), 8);
        assert!((f[0] - 1.0).abs() < 1e-7);
        assert!((f[1] - 10_000f32.powf(-0.125)).abs() < 1e-7);
    }
}
