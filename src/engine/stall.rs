//! Crash tests' hook: `SELM_STALL_AT=ITERATION:STAGE:UNIT` stops the engine before that unit
//! forever, so that a test can kill the process at a known point.

use burn::tensor::backend::AutodiffBackend;

use super::messages::{Event, LogLine, Stage};
use super::pipeline::Pipeline;

impl<B: AutodiffBackend> Pipeline<B> {
    /// Stops here forever when `SELM_STALL_AT` names this point.
    pub(super) fn stall_if_at(&self, at: (usize, Stage, usize), emit: &mut dyn FnMut(Event)) {
        if stall_point() != Some(at) {
            return;
        }
        let (iteration, stage, unit) = at;
        emit(Event::Log(LogLine::warn(format!(
            "SELM_STALL_AT: stalled before unit {unit} of iteration {iteration} stage `{}`",
            stage.label()
        ))));
        loop {
            std::thread::park();
        }
    }
}

/// `SELM_STALL_AT=ITERATION:STAGE:UNIT` (stage as in state.json, e.g. `1:generate:2`): the
/// engine stops before that unit and waits forever, so a test can kill it at a known point.
fn stall_point() -> Option<(usize, Stage, usize)> {
    let spec = std::env::var("SELM_STALL_AT").ok()?;
    let mut parts = spec.split(':');
    let iteration = parts.next()?.parse().ok()?;
    let stage = serde_json::from_value(serde_json::Value::String(parts.next()?.into())).ok()?;
    let unit = parts.next()?.parse().ok()?;
    Some((iteration, stage, unit))
}
