//! Kernel choice by measurement: every kernel the CPU supports is timed briefly, the fastest wins.
//!
//! Which kernel is fastest depends on the microarchitecture, not only on the feature flags: the
//! SHA extensions are fast on AMD Zen and slower than AVX-512 on Intel Xeons, and the two SHA-NI
//! kernels trade SHA-unit work for ALU work differently. So the choice is measured, once per
//! process, and logged; `--kernel` (or `[mining] kernel`) still forces one.

use serde::Serialize;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{candidates, CpuFeatures, Kernel, Prepared};

/// One kernel's speed in the start-up measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KernelTiming {
    /// The kernel.
    pub kernel: Kernel,
    /// Its best rate over the measurement's rounds, MH/s on one thread.
    pub mhs: f64,
}

/// The kernel chosen, and the measurement that chose it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelChoice {
    /// The fastest kernel this CPU supports.
    pub kernel: Kernel,
    /// Every kernel this CPU supports, with its measured rate.
    pub timings: Vec<KernelTiming>,
}

/// Picks the fastest of the kernels a CPU with `features` runs, timing each with `rate` (higher
/// is faster). Kernels the CPU lacks are never timed nor chosen.
pub fn choose(features: &CpuFeatures, mut rate: impl FnMut(Kernel) -> f64) -> KernelChoice {
    let timings: Vec<KernelTiming> = Kernel::ALL
        .into_iter()
        .filter(|k| k.runs_on(features))
        .map(|kernel| KernelTiming {
            kernel,
            mhs: rate(kernel),
        })
        .collect();
    let kernel = timings
        .iter()
        .filter(|t| t.mhs.is_finite())
        .max_by(|a, b| a.mhs.total_cmp(&b.mhs))
        .map_or(Kernel::Portable, |t| t.kernel);
    KernelChoice { kernel, timings }
}

/// Rounds of the start-up measurement; each kernel's best round counts, so a burst of other
/// load during one round does not decide the choice.
const ROUNDS: usize = 3;
/// Time per kernel and round.
const SLICE: Duration = Duration::from_millis(8);

/// The process's measured choice (about 0.1 s of hashing on first use, then cached).
pub(super) fn measured() -> &'static KernelChoice {
    static CHOICE: OnceLock<KernelChoice> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let features = CpuFeatures::detect();
        let mut best = [0f64; Kernel::ALL.len()];
        for _ in 0..ROUNDS {
            for (i, k) in Kernel::ALL.into_iter().enumerate() {
                if k.runs_on(&features) {
                    best[i] = best[i].max(rate_for(k, SLICE));
                }
            }
        }
        let choice = choose(&features, |k| {
            Kernel::ALL
                .iter()
                .position(|&x| x == k)
                .map_or(0.0, |i| best[i])
        });
        tracing::info!(
            kernel = choice.kernel.name(),
            features = %features.names().join(","),
            timings = %choice
                .timings
                .iter()
                .map(|t| format!("{}={:.2}", t.kernel.name(), t.mhs))
                .collect::<Vec<_>>()
                .join(" "),
            "SHA-256d kernel chosen by measurement (MH/s per thread)"
        );
        choice
    })
}

/// MH/s of `kernel` on this thread over about `time`, at a mining-grade target (0 if the CPU
/// lacks it).
pub fn rate_for(kernel: Kernel, time: Duration) -> f64 {
    let mut header = [0x5au8; 80];
    header[0] = 0x20;
    let p = Prepared::new(&header);
    let mut out = Vec::new();
    let (mut start, mut batch, mut hashes) = (0u32, 1024u32, 0u64);
    let t0 = Instant::now();
    loop {
        if candidates(kernel, &p, 0, start, batch, &mut out).is_err() {
            return 0.0;
        }
        out.clear();
        hashes += u64::from(batch);
        start = start.wrapping_add(batch) & 0x7fff_ffff;
        let elapsed = t0.elapsed();
        if elapsed >= time {
            return hashes as f64 / elapsed.as_secs_f64() / 1e6;
        }
        // Batches of about a millisecond: long enough that the clock costs nothing.
        if elapsed < time / 8 {
            batch = (batch * 2).min(1 << 20);
        }
    }
}
