//! The Llama-family causal LM: config, layers, KV cache, loading, decoding; and the
//! sequence classifier (reward model) built on its decoder.

pub mod attention;
pub mod bert;
pub mod cache;
pub mod classifier;
pub mod config;
#[cfg(feature = "flex")]
pub mod cpu_decode;
pub mod decode_matmul;
pub mod generate;
pub mod gguf;
pub mod llama;
pub mod load;
pub mod lora;
pub mod sampling;
pub mod softmax;

pub use config::ModelConfig;
pub use llama::CausalLm;
