//! The external trainer's file contract (`train.engine = "command"`). Per iteration selm-tui
//! writes into `iter-NNN/train/`: `pairs.jsonl` (TRL's preference format, y_ref as
//! `reference_response`, and the token ids selm-tui trained on), `eval_prompts.jsonl` and
//! `params.json`; it then runs the command. The trainer prints one JSON object per logging
//! step on stdout (the metric names of [`SelmMetrics`], `grad_norm`, `lr`), and exits 0 with
//! an HF directory at `out`. It may also write, for the pair inspector and the evaluation,
//! `pair_logps.jsonl` (per-token log-probs of each pair under the updated policy and pi_ref)
//! and `eval_samples.jsonl` (samples of the updated policy on the held-out prompts, with
//! their log-probs under both). Its stdout and stderr go to `trainer.log`.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::process::{GroupChild, append};
use crate::selm::SelmMetrics;

/// Lines of the trainer's output an error quotes.
const TAIL: usize = 15;

/// One row of `pairs.jsonl`: TRL's standard preference fields (the prompt rendered with the
/// chat template), y_ref as the official SELM trainer's `reference_response`, and the exact
/// token ids, which a trainer should prefer to re-tokenizing the text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreferenceRow {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    pub reference_response: String,
    pub prompt_ids: Vec<u32>,
    pub chosen_ids: Vec<u32>,
    pub rejected_ids: Vec<u32>,
    pub reference_ids: Vec<u32>,
}

/// One held-out prompt of `eval_prompts.jsonl`, with the seed its samples use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalPromptRow {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub seed: u64,
}

/// `params.json`: everything the update needs besides the files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainerParams {
    pub iteration: usize,
    pub objective: String,
    pub alpha: f64,
    pub beta: f64,
    pub lr: f64,
    /// Passes over the pairs (selm-tui's update is one).
    pub epochs: usize,
    /// Pairs per optimizer step, in file order (no shuffling: the order is selm-tui's).
    pub batch_size: usize,
    pub micro_batch_size: Option<usize>,
    pub warmup_ratio: f64,
    pub max_grad_norm: Option<f64>,
    pub weight_decay: f64,
    pub seed: u64,
    pub model: PathBuf,
    pub ref_model: PathBuf,
    pub input: PathBuf,
    pub out: PathBuf,
    pub eval_prompts: PathBuf,
    pub pair_logps_out: PathBuf,
    pub eval_samples_out: PathBuf,
    pub eval_samples: usize,
    pub eval_temperature: f32,
    pub max_new_tokens: usize,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: u32,
    /// Ids sampling must never emit (as selm-tui's own decoding suppresses them).
    pub suppress_token_ids: Vec<u32>,
    /// A LoRA update (`[train.lora]`): `model` and `ref_model` are then the base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<TrainerLora>,
}

/// A LoRA update: the trainer trains the adapter at `adapter` (PEFT's files) on the base
/// `model`, pi_ref being the base plus that adapter frozen (`reference_adapter`) or the base
/// alone. It saves the trained adapter in PEFT's format in `<out>/adapter/` and, when
/// `merged`, the merged model at `out` as a full update would.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainerLora {
    pub rank: usize,
    pub alpha: f64,
    pub rslora: bool,
    pub dropout: f64,
    pub target_modules: Vec<String>,
    pub adapter: PathBuf,
    pub reference_adapter: bool,
    pub merged: bool,
}

impl TrainerParams {
    /// The values `train.command`'s placeholders take.
    pub fn placeholders(&self, run_dir: &Path, params: &Path) -> Vec<(&'static str, String)> {
        let path = |p: &Path| p.display().to_string();
        vec![
            ("input", path(&self.input)),
            ("model", path(&self.model)),
            ("ref_model", path(&self.ref_model)),
            ("out", path(&self.out)),
            ("params", path(params)),
            ("eval_prompts", path(&self.eval_prompts)),
            ("pair_logps_out", path(&self.pair_logps_out)),
            ("eval_samples_out", path(&self.eval_samples_out)),
            ("alpha", self.alpha.to_string()),
            ("beta", self.beta.to_string()),
            ("lr", self.lr.to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("warmup_ratio", self.warmup_ratio.to_string()),
            ("seed", self.seed.to_string()),
            ("objective", self.objective.clone()),
            ("iteration", self.iteration.to_string()),
            ("run_dir", path(run_dir)),
        ]
    }
}

/// One logging step of the trainer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrainerMetrics {
    #[serde(flatten)]
    pub metrics: SelmMetrics,
    pub grad_norm: f64,
    pub lr: f64,
}

impl TrainerMetrics {
    /// One stdout line; `null` (JSON's only way to say NaN or infinity) reads as NaN.
    pub fn from_line(line: &str) -> Result<Self> {
        let map: std::collections::BTreeMap<String, Option<f64>> = serde_json::from_str(line)?;
        let values = map.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN)));
        let de = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(values);
        Ok(Self::deserialize(de)?)
    }

    /// Why this step's figures cannot be trained on, if they cannot.
    pub fn non_finite(&self) -> Option<String> {
        let (loss, grad) = (self.metrics.loss, self.grad_norm);
        (!loss.is_finite() || !grad.is_finite())
            .then(|| format!("loss {loss}, gradient norm {grad}"))
    }
}

/// Per-token log-probs of one response under the updated policy and pi_ref.
#[derive(Debug, Clone, Deserialize)]
pub struct MeasuredResponse {
    pub policy: Vec<f32>,
    pub reference: Vec<f32>,
}

/// One line of `pair_logps.jsonl`, in the order of `pairs.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct MeasuredPair {
    pub chosen: MeasuredResponse,
    pub rejected: MeasuredResponse,
    pub y_ref: MeasuredResponse,
}

/// One sample of the updated policy on a held-out prompt, with its summed log-probs.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalSample {
    pub ids: Vec<u32>,
    pub policy_logp: f64,
    pub reference_logp: f64,
}

/// One line of `eval_samples.jsonl`, in the order of `eval_prompts.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalSamplesRow {
    pub samples: Vec<EvalSample>,
}

/// What the trainer did since the last look.
#[derive(Debug)]
pub enum TrainerPoll {
    Metrics(Box<TrainerMetrics>),
    /// Nothing new yet.
    Running,
    /// Exited 0.
    Finished,
}

/// A trainer command running; dropping it stops its whole process group.
pub struct RunningTrainer {
    child: GroupChild,
    lines: Receiver<String>,
    log: PathBuf,
}

impl RunningTrainer {
    /// Starts `command`, its output appended to `log` under a header naming it.
    pub fn start(command: &str, log: &Path) -> Result<Self> {
        append(log, &format!("\n# selm-tui: starting `{command}`\n"))?;
        let (child, stdout) = GroupChild::spawn_piped(command, log)?;
        let (send, lines) = std::sync::mpsc::channel();
        let log_path = log.to_path_buf();
        // Each stdout line is logged, then handed over; the channel closes at end of output.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = append(&log_path, &format!("{line}\n"));
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            lines,
            log: log.to_path_buf(),
        })
    }

    /// Waits up to `wait` for the next metrics line or the end. A line that is not a JSON
    /// object of metrics, or an exit other than 0, is an error quoting the output's end.
    pub fn poll(&mut self, wait: Duration) -> Result<TrainerPoll> {
        match self.lines.recv_timeout(wait) {
            Ok(line) if line.trim().is_empty() => Ok(TrainerPoll::Running),
            Ok(line) => match TrainerMetrics::from_line(&line) {
                Ok(m) => Ok(TrainerPoll::Metrics(Box::new(m))),
                Err(e) => {
                    self.child.stop(Duration::from_secs(10));
                    bail!(
                        "the trainer `{}` printed a line that is not a JSON object of metrics \
                         ({e}): `{}`; the end of its output (all of it in {}):\n{}",
                        self.child.command(),
                        crate::text::clip(&line, 200),
                        self.log.display(),
                        self.child.log_tail(TAIL)
                    )
                }
            },
            Err(RecvTimeoutError::Timeout) => Ok(TrainerPoll::Running),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait_exit();
                if status.is_some_and(|s| s.success()) {
                    return Ok(TrainerPoll::Finished);
                }
                let how = status.map_or("was lost".to_string(), |s| format!("exited with {s}"));
                bail!(
                    "the trainer `{}` {how}; the end of its output (all of it in {}):\n{}",
                    self.child.command(),
                    self.log.display(),
                    self.child.log_tail(TAIL)
                )
            }
        }
    }

    /// The exit status once stdout has closed (a trainer that closed it and runs on is
    /// given 10 s, then stopped).
    fn wait_exit(&mut self) -> Option<ExitStatus> {
        for _ in 0..100 {
            if let Some(status) = self.child.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.stop(Duration::from_secs(10));
        self.child.exited()
    }
}

/// Checks that `dir` holds an HF model (config.json and safetensors weights).
pub fn check_model_dir(dir: &Path) -> Result<()> {
    if !dir.join("config.json").is_file() {
        bail!(
            "the trainer left no model at {} (no config.json): an update must save an HF \
             directory there",
            dir.display()
        );
    }
    let weights = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".safetensors"));
    if !weights {
        bail!(
            "the trainer's model at {} has no .safetensors weights",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The placeholders a config may name (checked when it is read) are those a trainer's
    /// command gets values for, in the same order.
    #[test]
    fn the_placeholders_validated_are_the_ones_expanded() {
        let expanded = TrainerParams::default().placeholders(Path::new("run"), Path::new("p"));
        let names: Vec<&str> = expanded.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::config::TRAIN_PLACEHOLDERS);
    }

    fn run(command: &str) -> (Result<Vec<TrainerMetrics>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("trainer.log");
        let mut trainer = RunningTrainer::start(command, &log).unwrap();
        let mut rows = vec![];
        let result = loop {
            match trainer.poll(Duration::from_millis(50)) {
                Ok(TrainerPoll::Metrics(m)) => rows.push(*m),
                Ok(TrainerPoll::Running) => {}
                Ok(TrainerPoll::Finished) => break Ok(rows),
                Err(e) => break Err(e),
            }
        };
        (result, dir)
    }

    const LINE: &str = r#"{"loss": 0.69, "loss/dpo": 0.69, "loss/optimism": 0.0, "rewards/chosen": 0.0, "rewards/rejected": 0.0, "rewards/accuracies": 0.0, "rewards/margins": 0.0, "logps/chosen": -3.0, "logps/rejected": -4.0, "logps/pi_response": -2.0, "logps/ref_response": -2.0, "alpha": 0.001, "beta": 0.1, "grad_norm": 1.5, "lr": 1e-6}"#;

    #[test]
    fn metrics_lines_arrive_and_stderr_is_logged() {
        let (rows, dir) = run(&format!(
            "echo '{LINE}'; echo warming up >&2; echo '{LINE}'"
        ));
        let rows = rows.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].metrics.loss, 0.69);
        assert_eq!(rows[1].grad_norm, 1.5);
        let log = std::fs::read_to_string(dir.path().join("trainer.log")).unwrap();
        assert!(
            log.contains("warming up") && log.contains("\"loss\": 0.69"),
            "{log}"
        );
    }

    #[test]
    fn a_failing_trainer_is_an_error_quoting_its_output() {
        let (rows, _dir) = run("echo 'CUDA out of memory' >&2; exit 3");
        let e = format!("{:#}", rows.unwrap_err());
        assert!(e.contains("exited with exit status: 3"), "{e}");
        assert!(e.contains("CUDA out of memory"), "{e}");
    }

    #[test]
    fn garbage_on_stdout_is_an_error_naming_the_line() {
        let (rows, _dir) = run(&format!("echo '{LINE}'; echo 'Step 2 loss=0.5'; sleep 30"));
        let e = format!("{:#}", rows.unwrap_err());
        assert!(
            e.contains("not a JSON object") && e.contains("Step 2 loss=0.5"),
            "{e}"
        );
        let (rows, _dir) = run(r#"echo '{"loss": 0.5}'"#);
        let e = format!("{:#}", rows.unwrap_err());
        assert!(e.contains("missing field"), "{e}");
    }

    #[test]
    fn null_metrics_read_as_nan() {
        let line = LINE.replace("\"loss\": 0.69", "\"loss\": null");
        let m = TrainerMetrics::from_line(&line).unwrap();
        assert!(m.metrics.loss.is_nan());
        assert!(m.non_finite().unwrap().contains("loss NaN"));
        assert!(
            TrainerMetrics::from_line(LINE)
                .unwrap()
                .non_finite()
                .is_none()
        );
        assert!(TrainerMetrics::from_line("[1, 2]").is_err());
    }

    #[test]
    fn a_model_dir_needs_config_and_weights() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_model_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("left no model"), "{e}");
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        assert!(check_model_dir(dir.path()).is_err());
        std::fs::write(dir.path().join("model.safetensors"), "").unwrap();
        check_model_dir(dir.path()).unwrap();
    }
}
