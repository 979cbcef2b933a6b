//! `hearth serve` as a child process: the command line the tests start it with, a guard that
//! kills it however the test ends, and a clean stop with SIGTERM.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::bin::hearth;

/// `hearth serve --sim-speed SPEED --listen LISTEN --data-dir DIR --metrics-listen METRICS`
/// with its output discarded (set stdout or stderr again to keep it); add `env`s and spawn.
pub fn serve(speed: &str, listen: &str, dir: &Path, metrics: &str) -> Command {
    let mut cmd = hearth();
    cmd.args([
        "serve",
        "--sim-speed",
        speed,
        "--listen",
        listen,
        "--data-dir",
    ])
    .arg(dir)
    .arg("--metrics-listen")
    .arg(metrics)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd
}

/// A daemon that is killed and reaped when the test ends, however it ends.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM to `child` (a clean stop); fails the test if it cannot be sent.
pub fn sigterm(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits up to 30 s for `child` to exit; fails the test with `what` if it does not.
pub fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(c) = child.try_wait().unwrap() {
            return c;
        }
        assert!(t0.elapsed().as_secs() < 30, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
