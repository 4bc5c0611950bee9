//! GGUF loading on synthetic files built from the causal-LM fixtures (shapes from their
//! config.json): llama.cpp's names, its q/k row permutation (Llama) and reversed dims, F32
//! weights, q/k/v biases (Qwen2), a tied or untied head. The model
//! loaded from the GGUF must give exactly the logits of the same weights loaded from the HF
//! safetensors. Broken files are errors that name the tensor or key.

mod common;

use burn::backend::Flex;
use common::*;
use selm_tui::io::gguf::{GgmlType, Value};
use selm_tui::io::safetensors::read_model_dir;
use selm_tui::model::config::Arch;
use selm_tui::model::load::{load_hf_dir, load_pretrained};
use selm_tui::testing::{gguf_tensor_name, permute_qk_rows, write_gguf};
use std::path::Path;

fn s(x: &str) -> Value {
    Value::String(x.into())
}

fn u32_of(n: usize) -> Value {
    Value::U32(n.try_into().unwrap())
}

/// Fixture `name` as llama.cpp's converter writes it: GGUF names, Llama q/k rows permuted,
/// shapes from its config.json, `output.weight` only when the fixture has an untied head;
/// `drop` leaves a tensor out.
fn write_fixture_gguf(path: &Path, name: &str, drop: Option<&str>) {
    let c = fixture_config(name);
    let arch = match c.arch {
        Arch::Llama => "llama",
        Arch::Qwen2 => "qwen2",
    };
    let mut weights = read_model_dir(&fixture(name)).unwrap();
    let names: Vec<String> = weights.names().map(str::to_string).collect();
    let mut tensors = vec![];
    for name in names {
        let mut t = weights.remove(&name).unwrap();
        // llama.cpp permutes q/k rows of Llama checkpoints only.
        if c.arch == Arch::Llama && name.ends_with("q_proj.weight") {
            t = permute_qk_rows(&t, c.num_heads);
        } else if c.arch == Arch::Llama && name.ends_with("k_proj.weight") {
            t = permute_qk_rows(&t, c.num_kv_heads);
        }
        let g = gguf_tensor_name(&name);
        if drop == Some(g.as_str()) {
            continue;
        }
        let dims: Vec<usize> = t.shape.iter().rev().copied().collect();
        let bytes: Vec<u8> = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((g, dims, GgmlType::F32, bytes));
    }
    // "a" + "b" merge into "ab"; the rest are placeholders; BOS and EOS are control tokens.
    assert!(
        c.vocab_size > 5,
        "{name}: vocabulary too small for the test tokens"
    );
    let (bos, eos) = (c.bos_token_id.unwrap(), c.eos_token_ids[0]);
    let tokens: Vec<Value> = (0..c.vocab_size)
        .map(|i| match i {
            3 => s("a"),
            4 => s("b"),
            5 => s("ab"),
            _ => s(&format!("<t{i}>")),
        })
        .collect();
    let types: Vec<Value> = (0..c.vocab_size as u32)
        .map(|i| Value::I32(if i == bos || i == eos { 3 } else { 1 }))
        .collect();
    let key = |k: &str| format!("{arch}.{k}");
    let mut meta = vec![
        ("general.architecture".to_string(), s(arch)),
        (key("block_count"), u32_of(c.num_layers)),
        (key("context_length"), u32_of(c.max_position_embeddings)),
        (key("embedding_length"), u32_of(c.hidden_size)),
        (key("feed_forward_length"), u32_of(c.intermediate_size)),
        (key("attention.head_count"), u32_of(c.num_heads)),
        (key("attention.head_count_kv"), u32_of(c.num_kv_heads)),
        (key("rope.freq_base"), Value::F32(c.rope.theta as f32)),
        (
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(c.rms_norm_eps as f32),
        ),
    ];
    // llama.cpp writes the head size only where it is not hidden / heads.
    if c.head_dim != c.hidden_size / c.num_heads {
        meta.push((key("attention.key_length"), u32_of(c.head_dim)));
        meta.push((key("attention.value_length"), u32_of(c.head_dim)));
    }
    meta.extend([
        ("tokenizer.ggml.model".to_string(), s("gpt2")),
        ("tokenizer.ggml.pre".to_string(), s("default")),
        ("tokenizer.ggml.tokens".to_string(), Value::Array(tokens)),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types)),
        (
            "tokenizer.ggml.merges".to_string(),
            Value::Array(vec![s("a b")]),
        ),
        ("tokenizer.ggml.bos_token_id".to_string(), Value::U32(bos)),
        ("tokenizer.ggml.eos_token_id".to_string(), Value::U32(eos)),
        (
            "tokenizer.chat_template".to_string(),
            s("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"),
        ),
    ]);
    if let Some(pad) = c.pad_token_id {
        meta.push((
            "tokenizer.ggml.padding_token_id".to_string(),
            Value::U32(pad),
        ));
    }
    let meta: Vec<(&str, Value)> = meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let refs: Vec<(&str, Vec<usize>, GgmlType, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, t, b)| (n.as_str(), d.clone(), *t, b.clone()))
        .collect();
    write_gguf(path, &meta, &refs).unwrap();
}

fn logits(model: &selm_tui::model::CausalLm<Flex>) -> Vec<f32> {
    let rows = token_rows(model.config().vocab_size, &[6], 11);
    logits_of(model, &rows)
}

#[test]
fn gguf_weights_give_the_hf_logits_exactly() {
    for name in CAUSAL_FIXTURES {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tiny.gguf");
        write_fixture_gguf(&path, name, None);
        let device = Default::default();
        let (gguf, tok) = load_pretrained::<Flex>(&path, &device).unwrap();
        let hf = load_hf_dir::<Flex>(&fixture(name), &device).unwrap();
        let c = hf.config();
        assert_eq!(
            gguf.config().tie_word_embeddings,
            c.tie_word_embeddings,
            "{name}: output.weight present exactly when untied"
        );
        assert_eq!(gguf.lm_head.is_none(), c.tie_word_embeddings, "{name}");
        assert_eq!(
            (gguf.config().arch, gguf.config().qkv_bias),
            (c.arch, c.qkv_bias),
            "{name}"
        );
        assert_eq!(gguf.config().head_dim, c.head_dim, "{name}");
        assert_eq!(logits(&gguf), logits(&hf), "{name}");
        assert_eq!(tok.eos, c.eos_token_ids[0], "{name}");
        assert_eq!(tok.bos, None, "add_bos_token absent: no BOS");
        let chat = tok
            .chat_text(&[selm_tui::chat::Message::user("hi")])
            .unwrap();
        assert_eq!(chat, "<user>hi");
    }
}

#[test]
fn broken_gguf_files_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let device = Default::default();
    // A missing tensor is named.
    let last = fixture_config("tiny-llama").num_layers - 1;
    let path = tmp.path().join("missing.gguf");
    let drop = format!("blk.{last}.ffn_up.weight");
    write_fixture_gguf(&path, "tiny-llama", Some(&drop));
    let err = format!(
        "{:#}",
        load_pretrained::<Flex>(&path, &device).err().unwrap()
    );
    let hf = format!("model.layers.{last}.mlp.up_proj.weight");
    assert!(err.contains(&hf), "{err}");
    // A truncated file names the tensor whose data is cut.
    let path = tmp.path().join("ok.gguf");
    write_fixture_gguf(&path, "tiny-llama", None);
    let bytes = std::fs::read(&path).unwrap();
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = format!(
        "{:#}",
        load_pretrained::<Flex>(&cut, &device).err().unwrap()
    );
    assert!(
        err.contains("truncated") && err.contains("tensor `"),
        "{err}"
    );
    assert!(err.contains("cut.gguf"), "{err}");
    // Cut inside the metadata: the offset is named.
    std::fs::write(&cut, &bytes[..200]).unwrap();
    let err = format!(
        "{:#}",
        load_pretrained::<Flex>(&cut, &device).err().unwrap()
    );
    assert!(err.contains("offset"), "{err}");
}
