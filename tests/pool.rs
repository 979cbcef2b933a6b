//! The local pool over real TCP on loopback: a test miner speaks Stratum V1, finds real shares
//! with the scan kernels, and checks every acceptance and rejection path.

use hearth::mining::header::{StratumJob, Target};
use hearth::mining::sha256d::{self, Kernel, Prepared};
use hearth::mining::stratum::message::{
    notification, parse_pool_line, request, submit_params, PoolMessage, Submit,
};
use hearth::mining::stratum::pool::{LocalPool, PoolConfig};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const DIFFICULTY: f64 = 1e-5;

fn quiet_config() -> PoolConfig {
    PoolConfig {
        initial_difficulty: DIFFICULTY,
        // No retargeting unless a test asks for it.
        retarget_seconds: 1e9,
        target_shares_per_minute: 1e6,
        job_interval_seconds: 3600.0,
        ..PoolConfig::default()
    }
}

struct Miner {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    pending: VecDeque<PoolMessage>,
    extranonce1: Vec<u8>,
    difficulty: f64,
    jobs: Vec<StratumJob>,
}

impl Miner {
    async fn connect(pool: &LocalPool) -> Miner {
        let s = TcpStream::connect(pool.addr()).await.unwrap();
        let (r, w) = s.into_split();
        Miner {
            reader: BufReader::new(r),
            writer: w,
            next_id: 1,
            pending: VecDeque::new(),
            extranonce1: Vec::new(),
            difficulty: 0.0,
            jobs: Vec::new(),
        }
    }

    async fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.unwrap();
    }

    async fn recv(&mut self) -> PoolMessage {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("pool answered within 10 s")
            .unwrap();
        assert!(n > 0, "pool closed the connection");
        let m = parse_pool_line(line.trim_end()).unwrap();
        match &m {
            PoolMessage::Notify(j) => self.jobs.push(j.clone()),
            PoolMessage::SetDifficulty(d) => self.difficulty = *d,
            _ => {}
        }
        m
    }

    /// Sends a request and returns (result, error code) of its response.
    async fn call(&mut self, method: &str, params: Value) -> (Value, Option<i64>) {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&request(id, method, params)).await;
        loop {
            match self.recv().await {
                PoolMessage::Response {
                    id: rid,
                    result,
                    error,
                } if rid == json!(id) => {
                    return (result, error.map(|e| e.code));
                }
                other => self.pending.push_back(other),
            }
        }
    }

    async fn handshake(&mut self, user: &str) {
        let (result, err) = self
            .call("mining.subscribe", json!(["hearth-test/1"]))
            .await;
        assert_eq!(err, None);
        self.extranonce1 = hex::decode(result[1].as_str().unwrap()).unwrap();
        assert_eq!(result[2], 4);
        let (ok, err) = self.call("mining.authorize", json!([user, "x"])).await;
        assert_eq!((ok, err), (json!(true), None));
        while self.jobs.is_empty() {
            self.recv().await;
        }
        assert_eq!(self.difficulty, DIFFICULTY);
    }

    fn job(&self) -> StratumJob {
        self.jobs.last().unwrap().clone()
    }

    /// Finds a share for the latest job at the session difficulty.
    fn find(&self, worker: &str, en2: [u8; 4], version_bits: Option<(u32, u32)>) -> Submit {
        let job = self.job();
        let version = version_bits.map_or(job.version, |(mask, bits)| {
            hearth::mining::header::rolled_version(job.version, mask, bits)
        });
        let root = job.merkle_root(&self.extranonce1, &en2);
        let p = Prepared::new(&job.header(&root, version, job.ntime, 0));
        let target = Target::from_difficulty(self.difficulty).unwrap();
        // Scan in chunks and stop at the first share.
        let nonce = (0u32..1 << 10)
            .find_map(|chunk| {
                let found = sha256d::scan(Kernel::best(), &p, &target, chunk << 16, 1 << 16);
                found.unwrap().first().map(|f| f.nonce)
            })
            .expect("a share in 2^26 nonces");
        Submit {
            worker: worker.into(),
            job_id: job.job_id.clone(),
            extranonce2: en2.to_vec(),
            ntime: job.ntime,
            nonce,
            version_bits: version_bits.map(|(_, b)| b),
        }
    }

    async fn submit(&mut self, s: &Submit) -> Option<i64> {
        self.call("mining.submit", submit_params(s)).await.1
    }
}

#[tokio::test]
async fn valid_shares_are_accepted_and_counted_per_worker() {
    let pool = LocalPool::start(quiet_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut m = Miner::connect(&pool).await;
    m.handshake("alice.rig1").await;
    for en2 in [[0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 3]] {
        let s = m.find("alice.rig1", en2, None);
        assert_eq!(m.submit(&s).await, None);
    }
    let stats = pool.stats();
    let w = &stats["alice.rig1"];
    assert_eq!(w.accepted, 3);
    assert!((w.accepted_work - 3.0 * DIFFICULTY).abs() < 1e-12);
    assert!(w.rejected.is_empty());
    pool.shutdown().await;
}

#[tokio::test]
async fn every_bad_share_is_rejected_with_its_standard_code() {
    let pool = LocalPool::start(quiet_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut m = Miner::connect(&pool).await;
    m.handshake("bob").await;
    let good = m.find("bob", [9, 9, 9, 9], None);
    assert_eq!(m.submit(&good).await, None);
    assert_eq!(m.submit(&good).await, Some(22), "duplicate");

    let mut wrong_nonce = m.find("bob", [1, 1, 1, 1], None);
    // The next nonce almost surely misses a 1e-5 target (1 in ~43 000 chance it does not).
    wrong_nonce.nonce = wrong_nonce.nonce.wrapping_add(1);
    assert_eq!(m.submit(&wrong_nonce).await, Some(23), "tampered nonce");

    let mut wrong_ntime = m.find("bob", [2, 2, 2, 2], None);
    wrong_ntime.ntime += 1;
    assert_eq!(m.submit(&wrong_ntime).await, Some(23), "tampered ntime");

    let mut early = m.find("bob", [3, 3, 3, 3], None);
    early.ntime -= 1;
    assert_eq!(m.submit(&early).await, Some(20), "ntime before the job");

    let mut short = m.find("bob", [4, 4, 4, 4], None);
    short.extranonce2 = vec![4, 4, 4];
    assert_eq!(m.submit(&short).await, Some(20), "extranonce2 length");

    let stranger = m.find("mallory", [5, 5, 5, 5], None);
    assert_eq!(m.submit(&stranger).await, Some(24), "unauthorized");

    let old = m.find("bob", [6, 6, 6, 6], None);
    pool.new_job(true);
    while m.job().job_id == old.job_id {
        m.recv().await;
    }
    assert!(m.job().clean_jobs);
    assert_eq!(m.submit(&old).await, Some(21), "stale after clean_jobs");

    let w = &pool.stats()["bob"];
    assert_eq!(w.accepted, 1);
    let rejected: Vec<(i64, u64)> = w.rejected.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(rejected, [(20, 2), (21, 1), (22, 1), (23, 2)]);
    assert_eq!(pool.stats()["mallory"].rejected[&24], 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn version_rolling_is_negotiated_and_enforced() {
    let pool = LocalPool::start(quiet_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut m = Miner::connect(&pool).await;
    let (result, err) = m
        .call(
            "mining.configure",
            json!([["version-rolling"], {"version-rolling.mask": "ffffffff", "version-rolling.min-bit-count": 2}]),
        )
        .await;
    assert_eq!(err, None);
    assert_eq!(result["version-rolling"], true);
    let mask = u32::from_str_radix(result["version-rolling.mask"].as_str().unwrap(), 16).unwrap();
    assert_eq!(mask, 0x1fff_e000);
    m.handshake("carol").await;
    let rolled = m.find("carol", [0, 0, 0, 7], Some((mask, 0x0000_6000)));
    assert_eq!(m.submit(&rolled).await, None);
    let mut outside = m.find("carol", [0, 0, 0, 8], Some((mask, 0x0000_2000)));
    outside.version_bits = Some(0x4000_0000);
    assert_eq!(m.submit(&outside).await, Some(20));
    pool.shutdown().await;
}

#[tokio::test]
async fn garbage_from_a_miner_gets_an_error_and_the_session_goes_on() {
    let pool = LocalPool::start(quiet_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut m = Miner::connect(&pool).await;
    m.handshake("dave").await;
    m.send("this is not json\n").await;
    match m.recv().await {
        PoolMessage::Response { error: Some(e), .. } => assert_eq!(e.code, 20),
        other => panic!("expected an error response, got {other:?}"),
    }
    // An oversized line is dropped without an answer; the session still works afterwards.
    let huge = format!("{}\n", "x".repeat(70 * 1024));
    m.send(&huge).await;
    m.send(&notification("mining.bogus", json!([]))).await;
    let s = m.find("dave", [0, 0, 1, 0], None);
    assert_eq!(m.submit(&s).await, None);
    assert_eq!(pool.stats()["dave"].accepted, 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn vardiff_raises_the_difficulty_of_a_fast_miner_for_the_next_job() {
    let cfg = PoolConfig {
        retarget_seconds: 0.0,
        target_shares_per_minute: 1.0,
        ..quiet_config()
    };
    let pool = LocalPool::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut m = Miner::connect(&pool).await;
    m.handshake("erin").await;
    let first_job = m.job().job_id;
    let s = m.find("erin", [0, 0, 0, 1], None);
    assert_eq!(m.submit(&s).await, None);
    // Far faster than one share a minute: the difficulty rises by the maximum step, 4×.
    while m.job().job_id == first_job {
        m.recv().await;
    }
    assert!(
        (m.difficulty - 4.0 * DIFFICULTY).abs() < 1e-12,
        "{}",
        m.difficulty
    );
    // A share for the new job is checked at the new difficulty.
    let s = m.find("erin", [0, 0, 0, 2], None);
    assert_eq!(m.submit(&s).await, None);
    assert!((pool.stats()["erin"].accepted_work - 5.0 * DIFFICULTY).abs() < 1e-12);
    pool.shutdown().await;
}
