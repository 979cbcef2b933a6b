//! Commands from Home Assistant, applied through the same domain operations as the CLI and the
//! gRPC API ([`DaemonClient`]), acting as the owner: the same validation and limits apply, and
//! a refused value leaves the daemon as it was.

use std::collections::BTreeMap;

use super::discovery::MIX_OPTIONS;
use super::topics::CommandTopic;
use crate::ops::DaemonClient;
use crate::sched::allocator::Mix;
use crate::thermal::schedule::Override;

/// Applies commands to the daemon.
pub struct Commander {
    daemon: DaemonClient,
    presets: BTreeMap<String, f64>,
    /// The GPU share (0–1) a `pinned` choice uses: the last pinned split seen or set.
    pub pin_gpu_share: f64,
}

/// Parses a number payload (Home Assistant sends `21.5`, `40`, or `40.0`).
fn number(payload: &str) -> Result<f64, String> {
    payload
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{payload:?} is not a number"))
}

impl Commander {
    /// A commander for `daemon` with the thermostat's `presets`.
    pub fn new(daemon: DaemonClient, presets: BTreeMap<String, f64>) -> Self {
        Self {
            daemon,
            presets,
            pin_gpu_share: 0.5,
        }
    }

    /// Follows a pinned mix set elsewhere (CLI, API) so `pinned` keeps the owner's split.
    pub fn observe(&mut self, mix: Option<Mix>) {
        if let Some(Mix::Pinned { gpu, asic, .. }) = mix {
            if gpu > 0.0 && asic > 0.0 {
                self.pin_gpu_share = gpu;
            }
        }
    }

    /// Applies `payload` sent on the command topic `c`. The error says why it was refused.
    pub async fn apply(&mut self, c: CommandTopic, payload: &str) -> Result<(), String> {
        let d = &self.daemon;
        let pin = |gpu: f64| Mix::Pinned {
            asic: 1.0 - gpu,
            gpu,
            strict: false,
        };
        let hold = |celsius: f64| {
            Some(Override {
                celsius,
                until_s: None,
            })
        };
        let r = match c {
            CommandTopic::Mode => match payload.trim() {
                "heat" => d.set_heating(true).await,
                "off" => d.set_heating(false).await,
                other => return Err(format!("mode {other:?}: expected heat or off")),
            },
            CommandTopic::Target => d.set_override(hold(number(payload)?)).await,
            CommandTopic::Preset => match payload.trim() {
                "none" => d.set_override(None).await,
                name => match self.presets.get(name) {
                    Some(&celsius) => d.set_override(hold(celsius)).await,
                    None => return Err(format!("no preset named {name:?}")),
                },
            },
            CommandTopic::Mix => {
                let mix = match payload.trim() {
                    x if x == MIX_OPTIONS[0] => Mix::Auto,
                    x if x == MIX_OPTIONS[1] => Mix::Pinned {
                        asic: 1.0,
                        gpu: 0.0,
                        strict: true,
                    },
                    x if x == MIX_OPTIONS[2] => Mix::Pinned {
                        asic: 0.0,
                        gpu: 1.0,
                        strict: true,
                    },
                    x if x == MIX_OPTIONS[3] => pin(self.pin_gpu_share),
                    other => return Err(format!("mix {other:?}: expected one of {MIX_OPTIONS:?}")),
                };
                d.set_mix(mix).await
            }
            CommandTopic::GpuShare => {
                let gpu = number(payload)? / 100.0;
                let r = d.set_mix(pin(gpu)).await;
                if r.is_ok() && gpu > 0.0 && gpu < 1.0 {
                    self.pin_gpu_share = gpu;
                }
                r
            }
        };
        r.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_finite() {
        assert_eq!(number(" 21.5\n"), Ok(21.5));
        assert!(number("NaN").is_err());
        assert!(number("inf").is_err());
        assert!(number("warm").is_err());
    }
}
