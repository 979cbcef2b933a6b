//! Each device driver against its emulator, over real loopback sockets: identify, read
//! telemetry, change the setting, rate limits and the dead-man, faults and quirks. The drivers
//! (`hearth::devices`) and the emulators (`hearth::emulate`) share no parsing code.

mod common;

use std::sync::Arc;
use std::time::Duration;

use hearth::clock::Clock;
use hearth::devices::config::{DeviceConfig, DeviceKind};
use hearth::devices::{self, DeviceContext};
use hearth::emulate::{self, EmulatorHandle, EmulatorKind, EmulatorOptions, Fault};
use hearth::mining::fleet::device::{
    DeviceCommand, DeviceState, DeviceStatus, MinerDevice, Setting,
};
use hearth::thermal::safety::ChipTemperatures;
use tokio::sync::watch;

/// Schedule seconds per real second in these tests: an Avalon's calibration and rate limit of
/// minutes pass in seconds.
const SPEED: f64 = 100.0;

fn clock() -> Clock {
    Clock::starting_at(12.0 * 3600.0, 0, SPEED)
}

async fn emulator(
    kind: EmulatorKind,
    clock: &Clock,
    tweak: impl FnOnce(&mut EmulatorOptions),
) -> EmulatorHandle {
    let mut o = EmulatorOptions::new(clock.clone());
    tweak(&mut o);
    emulate::start(kind, "127.0.0.1:0".parse().unwrap(), o)
        .await
        .unwrap()
}

struct Driven {
    device: Arc<dyn MinerDevice>,
    chips: ChipTemperatures,
    clock: Clock,
    _stop: watch::Sender<bool>,
}

fn drive(
    kind: DeviceKind,
    e: &EmulatorHandle,
    clock: &Clock,
    tweak: impl FnOnce(&mut DeviceConfig),
) -> Driven {
    let mut cfg = DeviceConfig::new(kind, Some(&e.addr().to_string()));
    cfg.poll_seconds = Some(5.0);
    cfg.timeout_seconds = Some(2.0);
    tweak(&mut cfg);
    let (stop, shutdown) = watch::channel(false);
    let chips = ChipTemperatures::default();
    let ctx = DeviceContext {
        clock: clock.clone(),
        chips: chips.clone(),
        shutdown,
    };
    let device = devices::start_device(&cfg, ctx).unwrap();
    Driven {
        device,
        chips,
        clock: clock.clone(),
        _stop: stop,
    }
}

impl Driven {
    /// Waits up to 20 real seconds for the driver's status to satisfy `f`.
    async fn wait(&self, what: &str, f: impl Fn(&DeviceStatus) -> bool) -> DeviceStatus {
        for _ in 0..2000 {
            let s = self.device.status();
            if f(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.device.status());
    }

    /// Commands `setting` for an hour of schedule time.
    fn command(&self, setting: Setting) {
        self.device.command(DeviceCommand {
            setting,
            valid_until_s: self.clock.now_s() + 3600.0,
        });
    }
}

/// Waits up to 20 real seconds for the emulator to satisfy `f`.
async fn wait_emu(e: &EmulatorHandle, what: &str, f: impl Fn(&emulate::EmulatorState) -> bool) {
    for _ in 0..2000 {
        if f(&e.snapshot()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}: {:?}", e.snapshot());
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avalon_is_identified_read_and_steered_through_its_modes() {
    let clock = clock();
    let e = emulator(EmulatorKind::Avalon, &clock, |_| {}).await;
    let d = drive(DeviceKind::Avalon, &e, &clock, |c| {
        c.min_command_interval_seconds = Some(300.0)
    });
    let s = d.wait("identified", |s| s.state == DeviceState::Ok).await;
    assert!(s.model.to_lowercase().contains("nano"), "{s:?}");
    let profile = d.device.profile().unwrap();
    assert_eq!(
        profile.stopped_watts, None,
        "the Nano 3S firmware has no soft-off"
    );
    // The power it reports is the emulator's wall power (PS[6] on the Nano 3S).
    let w = s.watts.unwrap();
    assert!(
        close(w, e.snapshot().wall_watts, 0.1),
        "{w} vs {:?}",
        e.snapshot()
    );
    assert!(
        !d.chips.snapshot().is_empty(),
        "its chip temperature feeds the trip"
    );

    // High: the emulator switches mode and calibrates; the driver sees it settle at high power.
    d.command(Setting::Level(2));
    wait_emu(&e, "mode 2", |s| s.level == Some(2)).await;
    let s = d
        .wait("high and settled", |s| {
            s.setting == Some(Setting::Level(2)) && s.state == DeviceState::Ok
        })
        .await;
    assert!(
        s.watts.unwrap() > 0.8 * profile.watts_of(Setting::Level(2)),
        "{s:?}"
    );

    // Medium, asked at once: the rate limit holds it back until 300 s after the last change.
    let first = e.commands().iter().rfind(|c| c.accepted).unwrap().at_s;
    d.command(Setting::Level(1));
    wait_emu(&e, "mode 1", |s| s.level == Some(1)).await;
    let accepted: Vec<f64> = e
        .commands()
        .iter()
        .filter(|c| c.accepted)
        .map(|c| c.at_s)
        .collect();
    assert!(
        accepted.last().unwrap() - first >= 300.0 - 1e-6,
        "{:?}",
        e.commands()
    );
    // Going cold (the command's deadline passes) is never held back: mode 0.
    d.device.command(DeviceCommand {
        setting: Setting::Level(2),
        valid_until_s: d.clock.now_s(),
    });
    wait_emu(&e, "cold: mode 0", |s| s.level == Some(0)).await;
    e.shutdown().await;
}

/// Sends one raw CGMiner API request, as the owner's own app would, and returns the reply.
async fn cgminer(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avalon_refusing_a_switch_while_calibrating_is_reported_and_retried() {
    let clock = clock();
    let e = emulator(EmulatorKind::Avalon, &clock, |_| {}).await;
    // Polls every 120 s: the owner's app can switch the mode between two polls.
    let d = drive(DeviceKind::Avalon, &e, &clock, |c| {
        c.min_command_interval_seconds = Some(0.0);
        c.poll_seconds = Some(120.0);
    });
    d.wait("identified", |s| s.state == DeviceState::Ok).await;
    wait_emu(&e, "cold at start: mode 0", |s| {
        s.level == Some(0) && !s.calibrating
    })
    .await;
    d.wait("settled at mode 0", |s| {
        s.state == DeviceState::Ok && s.setting == Some(Setting::Level(0))
    })
    .await;
    // The owner switches it to high by hand; it calibrates.
    let reply = cgminer(e.addr(), "ascset|0,workmode,set,2").await;
    assert!(
        reply.contains("STATUS=S") || reply.contains("\"STATUS\":\"S\""),
        "{reply}"
    );
    assert!(e.snapshot().calibrating);
    // hearth asks for medium before its next poll: refused, reported as calibrating.
    d.command(Setting::Level(1));
    let s = d
        .wait("calibrating", |s| s.state == DeviceState::Calibrating)
        .await;
    assert!(s.reason.is_some(), "{s:?}");
    assert!(
        e.commands()
            .iter()
            .any(|c| !c.accepted && c.command.ends_with(",1")),
        "the emulator refused the switch: {:?}",
        e.commands()
    );
    // Once calibrated, the switch goes through.
    wait_emu(&e, "mode 1 after calibration", |s| s.level == Some(1)).await;
    let refused = e.commands().iter().filter(|c| !c.accepted).count();
    assert_eq!(
        refused,
        1,
        "no hammering while it calibrates: {:?}",
        e.commands()
    );
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avalon_garbage_truncated_oversized_refused_and_slow_replies_give_clear_states() {
    let clock = clock();
    let e = emulator(EmulatorKind::Avalon, &clock, |_| {}).await;
    let d = drive(DeviceKind::Avalon, &e, &clock, |_| {});
    d.wait("identified", |s| s.state == DeviceState::Ok).await;
    for (fault, words) in [
        (Fault::Garbage, "bad reply"),
        (Fault::Truncated, "bad reply"),
        (Fault::Oversized, "bad reply"),
        (Fault::Refuse, ""),
        // Slower than the driver's 2 s timeout.
        (Fault::Slow(3.0), "no answer within"),
    ] {
        e.set_fault(fault);
        let s = d
            .wait(&format!("{fault:?} reported"), |s| {
                s.state == DeviceState::Unreachable
                    && s.reason.as_deref().is_some_and(|r| r.contains(words))
            })
            .await;
        assert!(
            s.reason.as_deref().unwrap().contains("cannot stop it"),
            "{s:?}"
        );
        assert!(s.watts.is_some(), "counted at its last known power: {s:?}");
        e.set_fault(Fault::None);
        d.wait("answering again", |s| s.state == DeviceState::Ok)
            .await;
    }
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axeos_levels_pause_overheat_and_http_errors() {
    let clock = clock();
    let e = emulator(EmulatorKind::Axeos, &clock, |_| {}).await;
    let d = drive(DeviceKind::Axeos, &e, &clock, |c| {
        c.min_command_interval_seconds = Some(0.0)
    });
    let s = d.wait("identified", |s| s.state == DeviceState::Ok).await;
    assert!(!s.model.is_empty());
    let profile = d.device.profile().unwrap();
    assert!(profile.stopped_watts.is_some(), "AxeOS 2.14 pauses");
    // It starts cold (paused) until told otherwise; its reported power is the board's.
    wait_emu(&e, "paused at start", |s| s.paused).await;
    d.wait("the board's power", |s| {
        s.watts
            .is_some_and(|w| close(w, e.snapshot().wall_watts, 0.1))
    })
    .await;

    // The lowest level: one PATCH (one flash write), then nothing more while it holds.
    d.command(Setting::Level(0));
    d.wait("level 0", |s| s.setting == Some(Setting::Level(0)))
        .await;
    let writes = e.snapshot().flash_writes;
    assert!(writes >= 1, "{:?}", e.snapshot());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        e.snapshot().flash_writes,
        writes,
        "no PATCH while the level holds"
    );

    // Stop pauses it, without writing flash.
    d.command(Setting::Stop);
    wait_emu(&e, "paused", |s| s.paused).await;
    d.wait("stopped", |s| s.setting == Some(Setting::Stop))
        .await;
    assert_eq!(e.snapshot().flash_writes, writes);

    // Its own overheat protection: reported, and hearth sends it nothing warm.
    d.command(Setting::Level(2));
    d.wait("running", |s| s.setting == Some(Setting::Level(2)))
        .await;
    e.set_overheat(true);
    let s = d
        .wait("overheated", |s| s.state == DeviceState::Overheated)
        .await;
    assert!(s.reason.is_some(), "{s:?}");
    let sent = e.commands().len();
    d.command(Setting::Level(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        e.commands().len(),
        sent,
        "hearth does not fight the firmware's protection: {:?}",
        e.commands()
    );
    assert!(e.snapshot().overheated, "hearth never clears overheat_mode");

    // HTTP 500 and 401: a clear reason, then unreachable once telemetry is stale.
    for code in [500u16, 401] {
        e.set_fault(Fault::HttpStatus(code));
        d.wait(&format!("HTTP {code}"), |s| {
            s.state == DeviceState::Unreachable
                && s.reason
                    .as_deref()
                    .is_some_and(|r| r.contains(&code.to_string()))
        })
        .await;
    }
    e.set_fault(Fault::None);
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braiins_logs_in_sets_power_targets_and_pauses() {
    let clock = clock();
    let e = emulator(EmulatorKind::Braiins, &clock, |o| {
        o.password = "secret".into()
    })
    .await;
    // A wrong password: a clear authentication error, never a state that looks healthy.
    let bad = drive(DeviceKind::Braiins, &e, &clock, |c| {
        c.username = Some("root".into());
        c.password = Some("wrong".into());
    });
    bad.wait("refused login", |s| {
        s.reason
            .as_deref()
            .is_some_and(|r| r.contains("authentication"))
    })
    .await;
    assert_ne!(bad.device.status().state, DeviceState::Ok);

    let d = drive(DeviceKind::Braiins, &e, &clock, |c| {
        c.username = Some("root".into());
        c.password = Some("secret".into());
        c.min_command_interval_seconds = Some(0.0);
    });
    let s = d.wait("identified", |s| s.state == DeviceState::Ok).await;
    assert!(!s.model.is_empty());
    let p = d.device.profile().unwrap();
    let (min, max) = match p.steps {
        hearth::mining::fleet::device::PowerSteps::Range {
            min_watts,
            max_watts,
        } => (min_watts, max_watts),
        other => panic!("a power-target range, not {other:?}"),
    };
    assert!(min > 0.0 && max > min);
    let want = (min + max) / 2.0;
    d.command(Setting::Watts(want));
    wait_emu(&e, "the new power target", |s| {
        close(s.target_watts, want, 0.02)
    })
    .await;
    d.wait("ramped to the target", |s| {
        s.watts.is_some_and(|w| close(w, want, 0.05))
    })
    .await;
    d.command(Setting::Stop);
    wait_emu(&e, "paused", |s| s.paused).await;
    d.wait("stopped", |s| s.setting == Some(Setting::Stop))
        .await;
    e.shutdown().await;
}

/// `hearth emulate KIND` as a child; returns it (killed on drop) and its address.
fn emulate_child(kind: &str) -> (common::serve::Daemon, String) {
    use std::io::BufRead;
    let mut child = common::bin::hearth()
        .args(["emulate", kind, "--listen", "127.0.0.1:0", "--speed", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let first = std::io::BufReader::new(out)
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    (common::serve::Daemon(child), addr)
}

/// The CLI end to end: `devices probe` names each emulated device, and a `hearth serve` driving an
/// emulated Avalon lists it in `devices` and `status`, measured.
#[test]
fn cli_probes_devices_and_lists_the_fleet() {
    use common::bin::{free_addr, hearth, json_of, ok};
    let mut emulators = Vec::new();
    for (kind, model) in [("avalon", "Nano"), ("axeos", "BM1370"), ("braiins", "")] {
        let (child, addr) = emulate_child(kind);
        let v = json_of(hearth().args(["devices", "probe", &addr, "--json"]));
        assert_eq!(v["kind"], kind, "{v}");
        assert!(v["model"].as_str().unwrap().contains(model), "{v}");
        assert!(!v["summary"].as_str().unwrap().is_empty(), "{v}");
        emulators.push((child, addr));
    }
    // Nothing listening: a one-line error naming each API tried.
    let nobody = free_addr();
    let out = hearth()
        .args(["devices", "probe", &nobody, "--timeout", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("avalon") && err.contains("axeos") && err.contains("braiins"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hearth.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gpu]\nenabled = false\n[[mining.devices]]\nkind = \"avalon\"\naddress = \"{}\"\nname = \"den\"\npoll_seconds = 5\n",
            emulators[0].1
        ),
    )
    .unwrap();
    let addr = free_addr();
    let url = format!("http://{addr}");
    let _daemon = common::serve::Daemon(
        common::serve::serve("30", &addr, dir.path(), &free_addr())
            .arg("--config")
            .arg(&cfg)
            .spawn()
            .unwrap(),
    );
    let cli = |args: &[&str]| common::bin::client(args, &url, dir.path());
    let devices = common::bin::json_when(
        || cli(&["devices", "--json"]),
        |v| v[0]["watts"].is_number(),
    );
    let d = &devices[0];
    assert_eq!(d["name"], "den");
    assert_eq!(d["kind"], "avalon");
    assert_eq!(d["power_source"], "measured");
    assert!(d["model"].as_str().unwrap().contains("Nano"), "{d}");
    assert!(
        d["temperatures"].as_array().is_some_and(|t| !t.is_empty()),
        "{d}"
    );
    let table = ok(&cli(&["devices"]));
    assert!(
        table.contains("den") && table.contains("avalon") && table.contains("meas"),
        "{table}"
    );
    let status = ok(&cli(&["status"]));
    assert!(status.contains("device den"), "{status}");
    assert!(
        status.contains("asic") && status.contains("(measured)"),
        "{status}"
    );
}
