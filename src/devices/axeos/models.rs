//! Per-ASIC data for AxeOS boards: a few frequency/voltage steps with nominal watts, the chip
//! limit, and the typical power while paused. Few, discrete levels on purpose: every PATCH of
//! frequency or voltage writes the board's flash.
//!
//! Sources: ESP-Miner `main/device_config.h` (each ASIC's frequency and voltage options and
//! defaults: BM1366 485 MHz/1200 mV, BM1368 490/1166, BM1370 525/1150, BM1397 425/1400; the
//! single-chip families' 25–40 W `max_power`) and `main/tasks/power_management_task.c` (it
//! latches `overheat_mode` above 75 °C chip / 105 °C regulator). Watts at the default step are
//! the boards' typical draw; the other steps scale it by f·V²; the paused figure is the
//! controller's and regulator's idle draw, replaced by the board's own reading once hearth has
//! seen it paused. `[[mining.devices]] levels` (value = MHz) overrides the steps.

/// One frequency/voltage step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// ASIC frequency, MHz.
    pub mhz: u32,
    /// Core voltage, mV.
    pub millivolts: u32,
    /// Nominal board power, W.
    pub watts: f64,
}

/// What hearth knows about one ASIC's boards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Asic {
    /// The ASIC as `ASICModel` names it.
    pub asic: &'static str,
    /// The board family it goes with.
    pub family: &'static str,
    /// Its steps, ascending by watts.
    pub steps: &'static [Step],
    /// Typical power while paused, W.
    pub paused_watts: f64,
}

/// Chip temperature at which the fleet rests a Bitaxe (plans it cold), °C: under the firmware's
/// 75 °C latch, which needs a person to clear it. The heater trips only past this plus
/// `driver::CHIP_TRIP_MARGIN_KELVIN`.
pub const CHIP_LIMIT_CELSIUS: f64 = 70.0;

/// The ASICs hearth knows.
pub const ASICS: &[Asic] = &[
    Asic {
        asic: "BM1366",
        family: "Ultra",
        steps: &[
            Step {
                mhz: 400,
                millivolts: 1100,
                watts: 8.0,
            },
            Step {
                mhz: 485,
                millivolts: 1200,
                watts: 11.5,
            },
            Step {
                mhz: 575,
                millivolts: 1250,
                watts: 15.0,
            },
        ],
        paused_watts: 3.0,
    },
    Asic {
        asic: "BM1368",
        family: "Supra",
        steps: &[
            Step {
                mhz: 400,
                millivolts: 1100,
                watts: 10.0,
            },
            Step {
                mhz: 490,
                millivolts: 1166,
                watts: 14.0,
            },
            Step {
                mhz: 575,
                millivolts: 1250,
                watts: 19.0,
            },
        ],
        paused_watts: 3.0,
    },
    Asic {
        asic: "BM1370",
        family: "Gamma",
        steps: &[
            Step {
                mhz: 400,
                millivolts: 1000,
                watts: 10.0,
            },
            Step {
                mhz: 525,
                millivolts: 1150,
                watts: 17.5,
            },
            Step {
                mhz: 600,
                millivolts: 1200,
                watts: 22.0,
            },
        ],
        paused_watts: 3.5,
    },
    Asic {
        asic: "BM1397",
        family: "Max",
        steps: &[
            Step {
                mhz: 400,
                millivolts: 1350,
                watts: 12.0,
            },
            Step {
                mhz: 425,
                millivolts: 1400,
                watts: 13.5,
            },
            Step {
                mhz: 475,
                millivolts: 1450,
                watts: 16.0,
            },
        ],
        paused_watts: 3.0,
    },
];

/// The row for the ASIC `ASICModel` names (case and spaces ignored).
pub fn lookup(asic_model: &str) -> Option<&'static Asic> {
    let norm: String = asic_model
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    ASICS.iter().find(|a| norm.contains(a.asic))
}
