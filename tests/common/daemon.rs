//! The daemon in the test process: a config for a simulated room at 30× speed, the daemon on a
//! clock that starts at noon, and waiting for a status snapshot.

use std::path::Path;
use std::time::Duration;

use hearth::clock::Clock;
use hearth::config::Config;
use hearth::daemon::{spawn, DaemonHandle};
use hearth::status::Status;

/// A cold simulated room (15 °C: a steady, saturated budget) at 30×, the software ASIC on one
/// chip against an easy local pool, and the data dir `dir`.
pub fn config(dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.simulation.speed = 30.0;
    cfg.simulation.initial_celsius = 15.0;
    cfg.mining.asic.chips = 1;
    cfg.mining.local_pool.initial_difficulty = 2e-4;
    cfg.jobs.data_dir = Some(dir.to_path_buf());
    cfg
}

/// The daemon for `cfg`, its clock at Monday noon (the default schedule holds 21 °C) running at
/// the config's simulation speed.
pub async fn spawn_at_noon(cfg: Config) -> DaemonHandle {
    let speed = cfg.simulation.speed;
    spawn(cfg, Clock::starting_at(12.0 * 3600.0, 0, speed))
        .await
        .unwrap()
}

/// Waits up to 120 s for a status snapshot for which `f` holds; fails the test with `what`.
pub async fn wait_for(d: &DaemonHandle, what: &str, f: impl Fn(&Status) -> bool) -> Status {
    let mut rx = d.status.clone();
    let r = tokio::time::timeout(Duration::from_secs(120), rx.wait_for(|s| f(s))).await;
    match r {
        Ok(s) => s.unwrap().clone(),
        Err(_) => panic!("timed out waiting for {what}: {:?}", d.status.borrow()),
    }
}
