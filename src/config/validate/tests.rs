//! Every config error names its key.

use super::*;
use crate::backend::BackendSpec;
use crate::config::DEFAULT_TOML;
use crate::config::RankerKind;

fn with(replace: &str, by: &str) -> String {
    assert!(DEFAULT_TOML.contains(replace), "{replace}");
    DEFAULT_TOML.replacen(replace, by, 1)
}

fn err(text: &str) -> String {
    format!("{:#}", Config::from_toml(text, "t.toml").unwrap_err())
}

#[test]
fn default_parses_and_round_trips() {
    let c = Config::embedded_default();
    assert_eq!(c.backend().unwrap(), BackendSpec::Flex);
    assert_eq!(Config::from_toml(&c.to_toml(), "again").unwrap(), c);
}

#[test]
fn ranker_names_are_their_serde_names() {
    for kind in RankerKind::ALL {
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        let back: RankerKind = serde_json::from_value(kind.name().into()).unwrap();
        assert_eq!(back, kind);
    }
}

#[test]
fn objective_names_are_their_serde_names() {
    for objective in crate::config::Objective::ALL {
        assert_eq!(serde_json::to_value(objective).unwrap(), objective.name());
    }
}

#[test]
fn errors_name_the_key() {
    // (text replaced in the default, replacement, what the error must name)
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "[runtime]",
            "[runtime]\nbackedn = \"flex\"",
            &["backedn", "t.toml"],
        ),
        (
            "backend = \"flex\"",
            "backend = \"tpu\"",
            &["runtime.backend", "tpu"],
        ),
        ("beta = 0.1", "beta = -1.0", &["train.beta", "-1"]),
        // Counts whose product would overflow (or allocate without bound) are refused.
        (
            "per_iteration = 384",
            "per_iteration = 4611686018427387904",
            &["prompts.per_iteration"],
        ),
        ("samples = 8", "samples = 0", &["generate.samples"]),
        ("beta = 0.1", "beta = \"big\"", &["beta"]),
        ("\"add\",", "\"mul\",", &["prompts.tasks", "mul"]),
        ("top_p = 1.0", "top_p = 1.5", &["generate.top_p"]),
        (
            "score_range = [0.0, 1.0]",
            "score_range = [1.0, 0.0]",
            &["rank.score_range"],
        ),
        (
            "ranker = \"oracle\"",
            "ranker = \"command\"",
            &["rank.command"],
        ),
        (
            "ranker = \"oracle\"",
            "ranker = \"pairrm\"",
            &["rank.ranker", "pairrm"],
        ),
        (
            "ranker = \"oracle\"",
            "ranker = \"server\"",
            &["rank.server", "[rank.server]"],
        ),
        (
            "ranker = \"oracle\"",
            "ranker = \"human\"\nfallback = \"human\"",
            &["rank.fallback", "automatic"],
        ),
        (
            "ranker = \"oracle\"",
            "ranker = \"human\"\nfallback = \"pairrm\"",
            &["rank.fallback", "pairrm"],
        ),
        (
            "ranker = \"oracle\"",
            "ranker = \"human\"",
            &["rank.fallback", "needs a fallback"],
        ),
        (
            "[prompts]",
            "[prompts]\nfile = \"p.jsonl\"",
            &["prompts.file", "not both"],
        ),
        (
            "tasks = [\"add\", \"sort\", \"rev\", \"count\"]",
            "file = \"p.jsonl\"",
            &["rank.ranker", "oracle"],
        ),
    ];
    for (replace, by, needles) in cases {
        let e = err(&with(replace, by));
        assert!(needles.iter().all(|n| e.contains(n)), "{by}: {e}");
    }
}

#[test]
fn a_bad_rank_server_names_its_key() {
    let server = |section: &str| {
        let text = with("ranker = \"oracle\"", "ranker = \"server\"");
        err(&format!("{text}\n[rank.server]\n{section}\n"))
    };
    let cases: &[(&str, &[&str])] = &[
        (
            "command = \"vllm serve --port {port}\"",
            &["rank.server.command", "{model}"],
        ),
        ("command = \"vllm serve {model}\"", &["rank.model"]),
        ("url = \"localhost:8000\"", &["rank.server.url", "http://"]),
        (
            "url = \"http://h:1\"\nconcurrency = 0",
            &["rank.server.concurrency"],
        ),
        (
            "url = \"http://h:1\"\ntimeout_s = -1",
            &["rank.server.timeout_s"],
        ),
        (
            "url = \"http://h:1\"\nendpoint = \"score\"",
            &["endpoint", "score"],
        ),
        ("url = \"http://h:1\"\nreload = \"vllm\"", &["reload"]),
        ("", &["rank.server.command", "`url`"]),
    ];
    for (section, needles) in cases {
        let e = server(section);
        assert!(needles.iter().all(|n| e.contains(n)), "{section}: {e}");
    }
    let text = with("ranker = \"oracle\"", "ranker = \"server\"");
    let ok = format!("{text}\n[rank.server]\nurl = \"http://h:1\"\n");
    let c = Config::from_toml(&ok, "t.toml").unwrap();
    assert_eq!(c.rank.server.unwrap().url.as_deref(), Some("http://h:1"));
}

#[test]
fn a_bad_lora_section_names_its_key() {
    let lora = |section: &str| {
        let text = with("[eval]", &format!("[train.lora]\n{section}\n\n[eval]"));
        Config::from_toml(&text, "t.toml").map(|c| c.train.lora)
    };
    let cases: &[(&str, &[&str])] = &[
        ("rank = 0", &["train.lora.rank"]),
        ("alpha = -1.0", &["train.lora.alpha"]),
        (
            "target_modules = [\"qkv_proj\"]",
            &["train.lora.target_modules", "qkv_proj"],
        ),
        ("target_modules = []", &["train.lora.target_modules"]),
        ("dropout = 1.0", &["train.lora.dropout", "[0, 1)"]),
        ("checkpoint = \"weights\"", &["checkpoint", "weights"]),
    ];
    for (section, needles) in cases {
        let e = format!("{:#}", lora(section).unwrap_err());
        assert!(needles.iter().all(|n| e.contains(n)), "{section}: {e}");
    }
    assert_eq!(lora("dropout = 0.1").unwrap().unwrap().dropout, 0.1);
    // Targets in any order, repeated: the shape PEFT files read back as.
    let any_order = lora("target_modules = [\"v_proj\", \"q_proj\", \"v_proj\"]");
    assert_eq!(
        any_order.unwrap().unwrap().shape().targets,
        ["q_proj", "v_proj"]
    );
    let ok = lora("rank = 4").unwrap().unwrap();
    assert_eq!((ok.rank, ok.alpha, ok.target_modules.len()), (4, 16.0, 7));
    // The external trainer takes adapters, with dropout.
    let server = "[generate.server]\ncommand = \"vllm serve {checkpoint} --port {port}\"\n";
    let external = |lora: &str, reload: &str| {
        with(
            "[eval]",
            &format!("[train.lora]\n{lora}\n\n{server}{reload}\n[eval]"),
        )
        .replace(
            "[train]",
            "[train]\nengine = \"command\"\ncommand = \"t {params}\"",
        )
        .replace("engine = \"in_process\"", "engine = \"server\"")
    };
    let c = Config::from_toml(&external("dropout = 0.05", ""), "t.toml").unwrap();
    assert_eq!(c.train.lora.unwrap().dropout, 0.05);
    // Adapter-only checkpoints leave a server only adapters to load.
    let e = err(&external("checkpoint = \"adapter\"", ""));
    assert!(
        e.contains("train.lora.checkpoint") && e.contains("reload"),
        "{e}"
    );
    Config::from_toml(
        &external("checkpoint = \"adapter\"", "reload = \"lora\""),
        "t.toml",
    )
    .unwrap();
    // Only vLLM's API loads adapters.
    let text = external("", "reload = \"lora\"\napi = \"transformers\"");
    assert!(err(&text).contains("transformers serve"), "{}", err(&text));
    // A server told to load adapters needs a LoRA run.
    let text = external("", "reload = \"lora\"").replace("[train.lora]\n", "");
    let e = err(&text);
    assert!(
        e.contains("generate.server.reload") && e.contains("[train.lora]"),
        "{e}"
    );
}
