//! selm-tui: online preference alignment (SELM and iterative DPO) of Llama-family models on Burn.

// Child process groups, the control socket, output capture and run locks are Unix's (Linux,
// macOS); no other platform is built or tested.
#[cfg(not(unix))]
compile_error!("selm-tui runs on Unix (Linux, macOS)");

pub mod backend;
pub mod bench;
pub mod builtin;
pub mod chat;
pub mod cli;
pub mod compare;
pub mod config;
pub mod control;
pub mod engine;
pub mod export;
pub mod external;
pub mod headless;
pub mod io;
pub mod model;
pub mod paths;
pub mod prompts;
pub mod ranker;
pub mod run;
pub mod selm;
pub mod sft;
pub mod sweep;
pub mod tasks;
/// Helpers that exist for the test suite (a GGUF writer, reference computations); the
/// application does not use them.
pub mod testing;
pub mod text;
pub mod tokenizer;
pub mod train;
pub mod tui;
