//! The Llama-family causal LM: config, layers, KV cache, loading, decoding.

pub mod cache;
pub mod config;
pub mod generate;
pub mod gguf;
pub mod llama;
pub mod load;
pub mod sampling;

pub use config::ModelConfig;
pub use llama::CausalLm;
