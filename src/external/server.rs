//! The generation server behind `generate.engine = "server"`: one that selm-tui runs
//! (`command`, restarted for each new pi_ref) or one already running (`url`, told to reload).
//! Either way [`GenerationServer::serve`] makes it serve a checkpoint before a decode batch
//! is asked of it, so the served weights always follow pi_ref.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::http::{Completion, CompletionRequest, OpenAiClient};
use super::process::{GroupChild, append, expand};
use crate::config::{Reload, ServerSection};

pub struct GenerationServer {
    config: ServerSection,
    client: OpenAiClient,
    /// The running child, for `command`.
    child: Option<GroupChild>,
    /// `server.log` in the run directory.
    log: PathBuf,
    /// The checkpoint the server serves now, once known.
    serving: Option<PathBuf>,
    /// The model id requests carry.
    model: Option<String>,
}

impl GenerationServer {
    /// The server `config` describes; nothing starts until [`Self::serve`].
    pub fn new(config: &ServerSection, log: PathBuf) -> Result<Self> {
        let base = match &config.url {
            Some(url) => url.clone(),
            None => format!("http://127.0.0.1:{}", port(config)?),
        };
        let timeout = Duration::from_secs_f64(config.timeout_s);
        Ok(Self {
            client: OpenAiClient::new(&base, timeout, config.retries),
            config: config.clone(),
            child: None,
            log,
            serving: None,
            model: None,
        })
    }

    pub fn url(&self) -> &str {
        self.client.base()
    }

    /// Makes the server serve `checkpoint` (pi_ref's directory, or the starting model's
    /// path), starting, restarting or reloading it when it serves anything else.
    /// `starting` says that `checkpoint` is the model the run started from, which a running
    /// server is assumed to serve already.
    pub fn serve(&mut self, checkpoint: &Path, starting: bool) -> Result<()> {
        // A server that may not share selm-tui's working directory gets absolute paths.
        let checkpoint = &std::path::absolute(checkpoint)
            .with_context(|| format!("the absolute path of {}", checkpoint.display()))?;
        // A started server that has exited since (out of memory, killed) starts again.
        let died = self.child.as_mut().is_some_and(|c| c.exited().is_some());
        if died {
            self.stop();
        }
        if self.serving.as_deref() == Some(checkpoint) {
            return Ok(());
        }
        match (&self.config.command, self.config.reload) {
            (Some(template), _) => self.restart(template.clone(), checkpoint)?,
            // With a way to reload, even the starting model is loaded: a long-lived server
            // may still serve another run's weights.
            (None, Some(reload)) => self.reload(reload, checkpoint)?,
            (None, None) if starting => {}
            (None, None) => bail!(
                "{} serves the starting model and has no `generate.server.reload` to take {}",
                self.url(),
                checkpoint.display()
            ),
        }
        self.wait_ready()?;
        self.serving = Some(checkpoint.to_path_buf());
        Ok(())
    }

    /// One completion; the model id is filled in.
    pub fn complete(&self, mut request: CompletionRequest) -> Result<Completion> {
        request.model = self.model.clone().unwrap_or_default();
        self.client.complete(&request)
    }

    /// Stops a server this run started (a running one is left as it is).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop(Duration::from_secs(10));
        }
        self.serving = None;
    }

    fn restart(&mut self, template: String, checkpoint: &Path) -> Result<()> {
        self.stop();
        let port = self
            .url()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let command = expand(
            &template,
            &[
                ("checkpoint", checkpoint.display().to_string()),
                ("port", port),
            ],
        );
        let header = format!("\n# selm-tui: starting `{command}`\n");
        append(&self.log, &header)?;
        self.child = Some(GroupChild::spawn(&command, &self.log)?);
        Ok(())
    }

    fn reload(&self, how: Reload, checkpoint: &Path) -> Result<()> {
        let path = checkpoint.display().to_string();
        let context = || format!("reloading {} with {path}", self.url());
        match how {
            Reload::Sglang => {
                let body = serde_json::json!({ "model_path": path });
                self.client
                    .post("/update_weights_from_disk", &body)
                    .with_context(context)?;
            }
            Reload::Vllm => {
                let body = serde_json::json!({
                    "method": "reload_weights",
                    "kwargs": { "weights_path": path },
                });
                self.client
                    .post("/collective_rpc", &body)
                    .with_context(context)?;
            }
            Reload::Command => {
                let template = self.config.reload_command.as_deref().unwrap_or_default();
                let command = expand(template, &[("checkpoint", path.clone())]);
                let status = std::process::Command::new("sh")
                    .args(["-c", &command])
                    .status()
                    .with_context(context)?;
                if !status.success() {
                    bail!("{}: `{command}` exited with {status}", context());
                }
            }
        }
        Ok(())
    }

    /// Waits until `/v1/models` answers (the started server is up, the reload done), and
    /// takes the model id from it unless the config names one.
    fn wait_ready(&mut self) -> Result<()> {
        let limit = Duration::from_secs_f64(self.config.ready_timeout_s);
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.exited()
            {
                let tail = child.log_tail(20);
                self.stop();
                bail!(
                    "the generation server exited with {status} before it answered on {} \
                     (its output is in {}):\n{tail}",
                    self.url(),
                    self.log.display()
                );
            }
            match self.client.models() {
                Ok(models) if !models.is_empty() => {
                    self.model = self.config.model.clone().or(models.into_iter().next());
                    return Ok(());
                }
                _ if start.elapsed() >= limit => {
                    let tail = self.child.as_ref().map(|c| c.log_tail(20));
                    self.stop();
                    bail!(
                        "the generation server did not answer on {}/v1/models within {} s \
                         (generate.server.ready_timeout_s; its output is in {}){}",
                        self.url(),
                        limit.as_secs_f64(),
                        self.log.display(),
                        tail.map(|t| format!(":\n{t}")).unwrap_or_default()
                    );
                }
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }
}

impl Drop for GenerationServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `generate.server.port`, or a port free now on the loopback interface.
fn port(config: &ServerSection) -> Result<u16> {
    if let Some(port) = config.port {
        return Ok(port);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
