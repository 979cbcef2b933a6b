//! `hearth bench hash`: hashing speed per kernel, beside a limit measured in the same run.

use serde::Serialize;
use sha2::digest::generic_array::GenericArray;
use std::time::{Duration, Instant};

use super::sha256d::{rate_for, CpuFeatures, Kernel, IV};

/// One kernel's speed.
#[derive(Debug, Clone, Serialize)]
pub struct KernelSpeed {
    /// The kernel.
    pub kernel: Kernel,
    /// Threads used.
    pub threads: usize,
    /// Hashes per second per thread, millions.
    pub mhs_per_thread: f64,
    /// Ratio to the one-stream limit measured in the same run.
    pub ratio_to_limit: f64,
    /// Ratio to the portable kernel measured in the same run.
    pub ratio_to_portable: f64,
}

/// `hearth bench hash`: every kernel this CPU supports beside a limit measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct HashBench {
    /// The CPU's model name, where the OS tells it.
    pub cpu: Option<String>,
    /// The CPU features the kernels use that this CPU has.
    pub features: Vec<&'static str>,
    /// Threads per kernel.
    pub threads: usize,
    /// Seconds per kernel.
    pub seconds: f64,
    /// The one-stream limit, MH/s per thread: one serial stream of SHA-256 compressions through
    /// `sha2::compress256` (which uses the SHA extensions where the CPU has them), halved
    /// because a nonce costs two compressions.
    pub one_stream_limit_mhs: f64,
    /// Every supported kernel, the portable baseline first.
    pub kernels: Vec<KernelSpeed>,
    /// The fastest kernel of this run.
    pub fastest: Kernel,
}

/// Measures the one-stream limit and every supported kernel for `seconds` on `threads` threads.
pub fn hash_bench(threads: usize, seconds: f64) -> HashBench {
    let time = Duration::from_secs_f64(seconds);
    // The mean over `threads` threads, each measuring its own MH/s.
    let on_threads = |f: &(dyn Fn(u8) -> f64 + Sync)| -> f64 {
        let total: f64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || f(t as u8))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
        });
        total / threads as f64
    };
    let one_stream_limit_mhs = on_threads(&|seed| compressions_mhs(seed, time)) / 2.0;
    let mut kernels: Vec<KernelSpeed> = Kernel::supported()
        .into_iter()
        .map(|kernel| KernelSpeed {
            kernel,
            threads,
            mhs_per_thread: on_threads(&|_| rate_for(kernel, time)),
            ratio_to_limit: 0.0,
            ratio_to_portable: 0.0,
        })
        .collect();
    let portable = kernels
        .iter()
        .find(|k| k.kernel == Kernel::Portable)
        .map_or(1.0, |k| k.mhs_per_thread);
    for k in &mut kernels {
        k.ratio_to_limit = k.mhs_per_thread / one_stream_limit_mhs;
        k.ratio_to_portable = k.mhs_per_thread / portable;
    }
    let fastest = kernels
        .iter()
        .max_by(|a, b| a.mhs_per_thread.total_cmp(&b.mhs_per_thread))
        .map_or(Kernel::Portable, |k| k.kernel);
    HashBench {
        cpu: cpu_model(),
        features: CpuFeatures::detect().names(),
        threads,
        seconds,
        one_stream_limit_mhs,
        kernels,
        fastest,
    }
}

impl std::fmt::Display for HashBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "SHA-256d scan, {} thread(s), {} s per kernel, mining target (top word 0)",
            self.threads, self.seconds
        )?;
        writeln!(
            f,
            "CPU: {}; features: {}",
            self.cpu.as_deref().unwrap_or("unknown"),
            if self.features.is_empty() {
                "none of sha/avx2/avx512f".to_string()
            } else {
                self.features.join(", ")
            }
        )?;
        writeln!(
            f,
            "one-stream limit (sha2 compress, one serial stream, halved): {:.2} MH/s per thread\n",
            self.one_stream_limit_mhs
        )?;
        writeln!(
            f,
            "{:<12}{:>16}{:>14}{:>12}{:>12}",
            "kernel", "MH/s per thread", "MH/s total", "× limit", "× portable"
        )?;
        for k in &self.kernels {
            writeln!(
                f,
                "{:<12}{:>16.2}{:>14.2}{:>12.2}{:>12.2}",
                k.kernel.name(),
                k.mhs_per_thread,
                k.mhs_per_thread * k.threads as f64,
                k.ratio_to_limit,
                k.ratio_to_portable
            )?;
        }
        write!(f, "\nfastest: {}", self.fastest.name())
    }
}

/// The CPU's model name from `/proc/cpuinfo`, where there is one.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
}

/// Millions of SHA-256 compressions per second of one serial stream, over about `time`.
fn compressions_mhs(seed: u8, time: Duration) -> f64 {
    let block = GenericArray::clone_from_slice(&[seed; 64]);
    let mut state = IV;
    let t0 = Instant::now();
    let mut done = 0u64;
    while t0.elapsed() < time {
        for _ in 0..4096 {
            sha2::compress256(&mut state, std::slice::from_ref(&block));
        }
        done += 4096;
    }
    std::hint::black_box(state);
    done as f64 / t0.elapsed().as_secs_f64() / 1e6
}
