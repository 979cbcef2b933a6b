//! What `hearth devices probe` learns of a device.

/// A device's identity, as its API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The device kind whose API answered (`avalon`, `axeos`, `braiins`).
    pub kind: &'static str,
    /// The model it reports.
    pub model: String,
    /// Its firmware version.
    pub firmware: String,
    /// One line of what it reports now (power, setting, temperatures).
    pub summary: String,
}
