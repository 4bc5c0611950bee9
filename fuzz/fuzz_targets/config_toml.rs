//! The TOML run configuration: `Config::from_toml` (which validates). A config that is
//! accepted must also serialize into the run directory's `config.toml` and read back equal
//! (`selm-tui inspect` reads it), and the prompt count the loop derives from it
//! (`prompts.per_iteration x run.iterations`, engine/pipeline.rs) must not overflow. Any input
//! may be an error; none may panic.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use selm_tui::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml(text, "fuzz.toml") else {
        return;
    };
    config.validate().expect("from_toml validated it");
    config.backend().expect("validated");
    config.task_kinds().expect("validated");
    let written = config.to_toml();
    let back = Config::from_toml(&written, "the written config.toml")
        .unwrap_or_else(|e| panic!("the resolved config does not read back: {e:#}\n{written}"));
    assert_eq!(back, config, "config.toml round trip");
    let n_train = config
        .prompts
        .per_iteration
        .checked_mul(config.run.iterations)
        .and_then(|n| n.checked_add(config.prompts.eval));
    assert!(
        n_train.is_some(),
        "prompts.per_iteration x run.iterations + prompts.eval overflows"
    );
});
