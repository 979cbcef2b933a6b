//! The Stratum V1 client: handshake, jobs → ASIC work, share submission with exact accounting,
//! reconnect with exponential backoff and jitter, failover through a list of pools and return to
//! the primary when it comes back.
//!
//! Every share the ASIC finds ends as exactly one of accepted, rejected (by code) or stale. While
//! the link is down, shares wait in a bounded queue; on reconnect those whose job is still valid
//! (same job id, same extranonce1: the pool resumed the session) are submitted, the rest counted
//! stale. A queue overflow counts the oldest share stale; nothing is dropped silently.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Duration, Instant};
use tokio_rustls::TlsConnector;

use super::lines::{read_line, Line};
use super::message::{parse_pool_line, request, submit_params, PoolMessage, Submit};
use super::transport::{self, BoxConn, PoolUrl, Scheme, TransportError};
use crate::mining::asic::{FoundShare, Work};
use crate::mining::header::{StratumJob, Target};

/// One pool in the failover list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `stratum+tcp://host:port`, or `stratum+ssl://host:port` for TLS.
    pub url: String,
    /// Worker name.
    pub user: String,
    /// Password.
    #[serde(default)]
    pub password: String,
    /// PEM certificates to trust for this pool's TLS instead of the Mozilla root set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
}

/// Client configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Pools in order of preference; the first is the primary.
    pub pools: Vec<Endpoint>,
    /// First reconnect delay, ms.
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay, ms.
    pub backoff_max_ms: u64,
    /// How often to check whether the primary is back while on a backup, seconds.
    pub primary_probe_seconds: f64,
    /// Shares kept while the link is down.
    pub queue_capacity: usize,
    /// Ask for BIP310 version rolling.
    pub version_rolling: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            pools: Vec::new(),
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
            primary_probe_seconds: 30.0,
            queue_capacity: 1024,
            version_rolling: true,
        }
    }
}

/// A configuration the client cannot use.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No pool is configured.
    #[error("no pool configured")]
    NoPools,
    /// A URL, CA file or TLS setting is unusable.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The primary probe interval is out of range.
    #[error("primary_probe_seconds must be 0.1–86400, got {0}")]
    Probe(f64),
}

impl Endpoint {
    /// The parsed URL.
    pub fn parsed_url(&self) -> Result<PoolUrl, TransportError> {
        PoolUrl::parse(&self.url)
    }

    /// The URL and, for `stratum+ssl://`, the TLS connector (reads `tls_ca` if set).
    pub fn link(&self) -> Result<Link, TransportError> {
        let url = self.parsed_url()?;
        let tls = match url.scheme {
            Scheme::Tcp => None,
            Scheme::Tls => Some(transport::client_tls(self.tls_ca.as_deref())?),
        };
        Ok(Link { url, tls })
    }
}

/// How to reach one pool.
#[derive(Clone)]
pub struct Link {
    /// Where.
    pub url: PoolUrl,
    /// TLS, for `stratum+ssl://`.
    pub tls: Option<TlsConnector>,
}

/// Where every found share ended up.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShareCounters {
    /// Shares the ASIC found.
    pub found: u64,
    /// Accepted by the pool.
    pub accepted: u64,
    /// Sum of accepted share difficulty.
    pub accepted_work: f64,
    /// Rejected, by Stratum error code.
    pub rejected: BTreeMap<i64, u64>,
    /// Never submitted because their job was gone.
    pub stale: u64,
}

impl ShareCounters {
    /// Shares whose outcome is known.
    pub fn settled(&self) -> u64 {
        self.accepted + self.rejected.values().sum::<u64>() + self.stale
    }
}

/// The client's state, for the status snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClientStatus {
    /// The pool in use (url), if connected.
    pub pool: Option<String>,
    /// Index of that pool in the list.
    pub pool_index: Option<usize>,
    /// Connected and authorized.
    pub connected: bool,
    /// Current share difficulty.
    pub difficulty: f64,
    /// Share accounting.
    pub shares: ShareCounters,
    /// Shares waiting for the link.
    pub queued: usize,
    /// Shares submitted and not yet answered.
    pub in_flight: usize,
    /// Connections made since start.
    pub connects: u64,
    /// Why the last session ended or failed to start, if it did.
    pub last_error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running Stratum client.
pub struct StratumClient {
    status: Arc<Mutex<ClientStatus>>,
    shares_tx: mpsc::UnboundedSender<FoundShare>,
    work_rx: watch::Receiver<Option<Work>>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl StratumClient {
    /// Starts the client on the current tokio runtime.
    pub fn start(cfg: ClientConfig) -> Result<Self, ClientError> {
        if cfg.pools.is_empty() {
            return Err(ClientError::NoPools);
        }
        let links = cfg
            .pools
            .iter()
            .map(Endpoint::link)
            .collect::<Result<Vec<_>, _>>()?;
        if !(0.1..=86_400.0).contains(&cfg.primary_probe_seconds) {
            return Err(ClientError::Probe(cfg.primary_probe_seconds));
        }
        let status = Arc::new(Mutex::new(ClientStatus::default()));
        let (shares_tx, shares_rx) = mpsc::unbounded_channel();
        let (work_tx, work_rx) = watch::channel(None);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let runner = Runner {
            cfg,
            links,
            status: status.clone(),
            shares: shares_rx,
            work_tx,
            queue: VecDeque::new(),
            shutdown: shutdown_rx,
            resume: None,
        };
        let task = tokio::spawn(runner.run());
        Ok(Self {
            status,
            shares_tx,
            work_rx,
            shutdown,
            task,
        })
    }

    /// Hands a found share to the client.
    pub fn share_sender(&self) -> mpsc::UnboundedSender<FoundShare> {
        self.shares_tx.clone()
    }

    /// The work to hash (`None` until the first job).
    pub fn work(&self) -> watch::Receiver<Option<Work>> {
        self.work_rx.clone()
    }

    /// A snapshot of connection state and share accounting.
    pub fn status(&self) -> ClientStatus {
        lock(&self.status).clone()
    }

    /// Closes the connection and stops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// How a session ended.
enum Ended {
    Shutdown,
    /// The primary answers again: switch back.
    PrimaryBack,
    Failed(String),
}

struct Runner {
    cfg: ClientConfig,
    /// One per pool, in `cfg.pools` order.
    links: Vec<Link>,
    status: Arc<Mutex<ClientStatus>>,
    shares: mpsc::UnboundedReceiver<FoundShare>,
    work_tx: watch::Sender<Option<Work>>,
    /// Shares found while no session could take them.
    queue: VecDeque<FoundShare>,
    shutdown: watch::Receiver<bool>,
    /// (pool index, extranonce1) of the last session, offered for resumption.
    resume: Option<(usize, Vec<u8>)>,
}

impl Runner {
    async fn run(mut self) {
        let n = self.cfg.pools.len();
        let mut index = 0;
        let mut attempt: u32 = 0;
        loop {
            match self.session(index).await {
                Ended::Shutdown => break,
                Ended::PrimaryBack => {
                    tracing::info!("primary pool is back; switching");
                    index = 0;
                    attempt = 0;
                    continue;
                }
                Ended::Failed(why) => {
                    let url = &self.cfg.pools[index].url;
                    tracing::warn!(pool = %url, reason = %why, "pool session ended");
                    lock(&self.status).last_error = Some(format!("{url}: {why}"));
                }
            }
            {
                let mut st = lock(&self.status);
                st.connected = false;
                st.pool = None;
                st.pool_index = None;
            }
            // Next pool in order; after a full round, back off longer.
            index = (index + 1) % n;
            if index == 0 {
                attempt = attempt.saturating_add(1);
            }
            let delay = backoff(
                self.cfg.backoff_initial_ms,
                self.cfg.backoff_max_ms,
                attempt,
            );
            if self.wait(delay).await {
                break;
            }
        }
        let mut st = lock(&self.status);
        st.connected = false;
        st.pool = None;
    }

    /// Waits `delay`, queueing shares meanwhile; true on shutdown.
    async fn wait(&mut self, delay: Duration) -> bool {
        let end = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => return false,
                Some(s) = self.shares.recv() => self.enqueue(s),
                _ = self.shutdown.changed() => return true,
            }
        }
    }

    fn enqueue(&mut self, share: FoundShare) {
        let mut st = lock(&self.status);
        st.shares.found += 1;
        if self.queue.len() >= self.cfg.queue_capacity {
            self.queue.pop_front();
            st.shares.stale += 1;
        }
        self.queue.push_back(share);
        st.queued = self.queue.len();
    }

    async fn session(&mut self, index: usize) -> Ended {
        let ep = self.cfg.pools[index].clone();
        let link = &self.links[index];
        let stream = match timeout(
            Duration::from_secs(10),
            transport::connect(&link.url, link.tls.as_ref()),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Ended::Failed(format!("connect: {e}")),
            Err(_) => return Ended::Failed("connect timed out".into()),
        };
        let (r, w) = tokio::io::split(stream);
        let resume = self
            .resume
            .as_ref()
            .filter(|(i, _)| *i == index)
            .map(|(_, en1)| hex::encode(en1));
        let mut s = Session {
            reader: BufReader::new(r),
            writer: w,
            next_id: 1,
            pending: HashMap::new(),
            jobs: VecDeque::new(),
            extranonce1: Vec::new(),
            extranonce2_size: 4,
            difficulty: 1.0,
            job_difficulty: HashMap::new(),
            version_mask: 0,
            pool: ep.url.clone(),
            user: ep.user.clone(),
        };
        if let Err(e) = self.handshake(&mut s, &ep, resume).await {
            return Ended::Failed(e);
        }
        self.resume = Some((index, s.extranonce1.clone()));
        {
            let mut st = lock(&self.status);
            st.connected = true;
            st.pool = Some(ep.url.clone());
            st.pool_index = Some(index);
            st.connects += 1;
            st.difficulty = s.difficulty;
        }
        tracing::info!(pool = %ep.url, extranonce1 = %hex::encode(&s.extranonce1), "pool session up");
        // Shares that waited for the link: submit those this session can still take.
        let waiting: Vec<FoundShare> = self.queue.drain(..).collect();
        for share in waiting {
            if let Err(e) = self.submit_or_stale(&mut s, share, false).await {
                return self.end(&mut s, e);
            }
        }
        lock(&self.status).queued = 0;
        self.publish_work(&s);

        // `start` checked that the probe interval is within 0.1 s – 1 day.
        let probe_every = Duration::from_secs_f64(self.cfg.primary_probe_seconds);
        let mut probe = tokio::time::interval_at(Instant::now() + probe_every, probe_every);
        loop {
            tokio::select! {
                line = read_line(&mut s.reader) => {
                    let line = match line {
                        Ok(Some(Line::Text(t))) => t,
                        Ok(Some(Line::TooLong(n))) => {
                            tracing::warn!(pool = %s.pool, bytes = n, "oversized line from pool dropped");
                            continue;
                        }
                        Ok(Some(Line::NotUtf8)) => {
                            tracing::warn!(pool = %s.pool, "non-UTF-8 line from pool dropped");
                            continue;
                        }
                        Ok(None) => return self.end(&mut s, "pool closed the connection".into()),
                        Err(e) => return self.end(&mut s, format!("read: {e}")),
                    };
                    match parse_pool_line(&line) {
                        Ok(m) => self.on_message(&mut s, m),
                        Err(e) => tracing::warn!(pool = %s.pool, error = %e, "malformed pool message ignored"),
                    }
                }
                Some(share) = self.shares.recv() => {
                    lock(&self.status).shares.found += 1;
                    if let Err(e) = self.submit_or_stale(&mut s, share, true).await {
                        return self.end(&mut s, e);
                    }
                }
                _ = probe.tick(), if index != 0 => {
                    // Liveness only: the TCP port answers (a TLS primary handshakes on the switch).
                    let primary = self.links[0].url.address();
                    if let Ok(Ok(_)) = timeout(Duration::from_secs(2), TcpStream::connect(primary)).await {
                        self.end(&mut s, String::new());
                        s.close().await;
                        return Ended::PrimaryBack;
                    }
                }
                _ = self.shutdown.changed() => {
                    self.end(&mut s, String::new());
                    s.close().await;
                    return Ended::Shutdown;
                }
            }
        }
    }

    /// configure (version rolling) → subscribe (offering the last session for resumption) →
    /// extranonce.subscribe → authorize; notifications that arrive meanwhile are applied in order.
    async fn handshake(
        &mut self,
        s: &mut Session,
        ep: &Endpoint,
        resume: Option<String>,
    ) -> Result<(), String> {
        let mut early = Vec::new();
        if self.cfg.version_rolling {
            let (r, e) = s
                .call(
                    "mining.configure",
                    json!([["version-rolling"], {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2}]),
                    &mut early,
                )
                .await?;
            if e.is_none() && r["version-rolling"] == json!(true) {
                s.version_mask = r["version-rolling.mask"]
                    .as_str()
                    .and_then(|m| u32::from_str_radix(m, 16).ok())
                    .unwrap_or(0);
            }
        }
        let params = match resume {
            Some(sid) => json!(["hearth/0.1", sid]),
            None => json!(["hearth/0.1"]),
        };
        let (r, e) = s.call("mining.subscribe", params, &mut early).await?;
        if let Some(code) = e {
            return Err(format!("subscribe refused (code {code})"));
        }
        s.extranonce1 = r[1]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .ok_or("subscribe: extranonce1 is not hex")?;
        s.extranonce2_size =
            r[2].as_u64()
                .filter(|n| (1..=8).contains(n))
                .ok_or("subscribe: extranonce2 size must be 1–8")? as usize;
        // Optional: pools that do not know it answer with an error, which is fine.
        let _ = s
            .call("mining.extranonce.subscribe", json!([]), &mut early)
            .await?;
        let (r, e) = s
            .call(
                "mining.authorize",
                json!([ep.user, ep.password]),
                &mut early,
            )
            .await?;
        if r != json!(true) || e.is_some() {
            return Err(format!("authorization of {:?} refused", ep.user));
        }
        for m in early {
            self.on_message(s, m);
        }
        Ok(())
    }

    /// Ends a session: unanswered submits go back to the queue for the next session.
    fn end(&mut self, s: &mut Session, why: String) -> Ended {
        let unanswered: Vec<FoundShare> = s.pending.drain().map(|(_, sh)| sh).collect();
        let mut st = lock(&self.status);
        for share in unanswered {
            if self.queue.len() >= self.cfg.queue_capacity {
                st.shares.stale += 1;
            } else {
                self.queue.push_back(share);
            }
        }
        st.queued = self.queue.len();
        st.in_flight = 0;
        Ended::Failed(why)
    }

    fn publish_work(&self, s: &Session) {
        let Some(job) = s.jobs.back() else { return };
        let difficulty = s
            .job_difficulty
            .get(&job.job_id)
            .copied()
            .unwrap_or(s.difficulty);
        let Ok(share_target) = Target::from_difficulty(difficulty) else {
            return;
        };
        self.work_tx.send_replace(Some(Work {
            job: job.clone(),
            extranonce1: s.extranonce1.clone(),
            extranonce2_size: s.extranonce2_size,
            extranonce2_first: 0,
            share_target,
            version: job.version,
        }));
    }

    fn on_message(&mut self, s: &mut Session, m: PoolMessage) {
        match m {
            PoolMessage::Notify(job) => {
                if job.clean_jobs {
                    s.jobs.clear();
                }
                s.job_difficulty.insert(job.job_id.clone(), s.difficulty);
                s.jobs.push_back(Arc::new(job));
                while s.jobs.len() > 16 {
                    if let Some(old) = s.jobs.pop_front() {
                        s.job_difficulty.remove(&old.job_id);
                    }
                }
                self.publish_work(s);
            }
            PoolMessage::SetDifficulty(d) => {
                // Applies from the next job on.
                s.difficulty = d;
                lock(&self.status).difficulty = d;
            }
            PoolMessage::SetExtranonce {
                extranonce1,
                extranonce2_size,
            } => {
                s.extranonce1 = extranonce1;
                s.extranonce2_size = extranonce2_size;
                self.publish_work(s);
            }
            PoolMessage::SetVersionMask(mask) => s.version_mask = mask,
            PoolMessage::Response { id, result, error } => {
                let Some(share) = id.as_u64().and_then(|i| s.pending.remove(&i)) else {
                    return;
                };
                let mut st = lock(&self.status);
                st.in_flight = s.pending.len();
                match (result, error) {
                    (Value::Bool(true), None) => {
                        st.shares.accepted += 1;
                        st.shares.accepted_work += s
                            .job_difficulty
                            .get(&share.job_id)
                            .copied()
                            .unwrap_or(s.difficulty);
                    }
                    (_, Some(e)) => {
                        tracing::warn!(pool = %s.pool, code = e.code, msg = %e.message, "share rejected");
                        *st.shares.rejected.entry(e.code).or_default() += 1;
                    }
                    (other, None) => {
                        tracing::warn!(pool = %s.pool, result = %other, "share rejected without a code");
                        *st.shares
                            .rejected
                            .entry(super::message::codes::OTHER)
                            .or_default() += 1;
                    }
                }
            }
            PoolMessage::Unknown { method } => {
                tracing::debug!(pool = %s.pool, %method, "pool notification ignored");
            }
        }
    }

    /// Submits a share if this session can take it, else counts it stale.
    async fn submit_or_stale(
        &mut self,
        s: &mut Session,
        share: FoundShare,
        fresh: bool,
    ) -> Result<(), String> {
        let valid =
            share.extranonce1 == s.extranonce1 && s.jobs.iter().any(|j| j.job_id == share.job_id);
        if !valid {
            if !fresh {
                tracing::debug!(job = %share.job_id, "queued share is stale on the new session");
            }
            lock(&self.status).shares.stale += 1;
            return Ok(());
        }
        let job_version = s
            .jobs
            .iter()
            .find(|j| j.job_id == share.job_id)
            .map_or(share.version, |j| j.version);
        let version_bits = (share.version != job_version).then_some(share.version & s.version_mask);
        let submit = Submit {
            worker: String::new(),
            job_id: share.job_id.clone(),
            extranonce2: share.extranonce2.clone(),
            ntime: share.ntime,
            nonce: share.nonce,
            version_bits,
        };
        let id = s.next_id;
        s.next_id += 1;
        let mut params = submit_params(&submit);
        params[0] = json!(s.user);
        s.send(&request(id, "mining.submit", params)).await?;
        s.pending.insert(id, share);
        lock(&self.status).in_flight = s.pending.len();
        Ok(())
    }
}

fn backoff(initial_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let base = initial_ms
        .saturating_mul(1u64 << attempt.min(16))
        .min(max_ms.max(initial_ms));
    // Full jitter in [base/2, base].
    let jitter = rand::random_range(0..=base / 2);
    Duration::from_millis(base - jitter)
}

struct Session {
    reader: BufReader<ReadHalf<BoxConn>>,
    writer: WriteHalf<BoxConn>,
    next_id: u64,
    pending: HashMap<u64, FoundShare>,
    jobs: VecDeque<Arc<StratumJob>>,
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    difficulty: f64,
    job_difficulty: HashMap<String, f64>,
    version_mask: u32,
    pool: String,
    user: String,
}

impl Session {
    /// Closes the stream cleanly (TLS close_notify), waiting at most a second.
    async fn close(&mut self) {
        let _ = timeout(Duration::from_secs(1), self.writer.shutdown()).await;
    }

    async fn send(&mut self, line: &str) -> Result<(), String> {
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Sends a request and waits for its response, handling notifications meanwhile.
    async fn call(
        &mut self,
        method: &str,
        params: Value,
        early: &mut Vec<PoolMessage>,
    ) -> Result<(Value, Option<i64>), String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&request(id, method, params)).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = timeout(
                deadline.saturating_duration_since(Instant::now()),
                read_line(&mut self.reader),
            )
            .await
            .map_err(|_| format!("{method}: no answer within 10 s"))?
            .map_err(|e| format!("read: {e}"))?;
            let text = match line {
                Some(Line::Text(t)) => t,
                Some(_) => continue,
                None => return Err(format!("{method}: pool closed the connection")),
            };
            match parse_pool_line(&text) {
                Ok(PoolMessage::Response {
                    id: rid,
                    result,
                    error,
                }) if rid.as_u64() == Some(id) => {
                    return Ok((result, error.map(|e| e.code)));
                }
                Ok(other) => early.push(other),
                Err(e) => {
                    tracing::warn!(pool = %self.pool, error = %e, "malformed pool message ignored")
                }
            }
        }
    }
}
