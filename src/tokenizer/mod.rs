//! Text <-> token ids through the `tokenizers` crate (`tokenizer.json`), plus the built-in
//! character-level tokenizer of the tiny task model.
//!
//! BOS comes from `tokenizer.json`'s post-processor alone, as in transformers (5.x; 4.x's
//! `PreTrainedTokenizerFast`) whatever `add_bos_token` says: so every `tokenizer.json`
//! selm-tui writes, for the built-in model or rebuilt from GGUF metadata when
//! `tokenizer.ggml.add_bos_token` is set, carries BOS as a `TemplateProcessing`
//! post-processor, and checkpoints re-save the file as loaded with a `tokenizer_config.json`
//! that says what it does.
//!
//! Chat texts are tokenized without special tokens (transformers' `apply_chat_template`
//! passes `add_special_tokens = False`): the template writes any BOS itself, once.
//!
//! The `tokenizer.json` documents selm-tui builds are in [`json`].

use anyhow::{Context, Result, anyhow};
use std::path::Path;

use crate::chat::{ChatTemplate, Message};

mod json;
pub use json::{
    CHAR_SPECIALS, PreTokenizer, bos_post_processor, bpe_tokenizer_json, char_tokenizer_json,
};

/// What a tokenizer needs to know of its model: the special ids of its config and the rows of
/// its embedding (which may be more than the tokenizer's vocabulary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelTokens {
    /// `bos_token_id`, whether or not the tokenizer adds it.
    pub bos: Option<u32>,
    /// Every `eos_token_id`; the first is the tokenizer's EOS.
    pub eos: Vec<u32>,
    pub pad: u32,
    pub vocab_size: usize,
}

/// A loaded `tokenizer.json`, the special ids the loop needs, and the chat template if the
/// model has one.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// The BOS id the post-processor puts before a plain text (`add_bos_token`); `None` when
    /// it adds none. It tells what the post-processor does (and what `tokenizer_config.json`
    /// says); setting it changes no tokenization.
    pub bos: Option<u32>,
    pub eos: u32,
    /// Pads batches; a model's tokenizer takes [`ModelTokens::pad`].
    pub pad: u32,
    pub chat: Option<ChatTemplate>,
    /// The model's `bos_token_id`, added or not.
    model_bos: Option<u32>,
    /// Every id that ends a response (the model's `eos_token_id`s).
    eos_ids: Vec<u32>,
    /// Rows of the model's embedding (at least the tokenizer's vocabulary).
    model_vocab: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TextTokenizer(vocab {}, bos {:?}, eos {})",
            self.vocab_size(),
            self.bos,
            self.eos
        )
    }
}

impl TextTokenizer {
    pub fn from_file(path: &Path, eos: u32, pad: u32) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(&bytes, eos, pad).with_context(|| format!("in {}", path.display()))
    }

    /// A `tokenizer.json` as it is: its post-processor decides whether BOS is added.
    pub fn from_bytes(bytes: &[u8], eos: u32, pad: u32) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| anyhow!("not a valid tokenizer.json: {e}"))?;
        let bos = leading_special(&inner);
        let model_vocab = inner.get_vocab_size(true);
        Ok(Self {
            inner,
            bos,
            eos,
            pad,
            chat: None,
            model_bos: bos,
            eos_ids: vec![eos],
            model_vocab,
        })
    }

    /// The model's special ids and embedding size.
    pub fn for_model(mut self, model: &ModelTokens) -> Self {
        self.model_bos = model.bos.or(self.bos);
        self.eos_ids = model.eos.clone();
        if !self.eos_ids.contains(&self.eos) {
            self.eos_ids.push(self.eos);
        }
        self.model_vocab = model.vocab_size.max(self.vocab_size());
        self
    }

    /// The tokenizer of an HF model directory: `tokenizer.json` (whose post-processor alone
    /// decides BOS, as in transformers: see the module docs), and from
    /// `tokenizer_config.json` (when present) the chat template and the special-token
    /// strings it renders.
    pub fn from_hf_dir(dir: &Path, model: &ModelTokens) -> Result<Self> {
        let eos = *model
            .eos
            .first()
            .context("the model config names no eos_token_id")?;
        let mut tok =
            Self::from_file(&dir.join("tokenizer.json"), eos, model.pad)?.for_model(model);
        let path = dir.join("tokenizer_config.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let tc: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", path.display()))?;
            let token = |key: &str, id: Option<u32>| -> String {
                match &tc[key] {
                    serde_json::Value::String(s) => s.clone(),
                    v if v["content"].is_string() => v["content"].as_str().unwrap().to_string(),
                    _ => id
                        .and_then(|i| tok.inner.id_to_token(i))
                        .unwrap_or_default(),
                }
            };
            let bos_token = token("bos_token", model.bos);
            let eos_token = token("eos_token", Some(eos));
            if let Some(src) = chat_template_source(&tc["chat_template"]) {
                tok.chat = Some(
                    ChatTemplate::new(&src, &bos_token, &eos_token)
                        .with_context(|| format!("in {}", path.display()))?,
                );
            }
        }
        Ok(tok)
    }

    /// The conversation rendered by the chat template, ready for the assistant's reply.
    pub fn chat_text(&self, messages: &[Message]) -> Result<String> {
        let chat = self
            .chat
            .as_ref()
            .context("this model has no chat template")?;
        chat.render(messages, true)
    }

    /// Token ids of a conversation as the model sees it: the rendered text without special
    /// tokens, as transformers' `apply_chat_template(tokenize=True)` (the template writes any
    /// BOS, so a text that starts with it gets no second one).
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.encode(&self.chat_text(messages)?)
    }

    /// `tokenizer_config.json` for a saved model: the chat template, whether BOS is added
    /// (what the saved `tokenizer.json`'s post-processor does), and the special tokens, as
    /// transformers reads them.
    pub fn tokenizer_config_json(&self) -> serde_json::Value {
        let name = |id: Option<u32>| id.and_then(|i| self.inner.id_to_token(i));
        let mut v = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.bos.is_some(),
            "add_eos_token": false,
            "eos_token": name(Some(self.eos)),
            "pad_token": name(Some(self.pad)),
            "clean_up_tokenization_spaces": false,
            "model_max_length": 1_000_000_000_000_000_000u64,
        });
        if let Some(bos) = self.bos.or(self.model_bos) {
            v["bos_token"] = name(Some(bos)).into();
        }
        if let Some(chat) = &self.chat {
            v["chat_template"] = chat.source().into();
            if v["bos_token"].is_null() && !chat.bos_token.is_empty() {
                v["bos_token"] = chat.bos_token.clone().into();
            }
        }
        v
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// A plain prompt as the model sees it: the text with the special tokens of the
    /// tokenizer's post-processor (BOS first when the model adds it), as transformers'
    /// `tokenizer(text)` gives.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// A response as trained on: the text then EOS.
    pub fn encode_response(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        ids.push(self.eos);
        Ok(ids)
    }

    /// Every id that ends a response.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Text of `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow!("decoding {ids:?}: {e}"))
    }

    /// A generated response as written and as trained on: its text, and the ids that text
    /// tokenizes back to, then the EOS that ended it if one did. Re-tokenizing makes the text
    /// give back exactly the trained sequence even where sampling took a split the tokenizer
    /// would not (byte-level BPE), or bytes that are not UTF-8 on their own. (Tokens that
    /// decode to nothing cannot occur: decoding suppresses [`Self::suppressed_ids`].) A
    /// response with no EOS whose text is empty keeps its tokens.
    pub fn response_text_and_ids(&self, tokens: &[u32]) -> Result<(String, Vec<u32>)> {
        let text = self.decode(tokens)?;
        let end = tokens.last().filter(|t| self.eos_ids.contains(t));
        let mut ids = self.encode(&text)?;
        ids.extend(end);
        if ids.is_empty() {
            return Ok((text, tokens.to_vec()));
        }
        Ok((text, ids))
    }

    /// Ids decoding must never emit (transformers' `suppress_tokens`), because they decode to
    /// nothing or to text that tokenizes differently, so a response holding one would not
    /// round-trip through its text: pad, BOS, unk, every other special (control) token, and
    /// the model's embedding rows the tokenizer has no token for. Never an EOS id. Sorted.
    pub fn suppressed_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        ids.extend(
            [Some(self.pad), self.bos, self.model_bos, self.unk()]
                .into_iter()
                .flatten(),
        );
        ids.extend((0..self.model_vocab as u32).filter(|&id| self.inner.id_to_token(id).is_none()));
        ids.retain(|id| !self.eos_ids.contains(id) && (*id as usize) < self.model_vocab);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The model's unknown token, if it has one (BPE's `unk_token`; other models' unknown
    /// tokens are special added tokens in HF files). Read from the model, not serialized:
    /// serializing a vocabulary with holes prints a warning.
    fn unk(&self) -> Option<u32> {
        match self.inner.get_model() {
            tokenizers::ModelWrapper::BPE(bpe) => bpe
                .unk_token
                .as_deref()
                .and_then(|t| self.inner.token_to_id(t)),
            _ => None,
        }
    }

    /// The `tokenizers` tokenizer underneath.
    pub(crate) fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// One token decoded on its own, specials included (for token-level views).
    pub fn token_piece(&self, id: u32) -> Result<String> {
        self.inner
            .decode(&[id], false)
            .map_err(|e| anyhow!("decoding token {id}: {e}"))
    }

    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| anyhow!("serializing tokenizer: {e}"))
    }
}

/// The id a post-processor puts first when it is a single special token (BOS), looking
/// through `Sequence`s for a `TemplateProcessing`.
fn leading_special(tok: &tokenizers::Tokenizer) -> Option<u32> {
    fn first(pp: &serde_json::Value) -> Option<u32> {
        match pp["type"].as_str()? {
            "Sequence" => pp["processors"].as_array()?.iter().find_map(first),
            "TemplateProcessing" => {
                let name = pp["single"][0]["SpecialToken"]["id"].as_str()?;
                match pp["special_tokens"][name]["ids"].as_array()?.as_slice() {
                    [id] => id.as_u64().map(|id| id as u32),
                    _ => None,
                }
            }
            _ => None,
        }
    }
    first(&serde_json::to_value(tok.get_post_processor()?).ok()?)
}

/// `chat_template` is a string, or a list of `{name, template}` (the "default" one is used).
fn chat_template_source(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => items
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
