//! Telemetry: every metric name hearth exports, and the Prometheus exporter that serves them.
//!
//! Invariant: metric and label names are defined in this file and nowhere else. Other modules
//! put their figures in the daemon's [`Status`] snapshot (or in the job store); [`run`] turns
//! each new snapshot into metric values, and reads the store (jobs by state, usage of jobs no
//! longer live) at most once per second, on the blocking pool. Nothing here is on the control
//! loop's path.
//!
//! Names follow Prometheus conventions: a `hearth_` prefix, the base unit in the name (celsius,
//! watts, joules, seconds), `_total` for cumulative values, `_ratio` for 0–1 fractions.
//! Cumulative values the status already holds (shares, energy, ticks) are set with
//! `Counter::absolute`, which in this exporter keeps the larger of the old and new value, so a
//! late or repeated snapshot cannot make a counter go backwards. The `metrics` facade's counters are integers: energy is exported in
//! whole joules, and earnings (fractions of a currency unit) are a gauge that this module only
//! ever raises.
//!
//! The recorder: the `metrics` facade has one global recorder per process. [`install`] builds
//! the Prometheus recorder with its HTTP listener and installs it globally; a second call in the
//! same process (several daemons in one test binary) returns [`TelemetryError::AlreadyInstalled`]
//! and serves nothing, so the caller can log it and go on without metrics. The values are
//! written through the facade, so tests can also capture them with a local recorder
//! ([`builder`]`()?.build_recorder()` and `metrics::with_local_recorder`) without any global
//! state.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use crate::mining::asic::PowerSource;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::jobs::{JobId, JobState, JobStore, StoreError, Usage};
use crate::status::{GpuState, Status};
use crate::thermal::safety::TripKind;

/// Where the exporter listens unless configured otherwise: Prometheus' port for hearth, loopback.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));

/// How often the job store is read for the metrics.
pub const STORE_REFRESH: Duration = Duration::from_secs(1);

/// 1 while the market session is up.
pub const MARKET_CONNECTED: &str = "hearth_market_connected";
/// GPU watts a market job may take now.
pub const MARKET_HEADROOM_WATTS: &str = "hearth_market_headroom_watts";
/// Market offers and jobs by outcome.
pub const MARKET_JOBS_TOTAL: &str = "hearth_market_jobs_total";
/// Label of [`MARKET_JOBS_TOTAL`]: accepted, completed, preempted, declined, failed.
pub const LABEL_OUTCOME: &str = "outcome";

/// Room temperature, °C (the latest reading).
pub const ROOM_TEMPERATURE_CELSIUS: &str = "hearth_room_temperature_celsius";
/// Age of the latest room reading, s.
pub const ROOM_READING_AGE_SECONDS: &str = "hearth_room_reading_age_seconds";
/// Outdoor temperature in use, °C.
pub const OUTDOOR_TEMPERATURE_CELSIUS: &str = "hearth_outdoor_temperature_celsius";
/// Setpoint in force, °C.
pub const SETPOINT_CELSIUS: &str = "hearth_setpoint_celsius";
/// Heat budget, W.
pub const HEAT_BUDGET_WATTS: &str = "hearth_heat_budget_watts";
/// Power target per workload, W.
pub const POWER_TARGET_WATTS: &str = "hearth_power_target_watts";
/// Power each workload reports it draws, W.
pub const POWER_WATTS: &str = "hearth_power_watts";
/// Budget no workload could absorb, W.
pub const UNMET_WATTS: &str = "hearth_unmet_watts";
/// Currently latched safety trips, 0 or 1 per reason.
pub const SAFETY_TRIPS: &str = "hearth_safety_trips";
/// Safety trips latched since start, per reason.
pub const SAFETY_TRIPS_TOTAL: &str = "hearth_safety_trips_total";
/// Measured hashrate, H/s.
pub const HASHRATE_HASHES_PER_SECOND: &str = "hearth_hashrate_hashes_per_second";
/// Shares by outcome.
pub const SHARES_TOTAL: &str = "hearth_shares_total";
/// Rejected shares by Stratum error code.
pub const SHARES_REJECTED_TOTAL: &str = "hearth_shares_rejected_total";
/// Whether a pool session is up, 0 or 1.
pub const POOL_CONNECTED: &str = "hearth_pool_connected";
/// Jobs in the store by state.
pub const JOBS: &str = "hearth_jobs";
/// GPU busy fraction over the last second, 0–1.
pub const GPU_UTILISATION_RATIO: &str = "hearth_gpu_utilisation_ratio";
/// Energy drawn per workload, J.
pub const ENERGY_JOULES_TOTAL: &str = "hearth_energy_joules_total";
/// Earnings per workload, currency units.
pub const EARNINGS_TOTAL: &str = "hearth_earnings_total";
/// Compute time of a control tick, s.
pub const CONTROL_TICK_DURATION_SECONDS: &str = "hearth_control_tick_duration_seconds";
/// Control ticks since start.
pub const CONTROL_TICKS_TOTAL: &str = "hearth_control_ticks_total";

/// Power each mining device reports (`device`, `kind`, `source`).
pub const DEVICE_POWER_WATTS: &str = "hearth_device_power_watts";
/// Each mining device's condition, one series per state.
pub const DEVICE_STATE: &str = "hearth_device_state";
/// Each mining device's temperatures.
pub const DEVICE_TEMPERATURE_CELSIUS: &str = "hearth_device_temperature_celsius";
/// Each mining device's reported hashrate.
pub const DEVICE_HASHRATE_HASHES_PER_SECOND: &str = "hearth_device_hashrate_hashes_per_second";
/// Energy each mining device drew, from its reported power.
pub const DEVICE_ENERGY_JOULES_TOTAL: &str = "hearth_device_energy_joules_total";
/// Setting changes hearth sent each mining device.
pub const DEVICE_COMMANDS_TOTAL: &str = "hearth_device_commands_total";
/// Age of each mining device's last good telemetry.
pub const DEVICE_TELEMETRY_AGE_SECONDS: &str = "hearth_device_telemetry_age_seconds";
/// The label of a mining device (its name).
pub const LABEL_DEVICE: &str = "device";
/// The label of a device's kind.
pub const LABEL_KIND: &str = "kind";
/// The label of how a power figure was obtained (`measured`, `modelled`).
pub const LABEL_SOURCE: &str = "source";
/// The label of a temperature sensor.
pub const LABEL_SENSOR: &str = "sensor";
/// The device states, as `hearth_device_state`'s `state` label takes them.
pub const DEVICE_STATES: [&str; 6] = [
    "starting",
    "ok",
    "unreachable",
    "calibrating",
    "overheated",
    "fault",
];
/// Label: the workload (`asic`, `gpu`, `resistive`).
pub const LABEL_WORKLOAD: &str = "workload";
/// Label: the trip reason ([`TripKind::as_str`]).
pub const LABEL_REASON: &str = "reason";
/// Label: a share's outcome (`accepted`, `rejected`, `stale`).
pub const LABEL_RESULT: &str = "result";
/// Label: a Stratum error code.
pub const LABEL_CODE: &str = "code";
/// Label: a job state ([`JobState::as_str`]).
pub const LABEL_STATE: &str = "state";

/// Every value of the `workload` label of the power and energy metrics.
pub const WORKLOADS: [&str; 3] = ["asic", "gpu", "resistive"];
/// The `workload` label values of [`EARNINGS_TOTAL`]: the workloads that earn.
pub const EARNING_WORKLOADS: [&str; 2] = ["asic", "gpu"];
/// Every value of the `result` label of [`SHARES_TOTAL`].
pub const SHARE_RESULTS: [&str; 3] = ["accepted", "rejected", "stale"];

/// Upper bounds of the control-tick histogram's buckets, s (a tick computes in microseconds).
pub const TICK_BUCKETS: [f64; 13] = [
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,
];

/// A metric's Prometheus type as exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up.
    Counter,
    /// Observations in buckets.
    Histogram,
}

impl Kind {
    /// The name in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// One exported metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its labels.
    pub labels: &'static [&'static str],
    /// The HELP text.
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
    }
}

/// Every metric hearth exports.
pub const METRICS: &[MetricDef] = &[
    def(
        ROOM_TEMPERATURE_CELSIUS,
        Kind::Gauge,
        &[],
        "Room temperature, latest reading (degrees Celsius).",
    ),
    def(
        ROOM_READING_AGE_SECONDS,
        Kind::Gauge,
        &[],
        "Age of the latest room reading at the last control tick (seconds).",
    ),
    def(
        OUTDOOR_TEMPERATURE_CELSIUS,
        Kind::Gauge,
        &[],
        "Outdoor temperature the controller uses (degrees Celsius).",
    ),
    def(
        SETPOINT_CELSIUS,
        Kind::Gauge,
        &[],
        "Setpoint in force: schedule or manual override (degrees Celsius).",
    ),
    def(
        HEAT_BUDGET_WATTS,
        Kind::Gauge,
        &[],
        "Heat budget from the controller; 0 while a safety trip is latched (watts).",
    ),
    def(
        POWER_TARGET_WATTS,
        Kind::Gauge,
        &[LABEL_WORKLOAD],
        "Power target the scheduler gave each workload (watts).",
    ),
    def(
        POWER_WATTS,
        Kind::Gauge,
        &[LABEL_WORKLOAD],
        "Power each workload reports it draws: reported, modelled or measured (watts).",
    ),
    def(
        UNMET_WATTS,
        Kind::Gauge,
        &[],
        "Heat budget no workload could absorb (watts).",
    ),
    def(
        SAFETY_TRIPS,
        Kind::Gauge,
        &[LABEL_REASON],
        "Safety trips currently latched: 1 if latched, 0 if not, for every reason.",
    ),
    def(
        SAFETY_TRIPS_TOTAL,
        Kind::Counter,
        &[LABEL_REASON],
        "Safety trips latched since the exporter started, by reason.",
    ),
    def(
        HASHRATE_HASHES_PER_SECOND,
        Kind::Gauge,
        &[],
        "Measured hashrate of the hashing board (hashes per second).",
    ),
    def(
        SHARES_TOTAL,
        Kind::Counter,
        &[LABEL_RESULT],
        "Shares by outcome: accepted, rejected by the pool, stale (job gone before submission).",
    ),
    def(
        SHARES_REJECTED_TOTAL,
        Kind::Counter,
        &[LABEL_CODE],
        "Shares rejected by the pool, by Stratum error code.",
    ),
    def(
        POOL_CONNECTED,
        Kind::Gauge,
        &[],
        "1 while a pool session is up, else 0.",
    ),
    def(
        JOBS,
        Kind::Gauge,
        &[LABEL_STATE],
        "Jobs in the durable store, by state.",
    ),
    def(
        GPU_UTILISATION_RATIO,
        Kind::Gauge,
        &[],
        "GPU busy fraction over the last second (0 to 1).",
    ),
    def(
        ENERGY_JOULES_TOTAL,
        Kind::Counter,
        &[LABEL_WORKLOAD],
        "Energy drawn by each workload, kept across restarts, in whole joules.",
    ),
    def(
        EARNINGS_TOTAL,
        Kind::Gauge,
        &[LABEL_WORKLOAD],
        "Earnings kept across restarts (currency units; a gauge that only rises, as the \
         facade's counters are integers): asic is estimated from accepted work, gpu is leases.",
    ),
    def(
        CONTROL_TICK_DURATION_SECONDS,
        Kind::Histogram,
        &[],
        "Wall-clock compute time of the control tick, one sample per snapshot seen (seconds).",
    ),
    def(
        CONTROL_TICKS_TOTAL,
        Kind::Counter,
        &[],
        "Control ticks since the daemon started.",
    ),
    def(
        MARKET_CONNECTED,
        Kind::Gauge,
        &[],
        "1 while this heater is connected to its compute marketplace, else 0.",
    ),
    def(
        MARKET_HEADROOM_WATTS,
        Kind::Gauge,
        &[],
        "GPU watts the room wants that no local job uses: above 0, market offers are taken.",
    ),
    def(
        MARKET_JOBS_TOTAL,
        Kind::Counter,
        &[LABEL_OUTCOME],
        "Market offers and jobs since start: accepted, completed, preempted (given back with \
         a checkpoint), declined (NAKed for another heater), failed (terminated with a reason).",
    ),
    def(
        DEVICE_POWER_WATTS,
        Kind::Gauge,
        &[LABEL_DEVICE, LABEL_KIND, LABEL_SOURCE],
        "Power each mining device last reported: measured by the device, or modelled for the \
         software ASIC (watts).",
    ),
    def(
        DEVICE_STATE,
        Kind::Gauge,
        &[LABEL_DEVICE, LABEL_STATE],
        "1 for each mining device's current state (starting, ok, unreachable, calibrating, \
         overheated, fault), else 0.",
    ),
    def(
        DEVICE_TEMPERATURE_CELSIUS,
        Kind::Gauge,
        &[LABEL_DEVICE, LABEL_SENSOR],
        "Temperatures each mining device reports (degrees Celsius).",
    ),
    def(
        DEVICE_HASHRATE_HASHES_PER_SECOND,
        Kind::Gauge,
        &[LABEL_DEVICE],
        "Hashrate each mining device reports (hashes per second).",
    ),
    def(
        DEVICE_ENERGY_JOULES_TOTAL,
        Kind::Counter,
        &[LABEL_DEVICE],
        "Energy each mining device drew since the daemon started, integrated from its reported \
         power, in whole joules.",
    ),
    def(
        DEVICE_COMMANDS_TOTAL,
        Kind::Counter,
        &[LABEL_DEVICE],
        "Setting changes hearth sent each mining device since the daemon started.",
    ),
    def(
        DEVICE_TELEMETRY_AGE_SECONDS,
        Kind::Gauge,
        &[LABEL_DEVICE],
        "Seconds since each mining device's last good telemetry.",
    ),
];

/// The exporter could not start.
#[derive(Debug, Error)]
pub enum TelemetryError {
    /// Another recorder is already the process's global one (e.g. a second daemon in a test).
    #[error("a metrics recorder is already installed in this process; metrics are not served")]
    AlreadyInstalled,
    /// The listen address could not be bound.
    #[error("cannot listen for metrics scrapes on {addr}: {msg}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS's reason.
        msg: String,
    },
    /// [`install`] was called outside a tokio runtime.
    #[error("the metrics exporter must be installed from within a tokio runtime")]
    NoRuntime,
    /// The exporter could not be built.
    #[error("metrics exporter: {0}")]
    Exporter(String),
}

/// A Prometheus builder with hearth's settings (the tick histogram's buckets), no exporter.
pub fn builder() -> Result<PrometheusBuilder, TelemetryError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(CONTROL_TICK_DURATION_SECONDS.to_string()),
            &TICK_BUCKETS,
        )
        .map_err(|e| TelemetryError::Exporter(e.to_string()))
}

/// Registers the HELP text of every metric with the current recorder.
pub fn describe() {
    for m in METRICS {
        match m.kind {
            Kind::Gauge => describe_gauge!(m.name, m.help),
            Kind::Counter => describe_counter!(m.name, m.help),
            Kind::Histogram => describe_histogram!(m.name, m.help),
        }
    }
}

/// Installs the process-global Prometheus recorder and serves the metrics over HTTP on
/// `listen` (`GET /metrics`; any path but `/health`, which answers `OK`), on the current tokio
/// runtime. Call once per process, from within the runtime.
pub fn install(listen: SocketAddr) -> Result<(), TelemetryError> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
    // Binds the listener and spawns the recorder's upkeep task on the current runtime.
    let (recorder, exporter) =
        builder()?
            .with_http_listener(listen)
            .build()
            .map_err(|e| match e {
                BuildError::FailedToCreateHTTPListener(msg) => {
                    TelemetryError::Listen { addr: listen, msg }
                }
                e => TelemetryError::Exporter(e.to_string()),
            })?;
    // On failure the exporter future is dropped unpolled, which closes the listener.
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::AlreadyInstalled)?;
    describe();
    rt.spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(error = ?e, "metrics exporter stopped");
        }
    });
    tracing::info!(%listen, "serving Prometheus metrics");
    Ok(())
}

/// Updates the metrics from every new status snapshot, and from the job store once per
/// [`STORE_REFRESH`], until `shutdown` turns true or either channel closes. Writes through the
/// `metrics` facade: to the recorder [`install`] set, or to none (a no-op) if none is set.
pub async fn run(
    mut status: watch::Receiver<Status>,
    store: Arc<JobStore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tracker = Tracker::default();
    let mut refresh = tokio::time::interval(STORE_REFRESH);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut store_failing = false;
    while !*shutdown.borrow() {
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                let s = status.borrow_and_update().clone();
                tracker.on_status(&s);
            }
            _ = refresh.tick() => {
                // Usage of the jobs the accounts hold comes from the accounts (fresher); the
                // store gives the rest.
                let live: Vec<JobId> = status
                    .borrow()
                    .sched
                    .accounts
                    .jobs
                    .keys()
                    .map(|&id| JobId(id))
                    .collect();
                match read_store(&store, live).await {
                    Ok(f) => {
                        if store_failing {
                            tracing::info!("job store readable again for metrics");
                            store_failing = false;
                        }
                        let s = status.borrow().clone();
                        tracker.on_store(f, &s);
                    }
                    Err(e) => {
                        if !store_failing {
                            tracing::warn!(error = %e, "cannot read the job store for metrics; keeping the last values");
                            store_failing = true;
                        }
                    }
                }
            }
            r = shutdown.changed() => {
                if r.is_err() {
                    break;
                }
            }
        }
    }
    tracing::debug!("telemetry stopped");
}

/// What the job store says, read once per refresh.
#[derive(Debug, Clone, PartialEq)]
struct StoreFigures {
    /// Jobs by state, every state present.
    by_state: Vec<(JobState, u64)>,
    /// The jobs left out of `others`.
    excluded: Vec<u64>,
    /// Usage summed over every other job.
    others: Usage,
}

async fn read_store(store: &Arc<JobStore>, live: Vec<JobId>) -> Result<StoreFigures, StoreError> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        Ok(StoreFigures {
            by_state: s.count_by_state()?,
            others: s.usage_total_except(&live)?,
            excluded: live.into_iter().map(|j| j.0).collect(),
        })
    })
    .await
    .unwrap_or_else(|e| Err(StoreError::Corrupt(format!("store task failed: {e}"))))
}

/// A non-negative value in whole units, for an integer counter.
fn whole(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        // Saturates at u64::MAX; the value is ≥ 0.
        v.floor() as u64
    } else {
        0
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Turns snapshots into metric values; remembers what it needs between them.
#[derive(Debug, Default)]
struct Tracker {
    /// Latched trips of the last snapshot, with when they latched.
    trips: BTreeMap<TripKind, f64>,
    /// The tick of the last snapshot recorded.
    last_tick: Option<u64>,
    /// The last store figures.
    figures: Option<StoreFigures>,
    /// Highest earnings exported so far, asic then gpu.
    earnings: [f64; 2],
}

impl Tracker {
    fn on_status(&mut self, s: &Status) {
        if let Some(c) = s.room_celsius {
            gauge!(ROOM_TEMPERATURE_CELSIUS).set(c);
        }
        if let Some(a) = s.room_reading_age_s {
            gauge!(ROOM_READING_AGE_SECONDS).set(a);
        }
        if let Some(c) = s.outdoor_celsius {
            gauge!(OUTDOOR_TEMPERATURE_CELSIUS).set(c);
        }
        gauge!(SETPOINT_CELSIUS).set(s.setpoint_celsius);
        gauge!(HEAT_BUDGET_WATTS).set(s.budget_watts);

        let (a, p) = (&s.sched.allocation, &s.sched.actual);
        let split = [
            (a.asic_watts, p.asic),
            (a.gpu_watts, p.gpu),
            (a.resistive_watts, p.resistive),
        ];
        for (w, (target, actual)) in WORKLOADS.into_iter().zip(split) {
            gauge!(POWER_TARGET_WATTS, LABEL_WORKLOAD => w).set(target);
            gauge!(POWER_WATTS, LABEL_WORKLOAD => w).set(actual);
        }
        gauge!(UNMET_WATTS).set(a.unmet_watts);

        let latched: BTreeMap<TripKind, f64> =
            s.trips.iter().map(|t| (t.kind, t.since_s)).collect();
        for kind in TripKind::ALL {
            let since = latched.get(&kind);
            gauge!(SAFETY_TRIPS, LABEL_REASON => kind.as_str()).set(flag(since.is_some()));
            // New: not latched last time, or latched again since (a different latch time).
            let new = since.is_some_and(|t| self.trips.get(&kind) != Some(t));
            counter!(SAFETY_TRIPS_TOTAL, LABEL_REASON => kind.as_str()).increment(u64::from(new));
        }
        self.trips = latched;

        let m = s.mining.as_ref();
        gauge!(HASHRATE_HASHES_PER_SECOND).set(m.map_or(0.0, |m| m.hashes_per_second));
        gauge!(POOL_CONNECTED).set(flag(m.is_some_and(|m| m.connected)));
        let (accepted, rejected, stale) = m.map_or((0, 0, 0), |m| {
            let sh = &m.shares;
            (sh.accepted, sh.rejected.values().sum(), sh.stale)
        });
        for (r, n) in SHARE_RESULTS.into_iter().zip([accepted, rejected, stale]) {
            counter!(SHARES_TOTAL, LABEL_RESULT => r).absolute(n);
        }
        if let Some(m) = m {
            for (code, n) in &m.shares.rejected {
                counter!(SHARES_REJECTED_TOTAL, LABEL_CODE => code.to_string()).absolute(*n);
            }
        }

        for d in s.fleet.iter().flat_map(|f| &f.devices) {
            let st = &d.status;
            let name = st.name.clone();
            if let Some(w) = st.watts {
                let source = match st.power_source {
                    PowerSource::Measured => "measured",
                    PowerSource::Modelled => "modelled",
                };
                gauge!(DEVICE_POWER_WATTS, LABEL_DEVICE => name.clone(), LABEL_KIND => st.kind.clone(), LABEL_SOURCE => source).set(w);
            }
            for state in DEVICE_STATES {
                gauge!(DEVICE_STATE, LABEL_DEVICE => name.clone(), LABEL_STATE => state)
                    .set(flag(st.state.as_str() == state));
            }
            for t in &st.temperatures {
                gauge!(DEVICE_TEMPERATURE_CELSIUS, LABEL_DEVICE => name.clone(), LABEL_SENSOR => t.sensor.clone()).set(t.celsius);
            }
            gauge!(DEVICE_HASHRATE_HASHES_PER_SECOND, LABEL_DEVICE => name.clone())
                .set(st.hashes_per_second);
            counter!(DEVICE_ENERGY_JOULES_TOTAL, LABEL_DEVICE => name.clone())
                .absolute(whole(d.energy_kwh * 3.6e6));
            counter!(DEVICE_COMMANDS_TOTAL, LABEL_DEVICE => name.clone())
                .absolute(st.commands_sent);
            if let Some(age) = d.telemetry_age_seconds {
                gauge!(DEVICE_TELEMETRY_AGE_SECONDS, LABEL_DEVICE => name).set(age);
            }
        }

        let duty = match &s.gpu {
            Some(GpuState::Ready(g)) if g.duty.is_finite() => g.duty.clamp(0.0, 1.0),
            _ => 0.0,
        };
        gauge!(GPU_UTILISATION_RATIO).set(duty);
        // A heater off the market shows as not connected, with no headroom.
        gauge!(MARKET_CONNECTED).set(flag(s.market.as_ref().is_some_and(|m| m.connected)));
        gauge!(MARKET_HEADROOM_WATTS).set(s.sched.market_headroom_watts);
        if let Some(m) = &s.market {
            for (outcome, n) in [
                ("accepted", m.accepted),
                ("completed", m.completed),
                ("preempted", m.preempted),
                ("declined", m.declined),
                ("failed", m.failed),
            ] {
                counter!(MARKET_JOBS_TOTAL, LABEL_OUTCOME => outcome).absolute(n);
            }
        }

        let acc = &s.sched.accounts;
        counter!(ENERGY_JOULES_TOTAL, LABEL_WORKLOAD => "asic").absolute(whole(acc.mining.joules));
        counter!(ENERGY_JOULES_TOTAL, LABEL_WORKLOAD => "resistive")
            .absolute(whole(acc.resistive_joules));
        self.raise_earnings(0, acc.mining.earned);
        self.gpu_totals(s);

        if self.last_tick != Some(s.tick) {
            self.last_tick = Some(s.tick);
            histogram!(CONTROL_TICK_DURATION_SECONDS).record(s.tick_seconds_spent);
            counter!(CONTROL_TICKS_TOTAL).absolute(s.tick + 1);
        }
    }

    fn on_store(&mut self, f: StoreFigures, s: &Status) {
        for (state, n) in &f.by_state {
            gauge!(JOBS, LABEL_STATE => state.as_str()).set(*n as f64);
        }
        self.figures = Some(f);
        self.gpu_totals(s);
    }

    /// GPU energy and earnings: every job once, from the accounts if the store read left it
    /// out, else from the store. A job that finished since the store read is missing until the
    /// next one; the counter and the raised gauge hold their value meanwhile.
    fn gpu_totals(&mut self, s: &Status) {
        let Some(f) = &self.figures else {
            return;
        };
        let (mut joules, mut earned) = (f.others.joules, f.others.earned);
        for (id, a) in &s.sched.accounts.jobs {
            if f.excluded.contains(id) {
                joules += a.joules;
                earned += a.earned;
            }
        }
        counter!(ENERGY_JOULES_TOTAL, LABEL_WORKLOAD => "gpu").absolute(whole(joules));
        self.raise_earnings(1, earned);
    }

    /// Sets `EARNING_WORKLOADS[i]`'s earnings to `v` if that is higher than before.
    fn raise_earnings(&mut self, i: usize, v: f64) {
        if v.is_finite() && v > self.earnings[i] {
            self.earnings[i] = v;
        }
        gauge!(EARNINGS_TOTAL, LABEL_WORKLOAD => EARNING_WORKLOADS[i]).set(self.earnings[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::job::{GpuJob, KernelSpec};
    use crate::gpu::kernels::ElementwiseOp;
    use crate::gpu::tensor::Tensor;
    use crate::jobs::{JobSpec, Lease, StoreLimits};
    use crate::mining::asic::PowerSource;
    use crate::mining::engine::MiningStatus;
    use crate::mining::sha256d::Kernel;
    use crate::sched::accounting::JobAccount;
    use crate::thermal::safety::Trip;

    /// `name{labels}` → value, from the text exposition format.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (series, v) = l.rsplit_once(' ').unwrap();
                (series.to_string(), v.parse().unwrap())
            })
            .collect()
    }

    fn trip(kind: TripKind, since_s: f64) -> Trip {
        Trip {
            kind,
            reason: "test".into(),
            since_s,
            clearing_since_s: None,
        }
    }

    #[test]
    fn names_are_unique_and_follow_the_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("hearth_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            if m.kind == Kind::Counter {
                assert!(m.name.ends_with("_total"), "{}", m.name);
            }
            assert!(!m.help.is_empty());
        }
    }

    #[test]
    fn snapshots_become_metrics_with_help_and_every_label() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        let mut t = Tracker::default();
        let mut s = Status {
            tick: 4,
            room_celsius: Some(20.5),
            room_reading_age_s: Some(0.5),
            outdoor_celsius: Some(-3.25),
            setpoint_celsius: 21.0,
            budget_watts: 812.5,
            tick_seconds_spent: 3e-5,
            mining: Some(MiningStatus {
                pool: None,
                connected: true,
                difficulty: 1.0,
                hashes_per_second: 2.5e6,
                shares: Default::default(),
                kernel: Kernel::Portable,
                kernel_forced: false,
                target_watts: 0.0,
                power_watts: 0.0,
                power_source: PowerSource::Modelled,
            }),
            ..Status::default()
        };
        if let Some(m) = &mut s.mining {
            m.shares.accepted = 7;
            m.shares.stale = 1;
            m.shares.rejected.insert(23, 2);
        }
        s.sched.accounts.mining.joules = 1234.9;
        s.sched.accounts.mining.earned = 0.25;
        s.sched.accounts.jobs.insert(
            5,
            JobAccount {
                joules: 100.0,
                gpu_seconds: 2.0,
                earned: 0.5,
            },
        );
        s.trips = vec![trip(TripKind::SensorStale, 10.0)];
        s.market = Some(crate::market::device::MarketStatus {
            connected: true,
            accepted: 4,
            completed: 3,
            preempted: 1,
            ..Default::default()
        });
        s.sched.market_headroom_watts = 250.0;
        let mut den = crate::mining::fleet::device::DeviceStatus::starting(
            "den",
            "avalon",
            "127.0.0.1:4028",
            PowerSource::Measured,
        );
        den.state = crate::mining::fleet::device::DeviceState::Calibrating;
        den.watts = Some(138.0);
        den.temperatures = vec![crate::mining::fleet::device::Temperature {
            sensor: "chip max".into(),
            celsius: 71.5,
        }];
        den.hashes_per_second = 6e12;
        den.commands_sent = 3;
        s.fleet = Some(crate::mining::fleet::FleetStatus {
            target_watts: 140.0,
            devices: vec![crate::mining::fleet::DeviceReport {
                status: den,
                commanded: None,
                energy_kwh: 0.5,
                telemetry_age_seconds: Some(4.0),
            }],
        });
        let figures = StoreFigures {
            by_state: JobState::ALL.iter().map(|&st| (st, 0)).collect(),
            excluded: vec![5],
            others: Usage {
                gpu_seconds: 1.0,
                joules: 50.0,
                earned: 1.0,
            },
        };
        metrics::with_local_recorder(&recorder, || {
            describe();
            t.on_status(&s);
            t.on_store(figures.clone(), &s);
            // The same trip still latched: not a new one. Counters never go back.
            s.tick = 5;
            if let Some(m) = &mut s.mining {
                m.shares.accepted = 3;
            }
            t.on_status(&s);
        });
        let text = handle.render();
        for m in METRICS {
            assert!(
                text.contains(&format!("# HELP {} ", m.name)),
                "{}: {text}",
                m.name
            );
            assert!(
                text.contains(&format!("# TYPE {} {}\n", m.name, m.kind.as_str())),
                "{}: {text}",
                m.name
            );
        }
        let v = parse(&text);
        assert_eq!(v["hearth_setpoint_celsius"], 21.0);
        assert_eq!(
            v["hearth_device_power_watts{device=\"den\",kind=\"avalon\",source=\"measured\"}"],
            138.0
        );
        assert_eq!(
            v["hearth_device_state{device=\"den\",state=\"calibrating\"}"],
            1.0
        );
        assert_eq!(v["hearth_device_state{device=\"den\",state=\"ok\"}"], 0.0);
        assert_eq!(
            v["hearth_device_energy_joules_total{device=\"den\"}"],
            1.8e6
        );
        assert_eq!(
            v["hearth_device_temperature_celsius{device=\"den\",sensor=\"chip max\"}"],
            71.5
        );
        assert_eq!(v["hearth_outdoor_temperature_celsius"], -3.25);
        assert_eq!(v["hearth_heat_budget_watts"], 812.5);
        assert_eq!(v["hearth_hashrate_hashes_per_second"], 2.5e6);
        assert_eq!(v["hearth_pool_connected"], 1.0);
        assert_eq!(v["hearth_market_connected"], 1.0);
        assert_eq!(v["hearth_market_headroom_watts"], 250.0);
        assert_eq!(v["hearth_market_jobs_total{outcome=\"completed\"}"], 3.0);
        assert_eq!(v["hearth_market_jobs_total{outcome=\"preempted\"}"], 1.0);
        assert_eq!(v["hearth_shares_total{result=\"accepted\"}"], 7.0);
        assert_eq!(v["hearth_shares_total{result=\"rejected\"}"], 2.0);
        assert_eq!(v["hearth_shares_total{result=\"stale\"}"], 1.0);
        assert_eq!(v["hearth_shares_rejected_total{code=\"23\"}"], 2.0);
        for w in WORKLOADS {
            assert!(v.contains_key(&format!("hearth_power_watts{{workload=\"{w}\"}}")));
            assert!(v.contains_key(&format!("hearth_power_target_watts{{workload=\"{w}\"}}")));
            assert!(v.contains_key(&format!("hearth_energy_joules_total{{workload=\"{w}\"}}")));
        }
        assert_eq!(v["hearth_energy_joules_total{workload=\"asic\"}"], 1234.0);
        assert_eq!(v["hearth_energy_joules_total{workload=\"gpu\"}"], 150.0);
        assert_eq!(v["hearth_earnings_total{workload=\"asic\"}"], 0.25);
        assert_eq!(v["hearth_earnings_total{workload=\"gpu\"}"], 1.5);
        for k in TripKind::ALL {
            let on = f64::from(u8::from(k == TripKind::SensorStale));
            assert_eq!(
                v[&format!("hearth_safety_trips{{reason=\"{}\"}}", k.as_str())],
                on
            );
            assert_eq!(
                v[&format!("hearth_safety_trips_total{{reason=\"{}\"}}", k.as_str())],
                on
            );
        }
        for st in JobState::ALL {
            assert_eq!(v[&format!("hearth_jobs{{state=\"{}\"}}", st.as_str())], 0.0);
        }
        assert_eq!(v["hearth_control_ticks_total"], 6.0);
        assert_eq!(v["hearth_control_tick_duration_seconds_count"], 2.0);
        assert_eq!(
            v["hearth_control_tick_duration_seconds_bucket{le=\"0.00005\"}"],
            2.0
        );

        // The trip clears and latches again: a second trip. A finished job's usage moves from
        // the accounts to the store without being counted twice.
        s.trips.clear();
        metrics::with_local_recorder(&recorder, || t.on_status(&s));
        s.trips = vec![trip(TripKind::SensorStale, 99.0)];
        s.sched.accounts.jobs.clear();
        let moved = StoreFigures {
            excluded: vec![],
            others: Usage {
                gpu_seconds: 3.0,
                joules: 150.0,
                earned: 1.5,
            },
            ..figures
        };
        metrics::with_local_recorder(&recorder, || {
            t.on_status(&s);
            t.on_store(moved, &s);
        });
        let v = parse(&handle.render());
        assert_eq!(v["hearth_safety_trips_total{reason=\"sensor_stale\"}"], 2.0);
        assert_eq!(v["hearth_energy_joules_total{workload=\"gpu\"}"], 150.0);
        assert_eq!(v["hearth_earnings_total{workload=\"gpu\"}"], 1.5);
    }

    fn spec(tenant: &str) -> JobSpec {
        let t = || Tensor::new(vec![4], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        JobSpec {
            job: GpuJob {
                kernel: KernelSpec::Elementwise {
                    op: ElementwiseOp::Add,
                },
                inputs: vec![t(), t()],
            },
            lease: Lease {
                tenant: tenant.into(),
                price_per_gpu_second: 0.001,
                deadline_unix_s: None,
                priority: 0,
            },
        }
    }

    #[test]
    fn store_counts_jobs_by_state_and_sums_usage_of_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path(), StoreLimits::default()).unwrap();
        let a = store.submit(&spec("a")).unwrap();
        let b = store.submit(&spec("b")).unwrap();
        let c = store.submit(&spec("c")).unwrap();
        store.transition(c, JobState::Cancelled, "test").unwrap();
        store.record_usage(a, 1.0, 10.0, 0.5).unwrap();
        store.record_usage(c, 2.0, 20.0, 0.25).unwrap();
        let counts = store.count_by_state().unwrap();
        assert_eq!(counts.len(), JobState::ALL.len());
        let n = |st| counts.iter().find(|(s, _)| *s == st).unwrap().1;
        assert_eq!(n(JobState::Queued), 2);
        assert_eq!(n(JobState::Cancelled), 1);
        assert_eq!(n(JobState::Running), 0);
        let all = store.usage_total_except(&[]).unwrap();
        assert_eq!((all.joules, all.earned), (30.0, 0.75));
        let others = store.usage_total_except(&[a, b]).unwrap();
        assert_eq!(
            (others.gpu_seconds, others.joules, others.earned),
            (2.0, 20.0, 0.25)
        );
    }
}
