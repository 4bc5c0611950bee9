//! A model server: the generation server behind `generate.engine = "server"`, or the reward
//! model's behind `rank.ranker = "server"`. One that selm-tui runs (`command`: restarted for
//! each new pi_ref, or with `reload` started once and told to load each) or one already
//! running (`url`, told to reload). Either way [`ModelServer::serve`] makes it serve a
//! checkpoint before a request is asked of it, so the served weights always follow pi_ref. Its waits (a start, a reload)
//! can be cut short by a command ([`super::wait`]); the next `serve` picks them up.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::http::{Completion, CompletionRequest, OpenAiClient};
use super::process::{GroupChild, append, expand};
use super::wait::{self, Background, Watch};
use crate::config::{Reload, ServerSection};

/// A start or reload under way: for which checkpoint, since when, and a reload request
/// still in flight (waited for again, not sent again).
struct Pending {
    checkpoint: PathBuf,
    since: Instant,
    reload: Option<Background<Result<String>>>,
}

/// Which server of a run: its config key and how messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub key: &'static str,
    pub name: &'static str,
}

impl Role {
    pub const GENERATE: Role = Role {
        key: "generate.server",
        name: "the generation server",
    };
    pub const RANK: Role = Role {
        key: "rank.server",
        name: "the reward model's server",
    };
}

pub struct ModelServer {
    role: Role,
    config: ServerSection,
    client: OpenAiClient,
    /// The running child, for `command`.
    child: Option<GroupChild>,
    /// `server.log` in the run directory.
    log: PathBuf,
    /// The checkpoint the server serves now, once known.
    serving: Option<PathBuf>,
    /// A start or reload under way that a pause or quit interrupted.
    pending: Option<Pending>,
    /// Put to sleep (`sleep`) while an update runs.
    asleep: bool,
    /// The model id requests carry.
    model: Option<String>,
    /// With `reload = "lora"`: the base model the server is started on, and the name of the
    /// adapter loaded on it (None: requests go to the base).
    base: Option<PathBuf>,
    adapter: Option<String>,
}

impl ModelServer {
    /// The server `config` describes; nothing starts until [`Self::serve`]. Its output, if
    /// started, goes to `log`.
    pub fn new(role: Role, config: &ServerSection, log: PathBuf) -> Result<Self> {
        let base = match &config.url {
            Some(url) => url.clone(),
            None => format!("http://127.0.0.1:{}", port(config)?),
        };
        let timeout = Duration::from_secs_f64(config.timeout_s);
        Ok(Self {
            role,
            client: OpenAiClient::new(&base, timeout, config.retries),
            config: config.clone(),
            child: None,
            log,
            serving: None,
            pending: None,
            asleep: false,
            model: None,
            base: None,
            adapter: None,
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
        if self.asleep {
            self.post("/wake_up", "waking the server", watch)?;
            self.asleep = false;
        }
        if self.serving.as_deref() == Some(checkpoint) {
            return Ok(());
        }
        let resumed = self
            .pending
            .as_ref()
            .is_some_and(|p| p.checkpoint == *checkpoint);
        if !resumed {
            self.begin(checkpoint, starting)?;
        }
        let since = self.pending.as_ref().expect("begun").since;
        let finished = self
            .finish_reload(watch)
            .and_then(|()| self.wait_ready(since, watch))
            .and_then(|()| self.load_adapter(checkpoint, starting, watch));
        match finished {
            // Interrupted: the same `serve` picks the start or reload up where it was.
            Err(e) if wait::is_interrupted(&e) => return Err(e),
            // Failed: the next `serve` starts or reloads afresh.
            Err(e) => {
                self.pending = None;
                return Err(e);
            }
            Ok(()) => {}
        }
        self.pending = None;
        self.serving = Some(checkpoint.to_path_buf());
        Ok(())
    }

    /// Starts (or restarts) the managed server on `checkpoint`, or sends a running one the
    /// reload request; the wait for it is pending.
    fn begin(&mut self, checkpoint: &Path, starting: bool) -> Result<()> {
        let since = Instant::now();
        let reload = match (&self.config.command, self.config.reload) {
            // The base, started once; its adapter is loaded when it answers.
            (Some(template), Some(Reload::Lora)) => {
                if self.child.is_none() {
                    let base = self.lora_base()?;
                    self.restart(template.clone(), &base)?;
                }
                None
            }
            (None, Some(Reload::Lora)) => None,
            // A managed server that can reload stays up: started once, then told to load.
            (Some(_), Some(how)) if self.child.is_some() => {
                Some(self.send_reload(how, checkpoint)?)
            }
            (Some(template), _) => {
                self.restart(template.clone(), checkpoint)?;
                None
            }
            // With a way to reload, even the starting model is loaded: a long-lived server
            // may still serve another run's weights.
            (None, Some(how)) => Some(self.send_reload(how, checkpoint)?),
            (None, None) if starting => None,
            (None, None) => bail!(
                "{} serves the starting model and has no `{}.reload` to take {}",
                self.url(),
                self.role.key,
                checkpoint.display()
            ),
        };
        self.pending = Some(Pending {
            checkpoint: checkpoint.to_path_buf(),
            since,
            reload,
        });
        Ok(())
    }

    /// What sends completions to the server (a cloneable client and the model id), for
    /// requests made from other threads.
    pub fn requester(&self) -> Requester {
        Requester {
            client: self.client.clone(),
            model: (self.adapter.clone().or(self.model.clone())).unwrap_or_default(),
        }
    }

    /// The generate stage is over and an update comes: a managed server that cannot reload
    /// is stopped (its memory, an accelerator's, goes to the update; the next pi_ref needs a
    /// restart anyway); one that stays up is put to sleep if `sleep` asks.
    pub fn release(&mut self, watch: &mut Watch) -> Result<()> {
        if self.config.reload.is_none() {
            self.stop();
        } else if self.config.sleep && !self.asleep && self.serving.is_some() {
            self.post("/sleep?level=1", "putting the server to sleep", watch)?;
            self.asleep = true;
        }
        Ok(())
    }

    /// One POST to the server without a body of ours, waited for under `ready_timeout_s`.
    fn post(&self, path: &'static str, what: &str, watch: &mut Watch) -> Result<()> {
        let limit = Duration::from_secs_f64(self.config.ready_timeout_s);
        let client = self.client.clone();
        wait::wait_for(what, Instant::now(), Some(limit), watch, move || {
            client.post(path, &serde_json::json!({}))
        })?
        .with_context(|| format!("{what} ({}{path})", self.url()))?;
        Ok(())
    }

    /// Stops a server this run started (a running one is left as it is).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop(Duration::from_secs(10));
        }
        self.serving = None;
        self.pending = None;
        self.asleep = false;
        self.adapter = None;
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
                ("model", checkpoint.display().to_string()),
                ("port", port),
            ],
        );
        let header = format!("\n# selm-tui: starting `{command}`\n");
        append(&self.log, &header)?;
        self.child = Some(GroupChild::spawn_env(
            &command,
            &self.log,
            &self.extra_env(),
        )?);
        Ok(())
    }

    /// Tells a running server to load `checkpoint`, in the background: its reload endpoint,
    /// or `reload_command` as a child of its own (in a process group, its output in
    /// server.log, given `ready_timeout_s`).
    fn send_reload(&self, how: Reload, checkpoint: &Path) -> Result<Background<Result<String>>> {
        let path = checkpoint.display().to_string();
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
            Reload::Lora => unreachable!("adapters are loaded once the server answers"),
            Reload::Command => {
                let template = self.config.reload_command.as_deref().unwrap_or_default();
                let command = expand(template, &[("checkpoint", path)]);
                append(
                    &self.log,
                    &format!("\n# selm-tui: reloading with `{command}`\n"),
                )?;
                let child = GroupChild::spawn(&command, &self.log)?;
                return Background::spawn(move || run_reload_command(child, limit));
            }
        };
        let client = self.client.clone();
        Background::spawn(move || client.post(endpoint, &body))
    }

    /// Waits for a reload in flight, if any.
    fn finish_reload(&mut self, watch: &mut Watch) -> Result<()> {
        let Some(Pending {
            since,
            reload: Some(reload),
            checkpoint,
        }) = &self.pending
        else {
            return Ok(());
        };
        let limit = Duration::from_secs_f64(self.config.ready_timeout_s);
        let answer = reload.wait("server reloading", *since, Some(limit), watch)?;
        let context = || format!("reloading {} with {}", self.url(), checkpoint.display());
        answer.with_context(context)?;
        if let Some(p) = self.pending.as_mut() {
            p.reload = None;
        }
        Ok(())
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
                    "{} exited with {status} before it answered on {} \
                     (its output is in {}):\n{tail}",
                    self.role.name,
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
                        "{} did not answer on {}/v1/models within {} s \
                         ({}.ready_timeout_s; its output is in {}){}",
                        self.role.name,
                        self.url(),
                        limit.as_secs_f64(),
                        self.role.key,
                        self.log.display(),
                        tail.map(|t| format!(":\n{t}")).unwrap_or_default()
                    );
                }
                _ => wait::sleep(Duration::from_millis(250), what, since, Some(limit), watch)?,
            }
        }
    }
}

/// Runs a reload command to its end, given `limit`; its output is in server.log.
fn run_reload_command(mut child: GroupChild, limit: Duration) -> Result<String> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.exited() {
            if !status.success() {
                bail!(
                    "`{}` exited with {status}:\n{}",
                    child.command(),
                    child.log_tail(20)
                );
            }
            return Ok(String::new());
        }
        if start.elapsed() >= limit {
            child.stop(Duration::from_secs(5));
            bail!(
                "`{}` did not finish within {} s (generate.server.ready_timeout_s)",
                child.command(),
                limit.as_secs_f64()
            );
        }
        std::thread::sleep(wait::POLL);
    }
}

/// Sends requests to a model server from any thread.
#[derive(Clone)]
pub struct Requester {
    client: OpenAiClient,
    model: String,
}

impl Requester {
    /// The completions of one request (its `n` choices); the model id is filled in.
    pub fn complete(&self, mut request: CompletionRequest) -> Result<Vec<Completion>> {
        request.model = self.model.clone();
        self.client.complete(&request)
    }

    /// POSTs `body` to `path` with the model id filled in; the answer, parsed.
    pub fn post(&self, path: &str, mut body: serde_json::Value) -> Result<serde_json::Value> {
        body["model"] = self.model.clone().into();
        let text = self.client.post(path, &body)?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}{path}: not JSON: {}",
                self.url(),
                crate::text::clip(&text, 200)
            )
        })
    }

    pub fn url(&self) -> &str {
        self.client.base()
    }
}

impl Drop for ModelServer {
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

mod lora;
#[cfg(test)]
mod tests;
