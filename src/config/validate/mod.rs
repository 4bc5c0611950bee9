//! [`Config::validate`]: every value checked, each error naming its key.

use anyhow::{Context, Result, bail};

use super::{Config, GenerateEngine, Rank, RankerKind, Reload, ServerSection, TrainEngine};
use crate::config::server::{TRAIN_PLACEHOLDERS, placeholders};

/// `rank.ranker = "server"` and `[rank.server]`.
fn validate_rank_server(rank: &Rank, generate: Option<&ServerSection>) -> Result<()> {
    let server = rank.server.as_ref().context(
        "key `rank.server`: the `server` ranker needs a [rank.server] section with `command` \
         (e.g. \"vllm serve {model} --port {port} --runner pooling\") or `url`",
    )?;
    match (&server.command, &server.url) {
        (Some(_), Some(_)) => bail!(
            "key `rank.server.url`: set either `command` (a server selm-tui runs) or `url` \
             (one already running), not both"
        ),
        (None, None) => bail!("key `rank.server.command`: set `command` or `url`"),
        (Some(command), None) => {
            if !placeholders(command).any(|p| p == "model") {
                bail!(
                    "key `rank.server.command`: must name `{{model}}`, the reward model's \
                     directory (`rank.model`)"
                );
            }
            if rank.model.as_deref().is_none_or(str::is_empty) {
                bail!("key `rank.model`: the reward model's directory, which `{{model}}` names");
            }
        }
        (None, Some(url)) if !url.starts_with("http://") && !url.starts_with("https://") => {
            bail!("key `rank.server.url`: must be http://host:port, got `{url}`")
        }
        (None, Some(_)) => {}
    }
    positive("rank.server.concurrency", server.concurrency)?;
    let generation_port = generate.and_then(|g| g.port);
    if server.port.is_some() && server.port == generation_port {
        bail!(
            "key `rank.server.port`: {} is `generate.server.port` too; the two servers need \
             ports of their own",
            server.port.unwrap_or_default()
        );
    }
    for (key, v) in [
        ("rank.server.timeout_s", server.timeout_s),
        ("rank.server.ready_timeout_s", server.ready_timeout_s),
    ] {
        if !(v > 0.0 && v.is_finite()) {
            bail!("key `{key}`: must be positive, got {v}");
        }
    }
    Ok(())
}

impl Config {
    /// Checks every value; the error names the key and what is wrong.
    pub fn validate(&self) -> Result<()> {
        self.backend()?;
        self.task_kinds()?;
        match (self.prompts.tasks.is_empty(), &self.prompts.file) {
            (true, None) => {
                bail!("key `prompts.tasks`: list at least one task (or set `prompts.file`)")
            }
            (false, Some(_)) => {
                bail!("key `prompts.file`: set either `prompts.tasks` or `prompts.file`, not both")
            }
            _ => {}
        }
        match (self.rank.ranker, self.rank.fallback) {
            (RankerKind::Human, None) => bail!(
                "key `rank.fallback`: the `human` ranker needs a fallback ranker (e.g. \
                 \"oracle\"), which scores the held-out samples and takes over on hand-off"
            ),
            (_, Some(RankerKind::Human)) => {
                bail!("key `rank.fallback`: must be an automatic ranker, not `human`")
            }
            _ => {}
        }
        positive("run.iterations", self.run.iterations)?;
        positive("prompts.per_iteration", self.prompts.per_iteration)?;
        positive("prompts.eval", self.prompts.eval)?;
        if self.generate.samples == 0 && self.prompts.file.is_none() {
            bail!(
                "key `generate.samples`: 0 leaves y_ref as each prompt's only candidate; the \
                 built-in tasks carry no dataset responses (0 needs a `prompts.file` whose \
                 rows have `chosen` / `rejected`)"
            );
        }
        positive("generate.max_new_tokens", self.generate.max_new_tokens)?;
        positive("generate.batch_size", self.generate.batch_size)?;
        positive("train.batch_size", self.train.batch_size)?;
        if let Some(n) = self.train.micro_batch_size {
            positive("train.micro_batch_size", n)?;
        }
        positive("eval.samples", self.eval.samples)?;
        // The loop draws `per_iteration x iterations + eval` prompts up front (and allocates
        // for them): bound the product before anything multiplies it.
        let prompts = self
            .prompts
            .per_iteration
            .checked_mul(self.run.iterations)
            .and_then(|n| n.checked_add(self.prompts.eval))
            .filter(|&n| n <= MAX_COUNT);
        if prompts.is_none() {
            bail!(
                "key `prompts.per_iteration`: prompts.per_iteration x run.iterations + \
                 prompts.eval must be at most {MAX_COUNT}"
            );
        }
        for (key, v) in [
            ("generate.samples", self.generate.samples),
            ("generate.max_new_tokens", self.generate.max_new_tokens),
            ("generate.batch_size", self.generate.batch_size),
            ("train.batch_size", self.train.batch_size),
            ("eval.samples", self.eval.samples),
        ] {
            if v > MAX_COUNT {
                bail!("key `{key}`: must be at most {MAX_COUNT}, got {v}");
            }
        }
        range(
            "generate.temperature",
            self.generate.temperature as f64,
            0.0,
            100.0,
        )?;
        range("eval.temperature", self.eval.temperature as f64, 0.0, 100.0)?;
        if !(self.generate.top_p > 0.0 && self.generate.top_p <= 1.0) {
            bail!(
                "key `generate.top_p`: must be in (0, 1], got {}",
                self.generate.top_p
            );
        }
        self.live_params()
            .validate()
            .map_err(|e| anyhow::anyhow!("key `train.{}`: {e}", e.name))?;
        range("train.warmup_ratio", self.train.warmup_ratio, 0.0, 1.0)?;
        range("train.weight_decay", self.train.weight_decay, 0.0, 1.0)?;
        if let Some(n) = self.train.max_grad_norm
            && !(n > 0.0 && n.is_finite())
        {
            bail!("key `train.max_grad_norm`: must be positive, got {n}");
        }
        range(
            "rank.high_reward_threshold",
            self.rank.high_reward_threshold,
            f64::MIN,
            f64::MAX,
        )?;
        // A human ranker's fallback is checked as the ranker it is, under its own key.
        let key = match self.rank.is_human() {
            true => "rank.fallback",
            false => "rank.ranker",
        };
        let rank = &self.rank;
        match rank.automatic_kind() {
            Some(RankerKind::Oracle) if self.prompts.tasks.is_empty() => bail!(
                "key `{key}`: `oracle` scores only the built-in tasks; with `prompts.file` \
                 use `command`, `reward_model`, `embedding` or `server`"
            ),
            Some(RankerKind::Command) if rank.command.is_empty() => bail!(
                "key `rank.command`: `command` ranker needs the program to run, e.g. \
                 [\"python3\", \"scripts/test_ranker.py\"]"
            ),
            Some(RankerKind::RewardModel) if rank.model.as_deref().is_none_or(str::is_empty) => {
                bail!(
                    "key `rank.model`: the `reward_model` ranker needs the reward model's HF \
                     directory (a LlamaForSequenceClassification or \
                     Qwen2ForSequenceClassification)"
                )
            }
            Some(RankerKind::Server) => validate_rank_server(rank, self.generate.server.as_ref())?,
            _ => {}
        }
        let [lo, hi] = self.rank.score_range;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            bail!("key `rank.score_range`: must be [low, high] with low < high, got [{lo}, {hi}]");
        }
        if !(self.rank.timeout_s > 0.0 && self.rank.timeout_s.is_finite()) {
            bail!(
                "key `rank.timeout_s`: must be positive, got {}",
                self.rank.timeout_s
            );
        }
        self.validate_generation_server()?;
        self.validate_train_engine()?;
        if self.run.name.is_empty() || self.run.name.contains(['/', '\\']) {
            bail!("key `run.name`: must be a non-empty name without slashes");
        }
        Ok(())
    }
}

impl Config {
    /// `generate.engine` and `[generate.server]`.
    fn validate_generation_server(&self) -> Result<()> {
        let server = match (self.generate.engine, &self.generate.server) {
            (GenerateEngine::InProcess, _) => return Ok(()),
            (GenerateEngine::Server, None) => bail!(
                "key `generate.server`: `generate.engine = \"server\"` needs a \
                 [generate.server] section with `command` or `url`"
            ),
            (GenerateEngine::Server, Some(server)) => server,
        };
        match (&server.command, &server.url) {
            (Some(_), Some(_)) => bail!(
                "key `generate.server.url`: set either `command` (a server selm-tui runs) or \
                 `url` (a running one), not both"
            ),
            (None, None) => bail!(
                "key `generate.server.command`: set `command` (a server selm-tui runs, e.g. \
                 \"vllm serve {{checkpoint}} --port {{port}}\") or `url` (a running one)"
            ),
            (Some(command), None) if !command.contains("{checkpoint}") => bail!(
                "key `generate.server.command`: must name `{{checkpoint}}`, the directory of \
                 pi_ref the server serves"
            ),
            (None, Some(url)) if !url.starts_with("http://") => {
                bail!("key `generate.server.url`: must be http://host:port, got `{url}`")
            }
            (None, Some(_)) if self.run.iterations > 1 && server.reload.is_none() => bail!(
                "key `generate.server.reload`: a running server must take pi_ref after each \
                 sync (`sglang`, `vllm` or `command`); without it iteration 2 would sample \
                 from stale weights"
            ),
            _ => {}
        }
        if server.n && server.api == crate::config::ServerApi::Transformers {
            bail!(
                "key `generate.server.n`: `transformers serve` ignores `n` (one choice per \
                 request); set `n = false` for it"
            );
        }
        if server.sleep && server.reload.is_none() {
            bail!(
                "key `generate.server.sleep`: a server put to sleep during the update must \
                 stay up, which needs `reload` (a managed server without it is stopped instead)"
            );
        }
        self.validate_lora_serving(server)?;
        if server.reload == Some(Reload::Command)
            && !server
                .reload_command
                .as_deref()
                .is_some_and(|c| c.contains("{checkpoint}"))
        {
            bail!(
                "key `generate.server.reload_command`: `reload = \"command\"` needs a shell \
                 command naming `{{checkpoint}}`"
            );
        }
        positive("generate.server.concurrency", server.concurrency)?;
        for (key, v) in [
            ("generate.server.timeout_s", server.timeout_s),
            ("generate.server.ready_timeout_s", server.ready_timeout_s),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                bail!("key `{key}`: must be positive, got {v}");
            }
        }
        if server.raw_logprobs && !server.logprobs {
            bail!("key `generate.server.raw_logprobs`: needs `logprobs = true`");
        }
        Ok(())
    }
}

impl Config {
    /// A LoRA run's generation server: `reload = "lora"` needs adapters to load, and
    /// adapter-only checkpoints leave a server nothing else to load.
    fn validate_lora_serving(&self, server: &crate::config::ServerSection) -> Result<()> {
        let lora = self.train.lora.as_ref();
        if server.reload == Some(Reload::Lora) && lora.is_none() {
            bail!(
                "key `generate.server.reload`: `lora` loads each iteration's adapter, which \
                 needs a [train.lora] section"
            );
        }
        if server.reload == Some(Reload::Lora) && server.api != crate::config::ServerApi::Openai {
            bail!(
                "key `generate.server.reload`: `lora` loads adapters through vLLM's \
                 /v1/load_lora_adapter, which `transformers serve` does not have"
            );
        }
        let adapter_only =
            lora.is_some_and(|l| l.checkpoint == crate::config::LoraCheckpoint::Adapter);
        // (Even for one iteration: the held-out samples may come from the server.)
        if adapter_only && server.reload != Some(Reload::Lora) {
            bail!(
                "key `train.lora.checkpoint`: adapter-only checkpoints hold no model for the \
                 generation server to load; set `generate.server.reload = \"lora\"` (vLLM \
                 with --enable-lora) or `checkpoint = \"merged\"`"
            );
        }
        Ok(())
    }

    /// `train.engine` and `train.command`.
    fn validate_train_engine(&self) -> Result<()> {
        if let Some(lora) = &self.train.lora {
            let shape = lora.shape();
            positive("train.lora.rank", shape.rank)?;
            range("train.lora.alpha", shape.alpha, f64::MIN_POSITIVE, f64::MAX)?;
            shape.check().context("key `train.lora.target_modules`")?;
            if !(0.0..1.0).contains(&lora.dropout) {
                bail!(
                    "key `train.lora.dropout`: must be in [0, 1), got {}",
                    lora.dropout
                );
            }
        }
        let command = match (self.train.engine, self.train.command.as_deref()) {
            (TrainEngine::InProcess, None) => return Ok(()),
            (TrainEngine::InProcess, Some(_)) => {
                bail!("key `train.command`: only read with `train.engine = \"command\"`")
            }
            (TrainEngine::Command, None) => bail!(
                "key `train.command`: `train.engine = \"command\"` needs the trainer's command, \
                 e.g. \"python3 scripts/selm_trl.py --params {{params}}\""
            ),
            (TrainEngine::Command, Some(c)) => c,
        };
        if let Some(unknown) = placeholders(command).find(|p| !TRAIN_PLACEHOLDERS.contains(p)) {
            bail!(
                "key `train.command`: unknown placeholder `{{{unknown}}}` (known: {})",
                TRAIN_PLACEHOLDERS.join(", ")
            );
        }
        if !placeholders(command).any(|p| p == "out" || p == "params") {
            bail!(
                "key `train.command`: must name `{{out}}` or `{{params}}`, so the trainer knows \
                 where to write the updated policy"
            );
        }
        if self.generate.engine != GenerateEngine::Server {
            bail!(
                "key `generate.engine`: `train.engine = \"command\"` needs `generate.engine = \
                 \"server\"`: with an external trainer selm-tui loads no weights of its own"
            );
        }
        Ok(())
    }
}

/// The most prompts a run may draw, and the largest any other count may be.
const MAX_COUNT: usize = 1 << 24;

fn positive(key: &str, v: usize) -> Result<()> {
    if v == 0 {
        bail!("key `{key}`: must be at least 1");
    }
    Ok(())
}

fn range(key: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if !(v.is_finite() && v >= lo && v <= hi) {
        bail!("key `{key}`: must be a number in [{lo}, {hi}], got {v}");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
