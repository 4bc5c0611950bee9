//! ggml's tensor types and their exact dequantization to f32 (F32, F16, BF16, Q8_0, Q4_0,
//! Q4_1: the block layouts of ggml-common.h).

use anyhow::{Result, bail, ensure};

/// ggml tensor types this reader dequantizes (others are listed, and refused on read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
    Other(u32),
}

impl GgmlType {
    pub(crate) fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    /// (elements per block, bytes per block).
    pub(crate) fn block(self) -> Option<(usize, usize)> {
        Some(match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Other(_) => return None,
        })
    }
}

/// Decodes `n` values of type `ty` from `bytes` (exactly the tensor's bytes).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(bytes.chunks_exact(2).map(f16)),
        GgmlType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        // Block of 32: f16 scale d, then 32 signed bytes; x = q * d.
        GgmlType::Q8_0 => {
            for block in bytes.chunks_exact(34) {
                let d = f16(&block[..2]);
                out.extend(block[2..].iter().map(|&q| q as i8 as f32 * d));
            }
        }
        // Block of 32: f16 d, 16 bytes of nibbles; low nibbles are elements 0..16, high
        // nibbles 16..32; x = (q - 8) * d.
        GgmlType::Q4_0 => {
            for block in bytes.chunks_exact(18) {
                let d = f16(&block[..2]);
                let qs = &block[2..];
                out.extend(qs.iter().map(|&q| ((q & 0x0f) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
        }
        // Block of 32: f16 d, f16 min m, 16 bytes of nibbles; x = q * d + m.
        GgmlType::Q4_1 => {
            for block in bytes.chunks_exact(20) {
                let d = f16(&block[..2]);
                let m = f16(&block[2..4]);
                let qs = &block[4..];
                out.extend(qs.iter().map(|&q| (q & 0x0f) as f32 * d + m));
                out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
            }
        }
        GgmlType::Other(id) => bail!("unsupported ggml type {id}"),
    }
    ensure!(out.len() == n, "decoded {} values, expected {n}", out.len());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_1_block() {
        // d = 0.5, m = -1; nibbles: element j low = j % 16, element j + 16 high = 15 - j % 16.
        let mut block = vec![];
        block.extend(f16(0.5));
        block.extend(f16(-1.0));
        for j in 0..16u8 {
            block.push(j | ((15 - j) << 4));
        }
        let x = dequantize(GgmlType::Q4_1, &block, 32).unwrap();
        for j in 0..16 {
            assert_eq!(x[j], j as f32 * 0.5 - 1.0);
            assert_eq!(x[16 + j], (15 - j) as f32 * 0.5 - 1.0);
        }
    }

    #[test]
    fn f16_and_bf16_values() {
        let bytes: Vec<u8> = [0.5f32, -2.0, 65504.0]
            .iter()
            .flat_map(|&x| f16(x))
            .collect();
        assert_eq!(
            dequantize(GgmlType::F16, &bytes, 3).unwrap(),
            [0.5, -2.0, 65504.0]
        );
        let bytes: Vec<u8> = [1.5f32, -3.0]
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        assert_eq!(dequantize(GgmlType::BF16, &bytes, 2).unwrap(), [1.5, -3.0]);
        assert!(dequantize(GgmlType::F16, &bytes[..3], 2).is_err());
    }

    #[test]
    fn q4_0_and_q8_0_blocks() {
        let mut block = vec![];
        block.extend(f16(0.25));
        for j in 0..16u8 {
            block.push(j | (j << 4));
        }
        let x = dequantize(GgmlType::Q4_0, &block, 32).unwrap();
        assert_eq!(x[0], -8.0 * 0.25);
        assert_eq!(x[15], 7.0 * 0.25);
        assert_eq!(x[16], -8.0 * 0.25);
        let mut block = vec![];
        block.extend(f16(2.0));
        block.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let x = dequantize(GgmlType::Q8_0, &block, 32).unwrap();
        assert_eq!(x[0], -32.0);
        assert_eq!(x[31], 30.0);
    }
}
