//! Tensors: a shape and little-endian f32 data; `.npy` files in and out (so NumPy users can feed
//! and check them); the SHA-256 digest that serves as a job's receipt.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// A dense row-major f32 tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

/// A tensor or `.npy` file that cannot be used.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TensorError {
    /// Data length and shape disagree.
    #[error("shape {shape:?} holds {want} values, got {got}")]
    Shape {
        /// The shape.
        shape: Vec<usize>,
        /// Values it needs.
        want: usize,
        /// Values given.
        got: usize,
    },
    /// Not a `.npy` this reader takes.
    #[error("npy: {0}")]
    Npy(String),
}

impl Tensor {
    /// A tensor, checking that the data fills the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, TensorError> {
        let want = shape.iter().product::<usize>();
        if want != data.len() {
            return Err(TensorError::Shape {
                shape,
                want,
                got: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// Bytes of data.
    pub fn bytes(&self) -> usize {
        4 * self.data.len()
    }

    /// The data as little-endian bytes.
    pub fn le_bytes(&self) -> Vec<u8> {
        self.data.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Parses a `.npy` file (v1–v3; `<f4`, `<f8`, `<i4`, `<i8`, `<u4`, `<u8`, `|u1`, C order).
    /// Integers and f64 are converted to f32.
    pub fn from_npy(bytes: &[u8]) -> Result<Self, TensorError> {
        let bad = |m: &str| TensorError::Npy(m.to_string());
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err(bad("not an .npy file (magic \\x93NUMPY missing)"));
        }
        let (hlen, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            v => return Err(TensorError::Npy(format!("unsupported version {v}"))),
        };
        let header = bytes
            .get(start..start + hlen)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or_else(|| bad("truncated or non-text header"))?;
        let descr = dict_value(header, "descr").ok_or_else(|| bad("header has no 'descr'"))?;
        let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
        if dict_value(header, "fortran_order").map(|v| v.trim().starts_with("True")) != Some(false)
        {
            return Err(bad("fortran_order must be False (save a C-ordered array)"));
        }
        let shape_s = dict_value(header, "shape").ok_or_else(|| bad("header has no 'shape'"))?;
        let inner = shape_s
            .trim()
            .strip_prefix('(')
            .and_then(|s| s.split(')').next())
            .ok_or_else(|| bad("shape is not a tuple"))?;
        let shape = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<usize>()
                    .map_err(|_| bad("shape has a non-integer"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("shape overflows"))?;
        let body = &bytes[start + hlen..];
        let size = match descr {
            "<f4" | "<i4" | "<u4" => 4,
            "<f8" | "<i8" | "<u8" => 8,
            "|u1" | "<u1" => 1,
            other => {
                return Err(TensorError::Npy(format!(
                    "dtype {other} unsupported (use float32, float64, int32, int64, uint8/32/64, little-endian)"
                )))
            }
        };
        if body.len() != n.checked_mul(size).ok_or_else(|| bad("shape overflows"))? {
            return Err(TensorError::Npy(format!(
                "shape {shape:?} of {descr} needs {} bytes, file has {}",
                n * size,
                body.len()
            )));
        }
        let data: Vec<f32> = match descr {
            "<f4" => body
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "<i4" => body
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            "<u4" => body
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            "<f8" => body
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            "<i8" => body
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            "<u8" => body
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            _ => body.iter().map(|&b| b as f32).collect(),
        };
        Self::new(shape, data)
    }

    /// The tensor as a `.npy` v1.0 file (`<f4`, C order).
    pub fn to_npy(&self) -> Vec<u8> {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        // Pad so that the data starts on a 64-byte boundary, ending the header with '\n'.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.le_bytes());
        out
    }
}

/// The value text of `key` in a Python dict literal (up to the next top-level comma).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?;
    let mut depth = 0i32;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    Some(rest)
}

/// SHA-256 over the tensors' data in order, as little-endian f32: a job's receipt.
pub fn digest(tensors: &[Tensor]) -> String {
    let mut h = Sha256::new();
    for t in tensors {
        for v in &t.data {
            h.update(v.to_le_bytes());
        }
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trips_and_reads_numpy_headers() {
        for shape in [vec![5], vec![2, 3], vec![1, 1, 4], vec![0, 3]] {
            let n = shape.iter().product::<usize>();
            let t = Tensor::new(shape, (0..n).map(|i| i as f32 * 0.5 - 1.0).collect()).unwrap();
            let bytes = t.to_npy();
            assert_eq!((bytes.len() - t.bytes()) % 64, 0);
            assert_eq!(Tensor::from_npy(&bytes).unwrap(), t);
        }
        // What numpy 1.x writes for np.arange(3, dtype=np.int64).
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        let h = "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }";
        let h = format!("{h}{}\n", " ".repeat(128 - 10 - h.len() - 1));
        f.extend_from_slice(&(h.len() as u16).to_le_bytes());
        f.extend_from_slice(h.as_bytes());
        for i in 0i64..3 {
            f.extend_from_slice(&i.to_le_bytes());
        }
        let t = Tensor::from_npy(&f).unwrap();
        assert_eq!((t.shape, t.data), (vec![3], vec![0.0, 1.0, 2.0]));
    }

    #[test]
    fn bad_npy_files_are_explained() {
        let t = Tensor::new(vec![2, 2], vec![1.0; 4]).unwrap();
        let good = t.to_npy();
        let e = |b: &[u8]| Tensor::from_npy(b).unwrap_err().to_string();
        assert!(e(b"PK\x03\x04 zip").contains("magic"));
        assert!(e(&good[..good.len() - 1]).contains("needs 16 bytes"));
        // Edit the header text in place (same length), leaving the binary parts alone.
        let patch = |from: &str, to: &str| {
            let mut b = good.clone();
            let at = b
                .windows(from.len())
                .position(|w| w == from.as_bytes())
                .unwrap();
            b[at..at + to.len()].copy_from_slice(to.as_bytes());
            b
        };
        assert!(e(&patch("False", "True ")).contains("fortran_order"));
        assert!(e(&patch("<f4", ">f4")).contains("unsupported"));
        assert!(Tensor::new(vec![3], vec![1.0]).is_err());
    }

    #[test]
    fn digest_is_over_le_f32_bytes() {
        let t = Tensor::new(vec![1], vec![1.0]).unwrap();
        // sha256 of 00 00 80 3f.
        let want = hex::encode(Sha256::digest([0u8, 0, 0x80, 0x3f]));
        assert_eq!(digest(&[t]), want);
    }
}
