//! selm-tui: online preference alignment (SELM and iterative DPO) of Llama-family models on Burn.

pub mod backend;
pub mod bench;
pub mod chat;
pub mod config;
pub mod engine;
pub mod export;
pub mod headless;
pub mod io;
pub mod model;
pub mod prompts;
pub mod ranker;
pub mod selm;
pub mod sft;
pub mod tasks;
pub mod tokenizer;
pub mod train;
pub mod tui;
