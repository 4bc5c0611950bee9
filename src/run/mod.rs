//! A run on disk: its directory ([`RunDir`], every path inside it), the records written there
//! ([`records`], one type each for the writer, replay and compare), and the [`Stage`]s that
//! `state.json` names. It sits above `model` and `selm` (checkpoints and metrics) and below
//! the engine and the front ends.

mod dir;
mod lock;
pub mod records;
mod stage;

pub use dir::{ADAPTER_DIR, RunDir, SaveAs, read_if_present};
pub use lock::RunLock;
pub use stage::Stage;
