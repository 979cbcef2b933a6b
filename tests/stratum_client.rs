//! The Stratum client end to end: the software ASIC and the client against the local pool on
//! loopback, through disconnects, failover and clean jobs. Real time (network, threads); the
//! tests wait on conditions with generous limits and assert on counts, never on durations.

use hearth::devices::software_asic::AsicConfig;
use hearth::devices::start_mining;
use hearth::mining::asic::RateCommand;
use hearth::mining::engine::MiningEngine;
use hearth::mining::stratum::client::{ClientConfig, ClientStatus, Endpoint};
use hearth::mining::stratum::pool::{LocalPool, PoolConfig};
use hearth::mining::stratum::transport::server_tls;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

mod common;

/// The chips are real threads on a 2-core machine: one engine at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pool_config() -> PoolConfig {
    PoolConfig {
        initial_difficulty: 2e-4,
        retarget_seconds: 1e9,
        target_shares_per_minute: 1e6,
        job_interval_seconds: 3600.0,
        ..PoolConfig::default()
    }
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint {
        url: format!("stratum+tcp://{addr}"),
        user: "heater.1".into(),
        password: "x".into(),
        tls_ca: None,
    }
}

fn client_config(pools: Vec<Endpoint>) -> ClientConfig {
    ClientConfig {
        pools,
        backoff_initial_ms: 50,
        backoff_max_ms: 200,
        primary_probe_seconds: 0.2,
        ..ClientConfig::default()
    }
}

fn engine(pools: Vec<Endpoint>) -> MiningEngine {
    let asic = AsicConfig {
        chips: 1,
        ..AsicConfig::default()
    };
    let e = start_mining(asic, client_config(pools), None).unwrap();
    e.asic.set_rate(RateCommand {
        rate: 1.0,
        valid_until: None,
    });
    e
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Stops hashing and waits until every found share has an outcome.
async fn settle(e: &MiningEngine) -> ClientStatus {
    e.asic.set_rate(RateCommand {
        rate: 0.0,
        valid_until: None,
    });
    // Let the last slice end and its shares arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_for("all shares settled", || {
        let s = e.client.status();
        s.queued == 0 && s.in_flight == 0 && s.shares.found == s.shares.settled()
    })
    .await;
    e.client.status()
}

/// A loopback address with a port free right now.
fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], common::bin::free_port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_pool_counters_agree_exactly() {
    let _one = ONE_AT_A_TIME.lock().await;
    let pool = LocalPool::start(pool_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let e = engine(vec![endpoint(pool.addr())]);
    wait_for("20 accepted shares", || {
        e.client.status().shares.accepted >= 20
    })
    .await;
    let s = settle(&e).await;
    let p = &pool.stats()["heater.1"];
    assert_eq!(s.shares.accepted, p.accepted);
    assert!((s.shares.accepted_work - p.accepted_work).abs() < 1e-12);
    assert!(s.shares.rejected.is_empty(), "{:?}", s.shares.rejected);
    assert!(p.rejected.is_empty(), "{:?}", p.rejected);
    e.shutdown().await;
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_restart_reconnects_and_accounts_for_every_share() {
    let _one = ONE_AT_A_TIME.lock().await;
    let addr = free_addr();
    let pool = LocalPool::start(pool_config(), addr).await.unwrap();
    let e = engine(vec![endpoint(addr)]);
    wait_for("5 accepted shares", || {
        e.client.status().shares.accepted >= 5
    })
    .await;
    pool.shutdown().await;
    wait_for("the client to notice", || !e.client.status().connected).await;
    // Shares found while the pool is down wait in the queue.
    wait_for("shares queued while down", || e.client.status().queued >= 2).await;
    let pool = LocalPool::start(pool_config(), addr).await.unwrap();
    wait_for("reconnect", || e.client.status().connects >= 2).await;
    let before = e.client.status().shares.accepted;
    wait_for("accepted shares after restart", || {
        e.client.status().shares.accepted >= before + 3
    })
    .await;
    let s = settle(&e).await;
    // The old pool's jobs are gone: the queued shares ended stale, none were lost or resent.
    assert!(s.shares.stale >= 2, "{:?}", s.shares);
    assert_eq!(s.shares.found, s.shares.settled());
    assert!(
        !s.shares.rejected.contains_key(&21),
        "stale share was submitted: {:?}",
        s.shares
    );
    e.shutdown().await;
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_backup_then_back_to_the_primary() {
    let _one = ONE_AT_A_TIME.lock().await;
    let primary_addr = free_addr();
    let backup = LocalPool::start(pool_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let e = engine(vec![endpoint(primary_addr), endpoint(backup.addr())]);
    wait_for("the backup", || e.client.status().pool_index == Some(1)).await;
    wait_for("shares on the backup", || {
        e.client.status().shares.accepted >= 3
    })
    .await;
    let primary = LocalPool::start(pool_config(), primary_addr).await.unwrap();
    wait_for("return to the primary", || {
        e.client.status().pool_index == Some(0)
    })
    .await;
    wait_for("shares on the primary", || pool_accepted(&primary) >= 3).await;
    let s = settle(&e).await;
    // A share submitted on the backup just as the client returns to the primary may be accepted
    // by the backup with its answer lost on the closed session: the client then counts it stale.
    // So the pools accepted what the client saw accepted, plus at most its stale shares.
    let pools = pool_accepted(&primary) + pool_accepted(&backup);
    assert!(
        s.shares.accepted <= pools && pools <= s.shares.accepted + s.shares.stale,
        "pools accepted {pools}: {s:?}"
    );
    e.shutdown().await;
    primary.shutdown().await;
    backup.shutdown().await;
}

fn pool_accepted(p: &LocalPool) -> u64 {
    p.stats().get("heater.1").map_or(0, |w| w.accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_jobs_drop_old_work_so_no_stale_share_is_submitted() {
    let _one = ONE_AT_A_TIME.lock().await;
    let pool = LocalPool::start(pool_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let e = engine(vec![endpoint(pool.addr())]);
    wait_for("first shares", || e.client.status().shares.accepted >= 2).await;
    for _ in 0..5 {
        pool.new_job(true);
        let target = e.client.status().shares.found + 2;
        wait_for("shares on the new job", || {
            e.client.status().shares.found >= target
        })
        .await;
    }
    let s = settle(&e).await;
    let p = &pool.stats()["heater.1"];
    // Once the client has the clean notify it submits nothing for the old job: shares the ASIC
    // still finds for it are counted stale. Only a share already on the wire when the pool
    // switched can reach it late (and is rejected as stale, and counted so on both sides).
    let late = p.rejected.get(&21).copied().unwrap_or(0);
    assert!(late <= 5, "{late} shares for dropped jobs reached the pool");
    assert_eq!(s.shares.rejected.get(&21).copied().unwrap_or(0), late);
    assert_eq!(s.shares.accepted, p.accepted);
    assert_eq!(s.shares.found, s.shares.settled());
    e.shutdown().await;
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_pool_writing_garbage_cannot_crash_the_client() {
    let _one = ONE_AT_A_TIME.lock().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let junk: Vec<Vec<u8>> = vec![
            b"not json at all\n".to_vec(),
            vec![0xff, 0xfe, 0x00, b'\n'],
            format!("{}\n", "x".repeat(100 * 1024)).into_bytes(),
            b"{\"id\":1,\"result\":[1,2],\"error\":null}\n".to_vec(),
            b"{\"id\":null,\"method\":\"mining.notify\",\"params\":[1,2,3]}\n".to_vec(),
            b"{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[-5]}\n".to_vec(),
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n".to_vec(),
        ];
        for _ in 0..5 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            for j in &junk {
                if s.write_all(j).await.is_err() {
                    break;
                }
            }
            drop(s);
        }
    });
    let e = engine(vec![endpoint(addr)]);
    // The client keeps trying, never gets a session, and stays in a defined state.
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap();
    let s = e.client.status();
    assert!(!s.connected);
    assert_eq!(s.connects, 0);
    assert!(s.last_error.is_some());
    assert_eq!(s.shares.found, s.shares.settled() + s.queued as u64);
    e.shutdown().await;
}

/// A self-signed certificate for `localhost`, written as PEM files into `dir`.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join("pool.crt");
    let key = dir.join("pool.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stratum_over_tls_mines_and_counts_like_tcp() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let acceptor = server_tls(&cert, &key).unwrap();
    let pool = LocalPool::start_with_tls(
        pool_config(),
        "127.0.0.1:0".parse().unwrap(),
        Some(acceptor),
    )
    .await
    .unwrap();
    let ep = Endpoint {
        url: format!("stratum+ssl://localhost:{}", pool.addr().port()),
        tls_ca: Some(cert.clone()),
        ..endpoint(pool.addr())
    };
    let e = engine(vec![ep]);
    wait_for("10 accepted shares over TLS", || {
        e.client.status().shares.accepted >= 10
    })
    .await;
    let s = settle(&e).await;
    let p = &pool.stats()["heater.1"];
    assert_eq!(s.shares.accepted, p.accepted);
    assert!(s.shares.rejected.is_empty(), "{:?}", s.shares.rejected);
    e.shutdown().await;
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_tls_pool_is_never_used_and_no_share_is_lost() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let pool = LocalPool::start_with_tls(
        pool_config(),
        "127.0.0.1:0".parse().unwrap(),
        Some(server_tls(&cert, &key).unwrap()),
    )
    .await
    .unwrap();
    // Trusting only the web roots, the self-signed pool fails the handshake every time.
    let ep = Endpoint {
        url: format!("stratum+ssl://localhost:{}", pool.addr().port()),
        ..endpoint(pool.addr())
    };
    let e = engine(vec![ep]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = e.client.status();
    assert!(!s.connected);
    assert_eq!(s.connects, 0);
    let why = s.last_error.clone().unwrap_or_default();
    assert!(why.contains("certificate"), "{why}");
    assert!(pool.stats().is_empty(), "{:?}", pool.stats());
    // Nothing is hashed without a job, and whatever was found is queued, not lost.
    assert_eq!(s.shares.found, s.shares.settled() + s.queued as u64);
    e.shutdown().await;
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_software_asic_is_a_fleet_workload_that_cannot_run_below_idle() {
    use hearth::clock::Clock;
    use hearth::devices::software_asic::device::SoftwareDevice;
    use hearth::mining::fleet::Fleet;
    use hearth::sched::workload::Workload;
    use std::sync::Arc;
    let _one = ONE_AT_A_TIME.lock().await;
    let pool = LocalPool::start(pool_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let asic = AsicConfig {
        chips: 1,
        ..AsicConfig::default()
    };
    let e = Arc::new(
        start_mining(
            asic.clone(),
            client_config(vec![endpoint(pool.addr())]),
            None,
        )
        .unwrap(),
    );
    let clock = Clock::local(1.0);
    let device = SoftwareDevice::new(e.clone(), clock.clone(), asic.chip_limit_celsius);
    let fleet = Fleet::new(vec![Arc::new(device)], clock);
    let env = Workload::envelope(&fleet);
    assert_eq!(
        (env.min_watts, env.max_watts, env.below_min),
        (asic.idle_watts, asic.max_watts, false)
    );
    wait_for("a job", || fleet.has_work()).await;
    // It follows at once: the fleet expects exactly its target, or 0 below idle.
    assert_eq!(fleet.expected_watts(asic.max_watts), asic.max_watts);
    assert_eq!(fleet.expected_watts(asic.idle_watts / 2.0), 0.0);
    Workload::set_target(&fleet, asic.max_watts, Duration::from_secs(60));
    wait_for("full power", || {
        fleet.actual_watts().0 > 0.9 * asic.max_watts
    })
    .await;
    Workload::set_target(&fleet, 0.0, Duration::from_secs(60));
    wait_for("off", || fleet.actual_watts().0 == 0.0).await;
    drop(fleet);
    if let Ok(e) = Arc::try_unwrap(e) {
        e.shutdown().await;
    }
    pool.shutdown().await;
}
