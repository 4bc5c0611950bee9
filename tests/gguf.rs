//! GGUF loading on a synthetic file built from the tiny-llama fixture: llama.cpp's names,
//! its q/k row permutation and reversed dims, F32 weights, a tied or untied head. The model
//! loaded from the GGUF must give exactly the logits of the same weights loaded from the HF
//! safetensors. Broken files are errors that name the tensor or key.

mod common;

use burn::backend::Flex;
use common::*;
use selm_tui::io::gguf::{GgmlType, Value};
use selm_tui::io::safetensors::read_model_dir;
use selm_tui::io::weights::HostTensor;
use selm_tui::model::load::{load_hf_dir, load_pretrained};
use selm_tui::testing::write_gguf;
use std::path::Path;

/// llama.cpp's converter: `w.reshape(h, 2, r/h/2, c).swapaxes(1, 2)`.
fn permute(w: &HostTensor, heads: usize) -> HostTensor {
    let (rows, cols) = (w.shape[0], w.shape[1]);
    let d = rows / heads;
    let mut out = vec![0.0; w.data.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..d / 2 {
                let src = h * d + j * (d / 2) + i;
                let dst = h * d + 2 * i + j;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&w.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    HostTensor::new(w.shape.clone(), out)
}

fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, part) = rest.split_once('.').unwrap();
    let module = [
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ]
    .iter()
    .find(|(h, _)| part.starts_with(h))
    .unwrap()
    .1;
    format!("blk.{layer}.{module}.weight")
}

fn s(x: &str) -> Value {
    Value::String(x.into())
}

/// The fixture as GGUF; `drop` leaves a tensor out, `untied` keeps output.weight.
fn write_fixture_gguf(path: &Path, drop: Option<&str>) {
    let mut weights = read_model_dir(&fixture("tiny-llama")).unwrap();
    let names: Vec<String> = weights.names().map(str::to_string).collect();
    let mut tensors = vec![];
    for name in names {
        let mut t = weights.remove(&name).unwrap();
        if name.ends_with("q_proj.weight") {
            t = permute(&t, 4);
        } else if name.ends_with("k_proj.weight") {
            t = permute(&t, 2);
        }
        let g = gguf_name(&name);
        if drop == Some(g.as_str()) {
            continue;
        }
        let dims: Vec<usize> = t.shape.iter().rev().copied().collect();
        let bytes: Vec<u8> = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((g, dims, GgmlType::F32, bytes));
    }
    // "a" + "b" merge into "ab"; the rest are placeholders.
    let tokens: Vec<Value> = (0..128)
        .map(|i| match i {
            3 => s("a"),
            4 => s("b"),
            5 => s("ab"),
            _ => s(&format!("<t{i}>")),
        })
        .collect();
    let types: Vec<Value> = (0..128)
        .map(|i| Value::I32(if (1..=2).contains(&i) { 3 } else { 1 }))
        .collect();
    let meta = vec![
        ("general.architecture", s("llama")),
        ("llama.block_count", Value::U32(2)),
        ("llama.context_length", Value::U32(256)),
        ("llama.embedding_length", Value::U32(64)),
        ("llama.feed_forward_length", Value::U32(160)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("default")),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", Value::Array(vec![s("a b")])),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.padding_token_id", Value::U32(0)),
        (
            "tokenizer.chat_template",
            s("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"),
        ),
    ];
    let refs: Vec<(&str, Vec<usize>, GgmlType, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, t, b)| (n.as_str(), d.clone(), *t, b.clone()))
        .collect();
    write_gguf(path, &meta, &refs).unwrap();
}

fn logits(model: &selm_tui::model::CausalLm<Flex>) -> Vec<f32> {
    logits_of(model, &[vec![1, 20, 30, 40, 5, 6]])
}

#[test]
fn gguf_weights_give_the_hf_logits_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny.gguf");
    write_fixture_gguf(&path, None);
    let device = Default::default();
    let (gguf, tok) = load_pretrained::<Flex>(&path, &device).unwrap();
    let hf = load_hf_dir::<Flex>(&fixture("tiny-llama"), &device).unwrap();
    assert!(
        !gguf.config().tie_word_embeddings,
        "output.weight present: untied"
    );
    assert_eq!(logits(&gguf), logits(&hf));
    assert_eq!(tok.eos, 2);
    assert_eq!(tok.bos, None, "add_bos_token absent: no BOS");
    let chat = tok
        .chat_text(&[selm_tui::chat::Message::user("hi")])
        .unwrap();
    assert_eq!(chat, "<user>hi");
}

#[test]
fn broken_gguf_files_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let device = Default::default();
    // A missing tensor is named.
    let path = tmp.path().join("missing.gguf");
    write_fixture_gguf(&path, Some("blk.1.ffn_up.weight"));
    let err = format!(
        "{:#}",
        load_pretrained::<Flex>(&path, &device).err().unwrap()
    );
    assert!(err.contains("model.layers.1.mlp.up_proj.weight"), "{err}");
    // A truncated file names the tensor whose data is cut.
    let path = tmp.path().join("ok.gguf");
    write_fixture_gguf(&path, None);
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
