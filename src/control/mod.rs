//! The control socket: every run listens on `RUN_DIR/control.sock`, so that `selm-tui
//! attach` (a TUI in another process, over ssh, on a cluster node) can watch and steer it.
//! The run's side is [`hub::serve`], the viewer's [`viewer::attach`].

mod catch_up;
mod connection;
pub mod hub;
pub mod protocol;
pub mod socket;
pub mod viewer;

pub use hub::serve;
pub use socket::{Probe, probe};
