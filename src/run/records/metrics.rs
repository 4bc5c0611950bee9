//! The rows of `metrics.jsonl` and `metrics.csv`: one per update step and one per
//! evaluation, with TRL's metric names; the CSV's columns derived from the serde names.

use serde::{Deserialize, Serialize};

use super::{EvalFigures, f64_or_nan};
use crate::selm::SelmMetrics;

/// One update's row of `metrics.jsonl` / `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    pub iteration: usize,
    /// Optimizer steps since the run started.
    pub step: usize,
    /// Mini-batch within the iteration, from 1.
    pub batch: usize,
    #[serde(flatten)]
    pub metrics: SelmMetrics,
    /// Global gradient norm before clipping.
    #[serde(deserialize_with = "f64_or_nan")]
    pub grad_norm: f64,
    pub lr: f64,
}

/// One evaluation's row of `metrics.jsonl` / `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub iteration: usize,
    pub step: usize,
    #[serde(flatten)]
    pub figures: EvalFigures,
    pub alpha: f64,
    pub beta: f64,
}

/// A row of `metrics.jsonl`, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MetricsRecord {
    Train(TrainRecord),
    Eval(EvalRecord),
}

impl TrainRecord {
    /// The TRL-named values in `metrics.csv` order, without the row's position
    /// (iteration, step, batch).
    pub fn named_values(&self) -> Vec<(String, f64)> {
        let Ok(serde_json::Value::Object(map)) = serde_json::to_value(self) else {
            return vec![];
        };
        csv_columns()
            .iter()
            .filter(|c| !matches!(c.as_str(), "kind" | "iteration" | "step" | "batch"))
            .filter_map(|c| Some((c.clone(), map.get(c)?.as_f64()?)))
            .collect()
    }
}

/// The columns of `metrics.csv`: `kind`, then every field of a train row, then the eval
/// row's fields not already there, in declaration order (derived from the serde names).
pub fn csv_columns() -> &'static [String] {
    static COLUMNS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    COLUMNS.get_or_init(|| {
        let zero = EvalFigures {
            kl: 0.0,
            high_reward_fraction: 0.0,
            reward_mean: 0.0,
        };
        let train = MetricsRecord::Train(TrainRecord {
            iteration: 0,
            step: 0,
            batch: 0,
            metrics: SelmMetrics::default(),
            grad_norm: 0.0,
            lr: 0.0,
        });
        let eval = MetricsRecord::Eval(EvalRecord {
            iteration: 0,
            step: 0,
            figures: zero,
            alpha: 0.0,
            beta: 0.0,
        });
        let mut columns: Vec<String> = vec![];
        for record in [train, eval] {
            for key in keys_in_order(&record) {
                if !columns.contains(&key) {
                    columns.push(key);
                }
            }
        }
        columns
    })
}

/// The keys of `value` serialized as a JSON object, in the order serde writes them.
fn keys_in_order<T: Serialize>(value: &T) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = vec![];
                    while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    let text = serde_json::to_string(value).expect("records serialize");
    serde_json::from_str::<Keys>(&text).expect("an object").0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_keep_trl_names_in_order() {
        let cols = csv_columns();
        assert_eq!(&cols[..5], ["kind", "iteration", "step", "batch", "loss"]);
        for name in [
            "loss/dpo",
            "rewards/margins",
            "grad_norm",
            "lr",
            "kl",
            "reward/mean",
        ] {
            assert!(cols.iter().any(|c| c == name), "{name} in {cols:?}");
        }
        let unique: std::collections::BTreeSet<_> = cols.iter().collect();
        assert_eq!(unique.len(), cols.len());
    }
}
