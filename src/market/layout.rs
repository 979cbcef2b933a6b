//! The market's layout on JetStream, created idempotently by [`ensure_layout`].
//!
//! | name | kind | subjects | retention |
//! |---|---|---|---|
//! | `MARKET_JOBS` | stream | `market.jobs.<kernel>` | work queue: an offer is gone once acked |
//! | `market-devices` | key-value bucket (stream `KV_market-devices`) | `$KV.market-devices.>` | one value per device, expires after the TTL unless a heartbeat refreshes it |
//! | `market-blobs` | object store (stream `OBJ_market-blobs`) | `$O.market-blobs.>` | large inputs, checkpoints, results |
//! | `MARKET_EVENTS` | stream | `market.events.<job_id>` | limits: kept for `events_max_age` |

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, PullConsumer},
    kv,
    object_store::{self, ObjectStore},
    stream::{self, RetentionPolicy, StorageType, Stream},
};
use thiserror::Error;

/// The work-queue stream of job offers.
pub const JOBS_STREAM: &str = "MARKET_JOBS";
/// Subjects of [`JOBS_STREAM`]; offers go to `market.jobs.<kernel>`.
pub const JOBS_SUBJECTS: &str = "market.jobs.>";
/// The stream of job events.
pub const EVENTS_STREAM: &str = "MARKET_EVENTS";
/// Subjects of [`EVENTS_STREAM`]; a job's events go to `market.events.<job_id>`.
pub const EVENTS_SUBJECTS: &str = "market.events.>";
/// The key-value bucket of device heartbeats.
pub const DEVICES_BUCKET: &str = "market-devices";
/// The object store of large inputs, checkpoints and results.
pub const BLOBS_BUCKET: &str = "market-blobs";

/// The subject an offer for `kernel` (a catalog name such as `matmul`) is published on.
pub fn offer_subject(kernel: &str) -> String {
    format!("market.jobs.{kernel}")
}

/// The subject a job's events are published on.
pub fn event_subject(job_id: &str) -> String {
    format!("market.events.{job_id}")
}

/// Tunables of the layout; every process on one market must use the same values.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutConfig {
    /// Copies of every stream: 1 on a single server, 3 on a 3-node cluster.
    pub replicas: usize,
    /// How long a device entry lives without a heartbeat.
    pub device_ttl: Duration,
    /// How long an unclaimed offer is kept (zero: until taken).
    pub jobs_max_age: Duration,
    /// How long job events are kept (zero: forever).
    pub events_max_age: Duration,
}

impl Default for LayoutConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            device_ttl: Duration::from_secs(30),
            jobs_max_age: Duration::from_secs(7 * 24 * 3600),
            events_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Handles to the market's streams and stores.
#[derive(Clone)]
pub struct Layout {
    /// [`JOBS_STREAM`].
    pub jobs: Stream,
    /// [`EVENTS_STREAM`].
    pub events: Stream,
    /// [`DEVICES_BUCKET`].
    pub devices: kv::Store,
    /// [`BLOBS_BUCKET`].
    pub blobs: ObjectStore,
}

impl std::fmt::Debug for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout")
            .field("jobs", &JOBS_STREAM)
            .field("events", &EVENTS_STREAM)
            .field("devices", &DEVICES_BUCKET)
            .field("blobs", &BLOBS_BUCKET)
            .finish()
    }
}

/// Why the market cannot be used.
#[derive(Debug, Error)]
pub enum MarketError {
    /// A stream exists with a config that the market cannot work with.
    #[error(
        "stream {stream} exists with {field} {got}, the market needs {want}; delete or migrate it"
    )]
    Incompatible {
        /// The stream's name.
        stream: String,
        /// The config field that differs.
        field: &'static str,
        /// What the server has.
        got: String,
        /// What the market needs.
        want: String,
    },
    /// An offer field is invalid.
    #[error("offer {0}")]
    Offer(crate::jobs::SpecError),
    /// A result or receipt does not hold up.
    #[error("job {job}: verification failed: {msg}")]
    Verify {
        /// The job.
        job: String,
        /// What does not hold.
        msg: String,
    },
    /// Nothing there yet.
    #[error("{0}")]
    NotFound(String),
    /// Waited too long.
    #[error("{0}")]
    Timeout(String),
    /// The layout config itself is unusable.
    #[error("layout config: {0}")]
    Config(String),
    /// A JetStream request failed.
    #[error("{what}: {source}")]
    JetStream {
        /// What was being done, naming the stream or bucket.
        what: String,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
}

fn js_err(what: impl Into<String>) -> impl FnOnce(async_nats::Error) -> MarketError {
    let what = what.into();
    move |source| MarketError::JetStream { what, source }
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(e: E) -> async_nats::Error {
    Box::new(e)
}

/// The fields of a stream the market relies on; others (limits, duplicate window) may be tuned
/// by an operator without breaking anything.
#[derive(Debug)]
struct Want {
    name: String,
    subjects: Vec<String>,
    retention: RetentionPolicy,
    storage: StorageType,
    replicas: usize,
    /// `None`: an operator's choice (the device TTL), not checked.
    max_age: Option<Duration>,
    /// Values kept per subject, when it matters (1 for the device bucket).
    per_subject: Option<i64>,
}

impl Want {
    fn check(&self, got: &stream::Config) -> Result<(), MarketError> {
        let bad = |field, got: String, want: String| MarketError::Incompatible {
            stream: self.name.clone(),
            field,
            got,
            want,
        };
        let mut gs = got.subjects.clone();
        gs.sort();
        let mut ws = self.subjects.clone();
        ws.sort();
        if gs != ws {
            return Err(bad("subjects", format!("{gs:?}"), format!("{ws:?}")));
        }
        if got.retention != self.retention {
            return Err(bad(
                "retention",
                format!("{:?}", got.retention),
                format!("{:?}", self.retention),
            ));
        }
        if got.storage != self.storage {
            return Err(bad(
                "storage",
                format!("{:?}", got.storage),
                format!("{:?}", self.storage),
            ));
        }
        if got.num_replicas.max(1) != self.replicas {
            return Err(bad(
                "replicas",
                got.num_replicas.to_string(),
                self.replicas.to_string(),
            ));
        }
        if let Some(want) = self.max_age.filter(|w| *w != got.max_age) {
            return Err(bad(
                "max_age",
                format!("{:?}", got.max_age),
                format!("{want:?}"),
            ));
        }
        if let Some(n) = self.per_subject {
            if got.max_messages_per_subject != n {
                return Err(bad(
                    "max_messages_per_subject",
                    got.max_messages_per_subject.to_string(),
                    n.to_string(),
                ));
            }
        }
        Ok(())
    }
}

/// The stream's config if it exists, `None` if the server says it does not.
async fn existing(js: &jetstream::Context, name: &str) -> Result<Option<Stream>, MarketError> {
    match js.get_stream(name).await {
        Ok(s) => Ok(Some(s)),
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(js_err(format!("looking up stream {name}"))(e.into())),
        },
    }
}

/// Makes sure the stream behind `want` exists and fits: checks it if it exists, otherwise runs
/// `create`. A create that loses a race with another process is settled by checking the winner.
async fn ensure<F, Fut>(js: &jetstream::Context, want: &Want, create: F) -> Result<(), MarketError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), async_nats::Error>>,
{
    if let Some(s) = existing(js, &want.name).await? {
        return want.check(&s.cached_info().config);
    }
    if let Err(e) = create().await {
        return match existing(js, &want.name).await? {
            Some(s) => want.check(&s.cached_info().config),
            None => Err(js_err(format!("creating stream {}", want.name))(e)),
        };
    }
    let s = existing(js, &want.name)
        .await?
        .ok_or_else(|| MarketError::JetStream {
            what: format!("stream {} vanished right after it was created", want.name),
            source: "stream not found".into(),
        })?;
    want.check(&s.cached_info().config)
}

/// Creates the market's streams and stores where missing and checks those that exist.
///
/// Idempotent: on a server that already has a fitting layout it changes nothing.
pub async fn ensure_layout(
    js: &jetstream::Context,
    cfg: &LayoutConfig,
) -> Result<Layout, MarketError> {
    if !(1..=5).contains(&cfg.replicas) {
        return Err(MarketError::Config(format!(
            "replicas {} must be in 1..=5",
            cfg.replicas
        )));
    }
    if cfg.device_ttl.is_zero() {
        return Err(MarketError::Config(
            "device_ttl must be above zero, or dead devices never expire".into(),
        ));
    }
    let r = cfg.replicas;

    let jobs = Want {
        name: JOBS_STREAM.into(),
        subjects: vec![JOBS_SUBJECTS.into()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        replicas: r,
        max_age: Some(cfg.jobs_max_age),
        per_subject: None,
    };
    ensure(js, &jobs, || async move {
        js.create_stream(stream::Config {
            name: JOBS_STREAM.into(),
            description: Some("hearth market: job offers, one consumer takes each".into()),
            subjects: vec![JOBS_SUBJECTS.into()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: r,
            max_age: cfg.jobs_max_age,
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(boxed)
    })
    .await?;

    let events = Want {
        name: EVENTS_STREAM.into(),
        subjects: vec![EVENTS_SUBJECTS.into()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        replicas: r,
        max_age: Some(cfg.events_max_age),
        per_subject: None,
    };
    ensure(js, &events, || async move {
        js.create_stream(stream::Config {
            name: EVENTS_STREAM.into(),
            description: Some("hearth market: job events".into()),
            subjects: vec![EVENTS_SUBJECTS.into()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: r,
            max_age: cfg.events_max_age,
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(boxed)
    })
    .await?;

    let devices = Want {
        name: format!("KV_{DEVICES_BUCKET}"),
        subjects: vec![format!("$KV.{DEVICES_BUCKET}.>")],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        replicas: r,
        max_age: None,
        per_subject: Some(1),
    };
    ensure(js, &devices, || async move {
        // The bucket's stream, as `create_key_value` would make it. That call first asks for the
        // account's limits, a reply async-nats 0.51 cannot parse from nats-server 2.9 (Debian's).
        js.create_stream(stream::Config {
            name: format!("KV_{DEVICES_BUCKET}"),
            description: Some("hearth market: device heartbeats".into()),
            subjects: vec![format!("$KV.{DEVICES_BUCKET}.>")],
            max_messages_per_subject: 1,
            max_age: cfg.device_ttl,
            storage: StorageType::File,
            num_replicas: r,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(boxed)
    })
    .await?;

    let blobs = Want {
        name: format!("OBJ_{BLOBS_BUCKET}"),
        subjects: vec![
            format!("$O.{BLOBS_BUCKET}.C.>"),
            format!("$O.{BLOBS_BUCKET}.M.>"),
        ],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        replicas: r,
        max_age: Some(Duration::ZERO),
        per_subject: None,
    };
    ensure(js, &blobs, || async move {
        js.create_object_store(object_store::Config {
            bucket: BLOBS_BUCKET.into(),
            description: Some("hearth market: inputs, checkpoints, results".into()),
            storage: StorageType::File,
            num_replicas: r,
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(boxed)
    })
    .await?;

    Ok(Layout {
        jobs: js
            .get_stream(JOBS_STREAM)
            .await
            .map_err(|e| js_err(format!("opening stream {JOBS_STREAM}"))(e.into()))?,
        events: js
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|e| js_err(format!("opening stream {EVENTS_STREAM}"))(e.into()))?,
        devices: js
            .get_key_value(DEVICES_BUCKET)
            .await
            .map_err(|e| js_err(format!("opening bucket {DEVICES_BUCKET}"))(e.into()))?,
        blobs: js
            .get_object_store(BLOBS_BUCKET)
            .await
            .map_err(|e| js_err(format!("opening object store {BLOBS_BUCKET}"))(e.into()))?,
    })
}

/// The durable pull consumer every heater shares: each offer goes to one of them at a time.
pub const HEATERS_CONSUMER: &str = "heaters";

/// The shared consumer of offers, created if missing. Its ack wait is set by whoever creates
/// it first; a heater with another setting uses the existing one and says so.
pub async fn ensure_consumer(
    jobs: &Stream,
    ack_wait: Duration,
) -> Result<PullConsumer, MarketError> {
    let consumer: PullConsumer = jobs
        .get_or_create_consumer(
            HEATERS_CONSUMER,
            pull::Config {
                durable_name: Some(HEATERS_CONSUMER.into()),
                description: Some("hearth market: heaters with heat to spend".into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait,
                max_ack_pending: 100_000,
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| js_err(format!("opening consumer {HEATERS_CONSUMER}"))(e.into()))?;
    let got = consumer.cached_info().config.ack_wait;
    if got != ack_wait {
        tracing::warn!(consumer = HEATERS_CONSUMER, ?got, want = ?ack_wait, "the shared consumer has another ack wait; using it");
    }
    Ok(consumer)
}
