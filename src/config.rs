//! The TOML run configuration. Unknown keys are rejected; errors name the key.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;

use crate::backend::BackendSpec;

/// The configuration shipped in the binary (`configs/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../configs/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub runtime: Runtime,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// flex, wgpu, wgpu:cpu, wgpu:N, cuda, cuda:N.
    #[serde(default = "default_backend")]
    pub backend: String,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            backend: default_backend(),
        }
    }
}

fn default_backend() -> String {
    "flex".into()
}

impl Config {
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config: Self =
            toml::from_str(text).with_context(|| format!("invalid config {origin}"))?;
        config
            .backend()
            .with_context(|| format!("invalid config {origin}: key `runtime.backend`"))?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn embedded_default() -> Self {
        Self::from_toml(DEFAULT_TOML, "configs/default.toml").expect("the shipped config is valid")
    }

    pub fn backend(&self) -> Result<BackendSpec> {
        self.runtime.backend.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parses() {
        assert_eq!(
            Config::embedded_default().backend().unwrap(),
            BackendSpec::Flex
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = format!(
            "{:#}",
            Config::from_toml("[runtime]\nbackedn = \"flex\"\n", "t.toml").unwrap_err()
        );
        assert!(err.contains("backedn") && err.contains("t.toml"), "{err}");
        let err = format!(
            "{:#}",
            Config::from_toml("[runtime]\nbackend = \"tpu\"\n", "t.toml").unwrap_err()
        );
        assert!(
            err.contains("runtime.backend") && err.contains("tpu"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Config::from_toml("[runtime]\nbackend = 3\n", "t.toml").unwrap_err()
        );
        assert!(err.contains("backend"), "{err}");
    }
}
