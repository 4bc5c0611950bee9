//! Every record a run directory holds, one type each: the engine writes them, `inspect` (replay)
//! reads them back, and the front ends show them. Metric names are spelled once, in the serde
//! attributes here and on [`SelmMetrics`] (TRL's names).

use serde::{Deserialize, Serialize};

use crate::config::LiveParams;
use crate::engine::Stage;
use crate::selm::SelmMetrics;

/// One generated response (`iter-NNN/candidates.jsonl`, and inside each pair record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub text: String,
    pub tokens: Vec<u32>,
    /// The greedy response of pi_ref (y_ref).
    pub is_reference: bool,
    pub score: Option<f64>,
}

/// One prompt's candidates: a line of `iter-NNN/candidates.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidatesRecord {
    pub iteration: usize,
    pub prompt: String,
    pub candidates: Vec<Candidate>,
}

/// A pair as written to `iter-NNN/pairs.jsonl`: TRL's preference fields plus ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    pub iteration: usize,
    pub chosen_score: f64,
    pub rejected_score: f64,
    pub y_ref: String,
    #[serde(deserialize_with = "f64_or_nan")]
    pub y_ref_score: f64,
    pub candidates: Vec<Candidate>,
    pub ranker: String,
}

impl PairRecord {
    /// The ranker's score gap between chosen and rejected.
    pub fn score_gap(&self) -> f64 {
        self.chosen_score - self.rejected_score
    }
}

/// One response's tokens with their log-probs under pi_theta and pi_ref.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseLogps {
    /// Each token decoded on its own.
    pub tokens: Vec<String>,
    /// The token ids (the sequence trained on); empty in files written before they were
    /// recorded.
    #[serde(default)]
    pub ids: Vec<u32>,
    pub policy: Vec<f32>,
    pub reference: Vec<f32>,
}

impl ResponseLogps {
    /// `log pi_theta(y|x)`.
    pub fn policy_sum(&self) -> f64 {
        self.policy.iter().map(|&x| x as f64).sum()
    }

    /// `log pi_ref(y|x)`.
    pub fn reference_sum(&self) -> f64 {
        self.reference.iter().map(|&x| x as f64).sum()
    }

    /// DPO's implicit reward `beta * (log pi_theta(y|x) - log pi_ref(y|x))`.
    pub fn implicit_reward(&self, beta: f64) -> f64 {
        beta * (self.policy_sum() - self.reference_sum())
    }

    /// Per-token `log pi_theta - log pi_ref`.
    pub fn log_ratios(&self) -> impl Iterator<Item = f64> + '_ {
        self.policy
            .iter()
            .zip(&self.reference)
            .map(|(&p, &r)| p as f64 - r as f64)
    }
}

/// A pair measured after the iteration's update, before the reference sync
/// (one line of `iter-NNN/pair_logps.jsonl`, in the order of `pairs.jsonl`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairLogps {
    pub beta: f64,
    pub chosen: ResponseLogps,
    pub rejected: ResponseLogps,
    pub y_ref: ResponseLogps,
}

impl PairLogps {
    /// Implicit reward margin `r(chosen) - r(rejected)`.
    pub fn reward_margin(&self) -> f64 {
        self.chosen.implicit_reward(self.beta) - self.rejected.implicit_reward(self.beta)
    }
}

/// The three headline figures of an evaluation on held-out prompts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalFigures {
    /// k1 estimate of KL(pi_theta || pi_ref) on held-out samples from pi_theta.
    #[serde(deserialize_with = "f64_or_nan")]
    pub kl: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub high_reward_fraction: f64,
    #[serde(rename = "reward/mean", deserialize_with = "f64_or_nan")]
    pub reward_mean: f64,
}

impl EvalFigures {
    /// Not measured.
    pub const NAN: Self = Self {
        kl: f64::NAN,
        high_reward_fraction: f64::NAN,
        reward_mean: f64::NAN,
    };
}

/// Histogram bins of held-out rewards.
pub const HISTOGRAM_BINS: usize = 10;

/// End-of-iteration figures, a row of `summary.json` (iteration 0 is the starting model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationSummary {
    pub iteration: usize,
    #[serde(flatten)]
    pub eval: EvalFigures,
    /// Counts of held-out rewards in equal bins over `histogram_range`.
    pub reward_histogram: [usize; HISTOGRAM_BINS],
    /// The score range the bins split (`rank.score_range`).
    #[serde(default = "unit_range")]
    pub histogram_range: [f64; 2],
    /// Mean ranker score of this iteration's generated candidates (under pi_ref).
    #[serde(deserialize_with = "f64_or_nan")]
    pub candidate_reward_mean: f64,
    pub pairs: usize,
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean_loss: f64,
    pub eval_prompts: usize,
    pub eval_samples: usize,
    pub wall_s: f64,
}

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

/// `state.json`: where a run stands at its last stage boundary, enough to continue it
/// (`selm-tui resume`). Everything else a resume needs is derived from the seed and the
/// other files: prompts, sampling and shuffling RNGs are seeded per iteration and batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The format of this file; a newer one is refused.
    pub version: u32,
    /// The stage to run next and its iteration.
    pub iteration: usize,
    pub stage: Stage,
    /// Units of `stage` already done (decode batches, ranking chunks; their candidates are
    /// in `candidates.jsonl`), 0 at a stage boundary.
    #[serde(default)]
    pub unit: usize,
    pub finished: bool,
    /// Optimizer steps taken so far.
    pub global_step: usize,
    /// Lengths of `metrics.jsonl` and `metrics.csv` at the boundary: rows past them belong
    /// to a stage that did not finish and are cut on resume.
    pub metrics_jsonl_bytes: u64,
    pub metrics_csv_bytes: u64,
}

impl RunState {
    pub const VERSION: u32 = 1;
}

/// A line of `history.jsonl`: the parameters at the start, each change, and each resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum HistoryEntry {
    Start {
        time: String,
        iteration: usize,
        step: usize,
        #[serde(flatten)]
        params: LiveParams,
    },
    Set {
        time: String,
        iteration: usize,
        step: usize,
        old: LiveParams,
        new: LiveParams,
    },
    /// `selm-tui resume` continued the run from this stage.
    Resume {
        time: String,
        iteration: usize,
        step: usize,
        stage: Stage,
        #[serde(flatten)]
        params: LiveParams,
    },
}

impl HistoryEntry {
    /// The parameters in force after this entry.
    pub fn params(&self) -> LiveParams {
        match self {
            HistoryEntry::Start { params, .. } | HistoryEntry::Resume { params, .. } => *params,
            HistoryEntry::Set { new, .. } => *new,
        }
    }
}

fn unit_range() -> [f64; 2] {
    [0.0, 1.0]
}

/// serde_json writes NaN as `null`; read it back as NaN.
pub fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
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

    #[test]
    fn records_round_trip_with_nan_as_null() {
        let row = MetricsRecord::Eval(EvalRecord {
            iteration: 2,
            step: 7,
            figures: EvalFigures {
                kl: f64::NAN,
                high_reward_fraction: 0.25,
                reward_mean: 0.5,
            },
            alpha: 1e-3,
            beta: 0.1,
        });
        let text = serde_json::to_string(&row).unwrap();
        assert!(
            text.contains(r#""kind":"eval""#) && text.contains(r#""kl":null"#),
            "{text}"
        );
        let MetricsRecord::Eval(back) = serde_json::from_str(&text).unwrap() else {
            panic!("not an eval row");
        };
        assert!(back.figures.kl.is_nan());
        assert_eq!(back.figures.reward_mean, 0.5);
        let h = HistoryEntry::Start {
            time: "t".into(),
            iteration: 1,
            step: 0,
            params: LiveParams {
                alpha: 0.0,
                beta: 0.1,
                lr: 1e-4,
            },
        };
        let text = serde_json::to_string(&h).unwrap();
        assert!(text.contains(r#""event":"start""#) && text.contains(r#""alpha":0.0"#));
        assert_eq!(serde_json::from_str::<HistoryEntry>(&text).unwrap(), h);
    }

    #[test]
    fn response_logps_carry_ids_and_older_lines_still_read() {
        let r = ResponseLogps {
            tokens: vec!["1".into(), "</s>".into()],
            ids: vec![5, 2],
            policy: vec![-0.5, -0.25],
            reference: vec![-0.5, -0.5],
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""ids":[5,2]"#), "{text}");
        assert_eq!(serde_json::from_str::<ResponseLogps>(&text).unwrap(), r);
        let old = r#"{"tokens":["1"],"policy":[-0.5],"reference":[-0.5]}"#;
        let back: ResponseLogps = serde_json::from_str(old).unwrap();
        assert!(back.ids.is_empty());
        assert_eq!(back.tokens, ["1"]);
    }
}
