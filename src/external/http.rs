//! A client of the OpenAI-compatible HTTP API that vLLM, SGLang, llama.cpp's server and
//! `transformers serve` expose: `/v1/models` and `/v1/completions`. Connection errors (no
//! connection made, or one dropped before an answer) and 429 / 503 answers are retried with
//! backoff; a request that times out is not (the server got it and is slow: another try would
//! wait as long again); any other failure is an error naming the URL, the HTTP status and the
//! server's own message.

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::text::clip;

/// One server, by its base URL (`http://host:port`).
#[derive(Clone)]
pub struct OpenAiClient {
    base: String,
    agent: ureq::Agent,
    retries: usize,
}

/// A `/v1/completions` request: one prompt, one completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: String,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    /// vLLM's, SGLang's and llama.cpp's extension; absent means no top-k.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    pub seed: u64,
    /// Choices of this prompt in one request (vLLM seeds choice k with `seed + k`); absent
    /// means one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Per-token log-probs of the sampled tokens (the top-1 alternative is all we ask for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<usize>,
    /// `transformers serve`'s extension: its sampling settings as a JSON string (it ignores
    /// `temperature` alone and starts from the checkpoint's generation config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<String>,
}

/// What a completion came back as.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    /// The server stopped at an end of sequence (`stop`), not at `max_tokens` (`length`).
    pub finished: bool,
    /// The sampled tokens' log-probs, when asked for and given.
    pub logprobs: Option<Vec<f32>>,
}

#[derive(Deserialize)]
struct CompletionResponse {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: usize,
    text: String,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<ChoiceLogprobs>,
}

#[derive(Deserialize)]
struct ChoiceLogprobs {
    #[serde(default)]
    token_logprobs: Vec<Option<f32>>,
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// Readiness polls of `/v1/models` give up after this: a server that accepts and never
/// answers must not hold a poll for a whole request timeout.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the first retry waits; each next one waits twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(16);

impl OpenAiClient {
    /// A client of `base` whose requests give up after `timeout` each, retried `retries`
    /// times on connection errors and 429 / 503.
    pub fn new(base: &str, timeout: Duration, retries: usize) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_string(),
            agent,
            retries,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The model ids `/v1/models` lists (one request of at most [`POLL_TIMEOUT`], no retry:
    /// readiness polls this).
    pub fn models(&self) -> Result<Vec<String>> {
        let url = format!("{}/v1/models", self.base);
        let request = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(POLL_TIMEOUT))
            .build();
        let (status, body) = answer(&url, request.call())?;
        if status != 200 {
            bail!("{url}: HTTP {status}: {}", server_message(&body));
        }
        let list: ModelList =
            serde_json::from_str(&body).with_context(|| format!("{url}: not a model list"))?;
        Ok(list.data.into_iter().map(|m| m.id).collect())
    }

    /// The completions of `request`: its `n` choices (one without `n`), in their order.
    pub fn complete(&self, request: &CompletionRequest) -> Result<Vec<Completion>> {
        let url = format!("{}/v1/completions", self.base);
        let body = serde_json::to_value(request)?;
        let text = self.post_retrying(&url, &body)?;
        let response: CompletionResponse = serde_json::from_str(&text)
            .with_context(|| format!("{url}: not a completion: {}", clip(&text, MESSAGE)))?;
        let mut choices = response.choices;
        let want = request.n.unwrap_or(1);
        if choices.len() != want {
            bail!(
                "{url}: asked for {want} choice(s), got {} (a server that ignores `n` needs \
                 generate.server.n = false)",
                choices.len()
            );
        }
        choices.sort_by_key(|c| c.index);
        Ok(choices
            .into_iter()
            .map(|choice| {
                let logprobs = choice.logprobs.map(|l| {
                    // A null entry (no log-prob for that token) makes the list unusable.
                    l.token_logprobs.into_iter().collect::<Option<Vec<f32>>>()
                });
                Completion {
                    text: choice.text,
                    finished: choice.finish_reason.as_deref() == Some("stop"),
                    logprobs: logprobs.flatten(),
                }
            })
            .collect())
    }

    /// POSTs `body` (JSON) to `path` under the base URL, retrying as for completions; the
    /// answer's body. For reload endpoints.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Result<String> {
        self.post_retrying(&format!("{}{path}", self.base), body)
    }

    fn post_retrying(&self, url: &str, body: &serde_json::Value) -> Result<String> {
        let mut wait = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let outcome = self.once(url, body);
            let retryable = match &outcome {
                Ok((status, _)) => matches!(status, 429 | 503),
                Err(e) => e
                    .downcast_ref::<ureq::Error>()
                    .is_some_and(connection_error),
            };
            if !retryable || attempt >= self.retries {
                let (status, text) = outcome
                    .with_context(|| format!("{url}: no answer after {} attempts", attempt + 1))?;
                if status != 200 {
                    bail!("{url}: HTTP {status}: {}", server_message(&text));
                }
                return Ok(text);
            }
            attempt += 1;
            std::thread::sleep(wait);
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }

    /// One POST: the status and the body, or the transport's error.
    fn once(&self, url: &str, body: &serde_json::Value) -> Result<(u16, String)> {
        answer(url, self.agent.post(url).send_json(body))
    }
}

/// A response's status and body, or the transport's error (a [`ureq::Error`] in context).
fn answer(
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String)> {
    let mut response = response.map_err(|e| anyhow::Error::new(e).context(url.to_string()))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| anyhow!("{url}: reading the answer: {e}"))?;
    Ok((status, text))
}

/// Whether a request failed for want of a connection (none made, or dropped before the
/// answer), which another try may not meet; a timeout, a protocol or TLS error is not.
fn connection_error(e: &ureq::Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
        ),
        _ => false,
    }
}

/// The message in an error answer: OpenAI's `{"error": {"message": ...}}`, FastAPI's
/// `{"detail": ...}`, else the body itself (cut short).
fn server_message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let found = [
        &v["error"]["message"],
        &v["error"],
        &v["detail"],
        &v["message"],
    ]
    .into_iter()
    .find_map(|m| match m {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other if !other.is_object() => Some(other.to_string()),
        _ => None,
    });
    found.unwrap_or_else(|| clip(body, MESSAGE))
}

/// How much of a server's answer an error quotes.
const MESSAGE: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_found_in_the_usual_places() {
        assert_eq!(
            server_message(r#"{"error": {"message": "model not found", "type": "x"}}"#),
            "model not found"
        );
        assert_eq!(server_message(r#"{"detail": "Not Found"}"#), "Not Found");
        assert_eq!(server_message("Bad Gateway"), "Bad Gateway");
        assert_eq!(server_message(&"x".repeat(600)).len(), 503);
    }

    /// A port that accepts and never answers: the request times out once, with no retry.
    #[test]
    fn a_timed_out_request_is_not_retried() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let client = OpenAiClient::new(&base, Duration::from_millis(300), 3);
        let start = std::time::Instant::now();
        let err = client
            .post("/v1/completions", &serde_json::json!({}))
            .unwrap_err();
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(700),
            "{took:?}: retried ({err:#})"
        );
        assert!(
            err.downcast_ref::<ureq::Error>()
                .is_some_and(|e| !connection_error(e)),
            "{err:#}"
        );
        drop(listener);
    }

    /// A refused connection is retried, with backoff, `retries` times.
    #[test]
    fn a_refused_connection_is_retried() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = OpenAiClient::new(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(5),
            1,
        );
        let start = std::time::Instant::now();
        let err = client.post("/x", &serde_json::json!({})).unwrap_err();
        // One backoff of FIRST_BACKOFF between the two attempts.
        assert!(start.elapsed() >= FIRST_BACKOFF, "not retried: {err:#}");
        assert!(format!("{err:#}").contains("after 2 attempts"), "{err:#}");
    }
}
