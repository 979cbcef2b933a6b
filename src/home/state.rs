//! What hearth shows Home Assistant: the state topics' payloads computed from the daemon's
//! status snapshot, and a publisher that sends only what changed, at most once per interval,
//! with every value sent again on a bounded refresh (and after every (re)connection).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::discovery::MIX_OPTIONS;
use crate::jobs::{JobId, JobStore};
use crate::sched::accounting::Accounts;
use crate::sched::allocator::Mix;
use crate::status::Status;

/// Shortest time between two publishing passes in steady state.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Every value is sent again at least this often, changed or not.
pub const REFRESH: Duration = Duration::from_secs(60);
/// Shortest time between two reads of the job store for the GPU's energy and earnings.
const STORE_READ_INTERVAL: Duration = Duration::from_secs(5);

const JOULES_PER_KWH: f64 = 3.6e6;

/// The state topics commands change (see [`StatePublisher::pass_commanded`]).
const COMMANDED: [&str; 6] = [
    "climate/mode",
    "climate/target",
    "climate/action",
    "climate/preset",
    "mix",
    "gpu_share",
];

/// The mix's label in the select entity (see [`MIX_OPTIONS`]).
pub fn mix_label(mix: Option<Mix>) -> &'static str {
    match mix {
        None | Some(Mix::Auto) => MIX_OPTIONS[0],
        Some(Mix::Pinned { asic, gpu, .. }) if asic >= 1.0 && gpu <= 0.0 => MIX_OPTIONS[1],
        Some(Mix::Pinned { asic, gpu, .. }) if gpu >= 1.0 && asic <= 0.0 => MIX_OPTIONS[2],
        Some(Mix::Pinned { .. }) => MIX_OPTIONS[3],
    }
}

/// The preset whose setpoint is `celsius` (the first by name), else `none`.
pub fn preset_of(presets: &BTreeMap<String, f64>, celsius: f64) -> &str {
    presets
        .iter()
        .find(|(name, v)| name.as_str() != "none" && (**v - celsius).abs() < 1e-9)
        .map_or("none", |(name, _)| name.as_str())
}

/// A status that came from a control tick (setpoints are never below 5 °C); the placeholder
/// before the first tick has 0.
pub fn is_from_a_tick(s: &Status) -> bool {
    s.setpoint_celsius > 0.0
}

/// The GPU's energy and earnings over every job: jobs no longer live from the store (read now
/// and then), live jobs from the status. Both figures only rise, so a finished job that is
/// between the two never makes Home Assistant see a meter reset.
#[derive(Debug, Default)]
pub struct GpuTotals {
    /// Energy and earnings of the jobs left out of the last store read.
    others: (f64, f64),
    /// The live jobs at that read.
    excluded: BTreeSet<u64>,
    read_at: Option<Instant>,
    /// Highest energy so far, J.
    pub joules: f64,
    /// Highest earnings so far.
    pub earned: f64,
}

impl GpuTotals {
    /// Re-reads the store (on the blocking pool) if the live jobs changed since the last read
    /// and that read is old enough; then updates the totals from `accounts`.
    pub async fn update(&mut self, store: &Arc<JobStore>, accounts: &Accounts) {
        let live: BTreeSet<u64> = accounts.jobs.keys().copied().collect();
        let stale = self
            .read_at
            .is_none_or(|t| t.elapsed() >= STORE_READ_INTERVAL);
        if stale && (self.read_at.is_none() || live != self.excluded) {
            let s = store.clone();
            let ids: Vec<JobId> = live.iter().map(|&i| JobId(i)).collect();
            match tokio::task::spawn_blocking(move || s.usage_total_except(&ids)).await {
                Ok(Ok(u)) => {
                    self.others = (u.joules, u.earned);
                    self.excluded = live;
                    self.read_at = Some(Instant::now());
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "job store usage not read"),
                Err(e) => tracing::debug!(error = %e, "job store read failed"),
            }
        }
        let (mut j, mut e) = self.others;
        for (id, a) in &accounts.jobs {
            if self.excluded.contains(id) {
                j += a.joules;
                e += a.earned;
            }
        }
        if j.is_finite() {
            self.joules = self.joules.max(j);
        }
        if e.is_finite() {
            self.earned = self.earned.max(e);
        }
    }
}

/// What the status does not say by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Extras {
    /// GPU energy over every job, J.
    pub gpu_joules: f64,
    /// GPU earnings over every job.
    pub gpu_earned: f64,
    /// The GPU share a `pinned` choice uses, 0–1.
    pub pin_gpu_share: f64,
}

/// Every state topic (relative to the base topic) and its payload.
pub fn values(
    s: &Status,
    presets: &BTreeMap<String, f64>,
    x: &Extras,
) -> BTreeMap<&'static str, String> {
    let mut v = BTreeMap::new();
    let w = |watts: f64| format!("{:.0}", watts.max(0.0));
    let kwh = |joules: f64| format!("{:.3}", joules.max(0.0) / JOULES_PER_KWH);
    let c1 = |c: f64| format!("{c:.1}");
    v.insert(
        "climate/mode",
        if s.heating_off { "off" } else { "heat" }.into(),
    );
    v.insert("climate/target", c1(s.setpoint_celsius));
    if let Some(room) = s.room_celsius {
        v.insert("climate/current", format!("{room:.2}"));
    }
    let action = if s.heating_off {
        "off"
    } else if s.budget_watts > 0.0 {
        "heating"
    } else {
        "idle"
    };
    v.insert("climate/action", action.into());
    v.insert(
        "climate/preset",
        preset_of(presets, s.setpoint_celsius).into(),
    );
    let p = &s.sched.actual;
    v.insert("sensor/power_total", w(p.total));
    v.insert("sensor/power_asic", w(p.asic));
    v.insert("sensor/power_gpu", w(p.gpu));
    v.insert("sensor/power_resistive", w(p.resistive));
    let acc = &s.sched.accounts;
    v.insert("sensor/energy_asic", kwh(acc.mining.joules));
    v.insert("sensor/energy_gpu", kwh(x.gpu_joules));
    v.insert("sensor/energy_resistive", kwh(acc.resistive_joules));
    let hashrate = s.mining.as_ref().map_or(0.0, |m| m.hashes_per_second);
    v.insert("sensor/hashrate", format!("{:.0}", hashrate.max(0.0)));
    v.insert(
        "sensor/earnings",
        format!("{:.6}", (acc.mining.earned + x.gpu_earned).max(0.0)),
    );
    v.insert("sensor/budget", w(s.budget_watts));
    v.insert("sensor/unmet", w(s.sched.allocation.unmet_watts));
    if let Some(o) = s.outdoor_celsius {
        v.insert("sensor/outdoor_temperature", c1(o));
    }
    v.insert("mix", mix_label(s.sched.mix).into());
    let share = match s.sched.mix {
        Some(Mix::Pinned { gpu, .. }) => gpu,
        _ => x.pin_gpu_share,
    };
    v.insert("gpu_share", format!("{:.0}", share * 100.0));
    v.insert("trip", if s.trips.is_empty() { "OFF" } else { "ON" }.into());
    let reason = s
        .trips
        .iter()
        .map(|t| t.reason.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let kinds: Vec<&str> = s.trips.iter().map(|t| t.kind.as_str()).collect();
    v.insert(
        "trip/attributes",
        json!({ "reason": reason, "trips": kinds }).to_string(),
    );
    v
}

/// Sends state topics that changed since they were last sent.
#[derive(Debug)]
pub struct StatePublisher {
    sent: BTreeMap<&'static str, String>,
    last_full: Option<Instant>,
    min_interval: Duration,
    refresh: Duration,
}

impl StatePublisher {
    /// A publisher whose steady passes come every `min_interval` (the caller's timer) and
    /// send everything again every `refresh`.
    pub fn new(min_interval: Duration, refresh: Duration) -> Self {
        Self {
            sent: BTreeMap::new(),
            last_full: None,
            min_interval,
            refresh,
        }
    }

    /// Forgets that `topic` was sent: the next pass sends it.
    pub fn forget(&mut self, topic: &str) {
        self.sent.remove(topic);
    }

    /// Forgets everything: the next pass sends every value.
    pub fn forget_all(&mut self) {
        self.sent.clear();
    }

    /// The steady-state interval.
    pub fn min_interval(&self) -> Duration {
        self.min_interval
    }

    /// Sends what changed in `values` through `publish` (topic relative to the base, payload;
    /// it answers whether the message was queued). A value that could not be queued is tried
    /// again next pass. Returns how many were sent.
    pub fn pass(
        &mut self,
        now: Instant,
        values: BTreeMap<&'static str, String>,
        publish: impl FnMut(&str, &str) -> bool,
    ) -> usize {
        if self
            .last_full
            .is_none_or(|t| now.duration_since(t) >= self.refresh)
        {
            self.sent.clear();
            self.last_full = Some(now);
        }
        self.send_changed(values, publish)
    }

    /// Sends what changed among the values commands act on (the climate's, the mix and the
    /// GPU share), the others waiting for the next steady pass: a command's effect comes back
    /// at once without every sensor following it.
    pub fn pass_commanded(
        &mut self,
        values: BTreeMap<&'static str, String>,
        publish: impl FnMut(&str, &str) -> bool,
    ) -> usize {
        let commanded = values
            .into_iter()
            .filter(|(t, _)| COMMANDED.contains(t))
            .collect();
        self.send_changed(commanded, publish)
    }

    fn send_changed(
        &mut self,
        values: BTreeMap<&'static str, String>,
        mut publish: impl FnMut(&str, &str) -> bool,
    ) -> usize {
        let mut n = 0;
        for (topic, payload) in values {
            if self.sent.get(topic) == Some(&payload) {
                continue;
            }
            if publish(topic, &payload) {
                n += 1;
                self.sent.insert(topic, payload);
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thermal::safety::{Trip, TripKind};

    fn presets() -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("comfort".to_string(), 21.0),
            ("eco".to_string(), 18.0),
            ("away".to_string(), 15.0),
        ])
    }

    fn status() -> Status {
        let mut s = Status {
            setpoint_celsius: 21.0,
            room_celsius: Some(20.456),
            budget_watts: 800.0,
            ..Status::default()
        };
        s.sched.actual.total = 799.6;
        s.sched.accounts.mining.joules = 3.6e6;
        s.sched.mix = Some(Mix::Pinned {
            asic: 0.3,
            gpu: 0.7,
            strict: false,
        });
        s
    }

    #[test]
    fn values_follow_the_status() {
        let x = Extras {
            gpu_joules: 1.8e6,
            ..Extras::default()
        };
        let v = values(&status(), &presets(), &x);
        assert_eq!(v["climate/mode"], "heat");
        assert_eq!(v["climate/target"], "21.0");
        assert_eq!(v["climate/current"], "20.46");
        assert_eq!(v["climate/action"], "heating");
        assert_eq!(v["climate/preset"], "comfort");
        assert_eq!(v["sensor/power_total"], "800");
        assert_eq!(v["sensor/energy_asic"], "1.000");
        assert_eq!(v["sensor/energy_gpu"], "0.500");
        assert_eq!(v["mix"], "pinned");
        assert_eq!(v["gpu_share"], "70");
        assert_eq!(v["trip"], "OFF");

        let mut off = status();
        off.heating_off = true;
        off.budget_watts = 0.0;
        off.setpoint_celsius = 19.5;
        off.trips.push(Trip {
            kind: TripKind::SensorStale,
            reason: "no room reading for 120 s".into(),
            since_s: 1.0,
            clearing_since_s: None,
        });
        off.sched.mix = Some(Mix::Auto);
        let x = Extras {
            pin_gpu_share: 0.25,
            ..Extras::default()
        };
        let v = values(&off, &presets(), &x);
        assert_eq!(v["climate/mode"], "off");
        assert_eq!(v["climate/action"], "off");
        assert_eq!(v["climate/preset"], "none");
        assert_eq!(v["mix"], "auto");
        assert_eq!(v["gpu_share"], "25");
        assert_eq!(v["trip"], "ON");
        let attrs: serde_json::Value = serde_json::from_str(&v["trip/attributes"]).unwrap();
        assert_eq!(attrs["reason"], "no room reading for 120 s");
        assert_eq!(attrs["trips"][0], "sensor_stale");
    }

    #[test]
    fn mix_labels() {
        let pin = |asic, gpu| {
            Some(Mix::Pinned {
                asic,
                gpu,
                strict: true,
            })
        };
        assert_eq!(mix_label(pin(1.0, 0.0)), "mining only");
        assert_eq!(mix_label(pin(0.0, 1.0)), "AI only");
        assert_eq!(mix_label(pin(0.5, 0.5)), "pinned");
        assert_eq!(mix_label(Some(Mix::Auto)), "auto");
    }

    #[test]
    fn only_changes_are_sent_until_the_refresh() {
        let mut p = StatePublisher::new(Duration::from_secs(5), Duration::from_secs(60));
        let t0 = Instant::now();
        let v = |x: &str| BTreeMap::from([("a", "1".to_string()), ("b", x.to_string())]);
        let mut sent = Vec::new();
        let mut publish = |t: &str, _: &str| {
            sent.push(t.to_string());
            true
        };
        assert_eq!(p.pass(t0, v("1"), &mut publish), 2);
        assert_eq!(p.pass(t0 + Duration::from_secs(5), v("2"), &mut publish), 1);
        assert_eq!(
            p.pass(t0 + Duration::from_secs(10), v("2"), &mut publish),
            0
        );
        p.forget("a");
        assert_eq!(
            p.pass(t0 + Duration::from_secs(15), v("2"), &mut publish),
            1
        );
        assert_eq!(
            p.pass(t0 + Duration::from_secs(61), v("2"), &mut publish),
            2
        );
        // A value that could not be queued is tried again.
        p.forget_all();
        assert_eq!(
            p.pass(t0 + Duration::from_secs(62), v("2"), |_, _| false),
            0
        );
        assert_eq!(
            p.pass(t0 + Duration::from_secs(63), v("2"), &mut publish),
            2
        );
    }

    #[test]
    fn a_commanded_pass_sends_only_what_commands_change() {
        let mut p = StatePublisher::new(Duration::from_secs(5), Duration::from_secs(60));
        let t0 = Instant::now();
        let v = |target: &str, power: &str| {
            BTreeMap::from([
                ("climate/target", target.to_string()),
                ("sensor/power_total", power.to_string()),
            ])
        };
        assert_eq!(p.pass(t0, v("21.0", "800"), |_, _| true), 2);
        let mut sent = Vec::new();
        let n = p.pass_commanded(v("22.0", "810"), |t, _| {
            sent.push(t.to_string());
            true
        });
        assert_eq!((n, sent), (1, vec!["climate/target".to_string()]));
        // The power waits for the next steady pass.
        assert_eq!(
            p.pass(t0 + Duration::from_secs(5), v("22.0", "810"), |_, _| true),
            1
        );
    }
}
