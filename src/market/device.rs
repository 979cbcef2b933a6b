//! The device side of the market: a supervised task that takes offers while the room wants heat.
//!
//! Heat wanted means work taken: the daemon publishes a [`Demand`] every tick, the GPU watts the
//! room wants that no local job uses. Only while it is above zero does the task pull one offer
//! from the shared durable consumer. It accepts the offer if the kernel is one it takes, the
//! price meets its floor and the job fits its limits; otherwise it NAKs it for another device.
//! While the job runs it sends progress acks (so the lease stays its own) and stores every
//! checkpoint in the object store. When heat is no longer wanted (the room is warm, the owner
//! pinned the mix to the ASIC, or a local job arrived) it checkpoints and NAKs, and another
//! heater resumes the job from there. A finished job's result goes to the object store, then a
//! signed receipt on the job's events, then the ACK.
//!
//! The connection is supervised: any market error ends the session, which restarts after a
//! backoff. None of it touches the control loop, which only ever writes the demand.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind, Message};
use tokio::sync::watch;
use tokio_stream::StreamExt;

use super::conn::{connect, js_err, publish_event};
use super::layout::{ensure_consumer, ensure_layout, Layout, LayoutConfig};
use super::layout::{MarketError, DEVICES_BUCKET};
use super::offer::MarketOffer;
use super::receipt::{DeviceKey, Receipt};
use super::wire::{self, DeviceInfo, EventKind};
use crate::gpu::job::{Checkpoint, GpuJob, JobError};
use crate::gpu::runner::{GpuRunner, JobHandle, JobOutcome};
use crate::gpu::tensor::digest;

/// What the daemon tells the market task every tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Demand {
    /// GPU watts the room wants that no local job uses; 0 means take nothing and give back
    /// the job held.
    pub spare_gpu_watts: f64,
}

/// Where the market task runs its jobs: the GPU runner, or a stand-in in benchmarks.
pub trait Compute: Send + Sync + 'static {
    /// The adapter's name, for the device entry.
    fn adapter(&self) -> String;
    /// Checks and starts `job`, resuming from `checkpoint`.
    fn start(&self, job: GpuJob, checkpoint: Option<Checkpoint>) -> Result<JobHandle, JobError>;
    /// Takes run `id` off with a checkpoint.
    fn preempt(&self, id: u64);
    /// Stops run `id`.
    fn cancel(&self, id: u64);
}

impl Compute for GpuRunner {
    fn adapter(&self) -> String {
        self.status().adapter.name
    }
    fn start(&self, job: GpuJob, checkpoint: Option<Checkpoint>) -> Result<JobHandle, JobError> {
        self.submit(job, checkpoint)
    }
    fn preempt(&self, id: u64) {
        GpuRunner::preempt(self, id)
    }
    fn cancel(&self, id: u64) {
        GpuRunner::cancel(self, id)
    }
}

/// How the device takes part in the market.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// NATS server URL(s), comma-separated.
    pub url: String,
    /// A NATS `.creds` file, if the server wants one.
    pub credentials: Option<PathBuf>,
    /// Least price per GPU-second it takes.
    pub price_floor: f64,
    /// Kernel catalog names it takes.
    pub kernels: Vec<String>,
    /// The market's layout settings.
    pub layout: LayoutConfig,
    /// How long a delivered offer is the device's without an ack.
    pub ack_wait: Duration,
    /// How often the device entry is refreshed.
    pub heartbeat: Duration,
    /// How long no heat is wanted before a running job is given back.
    pub preempt_after: Duration,
    /// How long one pull waits for an offer.
    pub fetch_wait: Duration,
    /// The longest backoff between reconnects.
    pub max_backoff: Duration,
}

impl DeviceConfig {
    /// Defaults for `url`: every kernel, no floor, 30 s ack wait.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            credentials: None,
            price_floor: 0.0,
            kernels: ALL_KERNELS.iter().map(|k| k.to_string()).collect(),
            layout: LayoutConfig::default(),
            ack_wait: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            preempt_after: Duration::from_secs(2),
            fetch_wait: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// How long the connection may be down before the session ends.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// Deliveries of an offer over the limits of the devices it reached before it is terminated as
/// too big for the market (each refusal NAKs it for another device).
pub const REFUSALS_BEFORE_FAILING: i64 = 4;

/// The kernel catalog names a device can take.
pub const ALL_KERNELS: [&str; 6] = [
    "matmul",
    "elementwise",
    "softmax",
    "mlp_infer",
    "mlp_train",
    "custom",
];

/// What the market task reports.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct MarketStatus {
    /// This device's id.
    pub device_id: String,
    /// Connected to the market now.
    pub connected: bool,
    /// The market job running here.
    pub job: Option<String>,
    /// Its price per GPU-second.
    pub job_price: f64,
    /// Offers accepted.
    pub accepted: u64,
    /// Jobs completed with a receipt.
    pub completed: u64,
    /// Jobs given back with a checkpoint.
    pub preempted: u64,
    /// Offers passed on to other devices (NAK).
    pub declined: u64,
    /// Offers or jobs that failed (terminated with a reason event).
    pub failed: u64,
    /// Sessions that ended in an error.
    pub reconnects: u64,
    /// The last market error.
    pub last_error: Option<String>,
}

/// The running market task.
pub struct DeviceHandle {
    /// Its status.
    pub status: watch::Receiver<MarketStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl DeviceHandle {
    /// Waits for the task to stop (after shutdown: a running job is checkpointed and NAKed).
    pub async fn join(self) {
        let _ = self.task.await;
    }

    /// Kills the task at once, as a crash would: nothing is given back, the market redelivers
    /// the offer held after its ack wait (benchmarks and drills).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Starts the market task.
pub fn spawn(
    cfg: DeviceConfig,
    key: DeviceKey,
    compute: Arc<dyn Compute>,
    demand: watch::Receiver<Demand>,
    shutdown: watch::Receiver<bool>,
) -> DeviceHandle {
    let (status_tx, status) = watch::channel(MarketStatus {
        device_id: key.device_id(),
        ..MarketStatus::default()
    });
    let dev = Device {
        cfg,
        key,
        compute,
        demand,
        shutdown,
        status: status_tx,
        ran: Arc::new(Mutex::new(HashSet::new())),
    };
    DeviceHandle {
        status,
        task: tokio::spawn(dev.supervise()),
    }
}

/// How one delivered offer ended for this device.
enum Ending {
    /// Done; the market may send the next.
    Handled,
    /// The daemon is stopping.
    Shutdown,
}

struct Device {
    cfg: DeviceConfig,
    key: DeviceKey,
    compute: Arc<dyn Compute>,
    demand: watch::Receiver<Demand>,
    shutdown: watch::Receiver<bool>,
    status: watch::Sender<MarketStatus>,
    /// Jobs this device has finished a copy of (a redundant job's copies go to different
    /// devices); a cache of the result objects that carry this device's id.
    ran: Arc<Mutex<HashSet<String>>>,
}

struct Session {
    client: async_nats::Client,
    js: jetstream::Context,
    layout: Layout,
    consumer: PullConsumer,
}

impl Device {
    async fn supervise(mut self) {
        let mut backoff = Duration::from_millis(200);
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            let started = tokio::time::Instant::now();
            let r = self.session().await;
            self.status.send_modify(|s| {
                s.connected = false;
                s.job = None;
            });
            match r {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "market session ended");
                    self.status.send_modify(|s| {
                        s.reconnects += 1;
                        s.last_error = Some(e.to_string());
                    });
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_millis(200);
            }
            let mut sd = self.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = async { let _ = sd.wait_for(|s| *s).await; } => break,
            }
            backoff = (backoff * 2).min(self.cfg.max_backoff);
        }
        tracing::info!("market task stopped");
    }

    async fn connect(&self) -> Result<Session, MarketError> {
        let js = connect(
            &self.cfg.url,
            self.cfg.credentials.as_deref(),
            &format!("hearth {}", self.key.device_id()),
        )
        .await?;
        let layout = ensure_layout(&js, &self.cfg.layout).await?;
        let consumer = ensure_consumer(&layout.jobs, self.cfg.ack_wait).await?;
        Ok(Session {
            client: js.client(),
            js,
            layout,
            consumer,
        })
    }

    /// One connection: register, heartbeat, and take offers until an error or shutdown.
    async fn session(&mut self) -> Result<(), MarketError> {
        let s = self.connect().await?;
        tracing::info!(url = %self.cfg.url, device = %self.key.device_id(), "joined the market");
        self.status.send_modify(|st| {
            st.connected = true;
            st.last_error = None;
        });
        // Stops with the session, however it ends (also when the task is aborted).
        let _beat = AbortOnDrop(self.heartbeat(&s).await);
        let r = self.take_offers(&s).await;
        // Leave the market at once rather than after the TTL (best effort).
        let _ = s.layout.devices.purge(self.key.device_id()).await;
        r
    }

    /// Writes the device entry now and then every heartbeat, in its own task.
    async fn heartbeat(&self, s: &Session) -> tokio::task::JoinHandle<()> {
        let kv = s.layout.devices.clone();
        let id = self.key.device_id();
        let base = DeviceInfo {
            device_id: id.clone(),
            public_key: self.key.public_hex(),
            adapter: self.compute.adapter(),
            kernels: self.cfg.kernels.clone(),
            price_floor: self.cfg.price_floor,
            spare_watts: 0.0,
            job: None,
            updated_unix_ms: 0,
        };
        let demand = self.demand.clone();
        let status = self.status.subscribe();
        let every = self.cfg.heartbeat;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let info = DeviceInfo {
                    spare_watts: demand.borrow().spare_gpu_watts,
                    job: status.borrow().job.clone(),
                    updated_unix_ms: wire::now_unix_ms(),
                    ..base.clone()
                };
                let bytes = serde_json::to_vec(&info).unwrap_or_default();
                if let Err(e) = kv.put(&id, bytes.into()).await {
                    tracing::warn!(bucket = DEVICES_BUCKET, error = %e, "heartbeat failed");
                }
            }
        })
    }

    /// Pulls one offer at a time while heat is wanted.
    async fn take_offers(&mut self, s: &Session) -> Result<(), MarketError> {
        let mut check = tokio::time::interval(Duration::from_millis(500));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut down_since: Option<tokio::time::Instant> = None;
        loop {
            // The client reconnects by itself; a connection down for longer than a blip ends
            // the session, so that the status says so and the next one starts afresh.
            if s.client.connection_state() == async_nats::connection::State::Connected {
                down_since = None;
            } else {
                let since = *down_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= DISCONNECT_GRACE {
                    return Err(MarketError::JetStream {
                        what: format!("connection to {}", self.cfg.url),
                        source: format!("lost for {DISCONNECT_GRACE:?}").into(),
                    });
                }
            }
            // Heat wanted means work taken: wait for demand (or shutdown).
            let mut demand = self.demand.clone();
            let mut sd = self.shutdown.clone();
            tokio::select! {
                _ = async { let _ = sd.wait_for(|s| *s).await; } => return Ok(()),
                _ = check.tick() => continue,
                r = demand.wait_for(|d| d.spare_gpu_watts > 0.0) => {
                    if r.is_err() { return Ok(()); }
                }
            }
            if down_since.is_some() {
                continue;
            }
            let mut batch = s
                .consumer
                .batch()
                .max_messages(1)
                .expires(self.cfg.fetch_wait)
                .messages()
                .await
                .map_err(|e| js_err("pulling an offer", e))?;
            // A pull lost with the connection never answers: give up on it after its expiry.
            let msg = tokio::select! {
                m = tokio::time::timeout(self.cfg.fetch_wait + Duration::from_secs(1), batch.next()) => {
                    m.unwrap_or(None)
                }
                _ = async { let _ = sd.wait_for(|s| *s).await; } => return Ok(()),
            };
            let Some(msg) = msg else { continue };
            let msg = msg.map_err(|e| js_err("receiving an offer", e))?;
            match self.handle(s, msg).await? {
                Ending::Handled => {}
                Ending::Shutdown => return Ok(()),
            }
        }
    }

    /// Publishes `kind` on the job's events and waits for the stream to store it.
    async fn event(&self, s: &Session, job: &str, kind: EventKind) -> Result<(), MarketError> {
        publish_event(&s.js, job, kind).await
    }

    /// Whether this device has finished a copy of `job_id`: remembered in memory, and across
    /// restarts by its result object, whose name carries the device id.
    async fn ran_copy(&self, s: &Session, job_id: &str) -> Result<bool, MarketError> {
        if lock(&self.ran).contains(job_id) {
            return Ok(true);
        }
        let name = wire::result_object(job_id, &self.key.device_id());
        let ran = wire::has_blob(&s.layout.blobs, &name).await?;
        if ran {
            lock(&self.ran).insert(job_id.to_string());
        }
        Ok(ran)
    }

    async fn nak(&self, msg: &Message, why: &str, delay: Duration) -> Result<(), MarketError> {
        tracing::debug!(why, "passing an offer on");
        self.status.send_modify(|s| s.declined += 1);
        msg.ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| js_err("NAK", e))
    }

    /// Terminates an offer nobody can run, with a `failed` event saying why.
    async fn reject(
        &self,
        s: &Session,
        msg: &Message,
        job: &str,
        replica: u8,
        reason: String,
    ) -> Result<(), MarketError> {
        tracing::warn!(job, %reason, "offer terminated");
        self.status.send_modify(|s| s.failed += 1);
        let kind = EventKind::Failed {
            device: self.key.device_id(),
            replica,
            reason,
        };
        self.event(s, job, kind).await?;
        msg.ack_with(AckKind::Term)
            .await
            .map_err(|e| js_err("terminating an offer", e))
    }

    async fn handle(&mut self, s: &Session, msg: Message) -> Result<Ending, MarketError> {
        let offer: MarketOffer = match serde_json::from_slice(&msg.payload) {
            Ok(o) => o,
            Err(e) => {
                // Name the job if the JSON at least says which.
                let job = serde_json::from_slice::<serde_json::Value>(&msg.payload)
                    .ok()
                    .and_then(|v| v.get("job_id")?.as_str().map(str::to_string))
                    .filter(|j| super::offer::validate_job_id(j).is_ok())
                    .unwrap_or_else(|| "malformed".into());
                self.reject(s, &msg, &job, 0, format!("malformed offer: {e}"))
                    .await?;
                return Ok(Ending::Handled);
            }
        };
        let job_id = offer.job_id.clone();
        if let Err(e) = offer.validate() {
            let job = if super::offer::validate_job_id(&job_id).is_ok() {
                job_id
            } else {
                "malformed".into()
            };
            self.reject(s, &msg, &job, offer.replica, format!("invalid offer: {e}"))
                .await?;
            return Ok(Ending::Handled);
        }
        if self.demand.borrow().spare_gpu_watts <= 0.0 {
            // Heat stopped being wanted while the pull was out: let another heater have it.
            self.nak(&msg, "no heat wanted any more", Duration::ZERO)
                .await?;
            return Ok(Ending::Handled);
        }
        let kernel = offer.kernel();
        if !self.cfg.kernels.iter().any(|k| k == kernel) {
            self.nak(&msg, "kernel not taken here", Duration::from_secs(1))
                .await?;
            return Ok(Ending::Handled);
        }
        if offer.price_per_gpu_second < self.cfg.price_floor {
            self.nak(&msg, "price below the floor", Duration::from_secs(1))
                .await?;
            return Ok(Ending::Handled);
        }
        if offer.redundancy > 1 && self.ran_copy(s, &job_id).await? {
            // Another copy must run on another device.
            self.nak(&msg, "ran another copy", Duration::from_millis(200))
                .await?;
            return Ok(Ending::Handled);
        }
        let mut job = offer.spec.job.clone();
        if let Some(n) = offer.stored_inputs {
            let name = wire::input_object(&job_id);
            let inputs = match wire::get_blob(&s.layout.blobs, &name).await? {
                Some(b) => wire::unpack(&b),
                None => Err(format!("object {name} is missing")),
            };
            match inputs {
                Ok(t) if t.len() == n => job.inputs = t,
                Ok(t) => {
                    let why = format!("stored inputs: {} tensors, the offer says {n}", t.len());
                    self.reject(s, &msg, &job_id, offer.replica, why).await?;
                    return Ok(Ending::Handled);
                }
                Err(e) => {
                    let why = format!("stored inputs: {e}");
                    self.reject(s, &msg, &job_id, offer.replica, why).await?;
                    return Ok(Ending::Handled);
                }
            }
        }
        let cp_name = wire::checkpoint_object(&job_id, offer.replica);
        // A first delivery has no checkpoint to resume: skip the lookup.
        let delivered = msg.info().map_or(1, |i| i.delivered.max(1));
        let stored = if delivered <= 1 {
            None
        } else {
            wire::get_blob(&s.layout.blobs, &cp_name).await?
        };
        let checkpoint = match stored {
            Some(b) => match wire::decode_checkpoint(&b) {
                Ok(cp) => Some(cp),
                Err(e) => {
                    tracing::warn!(job = %job_id, error = %e, "unreadable checkpoint; starting over");
                    None
                }
            },
            None => None,
        };
        let resumed_at = checkpoint.as_ref().map_or(0, |c| c.done);
        let handle = match self.compute.start(job, checkpoint) {
            Ok(h) => h,
            // Over this device's limits: a bigger device may take it, until enough have
            // refused it.
            Err(e @ JobError::Limit { .. }) if delivered < REFUSALS_BEFORE_FAILING => {
                tracing::info!(job = %job_id, error = %e, "offer over this device's limits");
                self.nak(
                    &msg,
                    "over this device's limits",
                    Duration::from_millis(500),
                )
                .await?;
                return Ok(Ending::Handled);
            }
            Err(e) => {
                let why = match e {
                    JobError::Limit { .. } => format!("refused by {delivered} deliveries: {e}"),
                    _ => format!("refused: {e}"),
                };
                self.reject(s, &msg, &job_id, offer.replica, why).await?;
                return Ok(Ending::Handled);
            }
        };
        tracing::info!(job = %job_id, replica = offer.replica, resumed_at, price = offer.price_per_gpu_second, "market job accepted");
        self.status.send_modify(|st| {
            st.accepted += 1;
            st.job = Some(job_id.clone());
            st.job_price = offer.price_per_gpu_second;
        });
        let accepted = EventKind::Accepted {
            device: self.key.device_id(),
            replica: offer.replica,
            resumed_at,
        };
        let run = handle.id;
        let r = match self.event(s, &job_id, accepted).await {
            Ok(()) => self.run(s, &msg, &offer, handle, resumed_at).await,
            Err(e) => Err(e),
        };
        if r.is_err() {
            // The lease is lost with the session: stop the run (a no-op if it ended); the offer
            // is redelivered after the ack wait and resumes from the last stored checkpoint.
            self.compute.cancel(run);
        }
        self.status.send_modify(|st| {
            st.job = None;
            st.job_price = 0.0;
        });
        r
    }

    /// Runs an accepted job to its end, keeping the lease and watching the demand.
    async fn run(
        &mut self,
        s: &Session,
        msg: &Message,
        offer: &MarketOffer,
        handle: JobHandle,
        resumed_at: u64,
    ) -> Result<Ending, MarketError> {
        let job_id = offer.job_id.as_str();
        let run = handle.id;
        let progress = handle.progress;
        let mut checkpoint = handle.checkpoint;
        let mut outcome = handle.outcome;
        let mut keepalive =
            tokio::time::interval((self.cfg.ack_wait / 3).max(Duration::from_millis(50)));
        keepalive.tick().await;
        let mut demand = self.demand.clone();
        let mut sd = self.shutdown.clone();
        let deadline = {
            let now = wire::now_unix_ms() / 1000;
            Duration::from_secs(offer.deadline_unix_s.saturating_sub(now))
        };
        let deadline = tokio::time::sleep(deadline);
        tokio::pin!(deadline);
        // When heat stopped being wanted, if it has.
        let mut cold_since: Option<tokio::time::Instant> = None;
        let mut stopping: Option<String> = None;
        let mut shutting_down = false;
        let mut last_cp_done = resumed_at;
        let outcome = loop {
            let give_back_at = cold_since.map(|t| t + self.cfg.preempt_after);
            tokio::select! {
                r = &mut outcome => break r.unwrap_or(JobOutcome::Failed(JobError::Cancelled)),
                Ok(()) = checkpoint.changed() => {
                    let cp = checkpoint.borrow_and_update().clone();
                    if let Some(cp) = cp.filter(|c| c.done > last_cp_done) {
                        last_cp_done = cp.done;
                        let name = wire::checkpoint_object(job_id, offer.replica);
                        wire::put_blob(&s.layout.blobs, &name, &wire::encode_checkpoint(&cp)).await?;
                        let units = progress.borrow().units;
                        self.event(s, job_id, EventKind::Progress {
                            device: self.key.device_id(),
                            replica: offer.replica,
                            done: cp.done,
                            units,
                        }).await?;
                    }
                }
                _ = keepalive.tick() => {
                    msg.ack_with(AckKind::Progress).await.map_err(|e| js_err("progress ack", e))?;
                }
                Ok(()) = demand.changed() => {
                    let wanted = demand.borrow_and_update().spare_gpu_watts > 0.0;
                    match (wanted, cold_since) {
                        (true, _) => cold_since = None,
                        (false, None) => cold_since = Some(tokio::time::Instant::now()),
                        (false, Some(_)) => {}
                    }
                }
                _ = async {
                    match give_back_at {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                }, if stopping.is_none() => {
                    stopping = Some("no heat wanted here (room warm, mix pinned to the ASIC, or a local job)".into());
                    self.compute.preempt(run);
                }
                _ = &mut deadline, if stopping.is_none() => {
                    stopping = Some(format!("deadline {} passed", offer.deadline_unix_s));
                    self.compute.cancel(run);
                }
                _ = async { let _ = sd.wait_for(|s| *s).await; }, if !shutting_down => {
                    shutting_down = true;
                    if stopping.is_none() {
                        stopping = Some("device stopping".into());
                        self.compute.preempt(run);
                    }
                }
            }
        };
        let units = progress.borrow().units;
        // Whether an object holds a checkpoint of this copy (resumed from one, or stored one).
        let had_cp = resumed_at > 0 || last_cp_done > resumed_at;
        self.finish(
            s,
            msg,
            offer,
            outcome,
            (resumed_at, units, had_cp),
            stopping,
        )
        .await?;
        Ok(if shutting_down {
            Ending::Shutdown
        } else {
            Ending::Handled
        })
    }

    async fn finish(
        &mut self,
        s: &Session,
        msg: &Message,
        offer: &MarketOffer,
        outcome: JobOutcome,
        (resumed_at, units, had_cp): (u64, u64, bool),
        stopping: Option<String>,
    ) -> Result<(), MarketError> {
        let job_id = offer.job_id.as_str();
        let cp_name = wire::checkpoint_object(job_id, offer.replica);
        match outcome {
            JobOutcome::Succeeded(out) => {
                let sha = digest(&out.outputs);
                let name = wire::result_object(job_id, &self.key.device_id());
                wire::put_blob(&s.layout.blobs, &name, &wire::pack(&out.outputs)).await?;
                let receipt = self.key.sign(Receipt {
                    job_id: job_id.to_string(),
                    replica: offer.replica,
                    device_id: String::new(),
                    public_key: String::new(),
                    result_sha256: sha.clone(),
                    joules: out.joules,
                    gpu_seconds: out.gpu_seconds,
                    units,
                    resumed_at,
                    finished_unix_ms: wire::now_unix_ms(),
                });
                self.event(s, job_id, EventKind::Completed { receipt })
                    .await?;
                msg.double_ack()
                    .await
                    .map_err(|e| js_err("acking a finished job", e))?;
                if had_cp {
                    wire::delete_blob(&s.layout.blobs, &cp_name).await;
                }
                lock(&self.ran).insert(job_id.to_string());
                self.status.send_modify(|st| st.completed += 1);
                tracing::info!(job = job_id, digest = %sha, gpu_seconds = out.gpu_seconds, "market job completed; receipt published");
            }
            JobOutcome::Preempted(cp) => {
                let reason = stopping.unwrap_or_else(|| "preempted".into());
                if !(cp.done == 0 && cp.state.is_empty()) {
                    wire::put_blob(&s.layout.blobs, &cp_name, &wire::encode_checkpoint(&cp))
                        .await?;
                }
                self.event(
                    s,
                    job_id,
                    EventKind::Preempted {
                        device: self.key.device_id(),
                        replica: offer.replica,
                        done: cp.done,
                        reason: reason.clone(),
                    },
                )
                .await?;
                msg.ack_with(AckKind::Nak(None))
                    .await
                    .map_err(|e| js_err("giving a job back", e))?;
                self.status.send_modify(|st| st.preempted += 1);
                tracing::info!(job = job_id, done = cp.done, %reason, "market job given back with its checkpoint");
            }
            JobOutcome::Failed(e) => {
                let reason = match (&e, stopping) {
                    (JobError::Cancelled, Some(why)) => why,
                    _ => e.to_string(),
                };
                self.reject(s, msg, job_id, offer.replica, reason).await?;
            }
        }
        Ok(())
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
