//! The online loop on the tiny fixture model (with a character tokenizer added): each stage,
//! the pairs, checkpoints, the command/event protocol, and a headless run end to end.

mod common;

use burn::backend::Flex;
use burn::module::AutodiffModule;
use common::*;
use selm_tui::backend::BackendSpec;
use selm_tui::config::{Config, RankerKind};
use selm_tui::engine::pipeline::{Advance, Pipeline};
use selm_tui::engine::{self, Command, Event, Stage};
use selm_tui::model::load::load_hf_dir;
use selm_tui::sft::TASK_ALPHABET;
use selm_tui::tokenizer::char_tokenizer_json;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

type B = selm_tui::backend::FlexAutodiff;

/// The tiny-llama fixture plus a character tokenizer (its 44 ids fit the 128-token vocab).
fn fixture_model(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny-llama").join(f), model.join(f)).unwrap();
    }
    std::fs::write(
        model.join("tokenizer.json"),
        char_tokenizer_json(TASK_ALPHABET),
    )
    .unwrap();
    model
}

fn small_config(dir: &Path) -> Config {
    let mut c = Config::embedded_default();
    c.model.path = fixture_model(dir).display().to_string();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = 2;
    c.prompts.per_iteration = 24;
    c.prompts.eval = 4;
    c.generate.samples = 3;
    c.generate.max_new_tokens = 6;
    c.generate.batch_size = 16;
    c.train.batch_size = 2;
    c.eval.samples = 2;
    c.validate().unwrap();
    c
}

fn logits(model: &selm_tui::model::CausalLm<Flex>) -> Vec<f32> {
    logits_of(model, &[vec![1, 20, 30, 40]])
}

#[test]
fn stages_run_in_order_and_write_the_run_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = Pipeline::<B>::new(small_config(tmp.path()), &Default::default()).unwrap();
    let mut events = vec![];
    p.evaluate_start(&mut |e| events.push(e)).unwrap();
    let mut seen = vec![];
    loop {
        let (_, stage) = p.position();
        let step = p.advance(&mut |e| events.push(e)).unwrap();
        if step != Advance::Unit {
            seen.push(stage);
        }
        if step == Advance::RunDone {
            break;
        }
    }
    assert_eq!(seen, [Stage::ALL, Stage::ALL].concat());
    let updates = events
        .iter()
        .filter(|e| matches!(e, Event::Metrics(_)))
        .count();
    assert!(updates >= 2, "{updates} updates");
    let run = p.run().path.clone();

    // Pairs: chosen and rejected are the best and worst candidates by the ranker's scores.
    let pairs = read_jsonl(&run.join("iter-001/pairs.jsonl"));
    assert!(!pairs.is_empty());
    for pair in &pairs {
        let scores: Vec<f64> = pair["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| f(&c["score"]))
            .collect();
        let max = scores.iter().cloned().fold(f64::MIN, f64::max);
        let min = scores.iter().cloned().fold(f64::MAX, f64::min);
        assert_eq!(f(&pair["chosen_score"]), max);
        assert_eq!(f(&pair["rejected_score"]), min);
        assert!(max > min);
        let texts = |s: f64| -> Vec<String> {
            pair["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| f(&c["score"]) == s)
                .map(|c| c["text"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(texts(max).contains(&pair["chosen"].as_str().unwrap().to_string()));
        assert!(texts(min).contains(&pair["rejected"].as_str().unwrap().to_string()));
        let n_ref = pair["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["is_reference"] == true)
            .count();
        assert_eq!(n_ref, 1, "y_ref is one of the candidates");
        assert_eq!(pair["iteration"], 1);
        assert_eq!(pair["ranker"], "oracle");
    }
    // Every prompt's K samples + y_ref were written before ranking.
    let cands = read_jsonl(&run.join("iter-002/candidates.jsonl"));
    assert_eq!(cands.len(), 24);
    assert!(
        cands
            .iter()
            .all(|c| c["candidates"].as_array().unwrap().len() == 4)
    );

    // Metrics: one train row per update plus eval rows for iterations 0, 1, 2.
    let metrics = read_jsonl(&run.join("metrics.jsonl"));
    assert_eq!(
        metrics.iter().filter(|m| m["kind"] == "train").count(),
        updates
    );
    assert_eq!(metrics.iter().filter(|m| m["kind"] == "eval").count(), 3);
    for key in [
        "loss",
        "loss/dpo",
        "loss/optimism",
        "rewards/accuracies",
        "logps/pi_response",
        "grad_norm",
        "lr",
        "alpha",
        "beta",
    ] {
        assert!(metrics.iter().any(|m| m.get(key).is_some()), "{key}");
    }
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), metrics.len() + 1);
    assert!(csv.starts_with("kind,iteration,step,batch,loss,loss/dpo"));

    // The last checkpoint reloads to the policy's logits.
    let back = load_hf_dir::<Flex>(&run.join("checkpoints/iter-002"), &Default::default()).unwrap();
    assert_eq!(logits(&back), logits(&p.policy().unwrap().valid()));
    assert!(run.join("checkpoints/iter-002/tokenizer.json").exists());
    let resolved = Config::from_file(&run.join("config.toml")).unwrap();
    assert_eq!(resolved.prompts.per_iteration, 24);
    assert_eq!(p.summaries().len(), 3);

    // The inspector's per-token log-probs: one record per pair, one value per token.
    let logps = read_jsonl(&run.join("iter-001/pair_logps.jsonl"));
    assert_eq!(logps.len(), pairs.len());
    for l in &logps {
        for part in ["chosen", "rejected", "y_ref"] {
            let n = l[part]["tokens"].as_array().unwrap().len();
            assert!(n > 0);
            assert_eq!(l[part]["policy"].as_array().unwrap().len(), n);
            assert_eq!(l[part]["reference"].as_array().unwrap().len(), n);
        }
    }

    // `selm-tui inspect` rebuilds the same picture from the directory alone.
    let app = selm_tui::tui::replay::load_run(&run).unwrap();
    assert_eq!(app.evals.evals.len(), 3);
    assert_eq!(app.loss.steps.len(), updates);
    assert_eq!(app.pairs.data[&1].pairs.len(), pairs.len());
    assert_eq!(
        app.pairs.data[&1].logps.as_ref().unwrap().len(),
        pairs.len()
    );
    assert_eq!(app.evals.get(2), p.summaries().last());
    assert_eq!(app.selected_iteration, 2);
    assert_eq!(
        app.pairs.data[&1].pairs[0].chosen,
        pairs[0]["chosen"].as_str().unwrap()
    );
}

#[test]
fn token_logps_sum_to_the_sequence_logps() {
    use selm_tui::selm::logprobs::{response_token_logps, sequence_logps};
    let model = load_hf_dir::<Flex>(&fixture("tiny-llama"), &Default::default()).unwrap();
    let rows: Vec<(&[u32], &[u32])> = vec![
        (&[1, 5, 9], &[17, 4, 2]),
        (&[1, 7], &[3, 3, 3, 8, 2]),
        (&[1, 2, 3, 4, 5], &[6]),
    ];
    let per_token = response_token_logps(&model, &rows);
    let sums: Vec<f32> = sequence_logps(&model, &rows)
        .into_data()
        .into_vec()
        .unwrap();
    for ((tokens, (_, r)), sum) in per_token.iter().zip(&rows).zip(sums) {
        assert_eq!(tokens.len(), r.len());
        assert!(tokens.iter().all(|&x| x < 0.0));
        assert!(
            (tokens.iter().sum::<f32>() - sum).abs() < 1e-4,
            "{tokens:?} vs {sum}"
        );
    }
}

#[test]
fn inspecting_a_directory_that_is_not_a_run_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let err = selm_tui::tui::replay::load_run(tmp.path()).unwrap_err();
    assert!(
        format!("{err:#}").contains("not a run directory"),
        "{err:#}"
    );
    // A corrupt pairs file names the file and the line.
    let run = tmp.path().join("run");
    std::fs::create_dir_all(run.join("iter-001")).unwrap();
    std::fs::write(run.join("config.toml"), selm_tui::config::DEFAULT_TOML).unwrap();
    std::fs::write(run.join("iter-001/pairs.jsonl"), "{\"prompt\": 1}\n").unwrap();
    let err = format!("{:#}", selm_tui::tui::replay::load_run(&run).unwrap_err());
    assert!(err.contains("pairs.jsonl line 1"), "{err}");
}

#[test]
fn a_diverging_update_stops_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = small_config(tmp.path());
    config.train.warmup_ratio = 0.0;
    // Edit similarity gives the random fixture model's answers distinct scores: many pairs.
    config.prompts.tasks = vec!["rev".into()];
    let mut p = Pipeline::<B>::new(config, &Default::default()).unwrap();
    let mut sink = |_e: Event| {};
    while p.position().0 == 1 {
        p.advance(&mut sink).unwrap();
    }
    let first = p.summaries().last().unwrap();
    assert!(first.pairs >= 4, "{first:?}");
    let good = p.run().checkpoint_dir(1);
    let before = std::fs::read(good.join("model.safetensors")).unwrap();
    p.set_params(None, None, Some(1e30), selm_tui::engine::Origin::Tui)
        .unwrap();
    let err = loop {
        match p.advance(&mut sink) {
            Ok(Advance::RunDone) => panic!("a 1e30 learning rate should diverge"),
            Ok(_) => {}
            Err(e) => break format!("{e:#}"),
        }
    };
    assert!(
        err.contains("update skipped") && err.contains("stage `update`"),
        "{err}"
    );
    assert_eq!(p.position().1, Stage::Update);
    assert_eq!(
        std::fs::read(good.join("model.safetensors")).unwrap(),
        before
    );
    assert!(!p.run().checkpoint_dir(2).exists());
    load_hf_dir::<Flex>(&good, &Default::default()).unwrap();
    let history = read_jsonl(&p.run().path.join("history.jsonl"));
    assert_eq!(history.last().unwrap()["new"]["lr"], 1e30);
}

fn next_event(h: &engine::EngineHandle) -> Event {
    h.events
        .recv_timeout(Duration::from_secs(120))
        .expect("engine event")
}

fn until(h: &engine::EngineHandle, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = vec![];
    loop {
        let e = next_event(h);
        let stop = pred(&e);
        if let Event::Error(msg) = &e {
            panic!("engine error: {msg}");
        }
        seen.push(e);
        if stop {
            return seen;
        }
    }
}

#[test]
fn commands_step_pause_and_change_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let h = engine::spawn(
        engine::Start::New(Box::new(small_config(tmp.path()))),
        BackendSpec::Flex,
    )
    .unwrap();
    let started = until(&h, |e| matches!(e, Event::Iteration(s) if s.iteration == 0));
    let run_dir = started
        .iter()
        .find_map(|e| match e {
            Event::Started { run_dir, .. } => Some(PathBuf::from(run_dir)),
            _ => None,
        })
        .unwrap();

    h.commands.send(Command::StepStage).unwrap();
    let ev = until(&h, |e| matches!(e, Event::Paused));
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::StageFinished {
            stage: Stage::SamplePrompts,
            ..
        }
    )));
    assert!(!ev.iter().any(|e| matches!(
        e,
        Event::StageStarted {
            stage: Stage::Generate,
            ..
        }
    )));

    for _ in 0..3 {
        h.commands.send(Command::StepStage).unwrap();
        until(&h, |e| matches!(e, Event::Paused));
    }
    h.commands
        .send(Command::SetParams {
            alpha: Some(0.5),
            beta: None,
            lr: None,
            origin: selm_tui::engine::Origin::Tui,
        })
        .unwrap();
    let ev = until(&h, |e| matches!(e, Event::ParamsChanged(_)));
    assert!(matches!(ev.last(), Some(Event::ParamsChanged(p)) if p.alpha == 0.5));

    // One mini-batch, with the new alpha.
    h.commands.send(Command::StepBatch).unwrap();
    let ev = until(&h, |e| matches!(e, Event::Paused));
    let metrics: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Metrics(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].metrics.alpha, 0.5);

    h.commands
        .send(Command::SetParams {
            alpha: None,
            beta: Some(-1.0),
            lr: None,
            origin: selm_tui::engine::Origin::Tui,
        })
        .unwrap();
    match next_event(&h) {
        Event::Error(msg) => assert!(msg.contains("beta must be > 0, got -1"), "{msg}"),
        other => panic!("expected a rejected change, got {other:?}"),
    }
    h.commands.send(Command::Quit).unwrap();
    let ev = until(&h, |e| matches!(e, Event::Finished { .. }));
    assert!(matches!(
        ev.last(),
        Some(Event::Finished { completed: false })
    ));
    h.thread.join().unwrap();
    let history = read_jsonl(&run_dir.join("history.jsonl"));
    assert_eq!(history.len(), 2, "start + one accepted change");
    assert_eq!(history[1]["new"]["alpha"], 0.5);
    assert_eq!(history[1]["old"]["alpha"], 0.001);
}

/// A prompt file the character tokenizer can spell, and a ranker (scripts/test_ranker.py's
/// scoring) that crashes once, on its fifth request: the first of the rank stage, after the
/// four held-out prompts of the starting evaluation.
fn jsonl_config(dir: &Path) -> Config {
    let mut c = small_config(dir);
    let prompts = dir.join("prompts.jsonl");
    let lines: String = (0..30)
        .map(|i| {
            format!(
                "{{\"prompt\": \"rev {}:\"}}\n",
                "abcde".repeat(1 + i % 3) + &i.to_string()
            )
        })
        .collect();
    std::fs::write(&prompts, lines).unwrap();
    c.prompts.tasks.clear();
    c.prompts.file = Some(prompts.display().to_string());
    c.prompts.per_iteration = 12;
    c.prompts.eval = 4;
    c.run.iterations = 1;
    let code = format!(
        "import json, os, sys\n\
         sys.path.insert(0, {scripts:?})\n\
         import test_ranker as t\n\
         for n, line in enumerate(sys.stdin, 1):\n\
         \x20   if n == 5 and not os.path.exists({marker:?}):\n\
         \x20       open({marker:?}, 'w').close()\n\
         \x20       sys.stderr.write('model load failed\\n')\n\
         \x20       sys.exit(1)\n\
         \x20   req = json.loads(line)\n\
         \x20   print(json.dumps({{'scores': [t.score(req['prompt'], c, 12) for c in req['candidates']]}}), flush=True)\n",
        scripts = format!("{}/scripts", env!("CARGO_MANIFEST_DIR")),
        marker = dir.join("failed-once").display().to_string(),
    );
    c.rank.ranker = RankerKind::Command;
    c.rank.command = vec!["python3".into(), "-c".into(), code];
    c.validate().unwrap();
    c
}

#[test]
fn a_failing_ranker_keeps_the_candidates_and_the_rank_stage_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = Pipeline::<B>::new(jsonl_config(tmp.path()), &Default::default()).unwrap();
    let mut sink = |_e: Event| {};
    p.evaluate_start(&mut sink).unwrap();
    while p.position().1 != Stage::Rank {
        p.advance(&mut sink).unwrap();
    }
    let cands = p.run().candidates_path(1);
    assert_eq!(read_jsonl(&cands).len(), 12, "written before ranking");
    let err = format!("{:#}", p.advance(&mut sink).unwrap_err());
    assert!(err.contains("stage `rank`"), "{err}");
    assert!(err.contains("model load failed"), "{err}");
    assert!(err.contains("candidates.jsonl"), "{err}");
    assert_eq!(
        read_jsonl(&cands).len(),
        12,
        "still there after the failure"
    );
    assert_eq!(p.position().1, Stage::Rank);
    // Stepping again retries the rank stage with a fresh process, and the run completes.
    loop {
        if p.advance(&mut sink).unwrap() == Advance::RunDone {
            break;
        }
    }
    let pairs = read_jsonl(&p.run().pairs_path(1));
    assert!(!pairs.is_empty());
    assert!(pairs.iter().all(|r| r["ranker"].is_string()));
    assert!(
        pairs
            .iter()
            .all(|r| r["prompt"].as_str().unwrap().starts_with("rev "))
    );
}

#[test]
fn export_writes_an_hf_directory_that_reloads_to_the_same_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = small_config(tmp.path());
    config.run.iterations = 1;
    let mut p = Pipeline::<B>::new(config, &Default::default()).unwrap();
    let mut sink = |_e: Event| {};
    p.evaluate_start(&mut sink).unwrap();
    while p.advance(&mut sink).unwrap() != Advance::RunDone {}
    let out = tmp.path().join("export");
    selm_tui::export::export(&p.run().path, 1, &out).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    // The architecture of the model the run started from (the fixture's own).
    let start: Value = serde_json::from_str(
        &std::fs::read_to_string(p.config().model_dir().unwrap().join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["architectures"][0], start["architectures"][0]);
    let (back, tok) =
        selm_tui::model::load::load_pretrained::<Flex>(&out, &Default::default()).unwrap();
    assert_eq!(logits(&back), logits(&p.policy().unwrap().valid()));
    assert_eq!(
        tok.encode_prompt("12+34=").unwrap(),
        p.tokenizer().encode_prompt("12+34=").unwrap()
    );
    // Not over an existing export; a missing iteration names what exists.
    let err = format!(
        "{:#}",
        selm_tui::export::export(&p.run().path, 1, &out).unwrap_err()
    );
    assert!(err.contains("not empty"), "{err}");
    let err = format!(
        "{:#}",
        selm_tui::export::export(&p.run().path, 4, &tmp.path().join("x")).unwrap_err()
    );
    assert!(
        err.contains("iteration 4") && err.contains("iter-001"),
        "{err}"
    );
}
