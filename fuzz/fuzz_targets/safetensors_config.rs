//! An HF model directory's two files in one input: `config.json` text, a NUL byte, then the
//! bytes of `model.safetensors` (no NUL: all of it is the config, and no weights). Each is
//! parsed on its own (`ModelConfig::from_json`, `weights_from_bytes`); a config that parses
//! must survive the round trip through the `config.json` checkpoints write; when both parse,
//! the model is built from them on the flex backend, as `load_hf_dir` does. Any input may be
//! an error; none may panic, hang or allocate without bound.

#![no_main]

mod common;

use burn::backend::Flex;
use libfuzzer_sys::fuzz_target;
use selm_tui::io::safetensors::weights_from_bytes;
use selm_tui::model::ModelConfig;

fuzz_target!(|data: &[u8]| {
    let (json, tensors) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let config = std::str::from_utf8(json)
        .ok()
        .and_then(|text| ModelConfig::from_json(text).ok());
    if let Some(config) = &config {
        let written = config.to_hf_json().to_string();
        let back = ModelConfig::from_json(&written)
            .unwrap_or_else(|e| panic!("the written config.json does not read back: {e:#}"));
        assert_eq!(&back, config, "config.json round trip");
    }
    let Ok(mut weights) = weights_from_bytes(tensors, "fuzz.safetensors") else {
        return;
    };
    let names: Vec<String> = weights.names().map(str::to_string).collect();
    assert_eq!(names.len(), weights.len());
    if let Some(config) = config {
        let _ =
            selm_tui::model::load::from_weights::<Flex>(config, &mut weights, &Default::default());
    } else {
        for name in names {
            let t = weights.remove(&name).expect("listed");
            assert_eq!(
                t.shape.iter().product::<usize>(),
                t.data.len(),
                "tensor `{name}`"
            );
        }
    }
});
