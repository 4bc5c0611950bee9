//! The `server` ranker: a reward model (a sequence classifier with one label) served by a
//! server's pooling endpoints, vLLM's `--runner pooling` (`POST /classify` or `POST
//! /pooling`). The server is started with the run (`rank.server.command`, its output in
//! `ranker-server.log`) or already running (`rank.server.url`), and guarded as the
//! generation server is: in a process group that dies with selm-tui, started again if it
//! died, its start and requests cut short by a command. A request's candidates go in one
//! request (`text` input) or one each (`chat` input), several requests in flight at once.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use super::{RankRequest, Ranker};
use crate::config::{PoolingEndpoint, RankInput, RankServer, RankerKind};
use crate::external::concurrent::send_all;
use crate::external::server::{ModelServer, Requester, Role};
use crate::external::wait::{self, Watch};

pub struct ServerRanker {
    server: ModelServer,
    config: RankServer,
    /// The reward model's directory a managed server is started on (`{model}`); for a
    /// running server, whatever it serves.
    model: PathBuf,
}

impl ServerRanker {
    /// The ranker `config` describes, the reward model `model` (for a managed server), the
    /// server's output in `log`; nothing starts until the first scores are asked for.
    pub fn new(config: &RankServer, model: Option<&Path>, log: PathBuf) -> Result<Self> {
        let mut config = config.clone();
        if config.input == RankInput::Auto {
            let chat = model.is_some_and(has_chat_template);
            config.input = if chat {
                RankInput::Chat
            } else {
                RankInput::Text
            };
        }
        Ok(Self {
            server: ModelServer::new(Role::RANK, &config.as_server(), log)?,
            config,
            // A running server serves what it serves; the path only keys the "serving" state.
            model: model.map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        })
    }

    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// The requests of `requests`: per prompt one request with every candidate (`text`),
    /// or one per candidate (`chat`); each with the prompt and candidate it covers.
    fn bodies(&self, requests: &[RankRequest<'_>]) -> Vec<(usize, Value)> {
        let mut bodies = vec![];
        let activation = self.config.activation;
        let task = (self.config.endpoint == PoolingEndpoint::Pooling).then_some("classify");
        for (i, r) in requests.iter().enumerate() {
            let mut push = |mut body: Value| {
                body["use_activation"] = activation.into();
                if let Some(task) = task {
                    body["task"] = task.into();
                }
                bodies.push((i, body));
            };
            match self.config.input {
                RankInput::Text | RankInput::Auto => {
                    let input: Vec<String> = r
                        .candidates
                        .iter()
                        .map(|c| format!("{}{c}", r.prompt))
                        .collect();
                    push(json!({ "input": input }));
                }
                RankInput::Chat => {
                    for c in r.candidates {
                        push(json!({ "messages": [
                            { "role": "user", "content": r.prompt },
                            { "role": "assistant", "content": c },
                        ]}));
                    }
                }
            }
        }
        bodies
    }
}

impl Ranker for ServerRanker {
    fn name(&self) -> &str {
        RankerKind::Server.name()
    }

    fn reset(&mut self) {
        self.server.stop();
    }

    fn score(&mut self, request: &RankRequest<'_>) -> Result<Vec<f64>> {
        let mut all = self.score_all(std::slice::from_ref(request), &mut wait::unwatched)?;
        Ok(all.remove(0))
    }

    fn score_all(
        &mut self,
        requests: &[RankRequest<'_>],
        watch: &mut Watch,
    ) -> Result<Vec<Vec<f64>>> {
        // A managed server is started once (and again if it died); a running one is taken
        // to serve the reward model already.
        self.server.serve(&self.model, true, watch)?;
        let bodies = self.bodies(requests);
        let requester: Requester = self.server.requester();
        let path = match self.config.endpoint {
            PoolingEndpoint::Classify => "/classify",
            PoolingEndpoint::Pooling => "/pooling",
        };
        let url = format!("{}{path}", self.url());
        let owners: Vec<usize> = bodies.iter().map(|(i, _)| *i).collect();
        let answers = send_all(
            "reward model answering",
            bodies,
            self.config.concurrency,
            watch,
            move |(_, body)| {
                let n = body["input"].as_array().map_or(1, Vec::len);
                scores_of(&requester.post(path, body.clone())?, n)
            },
            |i| format!("scoring on {url} (request {} of {})", i + 1, owners.len()),
        )?;
        let mut scores: Vec<Vec<f64>> = vec![vec![]; requests.len()];
        for (i, answer) in owners.iter().zip(answers) {
            scores[*i].extend(answer);
        }
        Ok(scores)
    }
}

/// Whether the HF directory `dir` has a chat template (in `tokenizer_config.json` or
/// `chat_template.jinja`), which the model then expects its conversations rendered with.
fn has_chat_template(dir: &Path) -> bool {
    let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok();
    let in_config = config
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|v| !v["chat_template"].is_null());
    in_config || dir.join("chat_template.jinja").is_file()
}

/// The `n` scores of a `/classify` or `/pooling` answer, by its items' `index`: each item
/// one value (`probs` or `data`), the model's single label.
fn scores_of(answer: &Value, n: usize) -> Result<Vec<f64>> {
    let items = answer["data"]
        .as_array()
        .with_context(|| format!("no `data` list in the answer: {}", clip(answer)))?;
    ensure!(
        items.len() == n,
        "{} scores for {n} inputs in the answer",
        items.len()
    );
    let mut scores = vec![f64::NAN; n];
    for (k, item) in items.iter().enumerate() {
        let index = item["index"].as_u64().map_or(k, |i| i as usize);
        let values = flatten(
            item.get("probs")
                .or(item.get("data"))
                .unwrap_or(&Value::Null),
        );
        let [value] = values[..] else {
            bail!(
                "item {index} of the answer has {} values where a reward model has one label: {}",
                values.len(),
                clip(item)
            );
        };
        ensure!(
            index < n && scores[index].is_nan(),
            "item index {index} repeated or out of range for {n} inputs: {}",
            clip(answer)
        );
        ensure!(
            value.is_finite(),
            "item {index}: score {value} is not finite"
        );
        scores[index] = value;
    }
    Ok(scores)
}

/// The numbers in a value, nested lists flattened.
fn flatten(v: &Value) -> Vec<f64> {
    match v {
        Value::Number(x) => x.as_f64().into_iter().collect(),
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        _ => vec![],
    }
}

fn clip(v: &Value) -> String {
    crate::text::clip(&v.to_string(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies_for(model: &Path, extra: &str) -> Vec<(usize, Value)> {
        let config: RankServer =
            toml::from_str(&format!("url = \"http://127.0.0.1:9\"\n{extra}")).unwrap();
        let ranker = ServerRanker::new(&config, Some(model), model.join("log")).unwrap();
        let candidates = vec!["4".to_string(), "5".to_string()];
        let request = RankRequest {
            prompt: "2+2=",
            task: None,
            reference: None,
            candidates: &candidates,
        };
        ranker.bodies(&[request.clone(), request])
    }

    #[test]
    fn candidates_go_as_text_or_as_conversations_as_the_model_expects() {
        let dir = tempfile::tempdir().unwrap();
        // No chat template: one request per prompt, the prompt text then each response.
        let bodies = bodies_for(dir.path(), "");
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[1].0, 1);
        assert_eq!(bodies[0].1["input"], json!(["2+2=4", "2+2=5"]));
        assert_eq!(bodies[0].1["use_activation"], false);
        // A chat template: one conversation per candidate, in order.
        let template = json!({"chat_template": "{{ messages }}"}).to_string();
        std::fs::write(dir.path().join("tokenizer_config.json"), template).unwrap();
        let bodies = bodies_for(dir.path(), "endpoint = \"pooling\"\nactivation = true");
        let owners: Vec<usize> = bodies.iter().map(|(i, _)| *i).collect();
        assert_eq!(owners, [0, 0, 1, 1]);
        let b = &bodies[1].1;
        assert_eq!(
            b["messages"][1],
            json!({"role": "assistant", "content": "5"})
        );
        assert_eq!(
            (b["task"].as_str(), b["use_activation"].as_bool()),
            (Some("classify"), Some(true))
        );
        // Said outright, `text` wins over the template.
        assert_eq!(bodies_for(dir.path(), "input = \"text\"").len(), 2);
    }

    #[test]
    fn scores_are_read_by_index_from_either_endpoint() {
        let classify = json!({"data": [
            {"index": 1, "label": "LABEL_0", "probs": [0.25], "num_classes": 1},
            {"index": 0, "label": "LABEL_0", "probs": [-1.5], "num_classes": 1},
        ]});
        assert_eq!(scores_of(&classify, 2).unwrap(), [-1.5, 0.25]);
        let pooling = json!({"data": [{"index": 0, "data": [[2.0]]}]});
        assert_eq!(scores_of(&pooling, 1).unwrap(), [2.0]);
        let two_labels = json!({"data": [{"index": 0, "probs": [0.1, 0.9]}]});
        let e = scores_of(&two_labels, 1).unwrap_err().to_string();
        assert!(e.contains("2 values"), "{e}");
        assert!(scores_of(&classify, 3).is_err());
        let repeated =
            json!({"data": [{"index": 0, "probs": [1.0]}, {"index": 0, "probs": [2.0]}]});
        assert!(
            scores_of(&repeated, 2)
                .unwrap_err()
                .to_string()
                .contains("repeated")
        );
        assert!(scores_of(&json!({"error": "x"}), 1).is_err());
    }
}
