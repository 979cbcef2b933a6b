//! SHA-256d nonce-scan kernels and their run-time dispatch.
//!
//! Every kernel scans a nonce range of one header from the midstate of its first 64 bytes and
//! returns the *candidates*: nonces whose hash's most significant 32 bits are ≤ the target's. The
//! dispatcher then checks each candidate against the full 256-bit target with the portable code,
//! so every kernel gives identical results by construction, and a kernel can exit early on the
//! top word alone.
//!
//! Which kernels exist is fixed at compile time (`target_arch`); which may run is read from the
//! CPU once per process ([`CpuFeatures::detect`]); which one runs by default is measured
//! ([`choose`]): every kernel the CPU supports is timed briefly and the fastest wins.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod choose;
#[cfg(target_arch = "x86_64")]
mod lanes;
mod portable;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod shani;
#[cfg(target_arch = "x86_64")]
mod shani_msg;

pub use choose::{choose, rate_for, KernelChoice, KernelTiming};

use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;
use std::sync::OnceLock;
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
    /// Plain scalar Rust, two compressions per nonce: the honest baseline (no CPU extension).
    Portable,
    /// x86 SHA extensions for the rounds, message schedule on the SSE ALUs, four nonces
    /// interleaved (suits CPUs with one slow SHA unit, such as Intel's).
    ShaNi,
    /// x86 SHA extensions for the rounds and the message schedule, two nonces interleaved
    /// (suits CPUs with cheap SHA message instructions, such as AMD Zen).
    ShaNiMsg,
    /// AVX2, 8 nonces per instruction.
    Avx2,
    /// AVX-512, 16 nonces per instruction.
    Avx512,
}

/// A kernel that cannot run here, or a range it cannot scan.
#[derive(Debug, Error, PartialEq)]
pub enum ScanError {
    /// The CPU lacks the kernel's instructions.
    #[error("kernel {name} needs CPU features this machine lacks: {1}", name = .0.name())]
    Unsupported(Kernel, String),
    /// The range runs past nonce 2^32 − 1.
    #[error("nonce range {start} + {count} runs past 2^32")]
    Range {
        /// First nonce.
        start: u32,
        /// Number of nonces.
        count: u64,
    },
}

/// The CPU features the scan kernels use, as this process may use them (CPU and OS support).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CpuFeatures {
    /// SSSE3 (byte shuffles).
    pub ssse3: bool,
    /// SSE4.1 (unsigned minimum).
    pub sse41: bool,
    /// The SHA extensions (`sha256rnds2`, `sha256msg1`, `sha256msg2`).
    pub sha: bool,
    /// AVX2.
    pub avx2: bool,
    /// AVX-512 Foundation.
    pub avx512f: bool,
}

impl CpuFeatures {
    /// No extension at all: only the portable kernel runs.
    pub const NONE: CpuFeatures = CpuFeatures {
        ssse3: false,
        sse41: false,
        sha: false,
        avx2: false,
        avx512f: false,
    };

    /// Reads this CPU's features once per process.
    pub fn detect() -> CpuFeatures {
        static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
        *FEATURES.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                CpuFeatures {
                    ssse3: std::arch::is_x86_feature_detected!("ssse3"),
                    sse41: std::arch::is_x86_feature_detected!("sse4.1"),
                    sha: std::arch::is_x86_feature_detected!("sha"),
                    avx2: std::arch::is_x86_feature_detected!("avx2"),
                    avx512f: std::arch::is_x86_feature_detected!("avx512f"),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                CpuFeatures::NONE
            }
        })
    }

    /// The features present, by their usual names.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.ssse3, "ssse3"),
            (self.sse41, "sse4.1"),
            (self.sha, "sha"),
            (self.avx2, "avx2"),
            (self.avx512f, "avx512f"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

impl Kernel {
    /// Every kernel, in the order benchmarks list them (the baseline first).
    pub const ALL: [Kernel; 5] = [
        Kernel::Portable,
        Kernel::ShaNi,
        Kernel::ShaNiMsg,
        Kernel::Avx2,
        Kernel::Avx512,
    ];

    /// The kernel's name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::ShaNi => "sha-ni",
            Kernel::ShaNiMsg => "sha-ni-msg",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// The CPU features the kernel is compiled for, by name.
    pub fn needs(self) -> &'static [&'static str] {
        match self {
            Kernel::Portable => &[],
            Kernel::ShaNi | Kernel::ShaNiMsg => &["sha", "ssse3", "sse4.1"],
            Kernel::Avx2 => &["avx2"],
            Kernel::Avx512 => &["avx512f"],
        }
    }

    /// Whether a CPU with `f` can run the kernel (never true for an x86 kernel elsewhere).
    pub fn runs_on(self, f: &CpuFeatures) -> bool {
        if !cfg!(target_arch = "x86_64") && self != Kernel::Portable {
            return false;
        }
        match self {
            Kernel::Portable => true,
            Kernel::ShaNi | Kernel::ShaNiMsg => f.sha && f.ssse3 && f.sse41,
            Kernel::Avx2 => f.avx2,
            Kernel::Avx512 => f.avx512f,
        }
    }

    /// `Ok` if a CPU with `f` can run the kernel, else the error that names what is missing.
    pub fn check_on(self, f: &CpuFeatures) -> Result<(), ScanError> {
        if self.runs_on(f) {
            return Ok(());
        }
        let have = f.names();
        let missing: Vec<&str> = if cfg!(target_arch = "x86_64") {
            self.needs()
                .iter()
                .copied()
                .filter(|n| !have.contains(n))
                .collect()
        } else {
            vec!["x86_64"]
        };
        Err(ScanError::Unsupported(self, missing.join(", ")))
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        self.runs_on(&CpuFeatures::detect())
    }

    /// The kernels this CPU supports, baseline first.
    pub fn supported() -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    /// The fastest kernel this CPU supports, measured once per process (see [`choose`]).
    pub fn best() -> Kernel {
        choose::measured().kernel
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
    kernel.check_on(&CpuFeatures::detect())?;
    match kernel {
        Kernel::Portable => portable::scan(p, top_target, start, count, out),
        // SAFETY (each x86 arm): `check_on` confirmed that the CPU has every feature the kernel
        // is compiled for (`Kernel::needs`).
        #[cfg(target_arch = "x86_64")]
        Kernel::ShaNi => unsafe { shani::scan(p, top_target, start, count, out) },
        #[cfg(target_arch = "x86_64")]
        Kernel::ShaNiMsg => unsafe { shani_msg::scan(p, top_target, start, count, out) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { avx2::scan(p, top_target, start, count, out) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { avx512::scan(p, top_target, start, count, out) },
        // `check_on` refuses every x86 kernel on other architectures.
        #[cfg(not(target_arch = "x86_64"))]
        _ => return Err(ScanError::Unsupported(kernel, "x86_64".into())),
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
mod tests;
