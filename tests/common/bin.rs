//! The `hearth` binary as the tests run it: the command, free loopback ports, and its output
//! checked.

use std::process::{Command, Output};

/// The `hearth` binary under test.
pub fn hearth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
}

/// A loopback port nothing listens on right now (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits up to 10 s until something listens on loopback `port`; fails the test naming `what`.
pub fn wait_listening(port: u16, what: &str) {
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A loopback address (`127.0.0.1:PORT`) with a port free right now.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Fails the test unless the command succeeded (its stderr and stdout in the message); returns
/// its stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must succeed and print JSON; returns the JSON.
pub fn json_of(cmd: &mut Command) -> serde_json::Value {
    serde_json::from_str(&ok(&cmd.output().unwrap())).unwrap()
}

/// Runs a command; returns (success, stdout, stderr).
pub fn run_out(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `sha256: ...` line of a command's output.
pub fn sha256_line(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("sha256: "))
        .unwrap_or_else(|| panic!("no digest in {text}"))
        .to_string()
}

/// Runs `cli()` every 100 ms until it succeeds with JSON that `accept` takes (up to 60 s, e.g.
/// while a daemon starts); returns that JSON.
pub fn json_when(
    cli: impl Fn() -> Output,
    accept: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = std::time::Instant::now();
    loop {
        let out = cli();
        if out.status.success() {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                if accept(&v) {
                    return v;
                }
            }
        }
        assert!(
            t0.elapsed().as_secs() < 60,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Runs `hearth ARGS --addr URL --data-dir DIR` (a client of a running daemon) and returns its
/// output.
pub fn client(args: &[&str], url: &str, dir: &std::path::Path) -> Output {
    hearth()
        .args(args)
        .args(["--addr", url, "--data-dir"])
        .arg(dir)
        .output()
        .unwrap()
}
