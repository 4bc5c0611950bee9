//! The generation server behind `generate.engine = "server"`: one that selm-tui runs
//! (`command`, restarted for each new pi_ref) or one already running (`url`, told to reload).
//! Either way [`GenerationServer::serve`] makes it serve a checkpoint before a decode batch
//! is asked of it, so the served weights always follow pi_ref. Its waits (a start, a reload)
//! can be cut short by a command ([`super::wait`]); the next `serve` picks them up.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::http::{Completion, CompletionRequest, OpenAiClient};
use super::process::{GroupChild, append, expand};
use super::wait::{self, Watch};
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
    /// A start or reload under way (its checkpoint, since when) that a command interrupted.
    pending: Option<(PathBuf, Instant)>,
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
            pending: None,
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
    pub fn serve(&mut self, checkpoint: &Path, starting: bool, watch: &mut Watch) -> Result<()> {
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
        let since = match self.pending.take() {
            // Interrupted on its way to this checkpoint: wait on.
            Some((pending, since)) if pending == *checkpoint && !died => since,
            _ => {
                let since = Instant::now();
                // A failed or interrupted start or reload is done again by the next serve
                // (a reload is idempotent).
                let begun = match (&self.config.command, self.config.reload) {
                    (Some(template), _) => self.restart(template.clone(), checkpoint),
                    // With a way to reload, even the starting model is loaded: a long-lived
                    // server may still serve another run's weights.
                    (None, Some(reload)) => self.reload(reload, checkpoint, since, watch),
                    (None, None) if starting => Ok(()),
                    (None, None) => bail!(
                        "{} serves the starting model and has no `generate.server.reload` to \
                         take {}",
                        self.url(),
                        checkpoint.display()
                    ),
                };
                begun?;
                since
            }
        };
        self.pending = Some((checkpoint.to_path_buf(), since));
        self.wait_ready(since, watch)?;
        self.pending = None;
        self.serving = Some(checkpoint.to_path_buf());
        Ok(())
    }

    /// What sends completions to the server (a cloneable client and the model id), for
    /// requests made from other threads.
    pub fn requester(&self) -> Requester {
        Requester {
            client: self.client.clone(),
            model: self.model.clone().unwrap_or_default(),
        }
    }

    /// Stops a server this run started (a running one is left as it is).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop(Duration::from_secs(10));
        }
        self.serving = None;
        self.pending = None;
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

    /// Tells a running server to load `checkpoint`: its reload endpoint, or
    /// `reload_command` as a child of its own (in a process group, its output in server.log,
    /// given `ready_timeout_s`).
    fn reload(
        &mut self,
        how: Reload,
        checkpoint: &Path,
        since: Instant,
        watch: &mut Watch,
    ) -> Result<()> {
        let path = checkpoint.display().to_string();
        let context = format!("reloading {} with {path}", self.url());
        let limit = Duration::from_secs_f64(self.config.ready_timeout_s);
        let (endpoint, body) = match how {
            Reload::Sglang => (
                "/update_weights_from_disk",
                serde_json::json!({ "model_path": path }),
            ),
            Reload::Vllm => (
                "/collective_rpc",
                serde_json::json!({
                    "method": "reload_weights",
                    "kwargs": { "weights_path": path },
                }),
            ),
            Reload::Command => {
                let template = self.config.reload_command.as_deref().unwrap_or_default();
                let command = expand(template, &[("checkpoint", path.clone())]);
                return self
                    .reload_with_command(&command, since, limit, watch)
                    .with_context(|| context);
            }
        };
        let client = self.client.clone();
        wait::wait_for("server reloading", since, Some(limit), watch, move || {
            client.post(endpoint, &body)
        })?
        .with_context(|| context)?;
        Ok(())
    }

    fn reload_with_command(
        &mut self,
        command: &str,
        since: Instant,
        limit: Duration,
        watch: &mut Watch,
    ) -> Result<()> {
        append(
            &self.log,
            &format!("\n# selm-tui: reloading with `{command}`\n"),
        )?;
        let mut child = GroupChild::spawn(command, &self.log)?;
        loop {
            if let Some(status) = child.exited() {
                if !status.success() {
                    bail!(
                        "`{command}` exited with {status} (its output is in {}):\n{}",
                        self.log.display(),
                        child.log_tail(20)
                    );
                }
                return Ok(());
            }
            if since.elapsed() >= limit {
                child.stop(Duration::from_secs(5));
                bail!(
                    "`{command}` did not finish within {} s (generate.server.ready_timeout_s)",
                    limit.as_secs_f64()
                );
            }
            // An interruption stops the command (the group goes with `child`); the next
            // serve runs it again.
            wait::sleep(wait::POLL, "reload command", since, Some(limit), watch)?;
        }
    }

    /// Waits until `/v1/models` answers (the started server is up, the reload done), and
    /// takes the model id from it unless the config names one. `since`: when the start or
    /// reload began; `ready_timeout_s` counts from there.
    fn wait_ready(&mut self, since: Instant, watch: &mut Watch) -> Result<()> {
        let limit = Duration::from_secs_f64(self.config.ready_timeout_s);
        let what = match self.child {
            Some(_) => "server starting",
            None => "server answering",
        };
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
            let client = self.client.clone();
            let models = wait::wait_for(what, since, Some(limit), watch, move || client.models())?;
            match models {
                Ok(models) if !models.is_empty() => {
                    self.model = self.config.model.clone().or(models.into_iter().next());
                    return Ok(());
                }
                _ if since.elapsed() >= limit => {
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
                _ => wait::sleep(Duration::from_millis(250), what, since, Some(limit), watch)?,
            }
        }
    }
}

/// Sends completions to a generation server from any thread.
#[derive(Clone)]
pub struct Requester {
    client: OpenAiClient,
    model: String,
}

impl Requester {
    /// One completion; the model id is filled in.
    pub fn complete(&self, mut request: CompletionRequest) -> Result<Completion> {
        request.model = self.model.clone();
        self.client.complete(&request)
    }

    pub fn url(&self) -> &str {
        self.client.base()
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
