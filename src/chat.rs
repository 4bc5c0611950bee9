//! Chat formatting: a model's Jinja `chat_template` (from `tokenizer_config.json` or GGUF
//! `tokenizer.chat_template`) rendered with minijinja the way transformers'
//! `apply_chat_template` does: trim_blocks and lstrip_blocks, Python string methods,
//! `raise_exception`, `tojson`, and the special-token strings as variables.

use anyhow::{Context, Result, anyhow};
use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde::{Deserialize, Serialize};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template and the special tokens it may refer to.
#[derive(Clone)]
pub struct ChatTemplate {
    source: String,
    env: Environment<'static>,
    pub bos_token: String,
    pub eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChatTemplate({} chars)", self.source.len())
    }
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| {
            chrono::Utc::now().format(&fmt).to_string()
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| anyhow!("the chat template does not parse: {e}"))?;
        Ok(Self {
            source: source.to_string(),
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The conversation as the model sees it; with `add_generation_prompt`, ending where the
    /// assistant's reply starts.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").expect("added in new");
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| anyhow!("{e:#}"))
        .context("rendering the chat template")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_a_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>").unwrap();
        let text = t.render(&[Message::user("Hi")], true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let no_gen = t.render(&[Message::user("Hi")], false).unwrap();
        assert!(no_gen.ends_with("Hi<|im_end|>\n"));
    }

    #[test]
    fn python_methods_blocks_and_exceptions() {
        // trim_blocks / lstrip_blocks, .strip(), bos_token, raise_exception, as HF renders.
        let src = "{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'user' %}\n[U] {{ m.content.strip() }}\n  {% else %}\n{{ raise_exception('only user turns') }}\n  {% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
        assert_eq!(
            t.render(&[Message::user("  hi  ")], false).unwrap(),
            "<s>[U] hi\n"
        );
        let err = t
            .render(
                &[Message {
                    role: "assistant".into(),
                    content: "x".into(),
                }],
                false,
            )
            .unwrap_err();
        assert!(format!("{err:#}").contains("only user turns"), "{err:#}");
        assert!(ChatTemplate::new("{% if %}", "", "").is_err());
    }
}
