//! HF model directories: `config.json` + `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`. Writing goes the other way, for checkpoints and export.

use anyhow::{Context, Result, bail};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::weights::{HostTensor, WeightMap};

/// Reads every tensor of a model directory into a [`WeightMap`] (converted to f32).
pub fn read_model_dir(dir: &Path) -> Result<WeightMap> {
    let mut map = WeightMap::default();
    for file in weight_files(dir)? {
        read_file_into(&file, &mut map)?;
    }
    Ok(map)
}

/// The safetensors files of a model directory: the shards of the index, or the single file.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("reading {}", index.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", index.display()))?;
        let Some(map) = value.get("weight_map").and_then(|m| m.as_object()) else {
            bail!("{}: no `weight_map` object", index.display());
        };
        let mut files = BTreeSet::new();
        for (name, file) in map {
            let Some(file) = file.as_str() else {
                bail!(
                    "{}: weight_map entry `{name}` is not a file name",
                    index.display()
                );
            };
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                bail!(
                    "{}: shard name `{file}` must be a plain file name",
                    index.display()
                );
            }
            files.insert(file.to_string());
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if !single.exists() {
        bail!(
            "{} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        );
    }
    Ok(vec![single])
}

/// Reads one safetensors file into `map`.
pub fn read_file_into(path: &Path, map: &mut WeightMap) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_bytes_into(&bytes, &path.display().to_string(), map)
}

/// Parses the bytes of one safetensors file into `map`; `origin` (the file's name) prefixes
/// every error. The bytes are untrusted: anything malformed is an error, never a panic.
pub fn read_bytes_into(bytes: &[u8], origin: &str, map: &mut WeightMap) -> Result<()> {
    read_bytes_into_except(bytes, origin, map, &|_| false)
}

/// [`read_bytes_into`] without the tensors `skip` names (a model's integer buffers, say).
pub fn read_bytes_into_except(
    bytes: &[u8],
    origin: &str,
    map: &mut WeightMap,
    skip: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("{origin}: not a valid safetensors file: {e}"))?;
    for (name, view) in st.iter().filter(|(name, _)| !skip(name)) {
        let tensor = to_host(&view).with_context(|| format!("{origin}: tensor `{name}`"))?;
        map.insert(name.to_string(), tensor)
            .with_context(|| format!("in {origin}"))?;
    }
    Ok(())
}

/// The tensors of one safetensors file held in memory (see [`read_bytes_into`]).
pub fn weights_from_bytes(bytes: &[u8], origin: &str) -> Result<WeightMap> {
    let mut map = WeightMap::default();
    read_bytes_into(bytes, origin, &mut map)?;
    Ok(map)
}

fn to_host(view: &TensorView<'_>) -> Result<HostTensor> {
    let bytes = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => bail!("dtype {other:?} is not supported (F32, F16, BF16, F64 are)"),
    };
    Ok(HostTensor::new(view.shape().to_vec(), data))
}

/// Writes f32 tensors as one safetensors file, atomically (temp file, then rename).
pub fn write_file(path: &Path, tensors: &BTreeMap<String, HostTensor>) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), raw, t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, raw, shape)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), raw)
                .map_err(|e| anyhow::anyhow!("tensor `{name}`: {e}"))?;
            Ok((name.as_str(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    let serialized = safetensors::serialize(views, metadata)
        .map_err(|e| anyhow::anyhow!("serializing {}: {e}", path.display()))?;
    crate::io::atomic_write(path, &serialized)
}
