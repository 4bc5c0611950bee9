//! Text <-> token ids through the `tokenizers` crate (`tokenizer.json`), plus the built-in
//! character-level tokenizer of the tiny task model.

use anyhow::{Context, Result, anyhow};
use std::path::Path;

use crate::chat::{ChatTemplate, Message};

/// A loaded `tokenizer.json`, the special ids the loop needs, and the chat template if the
/// model has one.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// Prepended to plain (non-chat) prompts.
    pub bos: Option<u32>,
    pub eos: u32,
    /// Pads batches; a model's tokenizer takes [`crate::model::ModelConfig::pad_id`].
    pub pad: u32,
    pub chat: Option<ChatTemplate>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TextTokenizer(vocab {}, eos {})",
            self.vocab_size(),
            self.eos
        )
    }
}

impl TextTokenizer {
    pub fn from_file(path: &Path, bos: Option<u32>, eos: u32, pad: u32) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(&bytes, bos, eos, pad).with_context(|| format!("in {}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8], bos: Option<u32>, eos: u32, pad: u32) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| anyhow!("not a valid tokenizer.json: {e}"))?;
        Ok(Self {
            inner,
            bos,
            eos,
            pad,
            chat: None,
        })
    }

    /// The tokenizer of an HF model directory: `tokenizer.json`, and from
    /// `tokenizer_config.json` (when present) the chat template, `add_bos_token` and the
    /// special-token strings. Without that file, BOS is prepended when the model has one.
    pub fn from_hf_dir(dir: &Path, config: &crate::model::ModelConfig) -> Result<Self> {
        let eos = *config
            .eos_token_ids
            .first()
            .context("the model config names no eos_token_id")?;
        let mut tok = Self::from_file(
            &dir.join("tokenizer.json"),
            config.bos_token_id,
            eos,
            config.pad_id(),
        )?;
        let path = dir.join("tokenizer_config.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let tc: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", path.display()))?;
            let add_bos = tc["add_bos_token"].as_bool().unwrap_or(false);
            tok.bos = config.bos_token_id.filter(|_| add_bos);
            let token = |key: &str, id: Option<u32>| -> String {
                match &tc[key] {
                    serde_json::Value::String(s) => s.clone(),
                    v if v["content"].is_string() => v["content"].as_str().unwrap().to_string(),
                    _ => id
                        .and_then(|i| tok.inner.id_to_token(i))
                        .unwrap_or_default(),
                }
            };
            let bos_token = token("bos_token", config.bos_token_id);
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

    /// A tokenizer.json built from GGUF metadata, with its chat template.
    pub fn from_gguf(m: &crate::model::gguf::GgufModel) -> Result<Self> {
        let eos = *m
            .config
            .eos_token_ids
            .first()
            .context("the GGUF names no tokenizer.ggml.eos_token_id")?;
        let bos = m.config.bos_token_id.filter(|_| m.add_bos);
        let mut tok = Self::from_bytes(m.tokenizer_json.as_bytes(), bos, eos, m.config.pad_id())
            .context("the tokenizer built from GGUF metadata")?;
        if let Some(src) = &m.chat_template {
            tok.chat = Some(ChatTemplate::new(
                src,
                m.bos_token.as_deref().unwrap_or(""),
                m.eos_token.as_deref().unwrap_or(""),
            )?);
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

    /// Token ids of a conversation as the model sees it (the template writes any BOS).
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.encode(&self.chat_text(messages)?)
    }

    /// `tokenizer_config.json` for a saved model: the chat template, whether BOS is added,
    /// and the special tokens, as transformers reads them.
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
        if let Some(bos) = self.bos {
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

    /// A plain prompt as the model sees it: the text with the tokenizer's own special tokens
    /// (its post-processor, as HF encodes by default), and BOS first if the model wants one.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
        let mut ids = enc.get_ids().to_vec();
        if let Some(bos) = self.bos
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// A response as trained on: the text then EOS.
    pub fn encode_response(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        ids.push(self.eos);
        Ok(ids)
    }

    /// Text of `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow!("decoding {ids:?}: {e}"))
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

/// Pre-tokenizer variants of byte-level BPE vocabularies (GGUF `tokenizer.ggml.pre`, with
/// llama.cpp's regexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's split.
    Gpt2,
    /// Each digit alone, then GPT-2's split (SmolLM, StarCoder, ...).
    DigitsGpt2,
    /// Llama 3's split (numbers in groups of up to three).
    Llama3,
    /// Qwen2's split (single digits).
    Qwen2,
}

const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl PreTokenizer {
    pub fn from_gguf(name: &str) -> Result<Self> {
        Ok(match name {
            "default" | "gpt-2" | "gpt2" | "mpt" | "olmo" | "jais" => Self::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva" => Self::DigitsGpt2,
            "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" => Self::Llama3,
            "qwen2" | "stablelm2" => Self::Qwen2,
            other => anyhow::bail!(
                "tokenizer.ggml.pre `{other}` is not supported (default, gpt-2, smollm, \
                 starcoder, llama-bpe, qwen2, ...)"
            ),
        })
    }

    fn to_json(self) -> serde_json::Value {
        let byte_level = |use_regex: bool| {
            serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
                "trim_offsets": true, "use_regex": use_regex})
        };
        let split = |pattern: &str| {
            serde_json::json!({"type": "Split", "pattern": {"Regex": pattern},
                "behavior": "Isolated", "invert": false})
        };
        let seq = |items: Vec<serde_json::Value>| serde_json::json!({"type": "Sequence", "pretokenizers": items});
        match self {
            // tokenizers' ByteLevel regex is GPT-2's (plus a trailing \s+ that only
            // matters for whitespace the lookahead leaves, which it cannot).
            Self::Gpt2 => seq(vec![split(GPT2_PATTERN), byte_level(false)]),
            Self::DigitsGpt2 => seq(vec![
                serde_json::json!({"type": "Digits", "individual_digits": true}),
                split(GPT2_PATTERN),
                byte_level(false),
            ]),
            Self::Llama3 => seq(vec![split(LLAMA3_PATTERN), byte_level(false)]),
            Self::Qwen2 => seq(vec![split(QWEN2_PATTERN), byte_level(false)]),
        }
    }
}

/// An HF `tokenizer.json` for a byte-level BPE vocabulary given as llama.cpp stores it:
/// tokens by id, their types (3 = control, 4 = user-defined become added tokens, so that
/// they are matched whole in text), and "a b" merges in rank order.
pub fn bpe_tokenizer_json(
    tokens: &[String],
    types: &[i32],
    merges: &[String],
    pre: PreTokenizer,
) -> Result<String> {
    let mut vocab = serde_json::Map::new();
    for (id, t) in tokens.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(id.into());
    }
    let added: Vec<serde_json::Value> = tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, ty))| matches!(**ty, 3 | 4))
        .map(|(id, (t, ty))| {
            serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": *ty == 4, "special": *ty == 3})
        })
        .collect();
    for (i, m) in merges.iter().enumerate() {
        anyhow::ensure!(
            m.split(' ').count() == 2,
            "merge {i} `{m}` is not two tokens separated by a space"
        );
    }
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre.to_json(),
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false,
            "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
            "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges},
    });
    Ok(json.to_string())
}

/// Special tokens of the built-in character tokenizer, in id order.
pub const CHAR_SPECIALS: [&str; 4] = ["<pad>", "<s>", "</s>", "<unk>"];

/// An HF `tokenizer.json` that maps each character of `alphabet` to one token (a BPE model
/// with no merges) after the four specials; decoding fuses the characters back.
pub fn char_tokenizer_json(alphabet: &str) -> String {
    let mut vocab = serde_json::Map::new();
    for (i, s) in CHAR_SPECIALS.iter().enumerate() {
        vocab.insert((*s).into(), i.into());
    }
    for c in alphabet.chars() {
        let next = vocab.len();
        vocab.entry(c.to_string()).or_insert(next.into());
    }
    let added: Vec<serde_json::Value> = CHAR_SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_tokenizer_round_trips() {
        let json = char_tokenizer_json("abc 12+=");
        let tok = TextTokenizer::from_bytes(json.as_bytes(), Some(1), 2, 0).unwrap();
        assert_eq!(tok.vocab_size(), 12);
        let ids = tok.encode("ab 1+2").unwrap();
        assert_eq!(ids, vec![4, 5, 7, 8, 10, 9]);
        assert_eq!(tok.encode_prompt("a").unwrap(), vec![1, 4]);
        assert_eq!(tok.encode_response("c").unwrap(), vec![6, 2]);
        assert_eq!(tok.decode(&[1, 4, 5, 7, 8, 2]).unwrap(), "ab 1");
        assert_eq!(tok.encode("z").unwrap(), vec![3]);
    }
}
