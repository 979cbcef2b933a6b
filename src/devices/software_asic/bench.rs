//! `hearth bench asic`: the software ASIC's throttle response, and its hashrate against a pool's.

use serde::Serialize;
use std::time::{Duration, Instant};

use super::{AsicConfig, SoftwareAsic};
use crate::mining::asic::{AsicBackend, AsicError, RateCommand, Work};
use crate::mining::header::{StratumJob, Target};

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
    use crate::mining::stratum::client::{ClientConfig, Endpoint};
    use crate::mining::stratum::pool::{LocalPool, PoolConfig};
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
    let engine = crate::devices::start_mining(asic, client, None)?;
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
