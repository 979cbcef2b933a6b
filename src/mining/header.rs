//! Stratum V1 job → coinbase → merkle root → 80-byte block header; targets and difficulty.
//!
//! Byte-order rules (the classic traps):
//! - `prevhash` arrives as hex with each 4-byte word byte-swapped relative to the header;
//! - `version`, `nbits`, `ntime` and the nonce are hex of a u32 and go into the header little-endian;
//! - merkle branches are in internal byte order and are not reversed;
//! - hashes compare as little-endian 256-bit integers.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Length of a block header.
pub const HEADER_LEN: usize = 80;

/// A Stratum field that could not be decoded.
#[derive(Debug, Error, PartialEq)]
pub enum HeaderError {
    /// Not hex, or the wrong length.
    #[error("{field}: {msg}")]
    Field {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// A difficulty that is zero, negative or not a number.
    #[error("difficulty must be a positive number, got {0}")]
    Difficulty(f64),
    /// An nbits value with the sign bit set or an overflowing exponent.
    #[error("nbits {0:08x} is not a valid compact target")]
    Nbits(u32),
}

fn field_err(field: &'static str, msg: impl Into<String>) -> HeaderError {
    HeaderError::Field {
        field,
        msg: msg.into(),
    }
}

/// Decodes hex, naming the field on error.
pub fn decode_hex(field: &'static str, s: &str) -> Result<Vec<u8>, HeaderError> {
    hex::decode(s.trim()).map_err(|e| field_err(field, format!("not hex: {e}")))
}

fn decode_array<const N: usize>(field: &'static str, s: &str) -> Result<[u8; N], HeaderError> {
    let v = decode_hex(field, s)?;
    let len = v.len();
    v.try_into()
        .map_err(|_| field_err(field, format!("expected {N} bytes, got {len}")))
}

/// Parses the hex of a u32 as Stratum sends it (`"00000002"` is 2).
pub fn decode_u32(field: &'static str, s: &str) -> Result<u32, HeaderError> {
    Ok(u32::from_be_bytes(decode_array::<4>(field, s)?))
}

/// SHA-256 applied twice.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let first = Sha256::digest(data);
    Sha256::digest(first).into()
}

/// A mining job as `mining.notify` describes it, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StratumJob {
    /// The pool's job id.
    pub job_id: String,
    /// Previous block hash in header byte order (already word-swapped back).
    pub prevhash: [u8; 32],
    /// Coinbase before the extranonces.
    pub coinb1: Vec<u8>,
    /// Coinbase after the extranonces.
    pub coinb2: Vec<u8>,
    /// Merkle branches, internal byte order.
    pub merkle_branches: Vec<[u8; 32]>,
    /// Block version.
    pub version: u32,
    /// Compact target of the block.
    pub nbits: u32,
    /// Block time.
    pub ntime: u32,
    /// Whether older jobs must be dropped.
    pub clean_jobs: bool,
}

/// The hex fields of a `mining.notify`, in protocol order.
#[derive(Debug, Clone, Copy)]
pub struct NotifyFields<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// `prevhash` hex (word-swapped).
    pub prevhash: &'a str,
    /// `coinb1` hex.
    pub coinb1: &'a str,
    /// `coinb2` hex.
    pub coinb2: &'a str,
    /// Merkle branch hexes.
    pub merkle_branches: &'a [&'a str],
    /// `version` hex.
    pub version: &'a str,
    /// `nbits` hex.
    pub nbits: &'a str,
    /// `ntime` hex.
    pub ntime: &'a str,
    /// `clean_jobs`.
    pub clean_jobs: bool,
}

impl StratumJob {
    /// Decodes a `mining.notify`'s fields.
    pub fn from_notify(f: &NotifyFields<'_>) -> Result<Self, HeaderError> {
        let swapped: [u8; 32] = decode_array("prevhash", f.prevhash)?;
        let mut prevhash = [0u8; 32];
        for (dst, src) in prevhash.chunks_exact_mut(4).zip(swapped.chunks_exact(4)) {
            dst.copy_from_slice(&[src[3], src[2], src[1], src[0]]);
        }
        Ok(Self {
            job_id: f.job_id.to_string(),
            prevhash,
            coinb1: decode_hex("coinb1", f.coinb1)?,
            coinb2: decode_hex("coinb2", f.coinb2)?,
            merkle_branches: f
                .merkle_branches
                .iter()
                .map(|b| decode_array("merkle_branch", b))
                .collect::<Result<_, _>>()?,
            version: decode_u32("version", f.version)?,
            nbits: decode_u32("nbits", f.nbits)?,
            ntime: decode_u32("ntime", f.ntime)?,
            clean_jobs: f.clean_jobs,
        })
    }

    /// The coinbase transaction `coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2`.
    pub fn coinbase(&self, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
        [&self.coinb1[..], extranonce1, extranonce2, &self.coinb2[..]].concat()
    }

    /// The merkle root for the given extranonces, internal byte order.
    pub fn merkle_root(&self, extranonce1: &[u8], extranonce2: &[u8]) -> [u8; 32] {
        let mut root = sha256d(&self.coinbase(extranonce1, extranonce2));
        for branch in &self.merkle_branches {
            let mut buf = [0u8; 64];
            buf[..32].copy_from_slice(&root);
            buf[32..].copy_from_slice(branch);
            root = sha256d(&buf);
        }
        root
    }

    /// The 80-byte header with this merkle root, ntime, nonce and version.
    pub fn header(
        &self,
        merkle_root: &[u8; 32],
        version: u32,
        ntime: u32,
        nonce: u32,
    ) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&version.to_le_bytes());
        h[4..36].copy_from_slice(&self.prevhash);
        h[36..68].copy_from_slice(merkle_root);
        h[68..72].copy_from_slice(&ntime.to_le_bytes());
        h[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        h
    }
}

/// BIP310 version rolling: `(job_version & !mask) | (bits & mask)`.
pub fn rolled_version(job_version: u32, mask: u32, bits: u32) -> u32 {
    (job_version & !mask) | (bits & mask)
}

/// A 256-bit unsigned integer as four little-endian u64 limbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct U256(pub [u64; 4]);

impl U256 {
    /// The largest value.
    pub const MAX: U256 = U256([u64::MAX; 4]);

    /// From 32 little-endian bytes (how a hash compares).
    pub fn from_le_bytes(b: &[u8; 32]) -> Self {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *limb = u64::from_le_bytes(w);
        }
        U256(limbs)
    }

    /// To 32 little-endian bytes.
    pub fn to_le_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
        }
        b
    }

    /// Shifts left, saturating to [`U256::MAX`] on overflow.
    fn shl_saturating(self, bits: u32) -> Self {
        if self == U256::default() {
            return self;
        }
        let lead = self.leading_zeros();
        if bits > lead {
            return U256::MAX;
        }
        let mut out = [0u64; 4];
        let (words, rem) = ((bits / 64) as usize, bits % 64);
        for i in (0..4).rev() {
            if i < words {
                continue;
            }
            let src = i - words;
            let mut v = self.0[src] << rem;
            if rem > 0 && src > 0 {
                v |= self.0[src - 1] >> (64 - rem);
            }
            out[i] = v;
        }
        U256(out)
    }

    fn shr(self, bits: u32) -> Self {
        if bits >= 256 {
            return U256::default();
        }
        let mut out = [0u64; 4];
        let (words, rem) = ((bits / 64) as usize, bits % 64);
        for (i, o) in out.iter_mut().enumerate() {
            let src = i + words;
            if src >= 4 {
                break;
            }
            let mut v = self.0[src] >> rem;
            if rem > 0 && src + 1 < 4 {
                v |= self.0[src + 1] << (64 - rem);
            }
            *o = v;
        }
        U256(out)
    }

    fn leading_zeros(self) -> u32 {
        let mut n = 0;
        for limb in self.0.iter().rev() {
            if *limb == 0 {
                n += 64;
            } else {
                return n + limb.leading_zeros();
            }
        }
        n
    }

    /// The integer part of a non-negative f64, saturating at [`U256::MAX`].
    pub fn from_f64(x: f64) -> Self {
        if x.is_nan() || x < 1.0 {
            return U256::default();
        }
        if x >= 2f64.powi(256) {
            return U256::MAX;
        }
        let bits = x.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32 - 1075;
        let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
        let m = U256([mantissa, 0, 0, 0]);
        if exp >= 0 {
            m.shl_saturating(exp as u32)
        } else {
            m.shr((-exp) as u32)
        }
    }

    /// The nearest f64.
    pub fn to_f64(self) -> f64 {
        self.0.iter().rev().fold(0.0, |acc, &limb| {
            acc * 18_446_744_073_709_551_616.0 + limb as f64
        })
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for U256 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

/// A hash target: a hash meets it when, read as a little-endian 256-bit integer, it is ≤ the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target(pub U256);

/// The difficulty-1 target `0x00000000FFFF0000…0000`.
pub const DIFF1: U256 = U256([0, 0, 0, 0x0000_0000_FFFF_0000]);

impl Target {
    /// The target of a share difficulty: `diff1 / difficulty`.
    pub fn from_difficulty(difficulty: f64) -> Result<Self, HeaderError> {
        if !(difficulty.is_finite() && difficulty > 0.0) {
            return Err(HeaderError::Difficulty(difficulty));
        }
        // Pools work to f64 precision; diff1 / d is exact for powers of two (1, 2, 1024 …).
        Ok(Target(U256::from_f64(DIFF1.to_f64() / difficulty)))
    }

    /// The difficulty this target corresponds to.
    pub fn difficulty(&self) -> f64 {
        DIFF1.to_f64() / self.0.to_f64().max(1.0)
    }

    /// The target encoded by compact `nbits`.
    pub fn from_nbits(nbits: u32) -> Result<Self, HeaderError> {
        let exponent = nbits >> 24;
        let mantissa = nbits & 0x007f_ffff;
        if nbits & 0x0080_0000 != 0 || exponent > 32 {
            return Err(HeaderError::Nbits(nbits));
        }
        let m = U256([u64::from(mantissa), 0, 0, 0]);
        Ok(Target(if exponent >= 3 {
            m.shl_saturating(8 * (exponent - 3))
        } else {
            m.shr(8 * (3 - exponent))
        }))
    }

    /// From 64 hex digits in display (big-endian) order.
    pub fn from_hex(s: &str) -> Result<Self, HeaderError> {
        let mut b: [u8; 32] = decode_array("target", s)?;
        b.reverse();
        Ok(Target(U256::from_le_bytes(&b)))
    }

    /// The most significant 32 bits: a hash whose top word exceeds this cannot meet the target.
    pub fn top_word(&self) -> u32 {
        (self.0 .0[3] >> 32) as u32
    }

    /// Whether `hash` (as produced by SHA-256d, internal byte order) meets the target.
    pub fn is_met_by(&self, hash: &[u8; 32]) -> bool {
        U256::from_le_bytes(hash) <= self.0
    }
}

/// The difficulty a hash achieves (`diff1 / hash`).
pub fn hash_difficulty(hash: &[u8; 32]) -> f64 {
    DIFF1.to_f64() / U256::from_le_bytes(hash).to_f64().max(1.0)
}

/// A hash in display order (reversed hex).
pub fn display_hash(hash: &[u8; 32]) -> String {
    let mut b = *hash;
    b.reverse();
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";

    #[test]
    fn genesis_header_hashes_to_the_genesis_block() {
        let h: [u8; 80] = hex::decode(GENESIS).unwrap().try_into().unwrap();
        let hash = sha256d(&h);
        assert_eq!(
            display_hash(&hash),
            "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
        );
        assert!(Target::from_nbits(0x1d00ffff).unwrap().is_met_by(&hash));
    }

    #[test]
    fn stratum_round_trip_builds_the_known_header() {
        let job = StratumJob::from_notify(&NotifyFields {
            job_id: "bf",
            prevhash: "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
            coinb1: "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",
            coinb2: "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
            merkle_branches: &[],
            version: "00000002",
            nbits: "1c2ac4af",
            ntime: "504e86b9",
            clean_jobs: false,
        })
        .unwrap();
        let en1 = hex::decode("08000002").unwrap();
        let en2 = hex::decode("00000001").unwrap();
        let root = job.merkle_root(&en1, &en2);
        let ntime = decode_u32("ntime", "504e86ed").unwrap();
        let nonce = decode_u32("nonce", "b2957c02").unwrap();
        let header = job.header(&root, job.version, ntime, nonce);
        assert_eq!(
            hex::encode(header),
            "02000000f8b6164d19e2f65a2aae448f787fe66d61e57a48c0c6771b1e920b440000000032414daa9ddac879fd2c62839b9ba710a3546363a5f5e22915d90dc3b1699deced864e50afc42a1c027c95b2"
        );
        assert_eq!(
            display_hash(&sha256d(&header)),
            "000000002076870fe65a2b6eeed84fa892c0db924f1482243a6247d931dcab32"
        );
    }

    #[test]
    fn merkle_branches_fold_in_order_without_reversal() {
        let job = StratumJob {
            job_id: "x".into(),
            prevhash: [0; 32],
            coinb1: vec![1],
            coinb2: vec![2],
            merkle_branches: vec![[7; 32], [9; 32]],
            version: 1,
            nbits: 0x1d00ffff,
            ntime: 0,
            clean_jobs: true,
        };
        let mut expect = sha256d(&[1, 3, 4, 2]);
        for b in [[7u8; 32], [9u8; 32]] {
            expect = sha256d(&[&expect[..], &b[..]].concat());
        }
        assert_eq!(job.merkle_root(&[3], &[4]), expect);
    }

    #[test]
    fn difficulty_and_target_convert_both_ways() {
        assert_eq!(Target::from_difficulty(1.0).unwrap().0, DIFF1);
        let t = Target::from_difficulty(2.0).unwrap();
        assert_eq!(t.0, U256([0, 0, 0, 0x7FFF_8000]));
        for d in [0.001, 0.5, 1.0, 3.7, 1024.0, 65536.0, 1e12] {
            let back = Target::from_difficulty(d).unwrap().difficulty();
            assert!((back / d - 1.0).abs() < 1e-9, "{d} -> {back}");
        }
        assert_eq!(Target::from_difficulty(1e-80).unwrap().0, U256::MAX);
        assert!(Target::from_difficulty(0.0).is_err());
        assert!(Target::from_difficulty(-1.0).is_err());
        assert!(Target::from_difficulty(f64::NAN).is_err());
    }

    #[test]
    fn nbits_decodes_to_the_expected_target() {
        assert_eq!(Target::from_nbits(0x1d00ffff).unwrap().0, DIFF1);
        let t = Target::from_nbits(0x1c2ac4af).unwrap();
        assert_eq!(t.top_word(), 0);
        assert_eq!(t.0 .0[3], 0x2ac4_af00);
        assert!(Target::from_nbits(0x1d80ffff).is_err());
    }

    #[test]
    fn version_rolling_keeps_bits_outside_the_mask() {
        assert_eq!(
            rolled_version(0x2000_0000, 0x1fff_e000, 0xffff_ffff),
            0x3fff_e000
        );
        assert_eq!(
            rolled_version(0x2000_0004, 0x1fff_e000, 0x0000_2000),
            0x2000_2004
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let e = Target::from_hex("zz").unwrap_err().to_string();
        assert!(e.contains("target") && e.contains("hex"), "{e}");
        let e = decode_u32("ntime", "504e86").unwrap_err().to_string();
        assert!(e.contains("ntime") && e.contains("4 bytes"), "{e}");
    }
}
