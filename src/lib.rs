//! selm-tui: online preference alignment (SELM and iterative DPO) of Llama-family models on Burn.

pub mod backend;
pub mod bench;
pub mod config;
pub mod io;
pub mod model;
pub mod selm;
pub mod train;
