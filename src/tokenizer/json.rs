//! The `tokenizer.json` documents selm-tui writes itself: the built-in character-level
//! tokenizer, byte-level BPE tokenizers rebuilt from GGUF metadata, and the BOS
//! post-processor both carry (see the parent module for the rules).

use anyhow::{Context, Result};

/// HF Llama's post-processor: BOS before each sequence, `<bos> $A` and `<bos> $A <bos> $B`
/// (type ids 0 and 1).
pub fn bos_post_processor(bos_token: &str, bos_id: u32) -> serde_json::Value {
    let bos =
        |type_id: u32| serde_json::json!({"SpecialToken": {"id": bos_token, "type_id": type_id}});
    let seq =
        |id: &str, type_id: u32| serde_json::json!({"Sequence": {"id": id, "type_id": type_id}});
    let mut special = serde_json::Map::new();
    special.insert(
        bos_token.to_string(),
        serde_json::json!({"id": bos_token, "ids": [bos_id], "tokens": [bos_token]}),
    );
    serde_json::json!({
        "type": "TemplateProcessing",
        "single": [bos(0), seq("A", 0)],
        "pair": [bos(0), seq("A", 0), bos(1), seq("B", 1)],
        "special_tokens": special,
    })
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
/// they are matched whole in text), "a b" merges in rank order, and the BOS id to put
/// before a plain text (`tokenizer.ggml.add_bos_token`), which goes into the post-processor
/// after ByteLevel, as in Llama 3's `tokenizer.json`.
pub fn bpe_tokenizer_json(
    tokens: &[String],
    types: &[i32],
    merges: &[String],
    pre: PreTokenizer,
    add_bos: Option<u32>,
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
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": true,
        "trim_offsets": false, "use_regex": true});
    let post_processor = match add_bos {
        None => byte_level,
        Some(id) => {
            let token = tokens
                .get(id as usize)
                .with_context(|| format!("the BOS id {id} is not a token"))?;
            serde_json::json!({"type": "Sequence",
                "processors": [byte_level, bos_post_processor(token, id)]})
        }
    };
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre.to_json(),
        "post_processor": post_processor,
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
/// with no merges) after the four specials; BOS (`<s>`) goes before every plain text, from
/// the post-processor; decoding fuses the characters back.
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
        "post_processor": bos_post_processor(CHAR_SPECIALS[1], 1),
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []}
    })
    .to_string()
}
