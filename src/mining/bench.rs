//! `hearth bench hash` and `hearth bench asic`: hashing speed per kernel and throttle response.

use serde::Serialize;
use std::time::{Duration, Instant};

use super::asic::{AsicBackend, AsicConfig, AsicError, RateCommand, SoftwareAsic, Work};
use super::header::{StratumJob, Target};
use super::sha256d::{candidates, CpuFeatures, Kernel, Prepared, IV};
use sha2::digest::generic_array::GenericArray;

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
    let on_threads = |f: &(dyn Fn(u8) -> u64 + Sync)| -> f64 {
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || f(t as u8))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        total as f64 / seconds / threads as f64 / 1e6
    };
    let one_stream_limit_mhs = on_threads(&|seed| compressions_for(seed, seconds)) / 2.0;
    let mut kernels: Vec<KernelSpeed> = Kernel::supported()
        .into_iter()
        .map(|kernel| KernelSpeed {
            kernel,
            threads,
            mhs_per_thread: on_threads(&|seed| hash_for(kernel, seed, seconds)),
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

/// SHA-256 compressions done by one serial stream in `seconds`.
fn compressions_for(seed: u8, seconds: f64) -> u64 {
    let block = GenericArray::clone_from_slice(&[seed; 64]);
    let mut state = IV;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut done = 0u64;
    while Instant::now() < deadline {
        for _ in 0..4096 {
            sha2::compress256(&mut state, std::slice::from_ref(&block));
        }
        done += 4096;
    }
    std::hint::black_box(state);
    done
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

/// Throttle response of the software ASIC.
#[derive(Debug, Clone, Serialize)]
pub struct ThrottleResponse {
    /// Rate steps measured.
    pub steps: usize,
    /// Time from `set_rate` until every chip runs a slice at the new rate: median, ms.
    pub p50_ms: f64,
    /// The same, worst case, ms.
    pub max_ms: f64,
    /// Mean |duty − rate| of the first slice at the new rate.
    pub mean_duty_error: f64,
    /// Worst |duty − rate| of the first slice at the new rate.
    pub max_duty_error: f64,
    /// Steps whose first slice held the new rate within 5 % of full rate.
    pub within_5_percent: usize,
    /// New work (as on a `clean_jobs` notify) until every chip hashes it: median, ms.
    pub work_switch_p50_ms: f64,
    /// The same, worst case, ms.
    pub work_switch_max_ms: f64,
}

/// Steps the ASIC's rate `repeats` × 4 times and measures how fast and how exactly it follows.
pub fn throttle_response(cfg: AsicConfig, repeats: usize) -> Result<ThrottleResponse, AsicError> {
    let chips = cfg.chips;
    let (asic, _found) = SoftwareAsic::start(cfg, None)?;
    let work = |n: u32| -> Result<Work, AsicError> {
        Ok(Work {
            job: std::sync::Arc::new(StratumJob {
                job_id: format!("bench{n}"),
                prevhash: [n as u8; 32],
                coinb1: vec![1],
                coinb2: vec![2],
                merkle_branches: vec![],
                version: 0x2000_0000,
                nbits: 0x1d00ffff,
                ntime: n,
                clean_jobs: true,
            }),
            extranonce1: vec![0; 4],
            extranonce2_size: 4,
            extranonce2_first: 0,
            share_target: Target::from_difficulty(1e9).map_err(|e| AsicError::Invalid {
                key: "difficulty",
                msg: e.to_string(),
            })?,
            version: 0x2000_0000,
        })
    };
    asic.set_work(Some(work(u32::MAX)?));
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..repeats {
        for rate in [1.0, 0.3, 0.7, 0.1] {
            let t0 = Instant::now();
            asic.set_rate(RateCommand {
                rate,
                valid_until: None,
            });
            let seq = asic.command_seq();
            // Wait (real time: the chips are threads) for each chip's first whole slice under
            // it (the slice in progress when it arrived mixes the old and the new rate).
            let (applied, duties) = loop {
                std::thread::sleep(Duration::from_millis(2));
                let s = asic.stats();
                if s.chips.iter().all(|c| c.last_slice_wholly_under(seq)) {
                    let applied = s
                        .chips
                        .iter()
                        .filter_map(|c| c.command_applied)
                        .filter(|&(q, _)| q == seq)
                        .map(|(_, at)| at.duration_since(t0))
                        .max()
                        .unwrap_or_default();
                    break (
                        applied,
                        s.chips
                            .iter()
                            .map(|c| c.last_slice_duty)
                            .collect::<Vec<_>>(),
                    );
                }
            };
            debug_assert_eq!(duties.len(), chips);
            latencies.push(applied.as_secs_f64() * 1e3);
            errors.extend(duties.iter().map(|d| (d - rate).abs()));
        }
    }
    // Work switches at full rate: the time until every chip hashes the new job.
    asic.set_rate(RateCommand {
        rate: 1.0,
        valid_until: None,
    });
    let mut switches = Vec::new();
    for n in 0..(4 * repeats) as u32 {
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        asic.set_work(Some(work(n)?));
        let seq = asic.work_seq();
        let applied = loop {
            let s = asic.stats();
            let at: Vec<Instant> = s
                .chips
                .iter()
                .filter_map(|c| c.work_applied)
                .filter(|&(q, _)| q == seq)
                .map(|(_, at)| at)
                .collect();
            if at.len() == chips {
                break at
                    .into_iter()
                    .max()
                    .map(|t| t.duration_since(t0))
                    .unwrap_or_default();
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        switches.push(applied.as_secs_f64() * 1e3);
    }
    switches.sort_by(f64::total_cmp);
    latencies.sort_by(f64::total_cmp);
    let steps = latencies.len();
    let within = errors
        .chunks(chips.max(1))
        .filter(|c| c.iter().all(|&e| e <= 0.05))
        .count();
    Ok(ThrottleResponse {
        steps,
        p50_ms: latencies.get(steps / 2).copied().unwrap_or(0.0),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        mean_duty_error: errors.iter().sum::<f64>() / errors.len().max(1) as f64,
        max_duty_error: errors.iter().copied().fold(0.0, f64::max),
        within_5_percent: within,
        work_switch_p50_ms: switches.get(switches.len() / 2).copied().unwrap_or(0.0),
        work_switch_max_ms: switches.last().copied().unwrap_or(0.0),
    })
}

/// The hashrate the pool measures from accepted share difficulty, against what the ASIC reports.
#[derive(Debug, Clone, Serialize)]
pub struct HashrateAgreement {
    /// Seconds measured.
    pub seconds: f64,
    /// Shares the pool accepted.
    pub shares: u64,
    /// Σ accepted difficulty · 2^32 / seconds, H/s.
    pub pool_hashes_per_second: f64,
    /// Hashes the ASIC computed / seconds, H/s.
    pub asic_hashes_per_second: f64,
    /// pool / ASIC.
    pub ratio: f64,
    /// One standard deviation of the pool's estimate, relative (shares are Poisson: 1/√N).
    pub relative_sigma: f64,
}

/// Mines at full rate against a local pool for `seconds` and compares the two hashrates.
pub async fn hashrate_agreement(
    asic: AsicConfig,
    seconds: f64,
) -> Result<HashrateAgreement, Box<dyn std::error::Error + Send + Sync>> {
    use super::engine::MiningEngine;
    use super::stratum::client::{ClientConfig, Endpoint};
    use super::stratum::pool::{LocalPool, PoolConfig};
    // Vardiff aims at a share every second or two, for enough shares in a short run.
    let pool_cfg = PoolConfig {
        target_shares_per_minute: 40.0,
        retarget_seconds: 10.0,
        ..PoolConfig::default()
    };
    let pool = LocalPool::start(pool_cfg, ([127, 0, 0, 1], 0).into()).await?;
    let client = ClientConfig {
        pools: vec![Endpoint {
            url: format!("stratum+tcp://{}", pool.addr()),
            user: "bench".into(),
            password: String::new(),
            tls_ca: None,
        }],
        ..ClientConfig::default()
    };
    let engine = MiningEngine::start(asic, client, None)?;
    engine.asic.set_rate(RateCommand {
        rate: 1.0,
        valid_until: None,
    });
    // Let vardiff settle before measuring.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let work0 = pool.stats().get("bench").map_or(0.0, |w| w.accepted_work);
    let shares0 = pool.stats().get("bench").map_or(0, |w| w.accepted);
    let hashes0 = engine.asic.stats().hashes_total;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let hashes = engine.asic.stats().hashes_total - hashes0;
    let stats = pool.stats();
    let w = stats.get("bench").cloned().unwrap_or_default();
    engine.shutdown().await;
    pool.shutdown().await;
    let shares = w.accepted - shares0;
    let pool_hps = (w.accepted_work - work0) * 4_294_967_296.0 / elapsed;
    let asic_hps = hashes as f64 / elapsed;
    Ok(HashrateAgreement {
        seconds: elapsed,
        shares,
        pool_hashes_per_second: pool_hps,
        asic_hashes_per_second: asic_hps,
        ratio: pool_hps / asic_hps.max(1.0),
        relative_sigma: 1.0 / (shares.max(1) as f64).sqrt(),
    })
}
