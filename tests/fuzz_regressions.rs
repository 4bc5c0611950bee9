//! The fuzz targets' seeds (fuzz/seeds/<target>/) and the inputs fuzzing found.
//!
//! `fuzz_seeds_are_valid` checks that every seed is still a valid input of its target, so
//! that fuzzing starts from inputs that reach deep; `write_fuzz_seeds` (ignored) regenerates
//! the binary ones:
//!
//! ```sh
//! cargo test --release --test fuzz_regressions -- --ignored write_fuzz_seeds
//! ```
//!
//! Each regression test below replays an input that made a target panic, hang or allocate
//! without bound before its fix (the same bytes are kept as `regress-*` seeds so that the
//! fuzz smoke replays them too), and checks it is now an error naming what is wrong.

use burn::backend::Flex;
use selm_tui::config::Config;
use selm_tui::io::gguf::{GgmlType, GgufFile, Value};
use selm_tui::io::safetensors::weights_from_bytes;
use selm_tui::io::weights::HostTensor;
use selm_tui::model::ModelConfig;
use selm_tui::model::load::{from_weights, load_pretrained, random, to_hf_tensors};
use selm_tui::prompts::parse_jsonl_prompts;
use selm_tui::ranker::process::parse_reply;
use selm_tui::testing::{gguf_tensor_name, permute_qk_rows};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds")
}

/// The tiny model of the binary seeds: Llama, 1 layer, hidden 8, 2/1 heads of 4, vocab 8.
fn tiny_config(tied: bool) -> ModelConfig {
    let mut c = ModelConfig::llama(8, 8, 8, 1, 2, 1, 4, tied);
    c.bos_token_id = Some(0);
    c.eos_token_ids = vec![1];
    c.pad_token_id = None;
    c
}

fn tiny_weights(tied: bool) -> BTreeMap<String, HostTensor> {
    let model = random::<Flex>(tiny_config(tied), 7, &Default::default());
    to_hf_tensors(&model)
}

/// `config.json`, a NUL byte, `model.safetensors`: the `safetensors_config` target's input.
fn hf_dir_input(tied: bool) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.safetensors");
    selm_tui::io::safetensors::write_file(&path, &tiny_weights(tied)).unwrap();
    let mut out = tiny_config(tied).to_hf_json().to_string().into_bytes();
    out.push(0);
    out.extend(std::fs::read(&path).unwrap());
    out
}

/// A safetensors file with one tensor of each dtype the reader converts (F16, BF16, F64).
fn dtypes_safetensors() -> Vec<u8> {
    use safetensors::{Dtype, tensor::TensorView};
    let f16: Vec<u8> = [0.5f32, -2.0]
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [1.5f32, 3.0]
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
        .collect();
    let f64: Vec<u8> = [0.25f64, -8.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let views = vec![
        ("a", TensorView::new(Dtype::F16, vec![2], &f16).unwrap()),
        (
            "b",
            TensorView::new(Dtype::BF16, vec![1, 2], &bf16).unwrap(),
        ),
        ("c", TensorView::new(Dtype::F64, vec![2, 1], &f64).unwrap()),
    ];
    safetensors::serialize(views, None).unwrap()
}

fn s(x: &str) -> Value {
    Value::String(x.into())
}

fn gguf_bytes(
    metadata: &[(&str, Value)],
    tensors: &[(&str, Vec<usize>, GgmlType, Vec<u8>)],
) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.gguf");
    selm_tui::testing::write_gguf(&path, metadata, tensors).unwrap();
    std::fs::read(&path).unwrap()
}

type GgufTensor = (String, Vec<usize>, GgmlType, Vec<u8>);

/// The tiny model as GGUF metadata and tensors (F16 weights), with a byte-level BPE
/// vocabulary, merges and a chat template: every part of the loader has something to read.
fn model_gguf_parts(tied: bool) -> (Vec<(&'static str, Value)>, Vec<GgufTensor>) {
    let mut tensors = vec![];
    for (name, mut t) in tiny_weights(tied) {
        if name.ends_with("q_proj.weight") {
            t = permute_qk_rows(&t, 2);
        } else if name.ends_with("k_proj.weight") {
            t = permute_qk_rows(&t, 1);
        }
        let dims: Vec<usize> = t.shape.iter().rev().copied().collect();
        let bytes: Vec<u8> = t
            .data
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        tensors.push((gguf_tensor_name(&name), dims, GgmlType::F16, bytes));
    }
    let tokens = ["<s>", "</s>", "a", "b", "ab", "Ġ", "Ġa", "c"];
    let types = [3, 3, 1, 1, 1, 1, 1, 1];
    let meta = vec![
        ("general.architecture", s("llama")),
        ("llama.block_count", Value::U32(1)),
        ("llama.context_length", Value::U32(64)),
        ("llama.embedding_length", Value::U32(8)),
        ("llama.feed_forward_length", Value::U32(8)),
        ("llama.attention.head_count", Value::U32(2)),
        ("llama.attention.head_count_kv", Value::U32(1)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("smollm")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![s("a b"), s("Ġ a")]),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        (
            "tokenizer.chat_template",
            s("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"),
        ),
    ];
    (meta, tensors)
}

fn gguf_of(meta: &[(&str, Value)], tensors: &[GgufTensor]) -> Vec<u8> {
    let refs: Vec<(&str, Vec<usize>, GgmlType, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, t, b)| (n.as_str(), d.clone(), *t, b.clone()))
        .collect();
    gguf_bytes(meta, &refs)
}

fn model_gguf(tied: bool) -> Vec<u8> {
    let (meta, tensors) = model_gguf_parts(tied);
    gguf_of(&meta, &tensors)
}

/// The error of loading `bytes` as a GGUF model (`load_pretrained`), which must fail.
fn gguf_load_error(bytes: &[u8]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    match load_pretrained::<Flex>(&path, &Default::default()) {
        Ok(_) => panic!("the broken GGUF loaded"),
        Err(e) => format!("{e:#}"),
    }
}

/// One 32-element tensor of each ggml type the reader dequantizes, and metadata of every
/// value type (nested arrays included).
fn types_gguf() -> Vec<u8> {
    let f16 = |x: f32| half::f16::from_f32(x).to_le_bytes();
    let f32s: Vec<u8> = (0..32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let f16s: Vec<u8> = (0..32).flat_map(|i| f16(i as f32 / 4.0)).collect();
    let bf16s: Vec<u8> = (0..32)
        .flat_map(|i| half::bf16::from_f32(-(i as f32)).to_le_bytes())
        .collect();
    let mut q8 = f16(0.5).to_vec();
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    let mut q4_0 = f16(0.25).to_vec();
    q4_0.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let mut q4_1 = f16(0.5).to_vec();
    q4_1.extend(f16(-1.0));
    q4_1.extend((0..16u8).map(|j| j | (j << 4)));
    let meta = vec![
        ("general.architecture", s("llama")),
        ("general.alignment", Value::U32(32)), // write_gguf aligns to 32
        ("k.u8", Value::U8(1)),
        ("k.i8", Value::I8(-1)),
        ("k.u16", Value::U16(2)),
        ("k.i16", Value::I16(-2)),
        ("k.i32", Value::I32(-3)),
        ("k.u64", Value::U64(4)),
        ("k.i64", Value::I64(-4)),
        ("k.f64", Value::F64(0.5)),
        ("k.bool", Value::Bool(true)),
        (
            "k.nested",
            Value::Array(vec![
                Value::Array(vec![Value::U16(1), Value::U16(2)]),
                Value::Array(vec![Value::U16(3)]),
            ]),
        ),
    ];
    let tensors = vec![
        ("f32", vec![32], GgmlType::F32, f32s),
        ("f16", vec![8, 4], GgmlType::F16, f16s),
        ("bf16", vec![16, 2], GgmlType::BF16, bf16s),
        ("q8_0", vec![32], GgmlType::Q8_0, q8),
        ("q4_0", vec![32, 1], GgmlType::Q4_0, q4_0),
        ("q4_1", vec![32], GgmlType::Q4_1, q4_1),
    ];
    gguf_bytes(&meta, &tensors)
}

/// The binary seeds, by target and file name (the text seeds are written by hand).
fn binary_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        ("gguf", "model-tied.gguf", model_gguf(true)),
        ("gguf", "model-untied.gguf", model_gguf(false)),
        ("gguf", "types.gguf", types_gguf()),
        ("safetensors_config", "model-tied.bin", hf_dir_input(true)),
        (
            "safetensors_config",
            "model-untied.bin",
            hf_dir_input(false),
        ),
        ("safetensors_config", "dtypes.bin", {
            let mut v = b"{}\0".to_vec();
            v.extend(dtypes_safetensors());
            v
        }),
    ]
}

#[test]
#[ignore = "writes fuzz/seeds; run by hand after changing the seed builders"]
fn write_fuzz_seeds() {
    for (target, name, bytes) in binary_seeds() {
        let dir = seeds_dir().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Runs `input` through what fuzz target `target` exercises (as the target does); the first
/// error, if any.
fn check(target: &str, input: &[u8]) -> anyhow::Result<()> {
    let device = Default::default();
    let text = || std::str::from_utf8(input);
    match target {
        "gguf" => {
            let file = GgufFile::parse(input.to_vec(), Path::new("seed.gguf"))?;
            for t in &file.tensors {
                file.read(t)?;
            }
            if file.tensor("token_embd.weight").is_some() {
                let tmp = tempfile::tempdir()?;
                let path = tmp.path().join("seed.gguf");
                std::fs::write(&path, input)?;
                load_pretrained::<Flex>(&path, &device)?;
            }
        }
        "safetensors_config" => {
            let i = input.iter().position(|&b| b == 0).unwrap_or(input.len());
            let mut weights = weights_from_bytes(input.get(i + 1..).unwrap_or(&[]), "seed")?;
            let json = std::str::from_utf8(&input[..i])?;
            // `{}`: a weights-only seed.
            if json != "{}" {
                let config = ModelConfig::from_json(json)?;
                from_weights::<Flex>(config, &mut weights, &device)?;
            }
        }
        "config_toml" => {
            Config::from_toml(text()?, "seed")?;
        }
        "prompts_jsonl" => {
            parse_jsonl_prompts(text()?, "seed")?;
        }
        "ranker_reply" => {
            let (&n, line) = input.split_first().unwrap();
            parse_reply("seed", std::str::from_utf8(line)?, (n % 16) as usize)?;
        }
        other => panic!("unknown fuzz target {other}"),
    }
    Ok(())
}

/// Every seed is a valid input (`regress-*` and `err-*` seeds: an error, not a panic), and
/// none of the binary ones is missing.
#[test]
fn fuzz_seeds_are_valid() {
    let mut count = 0;
    let mut total = 0;
    for target in std::fs::read_dir(seeds_dir()).unwrap() {
        let target = target.unwrap();
        let target_name = target.file_name().to_string_lossy().into_owned();
        for seed in std::fs::read_dir(target.path()).unwrap() {
            let seed = seed.unwrap();
            let name = seed.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(seed.path()).unwrap();
            total += bytes.len();
            count += 1;
            let expect_ok = !(name.starts_with("regress-") || name.starts_with("err-"));
            match check(&target_name, &bytes) {
                Ok(()) => assert!(expect_ok, "seed {target_name}/{name} is accepted"),
                Err(e) => assert!(!expect_ok, "seed {target_name}/{name}: {e:#}"),
            }
        }
    }
    for (target, name, _) in binary_seeds() {
        assert!(
            seeds_dir().join(target).join(name).exists(),
            "seed {target}/{name} is missing: run write_fuzz_seeds"
        );
    }
    assert!(count >= 20, "{count} seeds");
    assert!(total < 256 << 10, "the seeds take {total} bytes");
}

/// Sets (or adds) metadata `key`.
fn set(meta: &mut Vec<(&'static str, Value)>, key: &'static str, value: Value) {
    match meta.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => meta.push((key, value)),
    }
}

/// gguf (fuzzing): `llama.block_count` = 2^40 passed as is to the model builder, which
/// allocated a `Vec` for that many layers (22 GB: an abort). `ModelConfig::validate` caps
/// the depth and the parameter count of every config, GGUF or config.json.
#[test]
fn gguf_with_a_huge_block_count_is_an_error() {
    let (mut meta, tensors) = model_gguf_parts(true);
    set(&mut meta, "llama.block_count", Value::U64(1 << 40));
    let err = gguf_load_error(&gguf_of(&meta, &tensors));
    assert!(err.contains("layers is implausible"), "{err}");
    // Shapes whose parameter count overflows are refused too.
    let (mut meta, tensors) = model_gguf_parts(true);
    set(&mut meta, "llama.embedding_length", Value::U64(1 << 62));
    set(&mut meta, "llama.attention.key_length", Value::U64(4));
    let err = gguf_load_error(&gguf_of(&meta, &tensors));
    assert!(err.contains("parameters, over the"), "{err}");
}

/// gguf (fuzzing): a tensor count of 2^20 in a 2.6 KB file preallocated 56 MiB of tensor
/// infos before reading any; the count is now checked against the bytes left.
#[test]
fn gguf_tensor_count_is_checked_against_the_file_size() {
    let mut bytes = model_gguf(true);
    bytes[8..16].copy_from_slice(&(1u64 << 20).to_le_bytes());
    let err = format!(
        "{:#}",
        GgufFile::parse(bytes, Path::new("t.gguf")).unwrap_err()
    );
    assert!(err.contains("tensor count 1048576 exceeds"), "{err}");
}

/// gguf: a 1-D `token_embd.weight` without a `vocab_size` key: the vocabulary size was read
/// from its (missing) second dimension, an index panic.
#[test]
fn gguf_with_a_1d_embedding_is_an_error() {
    let (meta, mut tensors) = model_gguf_parts(true);
    let embd = tensors
        .iter_mut()
        .find(|t| t.0 == "token_embd.weight")
        .unwrap();
    embd.1 = vec![embd.1.iter().product()];
    let err = gguf_load_error(&gguf_of(&meta, &tensors));
    assert!(
        err.contains("token_embd.weight") && err.contains("2-D"),
        "{err}"
    );
}

/// config.json: the same unchecked shapes as GGUF (`num_hidden_layers` = 10^12 allocated
/// that many layers; sizes whose products overflow).
#[test]
fn config_json_with_absurd_shapes_is_an_error() {
    let with = |key: &str, value: serde_json::Value| {
        let mut json = tiny_config(true).to_hf_json();
        json[key] = value;
        ModelConfig::from_json(&json.to_string()).map_err(|e| format!("{e:#}"))
    };
    let err = with("num_hidden_layers", 1_000_000_000_000u64.into()).unwrap_err();
    assert!(err.contains("layers is implausible"), "{err}");
    let err = with("vocab_size", (u64::MAX / 2).into()).unwrap_err();
    assert!(err.contains("too many parameters"), "{err}");
    let err = with("intermediate_size", (1u64 << 40).into()).unwrap_err();
    assert!(err.contains("parameters, over the"), "{err}");
    assert!(with("num_hidden_layers", 4096.into()).is_ok());
}

/// The parameter count `validate` bounds is the built model's.
#[test]
fn num_parameters_matches_the_built_model() {
    use burn::module::Module;
    let mut biased = tiny_config(false);
    (biased.qkv_bias, biased.o_bias, biased.mlp_bias) = (true, true, true);
    for config in [tiny_config(true), tiny_config(false), biased] {
        let model = random::<Flex>(config.clone(), 0, &Default::default());
        assert_eq!(config.num_parameters(), Some(model.num_params() as u64));
    }
}
