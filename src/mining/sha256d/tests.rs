//! Every kernel against an independent reference, on whatever CPU runs the tests.
//!
//! The kernels a CPU lacks are not skipped: for them the tests check the clear error instead.
//! The first test to run writes the kernels it covers to the test output (past the capture).

use super::*;
use crate::mining::header::U256;
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::io::Write;

/// The kernels this CPU runs, named once in the test output.
fn kernels() -> Vec<Kernel> {
    static ANNOUNCED: std::sync::Once = std::sync::Once::new();
    let ks = Kernel::supported();
    ANNOUNCED.call_once(|| {
        let names = |v: &[Kernel]| v.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
        let lacking: Vec<Kernel> = Kernel::ALL
            .into_iter()
            .filter(|k| !ks.contains(k))
            .collect();
        // Straight to stderr: libtest captures only the print macros, and this line is the
        // record of what the suite covered on this CPU.
        let _ = writeln!(
            std::io::stderr(),
            "sha256d kernels tested against the reference on this CPU: {}; lacking (tested for \
             a clear error instead): {}",
            names(&ks),
            if lacking.is_empty() {
                "none".into()
            } else {
                names(&lacking)
            }
        );
    });
    assert!(ks.contains(&Kernel::Portable), "portable must always run");
    ks
}

fn random_header(rng: &mut StdRng) -> Prepared {
    let mut h = [0u8; HEADER_LEN];
    rng.fill(&mut h[..]);
    Prepared::new(&h)
}

/// The top word the slow, independent way: SHA-256d of the whole header with `sha2`.
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
            for count in [0u32, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 4099] {
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
    for k in Kernel::ALL {
        assert!(matches!(
            candidates(k, &p, 0, u32::MAX, 2, &mut out),
            Err(ScanError::Range { .. })
        ));
    }
}

/// Features as the kernel reads them from `/proc/cpuinfo` (the kernel's view of CPUID and of
/// what the OS enabled), independently of std's detection.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn detection_matches_the_cpus_own_feature_flags() {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap();
    let has = |f: &str| flags.contains(&f);
    let from_proc = CpuFeatures {
        ssse3: has("ssse3"),
        sse41: has("sse4_1"),
        sha: has("sha_ni"),
        avx2: has("avx2"),
        avx512f: has("avx512f"),
    };
    assert_eq!(CpuFeatures::detect(), from_proc);
    for k in Kernel::ALL {
        assert_eq!(k.is_supported(), k.runs_on(&from_proc), "{k:?}");
    }
}

#[test]
fn a_kernel_the_cpu_lacks_is_a_clear_error_never_a_run() {
    // On a CPU with no extension at all, every kernel but the portable one is refused, and the
    // message names the kernel and what is missing.
    for k in Kernel::ALL {
        match Kernel::check_on(k, &CpuFeatures::NONE) {
            Ok(()) => assert_eq!(k, Kernel::Portable),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(k.name()), "{msg}");
                for need in k.needs() {
                    assert!(msg.contains(need), "{msg}");
                }
            }
        }
    }
    // A CPU with AVX2 and SHA but no AVX-512 (for example an AMD EPYC of 2019–2022).
    let zen = CpuFeatures {
        avx512f: false,
        ..CpuFeatures {
            ssse3: true,
            sse41: true,
            sha: true,
            avx2: true,
            avx512f: true,
        }
    };
    assert_eq!(
        Kernel::Avx512.check_on(&zen).unwrap_err().to_string(),
        "kernel avx512 needs CPU features this machine lacks: avx512f"
    );
    assert!(Kernel::ShaNi.check_on(&zen).is_ok());
    // On this CPU: what it lacks is refused by the scan itself, what it has runs.
    let p = Prepared::new(&[1; HEADER_LEN]);
    for k in Kernel::ALL {
        let mut out = Vec::new();
        let r = candidates(k, &p, 0, 0, 64, &mut out);
        if k.is_supported() {
            assert_eq!(r, Ok(()), "{k:?}");
        } else {
            assert!(matches!(r, Err(ScanError::Unsupported(kk, _)) if kk == k));
            assert!(out.is_empty());
        }
    }
}

#[test]
fn the_automatic_choice_only_picks_kernels_the_cpu_has() {
    // A timer that says AVX-512 would be fastest, on a CPU without it.
    let rank = |k: Kernel| Kernel::ALL.iter().position(|&x| x == k).unwrap() as f64;
    let no_avx512 = CpuFeatures {
        ssse3: true,
        sse41: true,
        sha: true,
        avx2: true,
        avx512f: false,
    };
    let c = choose(&no_avx512, rank);
    assert_eq!(c.kernel, Kernel::Avx2);
    assert!(c.timings.iter().all(|t| t.kernel.runs_on(&no_avx512)));
    assert_eq!(choose(&CpuFeatures::NONE, rank).kernel, Kernel::Portable);
    // A timer that prefers the portable kernel gets it: the choice follows the measurement.
    let c = choose(
        &no_avx512,
        |k| if k == Kernel::Portable { 9.0 } else { 1.0 },
    );
    assert_eq!(c.kernel, Kernel::Portable);
    // The process's own choice is one of this CPU's kernels and was measured.
    let best = Kernel::best();
    assert!(kernels().contains(&best), "{best:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random headers, ranges and targets: every kernel finds exactly the reference's nonces.
    #[test]
    fn prop_every_kernel_equals_the_reference(
        header in proptest::array::uniform32(any::<u8>()),
        rest in proptest::collection::vec(any::<u8>(), 48),
        top in prop_oneof![any::<u32>(), 0u32..0x0400_0000, Just(u32::MAX), Just(0u32)],
        start in any::<u32>(),
        count in 0u32..300,
    ) {
        let mut h = [0u8; HEADER_LEN];
        h[..32].copy_from_slice(&header);
        h[32..].copy_from_slice(&rest);
        let p = Prepared::new(&h);
        let start = start.min(u32::MAX - count);
        let expect = reference(&p, top, start, count);
        for k in kernels() {
            prop_assert_eq!(cands(k, &p, top, start, count), expect.clone(), "{:?}", k);
        }
    }

    /// The last nonces of the space, and a target met exactly by the range's last nonce (the
    /// equality case of the cut-short comparison).
    #[test]
    fn prop_range_end_and_exact_top_word(
        seed in any::<u64>(),
        count in 1u32..70,
        at_end in any::<bool>(),
    ) {
        let p = random_header(&mut StdRng::seed_from_u64(seed));
        let start = if at_end { u32::MAX - (count - 1) } else { (seed as u32) / 2 };
        let last = start + (count - 1);
        let top = top_word(&p, last);
        let expect = reference(&p, top, start, count);
        prop_assert!(expect.contains(&last));
        for k in kernels() {
            prop_assert_eq!(cands(k, &p, top, start, count), expect.clone(), "{:?}", k);
        }
    }
}
