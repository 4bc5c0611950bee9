//! The built-in model (`builtin:tiny-tasks`) and prompts (`builtin:prompts`), compiled into
//! the binary so that an installed selm-tui runs its default anywhere, with no source tree.
//! The loaders read files, so a `builtin:` path resolves to a copy written once into the
//! cache, under a name derived from the contents (a new binary never reads stale files).

use anyhow::{Context, Result, bail};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// `assets/tiny-tasks`, file by file.
const TINY_TASKS: &[(&str, &[u8])] = &[
    (
        "config.json",
        include_bytes!("../assets/tiny-tasks/config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../assets/tiny-tasks/model.safetensors"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../assets/tiny-tasks/tokenizer.json"),
    ),
    ("sft.json", include_bytes!("../assets/tiny-tasks/sft.json")),
];

const PROMPTS: &[(&str, &[u8])] = &[("prompts.jsonl", include_bytes!("../assets/prompts.jsonl"))];

/// `assets/prompts-reference.jsonl`: prompts with a reference answer (and a chosen and a
/// rejected one), for the `embedding` ranker.
const PROMPTS_REFERENCE: &[(&str, &[u8])] = &[(
    "prompts-reference.jsonl",
    include_bytes!("../assets/prompts-reference.jsonl"),
)];

/// The path of built-in `name` on disk under the `cache` directory, written first if needed.
pub fn path(name: &str, cache: &Path) -> Result<PathBuf> {
    let root = cache.join("builtin");
    match name {
        "tiny-tasks" => materialize(&root, "tiny-tasks", TINY_TASKS),
        "prompts" => Ok(materialize(&root, "prompts", PROMPTS)?.join("prompts.jsonl")),
        "prompts-reference" => Ok(materialize(&root, "prompts-reference", PROMPTS_REFERENCE)?
            .join("prompts-reference.jsonl")),
        other => bail!("unknown built-in `{other}` (tiny-tasks, prompts, prompts-reference)"),
    }
}

/// `<root>/<name>-<hash>/` holding `files`, written through a temporary directory renamed
/// into place, so concurrent runs and crashes never see a partial copy.
fn materialize(root: &Path, name: &str, files: &[(&str, &[u8])]) -> Result<PathBuf> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut hasher);
    let dest = root.join(format!("{name}-{:016x}", hasher.finish()));
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempdir_in(root)
        .with_context(|| format!("creating a directory in {}", root.display()))?;
    for (file, bytes) in files {
        write(&tmp.path().join(file), bytes)?;
    }
    match std::fs::rename(tmp.path(), &dest) {
        Ok(()) => {
            // Now owned by `dest`; nothing left for the guard to remove.
            let _ = tmp.keep();
            Ok(dest)
        }
        // Another process got there first with the same contents.
        Err(_) if dest.is_dir() => Ok(dest),
        Err(e) => Err(e).with_context(|| format!("writing {}", dest.display())),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
