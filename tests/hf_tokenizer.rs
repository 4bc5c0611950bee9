//! selm-tui's token ids against transformers' `AutoTokenizer` (`scripts/hf_tokenize.py`), for
//! every kind of model selm-tui loads, writes or converts: the built-in model, its tokenizer
//! files as a checkpoint or export writes them, HF directories whose `tokenizer.json` and
//! `tokenizer_config.json` disagree about BOS, SmolLM2's GGUF (transformers building its
//! tokenizer from the GGUF metadata, as for the fixture's ids) and a GGUF that asks for BOS.
//! Plain texts (prompts: `tok(text)`), responses (`tok(text, add_special_tokens=False)` then
//! EOS, as TRL trains on them) and chat prompts (`apply_chat_template(..., tokenize=True,
//! add_generation_prompt=True)`) must give the same ids, transformers running in the cache's
//! Python environment that scripts/setup-tests.sh makes (without it the test fails). Also: responses decoded with the tokenizer's suppressed ids round-trip through
//! their text.

mod common;

use burn::backend::Flex;
use common::*;
use rand::SeedableRng;
use selm_tui::chat::{ChatTemplate, Message};
use selm_tui::io::gguf::{GgmlType, Value as G};
use selm_tui::model::ModelConfig;
use selm_tui::model::generate::{generate, generate_suppressing};
use selm_tui::model::gguf::read_gguf_tokenizer;
use selm_tui::model::load::load_pretrained;
use selm_tui::model::sampling::SamplingParams;
use selm_tui::tasks::{PromptSets, TaskKind};
use selm_tui::testing::write_gguf;
use selm_tui::tokenizer::TextTokenizer;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn builtin_dir() -> PathBuf {
    repo().join("assets/tiny-tasks")
}

/// transformers' answer for `items` (texts and conversations), tokenizer from `dir` or from
/// the GGUF file `gguf` in it.
fn transformers(dir: &Path, gguf: Option<&str>, items: &[Value]) -> Value {
    let script = repo().join("scripts/hf_tokenize.py");
    let mut cmd = Command::new(selm_tui::testing::venv_bin("torch", "python"));
    cmd.arg(&script).arg(dir);
    if let Some(f) = gguf {
        cmd.args(["--gguf", f]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let input = serde_json::to_vec(items).unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} {} failed (scripts/setup-tests.sh installs transformers):\n{}",
        script.display(),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: not JSON ({e}):\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn id_list(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an id list: {v}"))
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// The tokenizer files of a checkpoint or export (`config.json`, `tokenizer.json`,
/// `tokenizer_config.json`), as the engine writes them.
fn save(tok: &TextTokenizer, config: &ModelConfig, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let files = [
        (
            "config.json",
            serde_json::to_string_pretty(&config.to_hf_json()).unwrap(),
        ),
        ("tokenizer.json", tok.to_json().unwrap()),
        (
            "tokenizer_config.json",
            serde_json::to_string_pretty(&tok.tokenizer_config_json()).unwrap(),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir.to_path_buf()
}

fn texts_and_chats(texts: &[String], chats: &[Vec<Message>]) -> Vec<Value> {
    texts
        .iter()
        .map(|t| json!(t))
        .chain(chats.iter().map(|m| serde_json::to_value(m).unwrap()))
        .collect()
}

/// selm-tui's ids for `texts` (as prompts and as responses) and `chats` equal transformers'
/// (`reference`, from [`transformers`] on the same items).
fn assert_same_ids(
    what: &str,
    tok: &TextTokenizer,
    texts: &[String],
    chats: &[Vec<Message>],
    reference: &Value,
) {
    let version = &reference["transformers"];
    let results = reference["results"].as_array().unwrap();
    assert_eq!(results.len(), texts.len() + chats.len(), "{what}");
    for (text, r) in texts.iter().zip(results) {
        let want = id_list(&r["ids"]);
        assert_eq!(
            tok.encode_prompt(text).unwrap(),
            want,
            "{what}: prompt {text:?}, transformers {version}"
        );
        let mut response = id_list(&r["ids_no_special"]);
        assert_eq!(tok.encode(text).unwrap(), response, "{what}: {text:?}");
        response.push(tok.eos);
        assert_eq!(
            tok.encode_response(text).unwrap(),
            response,
            "{what}: response {text:?}"
        );
    }
    for (messages, r) in chats.iter().zip(&results[texts.len()..]) {
        assert_eq!(
            tok.encode_chat(messages).unwrap(),
            id_list(&r["ids"]),
            "{what}: chat {messages:?}, transformers {version}"
        );
    }
}

/// Task prompts and answers of every kind, plus texts that hold special-token strings and
/// characters the alphabet lacks.
fn task_texts() -> Vec<String> {
    let sets = PromptSets::new(&TaskKind::ALL, 11, 12, 0).unwrap();
    let mut texts: Vec<String> = sets
        .train
        .iter()
        .flat_map(|t| [t.prompt.clone(), t.answer.clone()])
        .collect();
    texts.extend(
        [
            "",
            "<s>12+3=",
            "1</s>2",
            "<pad>x<unk>",
            "Sort 5 2!",
            "  a  b ",
        ]
        .map(String::from),
    );
    texts
}

#[test]
fn builtin_model_tokenizes_as_transformers() {
    let device = Default::default();
    let (model, tok) = load_pretrained::<Flex>(&builtin_dir(), &device).unwrap();
    assert_eq!(tok.bos, Some(1), "the built-in model adds <s>");
    let texts = task_texts();

    // The asset as shipped (no tokenizer_config.json: the file's post-processor adds BOS).
    let items = texts_and_chats(&texts, &[]);
    let asset = transformers(&builtin_dir(), None, &items);
    assert_same_ids("assets/tiny-tasks", &tok, &texts, &[], &asset);
    assert_eq!(id_list(&asset["results"][0]["ids"])[0], 1, "BOS first");

    // As a checkpoint writes it, with a chat template that writes BOS itself: one BOS.
    let tmp = tempfile::tempdir().unwrap();
    let mut with_chat = tok.clone();
    with_chat.chat = Some(
        ChatTemplate::new(
            "{{ bos_token }}{% for m in messages %}{{ m['content'] }}:{% endfor %}",
            "<s>",
            "</s>",
        )
        .unwrap(),
    );
    let dir = save(&with_chat, model.config(), &tmp.path().join("ckpt"));
    let back = TextTokenizer::from_hf_dir(&dir, &model.config().tokens()).unwrap();
    let chats = vec![
        vec![Message::user("12+3=")],
        vec![Message::user("rev abc"), Message::user("count a in aba")],
    ];
    let items = texts_and_chats(&texts, &chats);
    let saved = transformers(&dir, None, &items);
    assert_eq!(saved["bos_token_id"], 1);
    assert_eq!(saved["eos_token_id"], 2);
    assert_eq!(saved["pad_token_id"], 0);
    assert_same_ids(
        "checkpoint of the built-in model",
        &back,
        &texts,
        &chats,
        &saved,
    );
    assert_eq!(
        back.encode_chat(&chats[0]).unwrap()[..2],
        [1, 5],
        "one BOS, from the template"
    );
}

/// A directory of the built-in model's files with `tokenizer.json`'s post-processor and
/// `tokenizer_config.json`'s `add_bos_token` set as given.
fn hf_dir(root: &Path, name: &str, post_processor: bool, add_bos_token: bool) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(builtin_dir().join("config.json"), dir.join("config.json")).unwrap();
    let mut tj: Value = serde_json::from_str(
        &std::fs::read_to_string(builtin_dir().join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    if !post_processor {
        tj["post_processor"] = Value::Null;
    }
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    let tc = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos_token,
        "add_eos_token": false,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
    });
    std::fs::write(dir.join("tokenizer_config.json"), tc.to_string()).unwrap();
    dir
}

#[test]
fn hf_directories_follow_their_tokenizer_json_as_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ModelConfig::from_file(&builtin_dir().join("config.json")).unwrap();
    let texts = task_texts();
    let items = texts_and_chats(&texts, &[]);
    // (post-processor in tokenizer.json, add_bos_token in tokenizer_config.json) -> BOS:
    // transformers drops add_bos_token when there is a tokenizer.json.
    for (name, pp, add_bos, bos) in [
        ("old-checkpoint", false, true, None),
        ("no-bos", false, false, None),
        ("file-adds-bos", true, false, Some(1)),
        ("both", true, true, Some(1)),
    ] {
        let dir = hf_dir(tmp.path(), name, pp, add_bos);
        let tok = TextTokenizer::from_hf_dir(&dir, &config.tokens()).unwrap();
        assert_eq!(tok.bos, bos, "{name}");
        let reference = transformers(&dir, None, &items);
        assert_same_ids(name, &tok, &texts, &[], &reference);
        // Re-saved, the files say the same to transformers (and to selm-tui).
        let again = save(&tok, &config, &tmp.path().join(format!("{name}-saved")));
        assert_eq!(
            tok.tokenizer_config_json()["add_bos_token"],
            bos.is_some(),
            "{name}"
        );
        let resaved = transformers(&again, None, &items);
        assert_eq!(resaved["results"], reference["results"], "{name} re-saved");
        let back = TextTokenizer::from_hf_dir(&again, &config.tokens()).unwrap();
        assert_same_ids(&format!("{name} re-saved"), &back, &texts, &[], &resaved);
    }
}

#[test]
fn smollm2_gguf_tokenizes_as_transformers() {
    let gguf = smollm2_gguf();
    let (config, tok) = read_gguf_tokenizer(&gguf).unwrap();
    assert_eq!(tok.bos, None, "tokenizer.ggml.add_bos_token is false");
    // Suppressed: the control tokens (<|endoftext|> 0, <|im_start|> 1, <repo_name>, ...),
    // which decode to nothing; never <|im_end|> (EOS, 2).
    let suppressed = tok.suppressed_ids();
    assert!(suppressed.starts_with(&[0, 1, 3]), "{suppressed:?}");
    for &id in &suppressed {
        assert_eq!(tok.decode(&[id]).unwrap(), "", "{id}");
    }
    let exp = expected("smollm2-135m-instruct-q4_1");
    let mut texts: Vec<String> = exp["tokenization"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    texts.extend(task_texts());
    texts.extend(
        [
            "<|im_start|>user\nhi<|im_end|>",
            "The capital of France is Paris.",
            "def f(x):\n    return x ** 2\n",
        ]
        .map(String::from),
    );
    let mut chats: Vec<Vec<Message>> = exp["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| serde_json::from_value(c["messages"].clone()).unwrap())
        .collect();
    chats.push(vec![Message::user("sort 5 2 8:")]);
    let items = texts_and_chats(&texts, &chats);

    // transformers building the tokenizer from the GGUF, as for the fixture's ids.
    let dir = gguf.parent().unwrap();
    let name = gguf.file_name().unwrap().to_str().unwrap();
    let reference = transformers(dir, Some(name), &items);
    assert_eq!(reference["bos_token_id"], 1);
    assert_eq!(reference["eos_token_id"].as_u64(), Some(tok.eos as u64));
    assert_same_ids("SmolLM2 GGUF", &tok, &texts, &chats, &reference);
    for (case, r) in exp["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["results"].as_array().unwrap()[texts.len()..].iter())
    {
        assert_eq!(id_list(&r["ids"]), ids(&case["input_ids"]), "the fixture");
    }

    // The tokenizer files selm-tui writes for it (checkpoint, export).
    let tmp = tempfile::tempdir().unwrap();
    let saved = save(&tok, &config, &tmp.path().join("ckpt"));
    let from_files = transformers(&saved, None, &items);
    assert_eq!(from_files["results"], reference["results"]);
    let back = TextTokenizer::from_hf_dir(&saved, &config.tokens()).unwrap();
    assert_same_ids("SmolLM2 checkpoint", &back, &texts, &chats, &from_files);
}

/// A GGUF with a small byte-level BPE vocabulary, `tokenizer.ggml.add_bos_token = true`, and
/// one tensor (`token_embd.weight`, which gives the vocabulary size).
fn write_bos_gguf(path: &Path) {
    let s = |x: &str| G::String(x.into());
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>"]
        .map(String::from)
        .to_vec();
    let mut types = vec![3, 3, 3];
    for b in 33u8..=126 {
        tokens.push((b as char).to_string());
        types.push(1);
    }
    tokens.extend(["Ġ", "Ċ"].map(String::from));
    types.extend([1, 1]);
    let merges = [
        ("h", "e"),
        ("l", "l"),
        ("he", "ll"),
        ("hell", "o"),
        ("Ġ", "w"),
        ("o", "r"),
        ("Ġw", "or"),
        ("l", "d"),
        ("Ġwor", "ld"),
        ("Ġ", "t"),
        ("Ġt", "he"),
        ("1", "2"),
        ("12", "3"),
    ];
    for (a, b) in merges {
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    tokens.push("<think>".into());
    types.push(4);
    let (vocab, hidden) = (128usize, 8usize);
    let meta = vec![
        ("general.architecture", s("llama")),
        ("llama.block_count", G::U32(1)),
        ("llama.context_length", G::U32(64)),
        ("llama.embedding_length", G::U32(hidden as u32)),
        ("llama.feed_forward_length", G::U32(16)),
        ("llama.attention.head_count", G::U32(2)),
        ("llama.attention.layer_norm_rms_epsilon", G::F32(1e-6)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("llama-bpe")),
        (
            "tokenizer.ggml.tokens",
            G::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            G::Array(types.iter().map(|&t| G::I32(t)).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            G::Array(merges.iter().map(|(a, b)| s(&format!("{a} {b}"))).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", G::U32(1)),
        ("tokenizer.ggml.eos_token_id", G::U32(2)),
        ("tokenizer.ggml.padding_token_id", G::U32(0)),
        ("tokenizer.ggml.add_bos_token", G::Bool(true)),
        (
            "tokenizer.chat_template",
            s(
                "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
            ),
        ),
    ];
    let embd = vec![0u8; vocab * hidden * 4];
    write_gguf(
        path,
        &meta,
        &[(
            "token_embd.weight",
            vec![hidden, vocab],
            GgmlType::F32,
            embd,
        )],
    )
    .unwrap();
}

#[test]
fn gguf_with_add_bos_token_tokenizes_as_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bos.gguf");
    write_bos_gguf(&path);
    let (config, tok) = read_gguf_tokenizer(&path).unwrap();
    assert_eq!(tok.bos, Some(1));
    assert_eq!(config.vocab_size, 128);
    let texts: Vec<String> = [
        "hello world",
        "hello",
        " the world",
        "123+12=",
        "sort 5 2 8:",
        "<|begin_of_text|>hello",
        "<think>hello</think>",
        "a\nb\n\n  c",
        "",
    ]
    .map(String::from)
    .to_vec();
    let chats = vec![
        vec![Message::user("hello world")],
        vec![Message::user("123"), Message::user("the")],
    ];
    let items = texts_and_chats(&texts, &chats);
    let reference = transformers(tmp.path(), Some("bos.gguf"), &items);
    assert_eq!(reference["bos_token_id"], 1);
    assert_same_ids("GGUF with add_bos_token", &tok, &texts, &chats, &reference);
    // The chat template writes BOS: one, not two.
    assert_eq!(
        id_list(&reference["results"][texts.len()]["ids"])[..2],
        [1, tok.encode("<").unwrap()[0]]
    );

    let saved = save(&tok, &config, &tmp.path().join("ckpt"));
    let from_files = transformers(&saved, None, &items);
    assert_eq!(from_files["results"], reference["results"]);
}

#[test]
fn sampled_responses_round_trip_through_their_text() {
    let device = Default::default();
    let (model, tok) = load_pretrained::<Flex>(&builtin_dir(), &device).unwrap();
    let suppressed = tok.suppressed_ids();
    // pad, <s>, <unk>, and the 4 embedding rows past the 44 tokens; never </s>.
    assert_eq!(suppressed, [0, 1, 3, 44, 45, 46, 47]);
    for &id in &suppressed {
        assert_eq!(tok.decode(&[id]).unwrap(), "", "{id} decodes to nothing");
    }
    let sets = PromptSets::new(&TaskKind::ALL, 5, 96, 0).unwrap();
    let prompts: Vec<Vec<u32>> = sets
        .train
        .iter()
        .map(|t| tok.encode_prompt(&t.prompt).unwrap())
        .collect();
    // Hot sampling reaches the specials when nothing stops it.
    let hot = SamplingParams {
        temperature: 4.0,
        top_p: 1.0,
        top_k: 0,
    };
    let seed = || rand::rngs::StdRng::seed_from_u64(3);
    let free = generate(&model, &prompts, 16, &hot, &mut seed());
    assert!(
        free.iter()
            .any(|g| g.tokens.iter().any(|t| suppressed.contains(t))),
        "unsuppressed hot sampling should reach a special token"
    );
    let out = generate_suppressing(&model, &prompts, 16, &hot, &suppressed, &mut seed());
    for g in &out {
        assert!(
            !g.tokens.iter().any(|t| suppressed.contains(t)),
            "{:?}",
            g.tokens
        );
        // Text -> tokenizer gives back exactly the generated (trained) ids.
        let (text, ids) = tok.response_text_and_ids(&g.tokens).unwrap();
        assert_eq!(ids, g.tokens, "{text:?}");
        let mut back = tok.encode(&text).unwrap();
        if g.finished {
            back.push(tok.eos);
        }
        assert_eq!(back, g.tokens, "{text:?}");
    }
}
