//! `hearth bench hash`: hashing speed per kernel.

use serde::Serialize;
use std::time::{Duration, Instant};

use super::sha256d::{candidates, Kernel, Prepared};

/// One kernel's speed.
#[derive(Debug, Clone, Serialize)]
pub struct KernelSpeed {
    /// The kernel.
    pub kernel: Kernel,
    /// Threads used.
    pub threads: usize,
    /// Hashes per second per thread, millions.
    pub mhs_per_thread: f64,
    /// Ratio to the portable `sha2` baseline measured in the same run.
    pub ratio_to_portable: f64,
}

/// Measures every supported kernel for `seconds` on `threads` threads; portable is the baseline.
pub fn hash_speeds(threads: usize, seconds: f64) -> Vec<KernelSpeed> {
    let mut out: Vec<KernelSpeed> = Kernel::supported()
        .into_iter()
        .rev() // portable first
        .map(|kernel| {
            let total: u64 = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| s.spawn(move || hash_for(kernel, t as u8, seconds)))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
            });
            KernelSpeed {
                kernel,
                threads,
                mhs_per_thread: total as f64 / seconds / threads as f64 / 1e6,
                ratio_to_portable: 0.0,
            }
        })
        .collect();
    let base = out
        .iter()
        .find(|k| k.kernel == Kernel::Portable)
        .map_or(1.0, |k| k.mhs_per_thread);
    for k in &mut out {
        k.ratio_to_portable = k.mhs_per_thread / base;
    }
    out
}

fn hash_for(kernel: Kernel, seed: u8, seconds: f64) -> u64 {
    let mut header = [seed; 80];
    header[0] = 0x20;
    let p = Prepared::new(&header);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (mut hashes, mut start, mut out) = (0u64, 0u32, Vec::new());
    let batch = 1u32 << 18;
    while Instant::now() < deadline {
        let count = batch.min(u32::MAX - start);
        // Mining-grade target: shares need the top word to be zero.
        if candidates(kernel, &p, 0, start, count, &mut out).is_err() {
            return 0;
        }
        out.clear();
        hashes += u64::from(count);
        start = start.wrapping_add(count);
    }
    hashes
}
