//! File formats only: safetensors, GGUF (and its quantized blocks), host tensors, JSON lines;
//! every write atomic. Nothing here imports anything above it: the run directory and its
//! records are [`crate::run`].

pub mod ggml;
pub mod gguf;
pub mod safetensors;
pub mod weights;

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one,
/// never a half-written one: write a sibling temp file, fsync, rename over.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// An 8-bit RGB image (`rgb`: rows of `width` pixels, 3 bytes each) as PNG.
pub fn encode_png_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>> {
    let mut bytes = vec![];
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().context("encoding PNG")?;
    writer
        .write_image_data(rgb)
        .and_then(|()| writer.finish())
        .context("encoding PNG")?;
    Ok(bytes)
}

/// Appends `line` and a newline to `path` (created if missing) in one write, then fsyncs, so
/// a crash can at worst leave the last line torn.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(format!("{line}\n").as_bytes())?;
        file.sync_data()
    })();
    result.with_context(|| format!("appending to {}", path.display()))
}

/// Reads a JSON-lines file; blank lines are skipped, a bad line is an error naming the file
/// and its 1-based line number. A last line without its newline that does not parse is a
/// write a crash cut short ([`append_line`]) and is skipped.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let count = text.lines().count();
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => out.push(record),
            Err(_) if torn_tail && i + 1 == count => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("{} line {}: not a valid record", path.display(), i + 1)
                });
            }
        }
    }
    Ok(out)
}
