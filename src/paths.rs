//! What a path in a config names: `builtin:<name>` (a file compiled into the binary, see
//! [`crate::builtin`]), `cache:<file>` (the download cache), or a plain path.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// `builtin:`, `cache:` or a plain path.
pub fn resolve(path: &str) -> Result<PathBuf> {
    if let Some(name) = path.strip_prefix("builtin:") {
        // Without a cache directory the built-ins still work, from a temporary one.
        let cache = cache_dir().unwrap_or_else(|_| std::env::temp_dir().join("selm-tui"));
        return crate::builtin::path(name, &cache);
    }
    if let Some(name) = path.strip_prefix("cache:") {
        return Ok(cache_dir()?.join(name));
    }
    Ok(PathBuf::from(path))
}

/// Where downloads go: `$SELM_CACHE`, else ~/.cache/selm-tui.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SELM_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("neither SELM_CACHE nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/selm-tui"))
}
