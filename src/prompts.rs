//! Where the loop's prompts come from: the built-in tasks, or a JSON-lines file in the
//! formats preference datasets use (a `prompt` string; TRL's conversational `prompt`; a
//! `messages` conversation as in UltraFeedback, cut before its last assistant turn). A row may
//! carry responses too: TRL / UltraFeedback `chosen` and `rejected` (the paper's extra
//! candidates) and a `reference` answer (for judges that compare with one).

use anyhow::{Context, Result, bail, ensure};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

use crate::chat::Message;
use crate::tasks::{self, TaskKind, TaskPrompt};
use crate::tokenizer::TextTokenizer;

/// One prompt of the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// What rankers and the pair files see: the (last) user message.
    pub text: String,
    /// The conversation up to the reply, for the chat template.
    pub messages: Vec<Message>,
    /// The built-in task behind it (the oracle ranker needs it).
    pub task: Option<TaskPrompt>,
    /// The dataset's own responses (`chosen`, `rejected`, `reference`), if the row has them.
    pub responses: DatasetResponses,
    /// Its 1-based line in the prompts file, for errors about it.
    pub line: Option<usize>,
}

/// Responses a prompts-file row carries besides its prompt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetResponses {
    pub chosen: Option<String>,
    pub rejected: Option<String>,
    /// A reference answer (`reference`).
    pub reference: Option<String>,
}

impl Prompt {
    pub fn from_task(task: TaskPrompt) -> Self {
        Self {
            text: task.prompt.clone(),
            messages: vec![Message::user(task.prompt.clone())],
            task: Some(task),
            responses: DatasetResponses::default(),
            line: None,
        }
    }

    /// The answer a judge compares candidates with: the row's `reference`, else its
    /// `chosen`; a built-in task's exact answer.
    pub fn reference_answer(&self) -> Option<&str> {
        let r = &self.responses;
        (r.reference.as_deref().or(r.chosen.as_deref()))
            .or(self.task.as_ref().map(|t| t.answer.as_str()))
    }

    /// The prompt as the text [`Self::encode`] tokenizes: the chat template's rendering, or
    /// the plain text (for a server, which tokenizes it itself).
    pub fn render(&self, tokenizer: &TextTokenizer, chat: bool) -> Result<String> {
        if chat && tokenizer.chat.is_some() {
            tokenizer.chat_text(&self.messages)
        } else {
            Ok(self.text.clone())
        }
    }

    /// Token ids: through the chat template when `chat` and the model has one, else the
    /// plain text.
    pub fn encode(&self, tokenizer: &TextTokenizer, chat: bool) -> Result<Vec<u32>> {
        if chat && tokenizer.chat.is_some() {
            tokenizer.encode_chat(&self.messages)
        } else {
            tokenizer.encode_prompt(&self.text)
        }
    }
}

/// Held-out evaluation prompts and the training prompts (disjoint).
#[derive(Debug, Clone)]
pub struct PromptSets {
    pub train: Vec<Prompt>,
    pub eval: Vec<Prompt>,
}

impl PromptSets {
    pub fn from_tasks(
        kinds: &[TaskKind],
        seed: u64,
        n_train: usize,
        n_eval: usize,
    ) -> Result<Self> {
        let sets = tasks::PromptSets::new(kinds, seed, n_train, n_eval)?;
        Ok(Self {
            train: sets.train.into_iter().map(Prompt::from_task).collect(),
            eval: sets.eval.into_iter().map(Prompt::from_task).collect(),
        })
    }

    /// Reads `path`, drops duplicates, shuffles with `seed`, and takes the held-out prompts
    /// first. Too few prompts for `n_eval + n_train` is an error.
    pub fn from_file(path: &Path, seed: u64, n_train: usize, n_eval: usize) -> Result<Self> {
        let mut all = read_jsonl_prompts(path)?;
        let mut seen = HashSet::new();
        all.retain(|p| seen.insert(p.messages.clone()));
        all.shuffle(&mut StdRng::seed_from_u64(seed));
        let need = n_train + n_eval;
        ensure!(
            all.len() >= need,
            "{} has {} distinct prompts; {n_eval} held-out plus {n_train} training prompts \
             (prompts.eval + prompts.per_iteration x run.iterations) need {need}",
            path.display(),
            all.len()
        );
        let train = all.split_off(n_eval);
        Ok(Self {
            eval: all,
            train: train.into_iter().take(n_train).collect(),
        })
    }
}

/// All prompts of a JSON-lines file; a bad line is an error with its line number.
pub fn read_jsonl_prompts(path: &Path) -> Result<Vec<Prompt>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_jsonl_prompts(&text, &path.display().to_string())
}

/// All prompts of a JSON-lines text (blank lines skipped); a bad line is an error naming
/// `origin` and its 1-based line number, and a text without prompts is an error.
pub fn parse_jsonl_prompts(text: &str, origin: &str) -> Result<Vec<Prompt>> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut prompt =
            parse_prompt_line(line).with_context(|| format!("{origin} line {}", i + 1))?;
        prompt.line = Some(i + 1);
        out.push(prompt);
    }
    ensure!(!out.is_empty(), "{origin} holds no prompts");
    Ok(out)
}

/// One line of a prompts file: `{"prompt": "..."}`, TRL's conversational
/// `{"prompt": [messages]}`, or `{"messages": [...]}` (cut before a final assistant turn).
/// The line is untrusted: anything else is an error, never a panic.
pub fn parse_prompt_line(line: &str) -> Result<Prompt> {
    let v: Value = serde_json::from_str(line).context("not valid JSON")?;
    let obj = v.as_object().context("not a JSON object")?;
    let messages = match (obj.get("prompt"), obj.get("messages")) {
        (Some(Value::String(s)), _) => vec![Message::user(s.clone())],
        (Some(p @ Value::Array(_)), _) => messages(p, "prompt")?,
        (Some(_), _) => bail!("`prompt` must be a string or a list of messages"),
        (None, Some(m)) => {
            let mut m = messages(m, "messages")?;
            // A conversation with its reply: the prompt is everything before that reply.
            if m.last().is_some_and(|x| x.role == "assistant") {
                m.pop();
            }
            m
        }
        (None, None) => bail!("no `prompt` or `messages` field"),
    };
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .context("the conversation has no user message")?;
    ensure!(!last_user.content.trim().is_empty(), "the prompt is empty");
    let response = |field| response(obj.get(field), field);
    Ok(Prompt {
        text: last_user.content.clone(),
        messages,
        task: None,
        line: None,
        responses: DatasetResponses {
            chosen: response("chosen")?,
            rejected: response("rejected")?,
            reference: response("reference")?,
        },
    })
}

/// A response field: a string, or a conversation whose last assistant turn is the response
/// (TRL's conversational rows hold just that turn; UltraFeedback's the whole exchange). An
/// absent, null or empty field is no response.
fn response(v: Option<&Value>, field: &str) -> Result<Option<String>> {
    let text = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => return Ok(None),
        Some(v @ Value::Array(_)) => {
            messages(v, field)?
                .into_iter()
                .rev()
                .find(|m| m.role == "assistant")
                .with_context(|| format!("`{field}` has no assistant message"))?
                .content
        }
        Some(_) => bail!("`{field}` must be a string or a list of messages"),
    };
    Ok((!text.trim().is_empty()).then_some(text))
}

fn messages(v: &Value, field: &str) -> Result<Vec<Message>> {
    let items = v
        .as_array()
        .with_context(|| format!("`{field}` must be a list of messages"))?;
    ensure!(!items.is_empty(), "`{field}` is an empty list");
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m["role"]
                .as_str()
                .with_context(|| format!("`{field}`[{i}] has no string `role`"))?;
            let content = m["content"].as_str().with_context(|| {
                format!(
                    "`{field}`[{i}].content must be a string (multi-part content is not supported)"
                )
            })?;
            Ok(Message {
                role: role.to_string(),
                content: content.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_trl_and_ultrafeedback_lines() {
        let p = parse_prompt_line(r#"{"prompt": "Name a color."}"#).unwrap();
        assert_eq!(p.messages, [Message::user("Name a color.")]);
        let p = parse_prompt_line(
            r#"{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "chosen": []}"#,
        )
        .unwrap();
        assert_eq!(p.messages.len(), 2);
        assert_eq!(p.text, "Hi");
        let p = parse_prompt_line(
            r#"{"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}"#,
        )
        .unwrap();
        assert_eq!(p.messages, [Message::user("Q?")]);
    }

    #[test]
    fn reads_dataset_responses() {
        let p = parse_prompt_line(
            r#"{"prompt": "Q?", "chosen": "Good.", "rejected": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Bad."}]}"#,
        )
        .unwrap();
        assert_eq!(p.responses.chosen.as_deref(), Some("Good."));
        assert_eq!(p.responses.rejected.as_deref(), Some("Bad."));
        assert_eq!(p.reference_answer(), Some("Good."));
        let p = parse_prompt_line(r#"{"prompt": "Q?", "chosen": "A", "reference": "R"}"#).unwrap();
        assert_eq!(p.reference_answer(), Some("R"));
        let p = parse_prompt_line(r#"{"prompt": "Q?", "reference": "  "}"#).unwrap();
        assert_eq!(p.reference_answer(), None);
        let err = format!(
            "{:#}",
            parse_prompt_line(r#"{"prompt": "Q?", "chosen": 3}"#).unwrap_err()
        );
        assert!(err.contains("`chosen` must be"), "{err}");
        let err = format!(
            "{:#}",
            parse_prompt_line(
                r#"{"prompt": "Q?", "rejected": [{"role": "user", "content": "x"}]}"#
            )
            .unwrap_err()
        );
        assert!(err.contains("`rejected` has no assistant message"), "{err}");
    }

    #[test]
    fn bad_lines_name_their_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(&path, "{\"prompt\": \"ok\"}\n\n{\"prompt\": 3}\n").unwrap();
        let err = format!("{:#}", read_jsonl_prompts(&path).unwrap_err());
        assert!(
            err.contains("p.jsonl line 3") && err.contains("`prompt` must be"),
            "{err}"
        );
        std::fs::write(&path, "{\"prompt\": \"ok\"}\nnot json\n").unwrap();
        let err = format!("{:#}", read_jsonl_prompts(&path).unwrap_err());
        assert!(
            err.contains("line 2") && err.contains("not valid JSON"),
            "{err}"
        );
        std::fs::write(&path, "{\"text\": \"x\"}\n").unwrap();
        let err = format!("{:#}", read_jsonl_prompts(&path).unwrap_err());
        assert!(err.contains("no `prompt` or `messages`"), "{err}");
        std::fs::write(
            &path,
            "{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}]}\n",
        )
        .unwrap();
        let err = format!("{:#}", read_jsonl_prompts(&path).unwrap_err());
        assert!(err.contains("no user message"), "{err}");
    }

    #[test]
    fn file_sets_are_disjoint_and_sized() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let lines: String = (0..20)
            .map(|i| format!("{{\"prompt\": \"q{i}\"}}\n"))
            .collect();
        std::fs::write(&path, format!("{lines}{{\"prompt\": \"q3\"}}\n")).unwrap();
        let sets = PromptSets::from_file(&path, 7, 15, 5).unwrap();
        assert_eq!((sets.train.len(), sets.eval.len()), (15, 5));
        let eval: HashSet<_> = sets.eval.iter().map(|p| &p.text).collect();
        assert!(sets.train.iter().all(|p| !eval.contains(&p.text)));
        let err = format!("{:#}", PromptSets::from_file(&path, 7, 16, 5).unwrap_err());
        assert!(
            err.contains("20 distinct prompts") && err.contains("need 21"),
            "{err}"
        );
    }
}
