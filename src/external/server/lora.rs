//! `reload = "lora"`: the server keeps the base model and takes each pi_ref as an adapter
//! (vLLM with `--enable-lora`, runtime updates allowed), so a new pi_ref costs a few
//! megabytes read instead of a restart or a full reload.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ModelServer;
use crate::config::Reload;
use crate::external::wait::{self, Watch};
use crate::run::ADAPTER_DIR;

/// The name requests give pi_ref's adapter; each new one replaces the last in place.
pub const ADAPTER_NAME: &str = "pi_ref";

impl ModelServer {
    /// With `reload = "lora"`, the server is started on (and keeps) `base`.
    pub fn with_lora_base(mut self, base: PathBuf) -> Self {
        self.base = Some(base);
        self
    }

    pub(super) fn lora_base(&self) -> Result<PathBuf> {
        let base = self.base.clone().context(
            "`reload = \"lora\"` without the base model (a LoRA run's generation server only)",
        )?;
        std::path::absolute(&base)
            .with_context(|| format!("the absolute path of {}", base.display()))
    }

    /// The environment a started server gets: vLLM loads adapters at run time only when
    /// told it may.
    pub(super) fn extra_env(&self) -> Vec<(&'static str, &'static str)> {
        match self.config.reload {
            Some(Reload::Lora) => vec![("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")],
            _ => vec![],
        }
    }

    /// Makes requests go to `checkpoint`'s adapter (its `adapter/`), loaded on the server
    /// in place of the last; the starting model, or a checkpoint without one, is served by
    /// the base. Other reloads have loaded the checkpoint already.
    pub(super) fn load_adapter(
        &mut self,
        checkpoint: &Path,
        starting: bool,
        watch: &mut Watch,
    ) -> Result<()> {
        if self.config.reload != Some(Reload::Lora) {
            return Ok(());
        }
        let adapter = checkpoint.join(ADAPTER_DIR);
        // The starting model is the base: an `adapter/` beside it (a merged checkpoint of an
        // earlier LoRA run) is already in its weights.
        if starting || !adapter.join(crate::model::lora::CONFIG_FILE).is_file() {
            self.adapter = None;
            return Ok(());
        }
        let body = serde_json::json!({
            "lora_name": ADAPTER_NAME,
            "lora_path": adapter.display().to_string(),
            "load_inplace": true,
        });
        let what = "server loading an adapter";
        let limit = Duration::from_secs_f64(self.config.ready_timeout_s);
        let client = self.client.clone();
        wait::wait_for(what, Instant::now(), Some(limit), watch, move || {
            client.post("/v1/load_lora_adapter", &body)
        })?
        .with_context(|| {
            format!(
                "loading the adapter {} on {} (a vLLM started with --enable-lora and a \
                 --max-lora-rank at least the adapter's)",
                adapter.display(),
                self.url()
            )
        })?;
        self.adapter = Some(ADAPTER_NAME.to_string());
        Ok(())
    }
}
