//! Helpers for the test suite (unit and integration tests): a GGUF writer to build small or
//! broken files, and reference computations the fast paths are checked against. Nothing in
//! the application uses them.

use anyhow::Result;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rand::Rng;
use std::path::{Path, PathBuf};

use crate::io::gguf::{self, GgmlType, Value};
use crate::io::weights::HostTensor;
use crate::model::CausalLm;
use crate::model::generate::Generation;
use crate::model::llama::{AttentionPlan, right_pad};
use crate::model::sampling::SamplingParams;
use crate::tokenizer::TextTokenizer;

/// Logits `[n, max_len, vocab]` of `ids` right-padded with `pad_id` into one batch (no
/// cache), and each row's real length.
pub fn forward_padded<B: Backend>(
    model: &CausalLm<B>,
    ids: &[Vec<u32>],
    pad_id: u32,
) -> (Tensor<B, 3>, Vec<usize>) {
    let device = model.device();
    let (tensor, lens, seq) = right_pad(ids, pad_id, &device);
    let plan = AttentionPlan::right_padded(model.config(), &lens, seq, &device);
    (model.forward(tensor, &plan, None), lens)
}

/// [`crate::model::generate::generate`] recomputing the whole sequence at every step instead
/// of using the KV cache: slow, the reference the cache is checked against.
pub fn generate_uncached<B: Backend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    params: &SamplingParams,
    rng: &mut impl Rng,
) -> Vec<Generation> {
    let mode = crate::model::generate::DecodeMode {
        cache: false,
        logps: false,
        cpu_path: false,
    };
    crate::model::generate::decode(model, prompts, max_new_tokens, params, &[], rng, mode)
}

/// `ids` decoded with special tokens kept (`<|im_end|>` shows).
pub fn decode_with_specials(tokenizer: &TextTokenizer, ids: &[u32]) -> Result<String> {
    tokenizer
        .inner()
        .decode(ids, false)
        .map_err(|e| anyhow::anyhow!("decoding {ids:?}: {e}"))
}

/// Writes a GGUF v3 file: the tests build small models with it and corrupt them on purpose.
pub fn write_gguf(
    path: &Path,
    metadata: &[(&str, Value)],
    tensors: &[(&str, Vec<usize>, GgmlType, Vec<u8>)],
) -> Result<()> {
    fn put_string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn type_id(v: &Value) -> u32 {
        match v {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }
    fn put_value(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::U8(x) => out.push(*x),
            Value::I8(x) => out.push(*x as u8),
            Value::U16(x) => out.extend(x.to_le_bytes()),
            Value::I16(x) => out.extend(x.to_le_bytes()),
            Value::U32(x) => out.extend(x.to_le_bytes()),
            Value::I32(x) => out.extend(x.to_le_bytes()),
            Value::F32(x) => out.extend(x.to_le_bytes()),
            Value::Bool(x) => out.push(*x as u8),
            Value::String(s) => put_string(out, s),
            Value::Array(items) => {
                out.extend(items.first().map_or(8, type_id).to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for i in items {
                    put_value(out, i);
                }
            }
            Value::U64(x) => out.extend(x.to_le_bytes()),
            Value::I64(x) => out.extend(x.to_le_bytes()),
            Value::F64(x) => out.extend(x.to_le_bytes()),
        }
    }
    let type_code = |t: GgmlType| match t {
        GgmlType::F32 => 0u32,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 8,
        GgmlType::BF16 => 30,
        GgmlType::Other(id) => id,
    };
    let mut out = Vec::new();
    out.extend(gguf::MAGIC);
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_string(&mut out, k);
        out.extend(type_id(v).to_le_bytes());
        put_value(&mut out, v);
    }
    let mut offset = 0u64;
    let mut offsets = vec![];
    for (name, dims, ty, data) in tensors {
        put_string(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(type_code(*ty).to_le_bytes());
        out.extend(offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + data.len() as u64).div_ceil(gguf::DEFAULT_ALIGNMENT)
            * gguf::DEFAULT_ALIGNMENT;
    }
    let data_start = (out.len() as u64).div_ceil(gguf::DEFAULT_ALIGNMENT) * gguf::DEFAULT_ALIGNMENT;
    out.resize(data_start as usize, 0);
    for ((_, _, _, data), off) in tensors.iter().zip(offsets) {
        out.resize((data_start + off) as usize, 0);
        out.extend(data);
    }
    crate::io::atomic_write(path, &out)
}

/// The README's key table as [`crate::tui::keys::BINDINGS`] says it must read.
pub fn readme_key_table() -> String {
    let mut s = String::from("| key | action |\n| --- | --- |\n");
    for b in crate::tui::keys::BINDINGS {
        s.push_str(&format!("| `{}` | {} |\n", b.label, b.help));
    }
    s
}

/// llama.cpp's converter's q/k row permutation, `w.reshape(h, 2, r/h/2, c).swapaxes(1, 2)`
/// (for writing an HF Llama as a GGUF; the loader undoes it).
pub fn permute_qk_rows(w: &HostTensor, heads: usize) -> HostTensor {
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

/// The GGUF name of an HF Llama/Qwen2 tensor name (`model.layers.0.self_attn.q_proj.weight`
/// -> `blk.0.attn_q.weight`).
pub fn gguf_tensor_name(hf: &str) -> String {
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
    let (module, kind) = part.rsplit_once('.').unwrap();
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
    .find(|(h, _)| *h == module)
    .unwrap_or_else(|| panic!("no GGUF name for {hf}"))
    .1;
    format!("blk.{layer}.{module}.{kind}")
}

/// The command that installs every prerequisite of the test suite.
pub const SETUP: &str = "scripts/setup-tests.sh";

/// `program` from the cache's virtual environment `venv` (made by [`SETUP`]); a missing one
/// fails the test with one line that says how to make it.
pub fn venv_bin(venv: &str, program: &str) -> PathBuf {
    let dir = crate::paths::cache_dir()
        .expect("the cache directory")
        .join("venvs")
        .join(venv);
    let bin = dir.join("bin").join(program);
    assert!(
        bin.is_file(),
        "{} is missing: run {SETUP} (it makes the Python environment {})",
        bin.display(),
        dir.display()
    );
    bin
}

/// Fails the test with one line naming [`SETUP`] unless `program` runs (`program -V`).
pub fn require_program(program: &str) {
    let ok = std::process::Command::new(program)
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    assert!(ok, "{program} is not installed: run {SETUP} (as root)");
}

/// The built-in policy as a `LlamaForSequenceClassification` (same vocabulary and tokenizer,
/// a seeded random `score` head in [-0.5, 0.5)), written to `dir/tiny-rm`. Its
/// `lm_head.weight` stays: transformers and vLLM ignore it.
pub fn builtin_reward_model(dir: &Path, seed: u64) -> Result<PathBuf> {
    use rand::SeedableRng;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-tasks");
    let dst = dir.join("tiny-rm");
    std::fs::create_dir_all(&dst)?;
    std::fs::copy(src.join("tokenizer.json"), dst.join("tokenizer.json"))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json"))?)?;
    config["architectures"] = serde_json::json!(["LlamaForSequenceClassification"]);
    config["num_labels"] = 1.into();
    let hidden = config["hidden_size"].as_u64().unwrap_or_default() as usize;
    std::fs::write(
        dst.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    let mut tensors = crate::io::safetensors::read_model_dir(&src)?.into_map();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let score = (0..hidden)
        .map(|_| rng.random_range(-0.5f32..0.5))
        .collect();
    tensors.insert(
        "score.weight".into(),
        HostTensor::new(vec![1, hidden], score),
    );
    crate::io::safetensors::write_file(&dst.join("model.safetensors"), &tensors)?;
    Ok(dst)
}
