//! The software ASIC with real threads and real SHA-256d. These tests run in real time (the ASIC
//! is a hardware stand-in), but assert only on duty cycles, counts and hashes, never on durations.

use hearth::devices::software_asic::{AsicConfig, SoftwareAsic};
use hearth::mining::asic::{AsicBackend, RateCommand, Work};
use hearth::mining::header::{sha256d, StratumJob, Target};
use hearth::thermal::safety::ChipTemperatures;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The chips are real threads on a 2-core machine: tests that measure duty run one at a time so
/// that they measure the ASIC, not the other tests' threads.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn job() -> Arc<StratumJob> {
    Arc::new(StratumJob {
        job_id: "j1".into(),
        prevhash: [0x11; 32],
        coinb1: vec![0x01, 0x02, 0x03],
        coinb2: vec![0x04, 0x05],
        merkle_branches: vec![[0x22; 32], [0x33; 32]],
        version: 0x2000_0000,
        nbits: 0x1d00ffff,
        ntime: 0x6500_0000,
        clean_jobs: true,
    })
}

fn work(difficulty: f64) -> Work {
    Work {
        job: job(),
        extranonce1: vec![0xaa, 0xbb, 0xcc, 0xdd],
        extranonce2_size: 4,
        extranonce2_first: 0,
        share_target: Target::from_difficulty(difficulty).unwrap(),
        version: 0x2000_0000,
    }
}

/// Polls (real time: the chips are threads) until `f` holds, giving up after `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Waits until every chip has completed its first whole slice under command `seq` (the slice
/// in progress when the command arrived mixes the two rates), returns their duties.
fn slice_duties_under(asic: &SoftwareAsic, seq: u64) -> Vec<f64> {
    assert!(
        wait_until(Duration::from_secs(20), || asic
            .stats()
            .chips
            .iter()
            .all(|c| c.last_slice_wholly_under(seq))),
        "chips never completed a slice under command {seq}"
    );
    asic.stats()
        .chips
        .iter()
        .map(|c| c.last_slice_duty)
        .collect()
}

#[test]
fn follows_a_rate_step_within_one_slice() {
    let _one_at_a_time = exclusive();
    let (asic, _found) = SoftwareAsic::start(AsicConfig::default(), None).unwrap();
    asic.set_work(Some(work(1e6)));
    asic.set_rate(RateCommand {
        rate: 1.0,
        valid_until: None,
    });
    let full = slice_duties_under(&asic, asic.command_seq());
    assert!(full.iter().all(|&d| d > 0.9), "full rate duties {full:?}");
    for rate in [0.3, 0.7, 0.1] {
        asic.set_rate(RateCommand {
            rate,
            valid_until: None,
        });
        // The first whole slice under the new command already holds the new rate (±0.1: on a
        // loaded 2-core machine a descheduled nonce batch can overrun the busy part of a slice).
        let duties = slice_duties_under(&asic, asic.command_seq());
        for d in duties {
            assert!((d - rate).abs() <= 0.1, "rate {rate}: first slice duty {d}");
        }
    }
    let s = asic.stats();
    assert_eq!(
        s.hashes_total,
        s.chips.iter().map(|c| c.hashes).sum::<u64>()
    );
    assert!(s.hashes_per_second > 0.0);
    assert!(s.power_watts >= 20.0 && s.power_watts <= 400.0);
}

#[test]
fn stops_when_the_dead_man_deadline_passes() {
    let _one_at_a_time = exclusive();
    let (asic, _found) = SoftwareAsic::start(AsicConfig::default(), None).unwrap();
    asic.set_work(Some(work(1e6)));
    asic.set_rate(RateCommand {
        rate: 1.0,
        valid_until: Some(Instant::now() + Duration::from_millis(200)),
    });
    assert!(wait_until(Duration::from_secs(20), || asic
        .stats()
        .hashes_total
        > 0));
    // Once the deadline has passed, every slice that starts is idle and no hash is computed.
    let deadline_passed = Instant::now() + Duration::from_millis(200);
    assert!(wait_until(Duration::from_secs(20), || {
        asic.stats().chips.iter().all(|c| {
            c.last_slice_started.is_some_and(|t| t > deadline_passed) && c.last_slice_duty == 0.0
        })
    }));
    let before = asic.stats().hashes_total;
    let later = Instant::now() + Duration::from_millis(150);
    assert!(wait_until(Duration::from_secs(20), || asic
        .stats()
        .chips
        .iter()
        .all(|c| c.last_slice_started.is_some_and(|t| t > later))));
    assert_eq!(
        asic.stats().hashes_total,
        before,
        "hashed after the deadline"
    );
}

#[test]
fn found_shares_are_real_and_use_distinct_extranonce2() {
    let _one_at_a_time = exclusive();
    let temps = ChipTemperatures::default();
    let (asic, found) = SoftwareAsic::start(AsicConfig::default(), Some(temps.clone())).unwrap();
    let w = work(1.0 / 65536.0);
    asic.set_work(Some(w.clone()));
    asic.set_rate(RateCommand {
        rate: 1.0,
        valid_until: None,
    });
    let mut shares = Vec::new();
    while shares.len() < 20 {
        shares.push(
            found
                .recv_timeout(Duration::from_secs(30))
                .expect("a share"),
        );
    }
    asic.set_rate(RateCommand {
        rate: 0.0,
        valid_until: None,
    });
    for s in &shares {
        // Rebuild the header independently from the job and check the hash.
        let root = w.job.merkle_root(&w.extranonce1, &s.extranonce2);
        let header = w.job.header(&root, s.version, s.ntime, s.nonce);
        let hash = sha256d(&header);
        assert_eq!(hash, s.hash);
        assert!(w.share_target.is_met_by(&hash));
        assert!(s.difficulty >= 1.0 / 65536.0);
    }
    let mut en2: Vec<Vec<u8>> = shares.iter().map(|s| s.extranonce2.clone()).collect();
    en2.sort();
    en2.dedup();
    assert!(
        en2.len() >= 2,
        "both chips should find shares on their own extranonce2"
    );
    // Temperatures are reported at the end of each slice.
    assert!(wait_until(Duration::from_secs(20), || temps
        .snapshot()
        .len()
        == 2));
    let chips = temps.snapshot();
    assert!(chips
        .iter()
        .all(|c| c.celsius > 25.0 && c.limit_celsius == 90.0));
}

#[test]
fn invalid_config_is_rejected() {
    let cfg = AsicConfig {
        slice_ms: 200,
        ..AsicConfig::default()
    };
    let err = SoftwareAsic::start(cfg, None).err().unwrap().to_string();
    assert!(err.contains("slice_ms"), "{err}");
    let cfg = AsicConfig {
        max_watts: 10.0,
        ..AsicConfig::default()
    };
    let err = SoftwareAsic::start(cfg, None).err().unwrap().to_string();
    assert!(err.contains("max_watts"), "{err}");
}
