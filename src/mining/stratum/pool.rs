//! The local pool: a real Stratum V1 server on loopback that validates every share by
//! rebuilding the header itself. It issues jobs from a synthetic block template, assigns each
//! session its own extranonce1, supports version rolling (BIP310), and adjusts each session's
//! difficulty to a target share rate (vardiff).

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};
use tokio_rustls::TlsAcceptor;

use super::lines::{read_line, Line};
use super::message::{
    codes, error_response, notification, notify_params, parse_miner_line, response, MinerMessage,
    Submit,
};
use super::transport::BoxConn;
use crate::mining::header::{rolled_version, sha256d, StratumJob, Target};

/// Configuration of the local pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Seconds between jobs.
    pub job_interval_seconds: f64,
    /// Every Nth job starts a new block (new prevhash, `clean_jobs = true`).
    pub clean_every_jobs: u32,
    /// The coinbase output script, hex.
    pub payout_script_hex: String,
    /// Merkle branches in each template.
    pub merkle_branches: usize,
    /// Difficulty of a new session.
    pub initial_difficulty: f64,
    /// Shares per minute vardiff aims at.
    pub target_shares_per_minute: f64,
    /// Shortest interval between difficulty changes, seconds.
    pub retarget_seconds: f64,
    /// Lowest difficulty vardiff may set.
    pub min_difficulty: f64,
    /// Bytes of extranonce2.
    pub extranonce2_size: usize,
    /// Version bits miners may roll.
    pub version_rolling_mask: u32,
    /// Jobs that stay valid (older ones are stale).
    pub recent_jobs: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            job_interval_seconds: 30.0,
            clean_every_jobs: 10,
            payout_script_hex: "00140000000000000000000000000000000000000000".into(),
            merkle_branches: 3,
            initial_difficulty: 0.01,
            target_shares_per_minute: 10.0,
            retarget_seconds: 30.0,
            min_difficulty: 1e-6,
            extranonce2_size: 4,
            version_rolling_mask: 0x1fff_e000,
            recent_jobs: 8,
        }
    }
}

/// A pool that cannot start.
#[derive(Debug, Error)]
pub enum PoolError {
    /// A value is out of range.
    #[error("pool.{key}: {msg}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

impl PoolConfig {
    /// Checks every value; returns the payout script.
    pub fn validate(&self) -> Result<Vec<u8>, PoolError> {
        let bad = |key, msg: String| Err(PoolError::Invalid { key, msg });
        if !(self.job_interval_seconds > 0.0 && self.job_interval_seconds <= 86_400.0) {
            return bad(
                "job_interval_seconds",
                format!("must be in (0, 86400], got {}", self.job_interval_seconds),
            );
        }
        if !(self.initial_difficulty > 0.0 && self.min_difficulty > 0.0) {
            return bad("initial_difficulty", "difficulties must be positive".into());
        }
        if self.target_shares_per_minute.is_nan() || self.target_shares_per_minute <= 0.0 {
            return bad("target_shares_per_minute", "must be positive".into());
        }
        if !(1..=8).contains(&self.extranonce2_size) {
            return bad(
                "extranonce2_size",
                format!("must be 1–8, got {}", self.extranonce2_size),
            );
        }
        if self.recent_jobs == 0 || self.clean_every_jobs == 0 {
            return bad(
                "recent_jobs",
                "recent_jobs and clean_every_jobs must be at least 1".into(),
            );
        }
        let script = hex::decode(&self.payout_script_hex).map_err(|e| PoolError::Invalid {
            key: "payout_script_hex",
            msg: format!("not hex: {e}"),
        })?;
        if script.is_empty() || script.len() > 100 {
            return bad("payout_script_hex", "must be 1–100 bytes".into());
        }
        Ok(script)
    }
}

/// One worker's accepted and rejected work, as the pool counts it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerStats {
    /// Shares accepted.
    pub accepted: u64,
    /// Sum of the accepted shares' difficulty (work done, in units of 2^32 hashes).
    pub accepted_work: f64,
    /// Shares rejected, by Stratum error code.
    pub rejected: BTreeMap<i64, u64>,
}

/// Extranonce1 bytes the pool assigns.
const EXTRANONCE1_SIZE: usize = 4;
/// Block height written into the coinbase.
const HEIGHT: u32 = 840_000;

/// A share's identity, for duplicate detection.
type ShareKey = (String, Vec<u8>, Vec<u8>, u32, u32, u32);

struct Template {
    prevhash: [u8; 32],
    branches: Vec<[u8; 32]>,
}

struct PoolState {
    jobs: VecDeque<Arc<StratumJob>>,
    template: Template,
    /// Random per pool instance, so that job ids never repeat across restarts.
    job_prefix: u32,
    job_counter: u64,
    next_extranonce1: u32,
    /// Extranonce1 values of closed sessions, which a reconnecting miner may resume.
    released: HashSet<[u8; EXTRANONCE1_SIZE]>,
    seen: HashSet<ShareKey>,
    workers: BTreeMap<String, WorkerStats>,
}

struct PoolShared {
    cfg: PoolConfig,
    script: Vec<u8>,
    state: Mutex<PoolState>,
    jobs_tx: broadcast::Sender<Arc<StratumJob>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_template(branches: usize) -> Template {
    let mut rng = rand::rng();
    Template {
        prevhash: rng.random(),
        branches: (0..branches).map(|_| rng.random()).collect(),
    }
}

impl PoolShared {
    /// Issues the next job; every `clean_every_jobs`-th starts a new block.
    fn next_job(&self, force_clean: bool) -> Arc<StratumJob> {
        let mut st = lock(&self.state);
        st.job_counter += 1;
        let clean = force_clean || st.job_counter % u64::from(self.cfg.clean_every_jobs) == 1;
        if clean && st.job_counter > 1 {
            st.template = random_template(self.cfg.merkle_branches);
        }
        let en2 = self.cfg.extranonce2_size;
        // Coinbase: version, one input spending nothing, scriptSig = height push ‖ extranonces.
        let script_len = 4 + EXTRANONCE1_SIZE + en2;
        let mut coinb1 = hex::decode(
            "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff",
        )
        .unwrap_or_default();
        coinb1.push(script_len as u8);
        coinb1.push(0x03);
        coinb1.extend_from_slice(&HEIGHT.to_le_bytes()[..3]);
        let mut coinb2 = vec![0xff, 0xff, 0xff, 0xff, 0x01];
        coinb2.extend_from_slice(&312_500_000u64.to_le_bytes());
        coinb2.push(self.script.len() as u8);
        coinb2.extend_from_slice(&self.script);
        coinb2.extend_from_slice(&[0, 0, 0, 0]);
        let ntime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let job = Arc::new(StratumJob {
            job_id: format!("{:08x}{:x}", st.job_prefix, st.job_counter),
            prevhash: st.template.prevhash,
            coinb1,
            coinb2,
            merkle_branches: st.template.branches.clone(),
            version: 0x2000_0000,
            nbits: 0x1703_a30c,
            ntime,
            clean_jobs: clean,
        });
        if clean {
            st.jobs.clear();
            st.seen.clear();
        }
        st.jobs.push_back(job.clone());
        while st.jobs.len() > self.cfg.recent_jobs {
            st.jobs.pop_front();
        }
        drop(st);
        let _ = self.jobs_tx.send(job.clone());
        job
    }

    fn job(&self, id: &str) -> Option<Arc<StratumJob>> {
        lock(&self.state)
            .jobs
            .iter()
            .find(|j| j.job_id == id)
            .cloned()
    }

    fn current_job(&self) -> Option<Arc<StratumJob>> {
        lock(&self.state).jobs.back().cloned()
    }

    fn record(&self, worker: &str, outcome: Result<f64, i64>) {
        let mut st = lock(&self.state);
        let w = st.workers.entry(worker.to_string()).or_default();
        match outcome {
            Ok(d) => {
                w.accepted += 1;
                w.accepted_work += d;
            }
            Err(code) => *w.rejected.entry(code).or_default() += 1,
        }
    }
}

/// A running local pool.
pub struct LocalPool {
    addr: SocketAddr,
    shared: Arc<PoolShared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LocalPool {
    /// Binds `listen` and starts serving plain `stratum+tcp://`.
    pub async fn start(cfg: PoolConfig, listen: SocketAddr) -> Result<Self, PoolError> {
        Self::start_with_tls(cfg, listen, None).await
    }

    /// Binds `listen` and starts serving, over TLS (`stratum+ssl://`) when `tls` is given.
    pub async fn start_with_tls(
        cfg: PoolConfig,
        listen: SocketAddr,
        tls: Option<TlsAcceptor>,
    ) -> Result<Self, PoolError> {
        let script = cfg.validate()?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| PoolError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| PoolError::Bind {
            addr: listen,
            source,
        })?;
        let (jobs_tx, _) = broadcast::channel(16);
        let shared = Arc::new(PoolShared {
            state: Mutex::new(PoolState {
                jobs: VecDeque::new(),
                template: random_template(cfg.merkle_branches),
                job_prefix: rand::random(),
                job_counter: 0,
                next_extranonce1: 1,
                released: HashSet::new(),
                seen: HashSet::new(),
                workers: BTreeMap::new(),
            }),
            script,
            cfg,
            jobs_tx,
        });
        shared.next_job(true);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let tls_on = tls.is_some();
        let task = tokio::spawn(serve(listener, tls, shared.clone(), shutdown_rx));
        tracing::info!(%addr, tls = tls_on, "local pool listening");
        Ok(Self {
            addr,
            shared,
            shutdown,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Per-worker accepted and rejected work.
    pub fn stats(&self) -> BTreeMap<String, WorkerStats> {
        lock(&self.shared.state).workers.clone()
    }

    /// Issues a job now (with `clean_jobs` if asked) and returns its id.
    pub fn new_job(&self, clean: bool) -> String {
        self.shared.next_job(clean).job_id.clone()
    }

    /// Stops listening and closes every session.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<PoolShared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = Duration::from_secs_f64(shared.cfg.job_interval_seconds);
    let mut jobs = tokio::time::interval_at(Instant::now() + period, period);
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let en1 = {
                        let mut st = lock(&shared.state);
                        st.next_extranonce1 = st.next_extranonce1.wrapping_add(1);
                        st.next_extranonce1
                    };
                    let session = Session::new(shared.clone(), en1);
                    sessions.spawn(session.accept(stream, tls.clone(), peer, shutdown.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "local pool accept failed"),
            },
            _ = jobs.tick() => { shared.next_job(false); }
            _ = shutdown.changed() => break,
        }
    }
    sessions.shutdown().await;
}

struct Session {
    shared: Arc<PoolShared>,
    extranonce1: [u8; EXTRANONCE1_SIZE],
    subscribed: bool,
    authorized: HashSet<String>,
    version_mask: u32,
    difficulty: f64,
    /// The difficulty each job was sent at: a new difficulty applies to the next job.
    job_difficulty: HashMap<String, f64>,
    window_start: Instant,
    window_shares: u32,
}

impl Session {
    fn new(shared: Arc<PoolShared>, en1: u32) -> Self {
        let difficulty = shared.cfg.initial_difficulty;
        Self {
            shared,
            extranonce1: en1.to_be_bytes(),
            subscribed: false,
            authorized: HashSet::new(),
            version_mask: 0,
            difficulty,
            job_difficulty: HashMap::new(),
            window_start: Instant::now(),
            window_shares: 0,
        }
    }

    /// Completes the TLS handshake (bounded to 10 s) if there is one, then runs the session.
    async fn accept(
        self,
        stream: TcpStream,
        tls: Option<TlsAcceptor>,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) {
        let conn: BoxConn = match tls {
            None => Box::new(stream),
            Some(acceptor) => {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "pool: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "pool: TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        self.run(conn, peer, shutdown).await
    }

    async fn run(mut self, stream: BoxConn, peer: SocketAddr, mut shutdown: watch::Receiver<bool>) {
        let (r, mut w) = tokio::io::split(stream);
        let mut reader = BufReader::new(r);
        let mut jobs = self.shared.jobs_tx.subscribe();
        tracing::debug!(%peer, "pool session opened");
        loop {
            let out = tokio::select! {
                line = read_line(&mut reader) => match line {
                    Ok(Some(Line::Text(t))) => self.handle(&t),
                    Ok(Some(Line::TooLong(n))) => {
                        tracing::warn!(%peer, bytes = n, "pool: oversized line dropped");
                        Vec::new()
                    }
                    Ok(Some(Line::NotUtf8)) => {
                        tracing::warn!(%peer, "pool: non-UTF-8 line dropped");
                        Vec::new()
                    }
                    Ok(None) | Err(_) => break,
                },
                job = jobs.recv() => match job {
                    Ok(job) if self.subscribed => self.notify(&job),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Vec::new(),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = shutdown.changed() => break,
            };
            for line in out {
                if w.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
        // A clean close (TLS close_notify), bounded so a stuck peer cannot hold the session.
        let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
        lock(&self.shared.state).released.insert(self.extranonce1);
        tracing::debug!(%peer, "pool session closed");
    }

    /// The lines that announce `job` at the session's current difficulty.
    fn notify(&mut self, job: &StratumJob) -> Vec<String> {
        self.job_difficulty
            .insert(job.job_id.clone(), self.difficulty);
        if self.job_difficulty.len() > 4 * self.shared.cfg.recent_jobs {
            let live: HashSet<String> = lock(&self.shared.state)
                .jobs
                .iter()
                .map(|j| j.job_id.clone())
                .collect();
            self.job_difficulty.retain(|id, _| live.contains(id));
        }
        vec![notification("mining.notify", notify_params(job))]
    }

    fn handle(&mut self, line: &str) -> Vec<String> {
        let msg = match parse_miner_line(line) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "pool: malformed message");
                return vec![error_response(&Value::Null, codes::OTHER, &e.to_string())];
            }
        };
        match msg {
            MinerMessage::Subscribe { id, session, .. } => {
                // Resume a closed session's extranonce1 if asked, so its shares stay valid.
                if let Some(en1) = session
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|b| <[u8; EXTRANONCE1_SIZE]>::try_from(b).ok())
                {
                    if lock(&self.shared.state).released.remove(&en1) {
                        self.extranonce1 = en1;
                    }
                }
                self.subscribed = true;
                let mut out = vec![response(
                    &id,
                    json!([
                        [
                            ["mining.set_difficulty", hex::encode(self.extranonce1)],
                            ["mining.notify", hex::encode(self.extranonce1)]
                        ],
                        hex::encode(self.extranonce1),
                        self.shared.cfg.extranonce2_size
                    ]),
                )];
                out.push(notification(
                    "mining.set_difficulty",
                    json!([self.difficulty]),
                ));
                if let Some(job) = self.shared.current_job() {
                    out.extend(self.notify(&job));
                }
                out
            }
            MinerMessage::ExtranonceSubscribe { id } => vec![response(&id, json!(true))],
            MinerMessage::Authorize { id, user, .. } => {
                self.authorized.insert(user);
                vec![response(&id, json!(true))]
            }
            MinerMessage::Configure {
                id,
                version_rolling_mask,
            } => {
                let result = match version_rolling_mask {
                    Some(asked) => {
                        self.version_mask = asked & self.shared.cfg.version_rolling_mask;
                        json!({"version-rolling": true,
                               "version-rolling.mask": format!("{:08x}", self.version_mask)})
                    }
                    None => json!({}),
                };
                vec![response(&id, result)]
            }
            MinerMessage::Submit { id, share } => {
                let worker = share.worker.clone();
                let outcome = self.validate(&share);
                self.shared.record(&worker, outcome.map_err(|(c, _)| c));
                match outcome {
                    Ok(_) => {
                        let mut out = vec![response(&id, json!(true))];
                        out.extend(self.vardiff());
                        out
                    }
                    Err((code, msg)) => vec![error_response(&id, code, msg)],
                }
            }
            MinerMessage::Unknown { id, method } => {
                vec![error_response(
                    &id,
                    codes::OTHER,
                    &format!("unknown method {method}"),
                )]
            }
        }
    }

    /// Rebuilds the share's header and checks it; `Ok(difficulty credited)`.
    fn validate(&mut self, s: &Submit) -> Result<f64, (i64, &'static str)> {
        if !self.subscribed {
            return Err((codes::NOT_SUBSCRIBED, "Not subscribed"));
        }
        if !self.authorized.contains(&s.worker) {
            return Err((codes::UNAUTHORIZED, "Unauthorized worker"));
        }
        let job = self
            .shared
            .job(&s.job_id)
            .ok_or((codes::STALE, "Job not found (stale)"))?;
        if s.extranonce2.len() != self.shared.cfg.extranonce2_size {
            return Err((codes::OTHER, "Incorrect size of extranonce2"));
        }
        let version = match s.version_bits {
            None => job.version,
            Some(bits) if bits & !self.version_mask == 0 => {
                rolled_version(job.version, self.version_mask, bits)
            }
            Some(_) => return Err((codes::OTHER, "Version bits outside the negotiated mask")),
        };
        if s.ntime < job.ntime || s.ntime > job.ntime.saturating_add(7200) {
            return Err((codes::OTHER, "ntime out of range"));
        }
        let root = job.merkle_root(&self.extranonce1, &s.extranonce2);
        let hash = sha256d(&job.header(&root, version, s.ntime, s.nonce));
        let difficulty = self
            .job_difficulty
            .get(&job.job_id)
            .copied()
            .unwrap_or(self.difficulty);
        let target =
            Target::from_difficulty(difficulty).map_err(|_| (codes::OTHER, "bad difficulty"))?;
        if !target.is_met_by(&hash) {
            return Err((codes::LOW_DIFFICULTY, "Low difficulty share"));
        }
        let key = (
            job.job_id.clone(),
            self.extranonce1.to_vec(),
            s.extranonce2.clone(),
            s.ntime,
            s.nonce,
            version,
        );
        if !lock(&self.shared.state).seen.insert(key) {
            return Err((codes::DUPLICATE, "Duplicate share"));
        }
        Ok(difficulty)
    }

    /// After an accepted share: retarget if the share rate is off and enough time has passed.
    /// The new difficulty applies to the next job, which is issued right away.
    fn vardiff(&mut self) -> Vec<String> {
        self.window_shares += 1;
        let cfg = &self.shared.cfg;
        let elapsed = self.window_start.elapsed().as_secs_f64();
        if elapsed < cfg.retarget_seconds
            && self.window_shares < 2 * cfg.target_shares_per_minute as u32
        {
            return Vec::new();
        }
        let rate = f64::from(self.window_shares) / elapsed.max(1e-3) * 60.0;
        let factor = (rate / cfg.target_shares_per_minute).clamp(0.25, 4.0);
        self.window_start = Instant::now();
        self.window_shares = 0;
        if (0.8..1.25).contains(&factor) {
            return Vec::new();
        }
        self.difficulty = (self.difficulty * factor).max(cfg.min_difficulty);
        tracing::debug!(difficulty = self.difficulty, "vardiff retarget");
        // A fresh job carries the new difficulty; shares for older jobs keep theirs. The job
        // reaches this session through the broadcast, after the set_difficulty written now.
        self.shared.next_job(false);
        vec![notification(
            "mining.set_difficulty",
            json!([self.difficulty]),
        )]
    }
}
