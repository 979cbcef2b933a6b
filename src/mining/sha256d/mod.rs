//! SHA-256d nonce-scan kernels and their run-time dispatch.
//!
//! Every kernel scans a nonce range of one header from the midstate of its first 64 bytes and
//! returns the *candidates*: nonces whose hash's most significant 32 bits are ≤ the target's. The
//! dispatcher then checks each candidate against the full 256-bit target with the portable code,
//! so every kernel gives identical results by construction, and a kernel can exit early on the
//! top word alone.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;
#[cfg(target_arch = "x86_64")]
mod scalar;
#[cfg(target_arch = "x86_64")]
mod shani;

use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;
use thiserror::Error;

use super::header::{sha256d, Target, HEADER_LEN};

/// The SHA-256 initial state.
pub const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A scan kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kernel {
    /// `sha2::compress256`, two compressions per nonce (the baseline).
    Portable,
    /// x86 SHA extensions, several nonces interleaved.
    ShaNi,
    /// AVX2, 8 nonces per instruction.
    Avx2,
    /// AVX-512, 16 nonces per instruction.
    Avx512,
}

/// A kernel that cannot run here.
#[derive(Debug, Error, PartialEq)]
pub enum ScanError {
    /// The CPU lacks the kernel's instructions.
    #[error("kernel {0:?} needs CPU features this machine lacks ({1})")]
    Unsupported(Kernel, &'static str),
    /// The range runs past nonce 2^32 − 1.
    #[error("nonce range {start} + {count} runs past 2^32")]
    Range {
        /// First nonce.
        start: u32,
        /// Number of nonces.
        count: u64,
    },
}

impl Kernel {
    /// Every kernel, fastest first.
    pub const ALL: [Kernel; 4] = [
        Kernel::Avx512,
        Kernel::Avx2,
        Kernel::ShaNi,
        Kernel::Portable,
    ];

    /// The kernel's name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::ShaNi => "sha-ni",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    fn features(self) -> &'static str {
        match self {
            Kernel::Portable => "none",
            Kernel::ShaNi => "sha, sse4.1",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512f",
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::ShaNi => {
                std::arch::is_x86_feature_detected!("sha")
                    && std::arch::is_x86_feature_detected!("sse4.1")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The kernels this CPU supports, fastest first.
    pub fn supported() -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    /// The fastest kernel this CPU supports.
    pub fn best() -> Kernel {
        Kernel::supported()
            .first()
            .copied()
            .unwrap_or(Kernel::Portable)
    }
}

/// A header prepared for scanning: the midstate of its first 64 bytes and the three words after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// The header itself (its nonce field is ignored).
    pub header: [u8; HEADER_LEN],
    /// SHA-256 state after the first 64 bytes.
    pub midstate: [u32; 8],
    /// Header bytes 64..76 as big-endian words.
    pub tail: [u32; 3],
}

impl Prepared {
    /// Computes the midstate of `header`.
    pub fn new(header: &[u8; HEADER_LEN]) -> Self {
        let mut midstate = IV;
        sha2::compress256(
            &mut midstate,
            &[GenericArray::clone_from_slice(&header[..64])],
        );
        let word =
            |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        Self {
            header: *header,
            midstate,
            tail: [word(64), word(68), word(72)],
        }
    }

    /// The header with `nonce` filled in.
    pub fn with_nonce(&self, nonce: u32) -> [u8; HEADER_LEN] {
        let mut h = self.header;
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        h
    }
}

/// A nonce whose hash meets the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The nonce.
    pub nonce: u32,
    /// Its SHA-256d hash, internal byte order.
    pub hash: [u8; 32],
}

/// Runs `kernel`'s candidate filter over a range, appending to `out`.
pub fn candidates(
    kernel: Kernel,
    p: &Prepared,
    top_target: u32,
    start: u32,
    count: u32,
    out: &mut Vec<u32>,
) -> Result<(), ScanError> {
    if u64::from(start) + u64::from(count) > 1 << 32 {
        return Err(ScanError::Range {
            start,
            count: u64::from(count),
        });
    }
    if !kernel.is_supported() {
        return Err(ScanError::Unsupported(kernel, kernel.features()));
    }
    match kernel {
        Kernel::Portable => portable::scan(&p.midstate, &p.tail, top_target, start, count, out),
        // SAFETY: `is_supported` confirmed the CPU features each kernel is compiled for.
        #[cfg(target_arch = "x86_64")]
        Kernel::ShaNi => unsafe {
            shani::scan(&p.midstate, &p.tail, top_target, start, count, out)
        },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { avx2::scan(&p.midstate, &p.tail, top_target, start, count, out) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe {
            avx512::scan(&p.midstate, &p.tail, top_target, start, count, out)
        },
        #[cfg(not(target_arch = "x86_64"))]
        _ => return Err(ScanError::Unsupported(kernel, "x86_64 only")),
    }
    Ok(())
}

/// Scans `count` nonces from `start` and returns every one whose hash meets `target`.
pub fn scan(
    kernel: Kernel,
    p: &Prepared,
    target: &Target,
    start: u32,
    count: u32,
) -> Result<Vec<Found>, ScanError> {
    let mut cands = Vec::new();
    candidates(kernel, p, target.top_word(), start, count, &mut cands)?;
    Ok(cands
        .into_iter()
        .filter_map(|nonce| {
            let hash = sha256d(&p.with_nonce(nonce));
            target.is_met_by(&hash).then_some(Found { nonce, hash })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mining::header::U256;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Every kernel the project's machine class (x86_64 with SHA-NI and AVX-512) must run. A
    /// missing one fails the suite rather than being skipped.
    fn kernels() -> Vec<Kernel> {
        if cfg!(target_arch = "x86_64") {
            for k in Kernel::ALL {
                assert!(
                    k.is_supported(),
                    "{k:?} needs {}; this CPU lacks it",
                    k.features()
                );
            }
        }
        Kernel::supported()
    }

    fn random_header(rng: &mut StdRng) -> Prepared {
        let mut h = [0u8; HEADER_LEN];
        rng.fill(&mut h[..]);
        Prepared::new(&h)
    }

    /// The top word the slow, independent way: SHA-256d of the whole header.
    fn top_word(p: &Prepared, nonce: u32) -> u32 {
        let d = sha256d(&p.with_nonce(nonce));
        u32::from_le_bytes([d[28], d[29], d[30], d[31]])
    }

    fn reference(p: &Prepared, top: u32, start: u32, count: u32) -> Vec<u32> {
        (0..count)
            .map(|i| start.wrapping_add(i))
            .filter(|&n| top_word(p, n) <= top)
            .collect()
    }

    /// A kernel's candidates; checks that it appends to `out` rather than overwriting it.
    fn cands(k: Kernel, p: &Prepared, top: u32, start: u32, count: u32) -> Vec<u32> {
        let mut out = vec![7];
        candidates(k, p, top, start, count, &mut out).unwrap();
        assert_eq!(out.remove(0), 7, "{k:?} overwrote its output");
        out
    }

    #[test]
    fn every_kernel_matches_the_reference_on_random_headers_ranges_and_targets() {
        let ks = kernels();
        let mut rng = StdRng::seed_from_u64(0x5ea1);
        for _ in 0..4 {
            let p = random_header(&mut rng);
            for top in [0x1000_0000, 0x0100_0000, 0xf000_0000, rng.random()] {
                for count in [0u32, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 4099] {
                    let start = rng.random_range(0..u32::MAX - 5000);
                    let expect = reference(&p, top, start, count);
                    for &k in &ks {
                        assert_eq!(
                            cands(k, &p, top, start, count),
                            expect,
                            "{k:?} {top:#x} {start} {count}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_kernel_handles_the_end_of_the_nonce_space_and_extreme_targets() {
        let ks = kernels();
        let mut rng = StdRng::seed_from_u64(99);
        let p = random_header(&mut rng);
        for count in 1..=41u32 {
            let start = u32::MAX - (count - 1);
            let expect = reference(&p, 0x4000_0000, start, count);
            for &k in &ks {
                assert_eq!(
                    cands(k, &p, 0x4000_0000, start, count),
                    expect,
                    "{k:?} {count}"
                );
            }
        }
        let all: Vec<u32> = (5000..5100).collect();
        let own = top_word(&p, 5050);
        for &k in &ks {
            assert_eq!(cands(k, &p, u32::MAX, 5000, 100), all, "{k:?} max target");
            assert_eq!(
                cands(k, &p, 0, 5000, 100),
                reference(&p, 0, 5000, 100),
                "{k:?} zero"
            );
            // A target equal to a nonce's own top word includes it.
            assert!(cands(k, &p, own, 5050, 1) == [5050], "{k:?} equality");
        }
    }

    #[test]
    fn near_target_edge_is_exact_for_every_kernel() {
        let ks = kernels();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..20 {
            let p = random_header(&mut rng);
            let nonce: u32 = rng.random_range(100..u32::MAX - 100);
            let hash = sha256d(&p.with_nonce(nonce));
            let exact = Target(U256::from_le_bytes(&hash));
            let mut below = exact.0;
            // One less than the hash: the nonce must no longer qualify.
            for limb in below.0.iter_mut() {
                let (v, borrow) = limb.overflowing_sub(1);
                *limb = v;
                if !borrow {
                    break;
                }
            }
            for &k in &ks {
                let at = scan(k, &p, &exact, nonce - 50, 100).unwrap();
                assert!(at.iter().any(|f| f.nonce == nonce), "{k:?} missed the edge");
                let under = scan(k, &p, &Target(below), nonce - 50, 100).unwrap();
                assert!(
                    under.iter().all(|f| f.nonce != nonce),
                    "{k:?} took hash > target"
                );
            }
        }
    }

    #[test]
    fn genesis_nonce_is_found_by_every_kernel() {
        let h: [u8; 80] = hex::decode("0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c").unwrap().try_into().unwrap();
        let p = Prepared::new(&h);
        let target = Target::from_nbits(0x1d00ffff).unwrap();
        for k in kernels() {
            let found = scan(k, &p, &target, 0x7c2b_0000, 0x10000).unwrap();
            assert_eq!(
                found.iter().map(|f| f.nonce).collect::<Vec<_>>(),
                [0x7c2b_ac1d],
                "{k:?}"
            );
            assert_eq!(
                crate::mining::header::display_hash(&found[0].hash),
                "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
            );
        }
    }

    #[test]
    fn ranges_past_the_last_nonce_are_rejected() {
        let p = Prepared::new(&[0; HEADER_LEN]);
        let mut out = Vec::new();
        assert!(matches!(
            candidates(Kernel::Portable, &p, 0, u32::MAX, 2, &mut out),
            Err(ScanError::Range { .. })
        ));
    }
}
