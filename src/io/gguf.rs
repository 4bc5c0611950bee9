//! GGUF (llama.cpp's model format, versions 2 and 3): metadata and the tensor directory;
//! tensors are dequantized to f32 by [`super::ggml`].
//!
//! The file is untrusted: every read is bounds-checked, counts and lengths are capped before
//! anything is allocated for them, and a truncated or corrupt file is an error naming the
//! offset (or the tensor) where it went wrong, never a panic.

use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use super::ggml::GgmlType;
use super::ggml::dequantize;
use super::weights::HostTensor;

pub(crate) const MAGIC: &[u8; 4] = b"GGUF";
/// More tensors or metadata entries than any real model has.
const MAX_COUNT: u64 = 1 << 20;
/// Longest metadata string (a chat template is a few KiB; a merges entry a few bytes).
const MAX_STRING: u64 = 1 << 24;
const MAX_DIMS: u32 = 4;
/// The smallest tensor info: name length, dimension count, one dimension, type, offset.
const MIN_TENSOR_INFO: u64 = 8 + 4 + 8 + 4 + 8;
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (innermost) one.
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// The row-major (PyTorch) shape: ggml's dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A parsed GGUF file held in memory.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GgufFile({}, v{}, {} keys, {} tensors)",
            self.path.display(),
            self.version,
            self.metadata.len(),
            self.tensors.len()
        )
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(bytes, path).with_context(|| format!("in GGUF file {}", path.display()))
    }

    pub fn parse(bytes: Vec<u8>, path: &Path) -> Result<Self> {
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
        };
        let magic = r.take(4)?;
        ensure!(magic == MAGIC, "not a GGUF file (magic {magic:02x?})");
        let version = r.u32()?;
        ensure!(
            version == 2 || version == 3,
            "unsupported GGUF version {version} (2 and 3 are)"
        );
        let n_tensors = r.count("tensor count")?;
        let n_kv = r.count("metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let at = r.pos;
            let key = r.string()?;
            let value = r
                .value(0)
                .with_context(|| format!("metadata `{key}` at offset {at}"))?;
            metadata.insert(key, value);
        }
        // Each tensor info takes at least MIN_TENSOR_INFO bytes: check the count against the
        // bytes left before allocating for it.
        let left = (r.bytes.len() - r.pos) as u64;
        ensure!(
            n_tensors <= left / MIN_TENSOR_INFO,
            "tensor count {n_tensors} exceeds what the {left} bytes after the metadata can hold"
        );
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let at = r.pos;
            tensors.push(
                r.tensor_info()
                    .with_context(|| format!("tensor info at offset {at}"))?,
            );
        }
        let alignment = match metadata.get("general.alignment") {
            Some(v) => v.as_u64().context("general.alignment is not an integer")?,
            None => DEFAULT_ALIGNMENT,
        };
        ensure!(
            alignment > 0 && alignment.is_power_of_two() && alignment <= 1 << 16,
            "general.alignment {alignment} is not a power of two up to 65536"
        );
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let file = Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data_start: usize::try_from(data_start)?,
            bytes,
        };
        for t in &file.tensors {
            file.byte_range(t)?;
        }
        Ok(file)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Where a tensor's bytes lie, checked against the file's length.
    fn byte_range(&self, t: &TensorInfo) -> Result<std::ops::Range<usize>> {
        let (per_block, block_bytes) = t
            .ty
            .block()
            .with_context(|| format!("tensor `{}`: unsupported ggml type {:?}", t.name, t.ty))?;
        let n = t.elements();
        ensure!(
            t.dims[0].is_multiple_of(per_block),
            "tensor `{}`: row length {} is not a multiple of the {per_block}-element block",
            t.name,
            t.dims[0]
        );
        let len = (n / per_block)
            .checked_mul(block_bytes)
            .with_context(|| format!("tensor `{}`: size overflows", t.name))?;
        let start = usize::try_from(t.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_start))
            .with_context(|| format!("tensor `{}`: offset {} overflows", t.name, t.offset))?;
        let end = start
            .checked_add(len)
            .with_context(|| format!("tensor `{}`: size overflows", t.name))?;
        ensure!(
            end <= self.bytes.len(),
            "tensor `{}`: data at bytes {start}..{end} but the file has {} bytes (truncated?)",
            t.name,
            self.bytes.len()
        );
        Ok(start..end)
    }

    /// A tensor dequantized to f32, in row-major (PyTorch) shape.
    pub fn read(&self, t: &TensorInfo) -> Result<HostTensor> {
        let bytes = &self.bytes[self.byte_range(t)?];
        let data = dequantize(t.ty, bytes, t.elements())
            .with_context(|| format!("tensor `{}`", t.name))?;
        Ok(HostTensor::new(t.shape(), data))
    }
}

/// A cursor over the file's bytes; every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            bail!(
                "truncated: {n} bytes needed at offset {} but the file has {}",
                self.pos,
                self.bytes.len()
            );
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn count(&mut self, what: &str) -> Result<u64> {
        let at = self.pos;
        let n = self.u64()?;
        ensure!(
            n <= MAX_COUNT,
            "{what} {n} at offset {at} is implausible (limit {MAX_COUNT})"
        );
        Ok(n)
    }

    fn string(&mut self) -> Result<String> {
        let at = self.pos;
        let len = self.u64()?;
        ensure!(
            len <= MAX_STRING,
            "string length {len} at offset {at} is over the {MAX_STRING}-byte limit"
        );
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| anyhow::anyhow!("string at offset {at} is not UTF-8"))
    }

    fn value(&mut self, depth: u32) -> Result<Value> {
        let ty = self.u32()?;
        self.typed_value(ty, depth)
    }

    fn typed_value(&mut self, ty: u32, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => bail!("bool byte {b} at offset {}", self.pos - 1),
            },
            8 => Value::String(self.string()?),
            9 => {
                ensure!(depth < 2, "arrays nested too deep at offset {}", self.pos);
                let elem = self.u32()?;
                let at = self.pos;
                let n = self.u64()?;
                // Each element takes at least one byte: more than the bytes left is corrupt.
                let left = (self.bytes.len() - self.pos) as u64;
                ensure!(
                    n <= left && n <= MAX_COUNT * 4,
                    "array length {n} at offset {at} exceeds what the file can hold"
                );
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.typed_value(elem, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => bail!("unknown value type {other} at offset {}", self.pos - 4),
        })
    }

    fn tensor_info(&mut self) -> Result<TensorInfo> {
        let name = self.string()?;
        let n_dims = self.u32()?;
        ensure!(
            (1..=MAX_DIMS).contains(&n_dims),
            "tensor `{name}`: {n_dims} dimensions (1 to {MAX_DIMS} supported)"
        );
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = self.u64()?;
            ensure!(d > 0, "tensor `{name}`: a zero dimension");
            dims.push(usize::try_from(d)?);
        }
        let mut n: usize = 1;
        for &d in &dims {
            n = n
                .checked_mul(d)
                .filter(|&n| n <= 1 << 40)
                .with_context(|| format!("tensor `{name}`: dims {dims:?} too large"))?;
        }
        let ty = GgmlType::from_id(self.u32()?);
        let offset = self.u64()?;
        Ok(TensorInfo {
            name,
            dims,
            ty,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let data: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
        crate::testing::write_gguf(
            &path,
            &[("general.architecture", Value::String("llama".into()))],
            &[("t", vec![4, 2], GgmlType::F32, data)],
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let ok = GgufFile::parse(bytes.clone(), &path).unwrap();
        let t = ok.read(&ok.tensors[0]).unwrap();
        assert_eq!(t.shape, [2, 4]);
        assert_eq!(t.data[5], 5.0);
        // Every truncation point is an error, never a panic.
        for cut in 0..bytes.len() {
            let err = GgufFile::parse(bytes[..cut].to_vec(), &path);
            assert!(err.is_err(), "truncated at {cut} parsed");
        }
        let msg = format!(
            "{:#}",
            GgufFile::parse(bytes[..bytes.len() - 4].to_vec(), &path).unwrap_err()
        );
        assert!(
            msg.contains("tensor `t`") && msg.contains("truncated"),
            "{msg}"
        );
        // A huge string length is refused before allocating.
        let mut bad = bytes.clone();
        bad[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let msg = format!("{:#}", GgufFile::parse(bad, &path).unwrap_err());
        assert!(msg.contains("over the"), "{msg}");
        // Version 2 has the same layout; version 1 (32-bit counts) is refused.
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert_eq!(GgufFile::parse(v2, &path).unwrap().version, 2);
        let mut v1 = bytes.clone();
        v1[4] = 1;
        let msg = format!("{:#}", GgufFile::parse(v1, &path).unwrap_err());
        assert!(msg.contains("unsupported GGUF version 1"), "{msg}");
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(format!("{:#}", GgufFile::parse(bad, &path).unwrap_err()).contains("not a GGUF"));
    }
}
