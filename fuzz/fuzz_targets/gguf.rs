//! A GGUF file: the reader (`GgufFile::parse`), every tensor it lists dequantized, and — when
//! the file parses — the model built from it the way `load_pretrained` does for a `.gguf`
//! path: hyper-parameters from the metadata, weights under their HF names (q/k rows
//! unpermuted), the tokenizer rebuilt from `tokenizer.ggml.*`, the chat template, and the
//! Burn model on the flex backend. Any input may be an error; none may panic, hang or
//! allocate without bound.

#![no_main]

mod common;

use burn::backend::Flex;
use libfuzzer_sys::fuzz_target;
use selm_tui::io::gguf::GgufFile;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `load_pretrained` takes a path: one scratch file per process, rewritten per input.
fn scratch() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("fuzz.gguf");
        (dir, path)
    });
    path
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::parse(data.to_vec(), Path::new("fuzz.gguf")) else {
        return;
    };
    for t in &file.tensors {
        if let Ok(host) = file.read(t) {
            assert_eq!(host.shape, t.shape(), "tensor `{}`", t.name);
            assert_eq!(host.data.len(), t.elements(), "tensor `{}`", t.name);
        }
    }
    let path = scratch();
    std::fs::write(path, data).expect("writing the scratch file");
    let _ = selm_tui::model::load::load_pretrained::<Flex>(path, &Default::default());
});
