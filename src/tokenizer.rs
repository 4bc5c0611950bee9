//! Text <-> token ids through the `tokenizers` crate (`tokenizer.json`), plus the built-in
//! character-level tokenizer of the tiny task model.

use anyhow::{Context, Result, anyhow};
use std::path::Path;

/// A loaded `tokenizer.json` and the special ids the loop needs.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: u32,
    pub pad: u32,
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
        })
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// A prompt as the model sees it: BOS (if any) then the text.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        ids.extend(self.encode(text)?);
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

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// One token decoded on its own, specials included (for token-level views).
    pub fn token_piece(&self, id: u32) -> Result<String> {
        self.inner
            .decode(&[id], false)
            .map_err(|e| anyhow!("decoding token {id}: {e}"))
    }

    /// The token's vocabulary entry.
    pub fn token_text(&self, id: u32) -> String {
        self.inner
            .id_to_token(id)
            .unwrap_or_else(|| format!("<{id}>"))
    }

    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| anyhow!("serializing tokenizer: {e}"))
    }
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
