//! What `hearth devices probe` learns about a device.

/// A device as its API identifies it.
pub struct Identity {
    /// Its kind (`avalon`, `axeos`, `braiins`).
    pub kind: &'static str,
    /// The model it reports.
    pub model: String,
    /// The firmware it reports.
    pub firmware: String,
    /// One line for the owner.
    pub summary: String,
}
