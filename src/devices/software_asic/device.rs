//! The software ASIC and its pool client as one device of the fleet: a continuous power range
//! from idle to full, that stops at once and follows within one duty-cycle slice.

use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::mining::asic::PowerSource;
use crate::mining::engine::MiningEngine;
use crate::mining::fleet::device::{
    DeviceCommand, DeviceProfile, DeviceState, DeviceStatus, MinerDevice, PowerSteps, Setting,
    Temperature,
};

/// The mining engine (software ASIC + Stratum client) as a fleet device.
pub struct SoftwareDevice {
    engine: Arc<MiningEngine>,
    clock: Clock,
    chip_limit_celsius: f64,
    /// The power last asked, W.
    asked: Mutex<f64>,
}

impl SoftwareDevice {
    /// The engine as a device; its chips must stay below `chip_limit_celsius`.
    pub fn new(engine: Arc<MiningEngine>, clock: Clock, chip_limit_celsius: f64) -> Self {
        Self {
            engine,
            clock,
            chip_limit_celsius,
            asked: Mutex::new(0.0),
        }
    }

    /// The power last asked, W.
    pub fn asked_watts(&self) -> f64 {
        *self.asked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MinerDevice for SoftwareDevice {
    fn profile(&self) -> Option<DeviceProfile> {
        let r = self.engine.asic.power_range();
        Some(DeviceProfile {
            steps: PowerSteps::Range {
                min_watts: r.idle_watts,
                max_watts: r.max_watts,
            },
            stopped_watts: Some(0.0),
            settle_seconds: r.response_seconds,
            min_command_interval_seconds: 0.0,
        })
    }

    fn status(&self) -> DeviceStatus {
        let asked = self.asked_watts();
        let m = self.engine.status(asked);
        let a = self.engine.asic.stats();
        let mut s = DeviceStatus::starting("software", "software", "", PowerSource::Modelled);
        s.model = format!(
            "software ASIC, {} chips, {} kernel",
            a.chips.len(),
            a.kernel.name()
        );
        (s.state, s.reason) = if self.has_work() {
            (DeviceState::Ok, None)
        } else {
            (DeviceState::Fault, Some("waiting for a pool job".into()))
        };
        s.watts = Some(m.power_watts);
        s.power_source = m.power_source;
        (s.setting, s.setting_name) = if asked > 0.0 {
            (Some(Setting::Watts(asked)), Some(format!("{asked:.0} W")))
        } else {
            (Some(Setting::Stop), Some("stopped".into()))
        };
        s.temperatures = a
            .chips
            .iter()
            .map(|c| Temperature {
                sensor: c.chip.clone(),
                celsius: c.celsius,
            })
            .collect();
        s.chip_limit_celsius = self.chip_limit_celsius;
        s.hashes_per_second = m.hashes_per_second;
        s.shares_accepted = m.shares.accepted;
        s.shares_rejected = m.shares.rejected.values().sum();
        s.telemetry_at_s = Some(self.clock.now_s());
        s
    }

    fn command(&self, command: DeviceCommand) {
        let watts = match command.setting {
            Setting::Watts(w) => w,
            Setting::Stop | Setting::Level(_) => 0.0,
        };
        let valid_for = self.clock.real(command.valid_until_s - self.clock.now_s());
        let followed = self.engine.follow(watts, valid_for);
        *self.asked.lock().unwrap_or_else(|e| e.into_inner()) = followed;
    }

    fn has_work(&self) -> bool {
        self.engine.client.work().borrow().is_some()
    }
}
