//! The physics every emulated device shares: wall power following its target (a first-order lag
//! or a linear ramp), chip and board temperatures following ambient + k·power with their own lag,
//! and hashrate proportional to the power above idle. State advances lazily to the time it is
//! asked about, in small exact steps, so no timer runs.

use super::{EmulatorKind, EmulatorState};

/// A device model the emulators drive: its physics, what its own protection watches, how the
/// protection acts, and the state it reports.
pub(crate) trait Device: Send + 'static {
    /// Its physics.
    fn physics(&mut self) -> &mut Physics;
    /// What its protection watches now.
    fn watch(&self) -> Watch;
    /// The protection acts (the watched condition just held).
    fn react(&mut self);
    /// Its state at `now`.
    fn state(&self, now: f64) -> EmulatorState;
    /// Extra chip heat of a failed fan, °C: enough to trip its protection.
    fn overheat_heat_c(&self) -> f64;
}

/// A condition on the physics that a device's protection watches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Watch {
    /// Nothing.
    Never,
    /// The chip reaches this temperature, °C.
    ChipAtLeast(f64),
    /// The chip cools below this temperature, °C.
    ChipBelow(f64),
    /// The chip exceeds the first or the board the second temperature, °C.
    ChipOrBoardAbove(f64, f64),
}

impl Watch {
    fn holds(self, p: &Physics) -> bool {
        match self {
            Watch::Never => false,
            Watch::ChipAtLeast(c) => p.chip_c >= c,
            Watch::ChipBelow(c) => p.chip_c < c,
            Watch::ChipOrBoardAbove(c, b) => p.chip_c > c || p.board_c > b,
        }
    }
}

/// Advances `d` to `now`, letting its protection act wherever its condition holds on the way.
pub(crate) fn sync<D: Device + ?Sized>(d: &mut D, now_s: f64) {
    // A reaction changes what the protection watches, so each round ends at the next event; a
    // device cycling on its protection (a hot room) goes through a round per trip or recovery.
    for _ in 0..256 {
        let watch = d.watch();
        if !d.physics().advance(now_s, |p| watch.holds(p)) {
            return;
        }
        d.react();
    }
    d.physics().advance(now_s, |_| false);
}

/// The physics part of a snapshot; the kind fills in its setting and flags.
pub(crate) fn state_of(kind: EmulatorKind, model: &str, p: &Physics, now: f64) -> EmulatorState {
    EmulatorState {
        kind,
        model: model.into(),
        level: None,
        setting: String::new(),
        target_watts: p.target_w,
        wall_watts: p.power_w,
        chip_celsius: p.chip_c,
        board_celsius: p.board_c,
        ambient_celsius: p.ambient_c,
        hashrate_ghs: p.hashrate_ghs(),
        calibrating: false,
        paused: false,
        overheated: false,
        flash_writes: 0,
        at_s: now,
    }
}

/// How power follows a new target.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ramp {
    /// Exponential approach with this time constant, s.
    FirstOrder {
        /// Time constant, s.
        tau_s: f64,
    },
    /// Straight line at this rate, W/s.
    Linear {
        /// Rate, W/s.
        w_per_s: f64,
    },
}

/// A device's thermal and electrical constants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// How power follows its target.
    pub ramp: Ramp,
    /// Time constant of the chip and board temperatures, s.
    pub tau_temp_s: f64,
    /// Chip temperature rise per wall watt at steady state, °C/W.
    pub chip_c_per_w: f64,
    /// Board (voltage regulator) temperature rise per wall watt, °C/W.
    pub board_c_per_w: f64,
    /// Wall power when not hashing (controller, fans), W.
    pub idle_w: f64,
}

/// The state of one device's physics.
#[derive(Debug, Clone)]
pub(crate) struct Physics {
    params: Params,
    t_s: f64,
    power_w: f64,
    target_w: f64,
    chip_c: f64,
    board_c: f64,
    ambient_c: f64,
    extra_heat_c: f64,
    /// Hashrate at full power of the current setting, GH/s.
    full_ghs: f64,
    /// Wall power of the current setting, W.
    full_w: f64,
    work_gh: f64,
}

/// The most steps one advance takes; longer gaps take longer steps (each step is exact for a
/// constant input, so it stays stable).
const MAX_STEPS: f64 = 20_000.0;

impl Physics {
    /// A device that has been running at `watts` (hashing `ghs`) for long, at time `now_s`.
    pub fn settled(params: Params, now_s: f64, ambient_c: f64, watts: f64, ghs: f64) -> Self {
        Self {
            params,
            t_s: now_s,
            power_w: watts,
            target_w: watts,
            chip_c: ambient_c + params.chip_c_per_w * watts,
            board_c: ambient_c + params.board_c_per_w * watts,
            ambient_c,
            extra_heat_c: 0.0,
            full_ghs: ghs,
            full_w: watts,
            work_gh: 0.0,
        }
    }

    /// Points the device at a new setting: it heads to `target_w` and, at `full_w`, would hash
    /// `full_ghs`. Call [`Physics::advance`] to `now` first.
    pub fn set_target(&mut self, target_w: f64, full_w: f64, full_ghs: f64) {
        self.target_w = target_w.max(0.0);
        self.full_w = full_w.max(0.0);
        self.full_ghs = full_ghs.max(0.0);
    }

    /// Advances to `now_s`, stopping early (and returning `true`) right after the first step at
    /// which `stop` holds, so the caller can react (a protection trips) and advance again.
    pub fn advance(&mut self, now_s: f64, mut stop: impl FnMut(&Physics) -> bool) -> bool {
        let dt = now_s - self.t_s;
        if dt.is_nan() || dt <= 0.0 {
            return false;
        }
        let fastest = match self.params.ramp {
            Ramp::FirstOrder { tau_s } => tau_s.min(self.params.tau_temp_s),
            Ramp::Linear { .. } => self.params.tau_temp_s,
        };
        let h_nominal = (fastest / 8.0).max(1e-3);
        let steps = (dt / h_nominal).ceil().clamp(1.0, MAX_STEPS);
        let h = dt / steps;
        for _ in 0..steps as u64 {
            self.step(h);
            if stop(self) {
                return true;
            }
        }
        self.t_s = now_s;
        false
    }

    fn step(&mut self, h: f64) {
        let p0 = self.power_w;
        self.power_w = match self.params.ramp {
            Ramp::FirstOrder { tau_s } => {
                self.target_w + (p0 - self.target_w) * (-h / tau_s.max(1e-6)).exp()
            }
            Ramp::Linear { w_per_s } => {
                let max_move = w_per_s * h;
                p0 + (self.target_w - p0).clamp(-max_move, max_move)
            }
        };
        let p_avg = 0.5 * (p0 + self.power_w);
        let decay = (-h / self.params.tau_temp_s.max(1e-6)).exp();
        let base = self.ambient_c + self.extra_heat_c;
        let chip_in = base + self.params.chip_c_per_w * p_avg;
        let board_in = base + self.params.board_c_per_w * p_avg;
        self.chip_c = chip_in + (self.chip_c - chip_in) * decay;
        self.board_c = board_in + (self.board_c - board_in) * decay;
        self.work_gh += self.hashrate_ghs() * h;
        self.t_s += h;
    }

    /// Wall power now, W.
    pub fn power_w(&self) -> f64 {
        self.power_w
    }

    /// Hottest chip, °C.
    pub fn chip_c(&self) -> f64 {
        self.chip_c
    }

    /// Board / regulator temperature, °C.
    pub fn board_c(&self) -> f64 {
        self.board_c
    }

    /// Ambient air, °C.
    pub fn ambient_c(&self) -> f64 {
        self.ambient_c
    }

    /// Sets the ambient air, °C.
    pub fn set_ambient(&mut self, c: f64) {
        self.ambient_c = c;
    }

    /// Adds heat a healthy device would not have (a failed fan), °C at the chips.
    pub fn set_extra_heat(&mut self, c: f64) {
        self.extra_heat_c = c;
    }

    /// Hashrate now, GH/s: the setting's hashrate scaled by how much of its power above idle
    /// the device draws.
    pub fn hashrate_ghs(&self) -> f64 {
        let span = self.full_w - self.params.idle_w;
        if span <= 0.0 {
            return 0.0;
        }
        let frac = ((self.power_w - self.params.idle_w) / span).clamp(0.0, 1.0);
        self.full_ghs * frac
    }

    /// Work done since start, GH (hashes / 1e9).
    pub fn work_gh(&self) -> f64 {
        self.work_gh
    }

    /// Whether power is within `frac` of its target.
    pub fn settled_within(&self, frac: f64) -> bool {
        (self.power_w - self.target_w).abs() <= frac * self.target_w.max(1.0)
    }
}

/// Formats a float as C's `printf("%.*f")` does, `inf`/`-inf`/`nan` included.
pub(crate) fn c_float(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(ramp: Ramp) -> Params {
        Params {
            ramp,
            tau_temp_s: 60.0,
            chip_c_per_w: 0.3,
            board_c_per_w: 0.2,
            idle_w: 10.0,
        }
    }

    #[test]
    fn first_order_power_reaches_63_percent_in_one_time_constant() {
        let mut p = Physics::settled(
            params(Ramp::FirstOrder { tau_s: 20.0 }),
            0.0,
            20.0,
            10.0,
            0.0,
        );
        p.set_target(110.0, 110.0, 1000.0);
        p.advance(20.0, |_| false);
        let frac = (p.power_w() - 10.0) / 100.0;
        assert!((frac - (1.0 - (-1.0f64).exp())).abs() < 1e-3, "{frac}");
        // Hashrate is proportional to the power above idle.
        assert!((p.hashrate_ghs() - 1000.0 * frac).abs() < 1e-6);
        p.advance(2000.0, |_| false);
        assert!((p.power_w() - 110.0).abs() < 1e-6);
        assert!((p.chip_c() - (20.0 + 0.3 * 110.0)).abs() < 1e-3);
    }

    #[test]
    fn linear_ramp_moves_at_its_rate_and_stops_at_the_target() {
        let mut p = Physics::settled(
            params(Ramp::Linear { w_per_s: 10.0 }),
            0.0,
            20.0,
            1000.0,
            0.0,
        );
        p.set_target(2000.0, 2000.0, 0.0);
        p.advance(50.0, |_| false);
        assert!((p.power_w() - 1500.0).abs() < 1e-6, "{}", p.power_w());
        p.advance(500.0, |_| false);
        assert!((p.power_w() - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn advance_stops_where_the_condition_first_holds() {
        let mut p = Physics::settled(
            params(Ramp::FirstOrder { tau_s: 5.0 }),
            0.0,
            20.0,
            100.0,
            0.0,
        );
        p.set_extra_heat(40.0);
        let stopped = p.advance(1000.0, |p| p.chip_c() > 70.0);
        assert!(stopped);
        assert!(p.chip_c() > 70.0 && p.chip_c() < 72.0, "{}", p.chip_c());
        assert!(p.t_s < 1000.0);
    }

    #[test]
    fn c_floats_print_like_printf() {
        assert_eq!(c_float(f64::INFINITY, 2), "inf");
        assert_eq!(c_float(f64::NAN, 2), "nan");
        assert_eq!(c_float(1.005, 3), "1.005");
    }
}
