//! The tokenizer against its own files and the HF behaviour it reproduces: round trips,
//! BOS from the post-processor, chat templates, GGUF-derived BPE, suppressed ids.

use super::*;
use crate::chat::ChatTemplate;

fn char_tok() -> TextTokenizer {
    let json = char_tokenizer_json("abc 12+=");
    TextTokenizer::from_bytes(json.as_bytes(), 2, 0).unwrap()
}

/// The built-in model's specials (pad 0, BOS 1, EOS 2) with 16 embedding rows.
fn tiny_model() -> ModelTokens {
    ModelTokens {
        bos: Some(1),
        eos: vec![2],
        pad: 0,
        vocab_size: 16,
    }
}

#[test]
fn char_tokenizer_round_trips() {
    let tok = char_tok();
    assert_eq!(tok.vocab_size(), 12);
    let ids = tok.encode("ab 1+2").unwrap();
    assert_eq!(ids, vec![4, 5, 7, 8, 10, 9]);
    assert_eq!(tok.encode_prompt("a").unwrap(), vec![1, 4]);
    assert_eq!(tok.encode_response("c").unwrap(), vec![6, 2]);
    assert_eq!(tok.decode(&[1, 4, 5, 7, 8, 2]).unwrap(), "ab 1");
    assert_eq!(tok.encode("z").unwrap(), vec![3]);
}

#[test]
fn the_built_in_model_file_is_the_char_tokenizer() {
    // Regenerated with `char_tokenizer_json(TASK_ALPHABET)` (as `selm-tui sft` writes it),
    // so the file itself adds BOS in transformers too.
    assert_eq!(
        include_str!("../../assets/tiny-tasks/tokenizer.json"),
        char_tokenizer_json(crate::sft::TASK_ALPHABET)
    );
}

#[test]
fn bos_comes_from_the_post_processor() {
    let tok = char_tok();
    assert_eq!(tok.bos, Some(1));
    // Llama's template: `<s> $A`, pair `<s> $A <s> $B`, with type ids 0 and 1.
    let pair = tok.inner().encode(("a", "bc"), true).unwrap();
    assert_eq!(pair.get_ids(), [1, 4, 1, 5, 6]);
    assert_eq!(pair.get_type_ids(), [0, 0, 1, 1, 1]);
    assert_eq!(pair.get_special_tokens_mask(), [1, 0, 1, 0, 0]);
    // The post-processor survives saving: the saved file adds BOS by itself.
    let saved: serde_json::Value = serde_json::from_str(&tok.to_json().unwrap()).unwrap();
    assert_eq!(saved["post_processor"]["type"], "TemplateProcessing");
    let again = TextTokenizer::from_bytes(tok.to_json().unwrap().as_bytes(), 2, 0).unwrap();
    assert_eq!(again.encode_prompt("ab").unwrap(), [1, 4, 5]);
    assert_eq!(tok.tokenizer_config_json()["add_bos_token"], true);
    assert_eq!(tok.tokenizer_config_json()["bos_token"], "<s>");

    // No post-processor: nothing added, whatever the model's bos_token_id.
    let mut v: serde_json::Value = serde_json::from_str(&char_tokenizer_json("abc 12+=")).unwrap();
    v["post_processor"] = serde_json::Value::Null;
    let plain = TextTokenizer::from_bytes(v.to_string().as_bytes(), 2, 0)
        .unwrap()
        .for_model(&tiny_model());
    assert_eq!(plain.bos, None);
    assert_eq!(plain.encode_prompt("ab").unwrap(), [4, 5]);
    assert_eq!(plain.tokenizer_config_json()["add_bos_token"], false);
    // The model's BOS is still named (chat templates render it).
    assert_eq!(plain.tokenizer_config_json()["bos_token"], "<s>");
}

#[test]
fn chat_text_starting_with_bos_gets_one_bos() {
    let mut tok = char_tok();
    tok.chat = Some(
        ChatTemplate::new(
            "{{ bos_token }}{% for m in messages %}{{ m.content }}={% endfor %}",
            "<s>",
            "</s>",
        )
        .unwrap(),
    );
    let ids = tok.encode_chat(&[Message::user("1+2")]).unwrap();
    assert_eq!(ids, [1, 8, 10, 9, 11]);
    // A plain text is a text: its `<s>` is a token, and BOS comes first as always.
    assert_eq!(tok.encode_prompt("<s>a").unwrap(), [1, 1, 4]);
}

fn bpe(add_bos: Option<u32>) -> TextTokenizer {
    let tokens: Vec<String> = ["<|bos|>", "<|eos|>", "<|x|>", "a", "b", "ab", "Ġ", "<u>"]
        .map(String::from)
        .to_vec();
    let json = bpe_tokenizer_json(
        &tokens,
        &[3, 3, 3, 1, 1, 1, 1, 4],
        &["a b".to_string()],
        PreTokenizer::Gpt2,
        add_bos,
    )
    .unwrap();
    TextTokenizer::from_bytes(json.as_bytes(), 1, 1).unwrap()
}

#[test]
fn gguf_tokenizer_adds_bos_when_asked() {
    let with = bpe(Some(0));
    assert_eq!(with.bos, Some(0));
    assert_eq!(with.encode_prompt("ab a").unwrap(), [0, 5, 6, 3]);
    assert_eq!(with.encode("ab a").unwrap(), [5, 6, 3]);
    let pp = &serde_json::from_str::<serde_json::Value>(&with.to_json().unwrap()).unwrap()["post_processor"];
    assert_eq!(pp["type"], "Sequence");
    assert_eq!(pp["processors"][0]["type"], "ByteLevel");
    assert_eq!(pp["processors"][1]["type"], "TemplateProcessing");
    let without = bpe(None);
    assert_eq!(without.bos, None);
    assert_eq!(without.encode_prompt("ab a").unwrap(), [5, 6, 3]);
    assert!(
        bpe_tokenizer_json(&["a".into()], &[1], &[], PreTokenizer::Gpt2, Some(4)).is_err(),
        "a BOS id past the vocabulary"
    );
}

#[test]
fn suppressed_ids_are_the_specials_but_eos() {
    // Char tokenizer: pad 0, BOS 1, EOS 2, unk 3; a model of 16 rows for 12 tokens.
    let tok = char_tok().for_model(&tiny_model());
    assert_eq!(tok.model_vocab, 16);
    assert_eq!(tok.suppressed_ids(), [0, 1, 3, 12, 13, 14, 15]);
    // GGUF-style: control tokens (0, 1, 2) are special, the user-defined `<u>` is not;
    // EOS 1 stays.
    assert_eq!(bpe(None).suppressed_ids(), [0, 2]);
    let mut several = bpe(None);
    several.eos_ids = vec![1, 2];
    assert_eq!(several.suppressed_ids(), [0]);
}

#[test]
fn responses_round_trip_through_their_text() {
    let tok = bpe(None);
    // `a` `b` is a split the merges would not make: the text gives `ab`.
    let (text, ids) = tok.response_text_and_ids(&[3, 4, 6, 3, 1]).unwrap();
    assert_eq!(text, "ab a");
    assert_eq!(ids, [5, 6, 3, 1]);
    assert_eq!(tok.encode_response(&text).unwrap(), ids);
    // No EOS (cut at max_new_tokens): none added.
    assert_eq!(tok.response_text_and_ids(&[3, 4]).unwrap().1, [5]);
    assert_eq!(
        tok.response_text_and_ids(&[1]).unwrap(),
        (String::new(), vec![1])
    );
}
