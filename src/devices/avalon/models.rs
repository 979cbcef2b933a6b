//! Per-model data for Avalons: which `MM ID0` token holds wall power, the work modes and their
//! nominal watts, the chip limit, whether the firmware can soft-off, and how its own protection
//! shows. Adding a model is adding a row, never a branch.
//!
//! Sources: Canaan's Avalon_Nano3s firmware source (`cg_miner/cgminer/driver-avalon.c`: `PS[]`
//! holds `power[6]` = wall watts, `WORKMODE[]`, `ADJ[]` = calibration finished, `TMax[]`;
//! `driver-avalon.h`: overheat at 113 °C, fan target 75 °C; `mm_miner.h`: work modes 0 low,
//! 1 medium, 2 high; no soft-off command in its `ascset` table); pyasic's Avalon backend (model
//! names from `version`, `WALLPOWER[]` on the other models). Watts per mode are nominal figures
//! (Canaan's 140 W / 800 W top modes, lower modes estimated); hearth counts the power the device
//! measures, and `[[mining.devices]] levels` overrides them.

/// Where a model reports its wall power: value `index` of token `token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerField {
    /// The token's name (`PS`, `WALLPOWER`).
    pub token: &'static str,
    /// The value's index inside the brackets.
    pub index: usize,
}

/// One work mode of a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mode {
    /// The number `ascset|0,workmode,set,N` takes and `WORKMODE[N]` shows.
    pub value: u32,
    /// Its name.
    pub name: &'static str,
    /// Nominal wall power, W.
    pub watts: f64,
}

/// What hearth knows about one Avalon model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    /// Its name in status.
    pub name: &'static str,
    /// What `version`'s `PROD` and `MODEL` contain for it, upper case, letters and digits only.
    pub key: &'static str,
    /// Where its wall power is, tried in order.
    pub power: &'static [PowerField],
    /// Its work modes, ascending by watts.
    pub modes: &'static [Mode],
    /// Chip temperature (`TMax`) hearth keeps it below, °C.
    pub chip_limit_celsius: f64,
    /// `TMax` at which its firmware's own protection acts, °C.
    pub overheat_celsius: f64,
    /// Bits of `ECMM` that mean its own over-temperature protection is active.
    pub ecmm_overheat_mask: u64,
    /// Wall power when soft-off, W, if its firmware has `softoff`/`softon`.
    pub softoff_watts: Option<f64>,
    /// Seconds from a mode switch until its power has settled (it recalibrates).
    pub settle_seconds: f64,
}

/// Canaan's MM error bit `CODE_TOOHOT`.
const ECMM_TOOHOT: u64 = 0x40;

const NANO_MODES: &[Mode] = &[
    Mode {
        value: 0,
        name: "low",
        watts: 70.0,
    },
    Mode {
        value: 1,
        name: "medium",
        watts: 100.0,
    },
    Mode {
        value: 2,
        name: "high",
        watts: 140.0,
    },
];

const NANO_3S: Model = Model {
    name: "Avalon Nano 3S",
    key: "NANO3S",
    power: &[PowerField {
        token: "PS",
        index: 6,
    }],
    modes: NANO_MODES,
    chip_limit_celsius: 95.0,
    overheat_celsius: 113.0,
    ecmm_overheat_mask: ECMM_TOOHOT,
    softoff_watts: None,
    settle_seconds: 600.0,
};

/// The models hearth knows, most specific key first.
pub const MODELS: &[Model] = &[
    NANO_3S,
    // Its power token after pyasic's generic Avalon reading, the Nano 3S one as a fallback.
    Model {
        name: "Avalon Nano 3",
        key: "NANO3",
        power: &[
            PowerField {
                token: "WALLPOWER",
                index: 0,
            },
            PowerField {
                token: "PS",
                index: 6,
            },
        ],
        ..NANO_3S
    },
    Model {
        name: "Avalon Mini 3",
        key: "MINI3",
        power: &[PowerField {
            token: "WALLPOWER",
            index: 0,
        }],
        modes: &[
            Mode {
                value: 0,
                name: "low",
                watts: 400.0,
            },
            Mode {
                value: 1,
                name: "medium",
                watts: 600.0,
            },
            Mode {
                value: 2,
                name: "high",
                watts: 800.0,
            },
        ],
        ..NANO_3S
    },
];

/// Where an unknown model's wall power is looked for (the older Avalons' token).
pub const GENERIC_POWER: &[PowerField] = &[PowerField {
    token: "WALLPOWER",
    index: 0,
}];

/// The model whose key `version`'s product and model strings contain.
pub fn lookup(prod: &str, model: &str) -> Option<&'static Model> {
    let norm: String = format!("{prod} {model}")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    MODELS.iter().find(|m| norm.contains(m.key))
}
