//! The mining fleet: the devices that hash, driven as one workload of the scheduler.
//!
//! `device` is the seam every device kind implements ([`device::MinerDevice`]); `plan` spreads
//! the fleet's power target over the devices' discrete levels and ranges. [`Fleet`] is the
//! scheduler's `asic` workload (its `Workload` impl is in `mining::workload`): every tick it
//! plans the target, hands each device its setting with the target's dead-man deadline, and
//! integrates each device's reported power into energy. The allocator and the daemon never
//! learn device kinds.

pub mod device;
pub mod plan;

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::clock::Clock;
use crate::sched::allocator::Envelope;
use device::{DeviceCommand, DeviceState, DeviceStatus, MinerDevice, Setting};
use plan::{Plan, View};

/// A device rested at its chip limit rejoins the plan this far below it, K.
const REST_HYSTERESIS_KELVIN: f64 = 5.0;

/// Settling faster than this (schedule seconds) counts as following at once: the fleet then
/// expects a device's planned power, else its measured power.
const FAST_SETTLE_SECONDS: f64 = 2.0;

/// The devices that hash, as one workload.
pub struct Fleet {
    devices: Vec<Arc<dyn MinerDevice>>,
    clock: Clock,
    state: Mutex<State>,
}

/// What the fleet keeps between ticks.
#[derive(Debug, Default)]
struct State {
    /// Per device: the setting last commanded.
    commanded: Vec<Option<Setting>>,
    /// Per device: resting because its chip reached its limit (until 5 K below it).
    resting: Vec<bool>,
    /// Per device: energy drawn, J.
    energy_j: Vec<f64>,
    /// When energy was last integrated (schedule seconds).
    integrated_at: Option<f64>,
    /// The last target, W.
    target_watts: f64,
}

/// One device in the fleet's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceReport {
    /// Its telemetry and condition.
    #[serde(flatten)]
    pub status: DeviceStatus,
    /// The setting the fleet asks of it.
    pub commanded: Option<Setting>,
    /// Energy it drew while hearth watched, kWh (from its reported power).
    pub energy_kwh: f64,
    /// Seconds since its last good telemetry.
    pub telemetry_age_seconds: Option<f64>,
}

/// The fleet's part of the status snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetStatus {
    /// The fleet's power target, W.
    pub target_watts: f64,
    /// Each device.
    pub devices: Vec<DeviceReport>,
}

impl Fleet {
    /// A fleet of `devices` on `clock`.
    pub fn new(devices: Vec<Arc<dyn MinerDevice>>, clock: Clock) -> Self {
        let n = devices.len();
        Self {
            devices,
            clock,
            state: Mutex::new(State {
                commanded: vec![None; n],
                resting: vec![false; n],
                energy_j: vec![0.0; n],
                ..State::default()
            }),
        }
    }

    /// Its devices.
    pub fn devices(&self) -> &[Arc<dyn MinerDevice>] {
        &self.devices
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the planner sees of each device now.
    fn views(&self, now_s: f64) -> (Vec<View>, Vec<DeviceStatus>) {
        let statuses: Vec<DeviceStatus> = self.devices.iter().map(|d| d.status()).collect();
        let (commanded, resting) = {
            let mut st = self.state();
            for (r, s) in st.resting.iter_mut().zip(&statuses) {
                let hot = s.max_celsius().unwrap_or(f64::NEG_INFINITY);
                let was = *r;
                *r = hot >= s.chip_limit_celsius
                    || (*r && hot > s.chip_limit_celsius - REST_HYSTERESIS_KELVIN);
                if *r != was {
                    tracing::warn!(device = %s.name, celsius = hot, limit = s.chip_limit_celsius,
                        "{}", if *r { "device at its chip limit: resting it" } else { "device cooled: back in the plan" });
                }
            }
            (st.commanded.clone(), st.resting.clone())
        };
        let views = self
            .devices
            .iter()
            .zip(&statuses)
            .zip(commanded)
            .zip(resting)
            .map(|(((d, s), commanded), resting)| {
                let steerable = matches!(s.state, DeviceState::Ok | DeviceState::Fault);
                let known = d.profile();
                // A device settling after a change is heading to its new setting: plan with
                // that, or the others would chase its ramp and swap roles with it.
                let watts = match (&known, s.state, s.setting) {
                    (Some(p), DeviceState::Calibrating, Some(set)) => p.watts_of(set),
                    _ => s.watts.unwrap_or(0.0),
                };
                let profile = known.filter(|_| steerable);
                let locked = profile.as_ref().is_some_and(|p| {
                    s.last_command_at_s
                        .is_some_and(|t| now_s - t < p.min_command_interval_seconds)
                });
                View {
                    profile,
                    current: commanded.or(s.setting),
                    locked,
                    watts,
                    has_work: d.has_work() && !resting,
                }
            })
            .collect();
        (views, statuses)
    }

    /// The plan for `target` watts now.
    pub fn plan(&self, target: f64) -> Plan {
        plan::plan(target, &self.views(self.clock.now_s()).0)
    }

    /// The fleet's power envelope: from its floor (devices that cannot stop, and devices it
    /// cannot steer, at their power) to everything at full power.
    pub fn envelope(&self) -> Envelope {
        let (views, _) = self.views(self.clock.now_s());
        let (mut floor, mut max, mut smallest, mut ramp) = (0.0, 0.0, f64::INFINITY, 0.0);
        for v in &views {
            match &v.profile {
                None => {
                    floor += v.watts;
                    max += v.watts;
                }
                Some(p) => {
                    let cold = p.watts_of(p.coldest());
                    floor += cold;
                    max += p.max_watts();
                    smallest = smallest.min(p.min_running_watts().max(cold));
                    ramp += (p.max_watts() - cold).max(0.0) / p.settle_seconds.max(1.0);
                }
            }
        }
        let min = if floor > 0.0 || !smallest.is_finite() {
            floor
        } else {
            smallest
        };
        Envelope {
            min_watts: min,
            max_watts: max.max(min),
            below_min: false,
            ramp_watts_per_second: ramp,
        }
    }

    /// The power the fleet will draw over the next tick if given `target`: devices that follow
    /// at once at their planned power, slower ones at what they draw now.
    pub fn expected_watts(&self, target: f64) -> f64 {
        let now = self.clock.now_s();
        let (views, statuses) = self.views(now);
        let p = plan::plan(target, &views);
        views
            .iter()
            .zip(&statuses)
            .zip(&p.settings)
            .map(|((v, s), planned)| match (&v.profile, planned) {
                (Some(prof), Some(set)) if prof.settle_seconds <= FAST_SETTLE_SECONDS => {
                    prof.watts_of(*set)
                }
                (Some(prof), Some(set)) => s.watts.unwrap_or_else(|| prof.watts_of(*set)),
                _ => v.watts,
            })
            .sum()
    }

    /// Plans `target` and commands every steerable device, valid for `valid_for_s` schedule
    /// seconds; integrates the energy each device reported since the last call.
    pub fn set_target(&self, target: f64, valid_for_s: f64) {
        let now = self.clock.now_s();
        let (views, statuses) = self.views(now);
        let p = plan::plan(target, &views);
        let mut st = self.state();
        if let Some(at) = st.integrated_at {
            let dt = (now - at).clamp(0.0, 60.0);
            for (e, s) in st.energy_j.iter_mut().zip(&statuses) {
                *e += s.watts.unwrap_or(0.0) * dt;
            }
        }
        st.integrated_at = Some(now);
        st.target_watts = target;
        let valid_until_s = now + valid_for_s.max(0.0);
        for (i, (d, set)) in self.devices.iter().zip(&p.settings).enumerate() {
            // A device the fleet cannot steer keeps its last command, refreshed, so that its
            // driver goes cold by itself if the fleet stops.
            let Some(setting) = set.or(st.commanded[i]) else {
                continue;
            };
            st.commanded[i] = Some(setting);
            d.command(DeviceCommand {
                setting,
                valid_until_s,
            });
        }
    }

    /// Schedule seconds in a real `duration` (saturating for a deadline that never expires).
    pub fn clock_seconds(&self, duration: std::time::Duration) -> f64 {
        self.clock.schedule_seconds(duration)
    }

    /// Every device's status, with what the fleet asks of it and its energy.
    pub fn status(&self) -> FleetStatus {
        let now = self.clock.now_s();
        let st = self.state();
        FleetStatus {
            target_watts: st.target_watts,
            devices: self
                .devices
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let status = d.status();
                    DeviceReport {
                        telemetry_age_seconds: status.telemetry_at_s.map(|t| (now - t).max(0.0)),
                        status,
                        commanded: st.commanded[i],
                        energy_kwh: st.energy_j[i] / 3.6e6,
                    }
                })
                .collect(),
        }
    }
}
