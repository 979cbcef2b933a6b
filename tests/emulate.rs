//! The device emulators (`hearth::emulate`, `hearth emulate`) over real loopback sockets, spoken
//! to with raw bytes and minimal clients written here (not the drivers): the CGMiner API framing
//! and quirks, AxeOS REST, and a Braiins OS+ gRPC smoke test.

mod common;

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hearth::clock::Clock;
use hearth::emulate::{self, EmulatorHandle, EmulatorKind, EmulatorOptions, Fault};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn start(kind: EmulatorKind, model: Option<&str>, speed: f64) -> EmulatorHandle {
    let opts = EmulatorOptions {
        model: model.map(str::to_string),
        ..EmulatorOptions::new(Clock::starting_at(0.0, 0, speed))
    };
    emulate::start(kind, loopback(), opts).await.unwrap()
}

/// Sends one request and reads until the device closes (at most `cap` bytes).
async fn exchange(addr: SocketAddr, request: &[u8], cap: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!("no reply within 10 s"),
        };
        if n == 0 || out.len() >= cap {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// The CGMiner reply text: one trailing NUL, removed.
fn unterminated(raw: &[u8]) -> String {
    assert_eq!(raw.last(), Some(&0), "reply must end with one NUL: {raw:?}");
    assert!(!raw[..raw.len() - 1].contains(&0), "only one NUL");
    String::from_utf8(raw[..raw.len() - 1].to_vec()).unwrap()
}

/// Parses a CGMiner JSON reply, tolerating the field quirks (`,}`, bare `inf`/`nan`).
fn lenient_json(text: &str) -> Value {
    let fixed = text
        .replace(",}", "}")
        .replace(":inf", ":null")
        .replace(":-inf", ":null")
        .replace(":nan", ":null");
    serde_json::from_str(&fixed).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn cg_json(addr: SocketAddr, command: &str, parameter: Option<&str>) -> (String, Value) {
    let mut req = serde_json::json!({ "command": command });
    if let Some(p) = parameter {
        req["parameter"] = Value::String(p.into());
    }
    let raw = exchange(addr, req.to_string().as_bytes(), 1 << 20).await;
    let text = unterminated(&raw);
    let v = lenient_json(&text);
    (text, v)
}

/// The bracket token `NAME[...]` of an `MM ID0` string, split on blanks.
fn token(mm: &str, name: &str) -> Vec<String> {
    let start = mm
        .find(&format!("{name}["))
        .unwrap_or_else(|| panic!("no {name} in {mm}"));
    let rest = &mm[start + name.len() + 1..];
    let end = rest.find(']').unwrap();
    rest[..end].split(' ').map(str::to_string).collect()
}

fn mm_id0(stats: &Value) -> String {
    stats["STATS"][0]["MM ID0"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn avalon_replies_end_with_one_nul_and_the_device_closes_in_both_request_forms() {
    let emu = start(EmulatorKind::Avalon, None, 1.0).await;
    let (_, v) = cg_json(emu.addr(), "version", None).await;
    assert_eq!(v["STATUS"][0]["STATUS"], "S");
    assert_eq!(v["STATUS"][0]["Msg"], "CGMiner versions");
    assert_eq!(v["VERSION"][0]["PROD"], "Avalon Nano3s");
    assert_eq!(v["VERSION"][0]["MODEL"], "Nano3s");
    assert_eq!(v["id"], 1);

    // The plain form gets cgminer's text form, also NUL-terminated.
    let raw = exchange(emu.addr(), b"version", 1 << 20).await;
    let text = unterminated(&raw);
    assert!(text.starts_with("STATUS=S,When="), "{text}");
    assert!(text.contains("|VERSION,CGMiner=4.11.1,"), "{text}");
    assert!(text.contains("PROD=Avalon Nano3s"), "{text}");
    assert!(text.ends_with('|'));
    let raw = exchange(emu.addr(), b"ascset|0,workmode,get", 1 << 20).await;
    let text = unterminated(&raw);
    assert!(text.contains("Msg=ASC 0 set info: workmode 2"), "{text}");

    // An unknown command is an error, without the description (as the firmware does).
    let (_, v) = cg_json(emu.addr(), "bogus", None).await;
    assert_eq!(v["STATUS"][0]["STATUS"], "E");
    assert_eq!(v["STATUS"][0]["Code"], 14);
    assert_eq!(v["STATUS"][0]["Msg"], "Invalid command");
    assert!(v["STATUS"][0].get("Description").is_none());
    // Not JSON at all.
    let raw = exchange(emu.addr(), b"{nope", 1 << 20).await;
    let v = lenient_json(&unterminated(&raw));
    assert_eq!(v["STATUS"][0]["Code"], 23);
    emu.shutdown().await;
}

#[tokio::test]
async fn an_emulator_stops_listening_on_shutdown_and_on_drop() {
    let emu = start(EmulatorKind::Avalon, None, 1.0).await;
    let addr = emu.addr();
    emu.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
    let emu = start(EmulatorKind::Axeos, None, 1.0).await;
    let addr = emu.addr();
    drop(emu);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening after drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn avalon_joins_commands_and_keeps_its_field_quirks() {
    let emu = start(EmulatorKind::Avalon, None, 1.0).await;
    let (text, v) = cg_json(emu.addr(), "summary+estats", None).await;
    assert!(text.contains("\"Work Utility\":inf"), "inf quirk: {text}");
    assert!(text.contains(",}"), "trailing-comma quirk: {text}");
    assert_eq!(v["summary"][0]["STATUS"][0]["STATUS"], "S");
    assert!(v["summary"][0]["SUMMARY"][0]["MHS 1m"].as_f64().unwrap() > 5.0e6);
    let mm = v["estats"][0]["STATS"][0]["MM ID0"].as_str().unwrap();
    assert_eq!(token(mm, "WORKMODE"), ["2"]);
    assert_eq!(token(mm, "ADJ"), ["1"]);
    // A non-joinable command in a join is denied, and the rest still answer.
    let (_, v) = cg_json(emu.addr(), "version+ascset", None).await;
    assert_eq!(v["version"][0]["STATUS"][0]["STATUS"], "S");
    assert_eq!(v["ascset"][0]["STATUS"][0]["Code"], 45);
    // An empty join leaves only the firmware's closing bytes (a reply seen in the field).
    let raw = exchange(emu.addr(), br#"{"command":"+"}"#, 1 << 20).await;
    assert_eq!(unterminated(&raw), ",\"id\":1}");

    let (text, stats) = cg_json(emu.addr(), "stats", None).await;
    assert!(text.contains("\"Pool Av\":nan"), "nan quirk: {text}");
    let ps = token(&mm_id0(&stats), "PS");
    assert_eq!(ps.len(), 7);
    let wall: f64 = ps[6].parse().unwrap();
    let snap = emu.snapshot();
    assert_eq!(wall, snap.wall_watts.round(), "PS[6] is the wall power");
    assert!((wall - 140.0).abs() < 1.0, "{wall}");
    let tmax: f64 = token(&mm_id0(&stats), "TMax")[0].parse().unwrap();
    assert!((tmax - snap.chip_celsius).abs() < 1.0);
    emu.shutdown().await;
}

#[tokio::test]
async fn avalon_refuses_a_mode_change_while_calibrating_then_accepts_it() {
    // 240 s of calibration at 80x: three real seconds, time enough for the refusal to arrive
    // on a loaded machine.
    let emu = start(EmulatorKind::Avalon, Some("nano3s"), 80.0).await;
    let (_, v) = cg_json(emu.addr(), "ascset", Some("0,workmode,set,0")).await;
    assert_eq!(v["STATUS"][0]["STATUS"], "S", "{v}");
    assert_eq!(v["STATUS"][0]["Msg"], "ASC 0 set OK");
    let (_, v) = cg_json(emu.addr(), "ascset", Some("0,workmode,set,1")).await;
    assert_eq!(v["STATUS"][0]["STATUS"], "E", "{v}");
    let msg = v["STATUS"][0]["Msg"].as_str().unwrap();
    assert!(msg.contains("is caling Don't permit switch mode"), "{msg}");
    assert!(emu.snapshot().calibrating);
    let (_, stats) = cg_json(emu.addr(), "estats", None).await;
    assert_eq!(token(&mm_id0(&stats), "ADJ"), ["0"]);
    assert_eq!(token(&mm_id0(&stats), "WORKMODE"), ["0"]);
    // Out of range is refused whatever the calibration.
    let (_, v) = cg_json(emu.addr(), "ascset", Some("0,workmode,set,3")).await;
    assert!(v["STATUS"][0]["Msg"]
        .as_str()
        .unwrap()
        .contains("not support set workmode max_mode[2]"));

    tokio::time::sleep(Duration::from_millis(3300)).await;
    let snap = emu.snapshot();
    assert!(!snap.calibrating);
    assert!(snap.wall_watts < 80.0, "low mode draws ~70 W: {snap:?}");
    let (_, v) = cg_json(emu.addr(), "ascset", Some("0,workmode,set,1")).await;
    assert_eq!(v["STATUS"][0]["STATUS"], "S", "{v}");
    assert_eq!(emu.snapshot().level, Some(1));
    assert_eq!(emu.snapshot().target_watts, 100.0);

    let cmds = emu.commands();
    let accepted: Vec<bool> = cmds.iter().map(|c| c.accepted).collect();
    assert_eq!(accepted, [true, false, false, true]);
    assert_eq!(cmds[0].command, "ascset|0,workmode,set,0");
    assert!(cmds.windows(2).all(|w| w[0].at_s <= w[1].at_s));
    assert!(cmds[3].at_s - cmds[0].at_s >= 240.0);
    emu.shutdown().await;
}

#[tokio::test]
async fn avalon_level_commands_follow_the_firmware_checks() {
    let emu = start(EmulatorKind::Avalon, None, 1.0).await;
    let msg = |v: &Value| v["STATUS"][0]["Msg"].as_str().unwrap().to_string();
    let (_, v) = cg_json(emu.addr(), "ascset", Some("0,worklevel,get")).await;
    assert_eq!(msg(&v), "ASC 0 set info: worklevel 0");
    let (_, v) = cg_json(emu.addr(), "ascset", Some("0,worklevel,set,1")).await;
    assert_eq!(msg(&v), "ASC 0 set failed: worklevel unknown argument");
    // work_mode_lvl takes modes below the highest index only, as the firmware checks it.
    let (_, v) = cg_json(emu.addr(), "ascset", Some("0,work_mode_lvl,set,2,0")).await;
    assert_eq!(
        msg(&v),
        "ASC 0 set failed: error:1 not support set workmode max_mode[2]"
    );
    let (_, v) = cg_json(emu.addr(), "ascset", Some("0,work_mode_lvl,set,1,0")).await;
    assert_eq!(msg(&v), "ASC 0 set OK");
    assert_eq!(emu.snapshot().level, Some(1));
    let (_, v) = cg_json(emu.addr(), "ascset", Some("0,workmode")).await;
    assert_eq!(msg(&v), "ASC 0 set failed: missing workmode setting");
    let (_, v) = cg_json(emu.addr(), "ascset", Some("1,workmode,set,0")).await;
    assert_eq!(msg(&v), "Invalid ASC id 1 - range is 0 - 0");
    let (_, v) = cg_json(emu.addr(), "ascset", Some("0,workmode,set,x")).await;
    assert_eq!(msg(&v), "ASC 0 set failed: error:2 parameter error");
    // Reads are not commands.
    let logged: Vec<String> = emu.commands().into_iter().map(|c| c.command).collect();
    assert_eq!(logged.len(), 6, "{logged:?}");
    assert!(logged.iter().all(|c| !c.ends_with(",get")));
    emu.shutdown().await;
}

#[tokio::test]
async fn avalon_soft_off_is_a_per_model_capability() {
    let nano = start(EmulatorKind::Avalon, Some("nano3s"), 1.0).await;
    let (_, v) = cg_json(nano.addr(), "ascset", Some("0,softoff,1")).await;
    assert_eq!(v["STATUS"][0]["STATUS"], "E");
    assert_eq!(
        v["STATUS"][0]["Msg"],
        "ASC 0 set failed: Unknown option: softoff"
    );
    nano.shutdown().await;

    let mini = start(EmulatorKind::Avalon, Some("mini3"), 100.0).await;
    let (_, v) = cg_json(mini.addr(), "version", None).await;
    assert_eq!(v["VERSION"][0]["PROD"], "Avalon Mini3");
    let (_, v) = cg_json(mini.addr(), "ascset", Some("0,softoff,1")).await;
    assert_eq!(v["STATUS"][0]["STATUS"], "S", "{v}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let snap = mini.snapshot();
    assert!(snap.paused);
    assert!(snap.wall_watts < 40.0, "{snap:?}");
    let (_, stats) = cg_json(mini.addr(), "estats", None).await;
    assert_eq!(token(&mm_id0(&stats), "SoftOFF"), ["1"]);
    mini.shutdown().await;
}

#[tokio::test]
async fn avalon_faults_truncate_garble_refuse_delay_and_flood() {
    let emu = start(EmulatorKind::Avalon, None, 1.0).await;
    let req = br#"{"command":"summary"}"#;

    emu.set_fault(Fault::Truncated);
    let text = unterminated(&exchange(emu.addr(), req, 1 << 20).await);
    assert!(text.ends_with(",\"id\":0"), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());

    emu.set_fault(Fault::Garbage);
    let raw = exchange(emu.addr(), req, 1 << 20).await;
    assert!(!raw.is_empty() && serde_json::from_slice::<Value>(&raw).is_err());

    emu.set_fault(Fault::Refuse);
    let raw = exchange(emu.addr(), req, 1 << 20).await;
    assert!(raw.is_empty());

    emu.set_fault(Fault::Oversized);
    let raw = exchange(emu.addr(), req, 1 << 20).await;
    assert!(raw.len() >= 1 << 20, "{}", raw.len());
    assert!(!raw.contains(&0), "no terminator");

    emu.set_fault(Fault::Slow(0.4));
    let t0 = Instant::now();
    let _ = unterminated(&exchange(emu.addr(), req, 1 << 20).await);
    assert!(t0.elapsed() >= Duration::from_millis(400));

    emu.set_fault(Fault::None);
    let (_, v) = cg_json(emu.addr(), "summary", None).await;
    assert_eq!(v["STATUS"][0]["STATUS"], "S");
    emu.shutdown().await;
}

#[tokio::test]
async fn avalon_over_temperature_stops_hashing_until_it_cools() {
    let emu = start(EmulatorKind::Avalon, None, 200.0).await;
    emu.set_overheat(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !emu.snapshot().overheated {
        assert!(
            Instant::now() < deadline,
            "never tripped: {:?}",
            emu.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, stats) = cg_json(emu.addr(), "estats", None).await;
    let mm = mm_id0(&stats);
    assert!(
        mm.contains("SYSTEMSTATU[Work: In Fault, Hash Board: 1]"),
        "{mm}"
    );
    assert_eq!(emu.snapshot().target_watts, 8.0);
    emu.set_overheat(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while emu.snapshot().overheated {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(emu.snapshot().target_watts, 140.0);
    emu.shutdown().await;
}

/// A minimal HTTP/1.1 exchange: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if !body.is_empty() {
        req.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    let raw = exchange(addr, &req, 1 << 20).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

async fn info(addr: SocketAddr) -> Value {
    let (status, body) = http(addr, "GET", "/api/system/info", b"").await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn axeos_serves_system_info() {
    let emu = start(EmulatorKind::Axeos, None, 1.0).await;
    let v = info(emu.addr()).await;
    for key in [
        "power",
        "voltage",
        "current",
        "temp",
        "vrTemp",
        "hashRate",
        "frequency",
        "coreVoltage",
        "coreVoltageActual",
        "sharesAccepted",
        "sharesRejected",
        "uptimeSeconds",
    ] {
        assert!(v[key].is_number(), "{key}: {v}");
    }
    assert_eq!(v["overheat_mode"], 0);
    assert_eq!(v["ASICModel"], "BM1370");
    assert_eq!(v["deviceModel"], "Gamma");
    assert_eq!(v["version"], "v2.14.0");
    assert_eq!(v["miningPaused"], false);
    assert!(v["hostname"].is_string() && v["boardVersion"].is_string());
    assert_eq!(v["frequency"], 525.0);
    assert_eq!(v["coreVoltage"], 1150);
    let power = v["power"].as_f64().unwrap();
    assert!((power - emu.snapshot().wall_watts).abs() < 0.1, "{power}");
    assert!((power - 17.0).abs() < 0.5, "{power}");
    assert!((v["hashRate"].as_f64().unwrap() - 1071.0).abs() < 1.0);
    let (status, _) = http(emu.addr(), "GET", "/api/nothing", b"").await;
    assert_eq!(status, 404);
    emu.shutdown().await;
}

#[tokio::test]
async fn axeos_patch_applies_settings_and_counts_flash_writes() {
    let emu = start(EmulatorKind::Axeos, Some("gamma"), 100.0).await;
    let (status, body) = http(
        emu.addr(),
        "PATCH",
        "/api/system",
        br#"{"frequency":400,"coreVoltage":1100}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert_eq!(emu.snapshot().flash_writes, 1);
    let v = info(emu.addr()).await;
    assert_eq!(v["frequency"], 400.0);
    assert_eq!(v["coreVoltage"], 1100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snap = emu.snapshot();
    assert!(
        snap.wall_watts < 14.0,
        "lower setting, lower power: {snap:?}"
    );

    for bad in [
        &b"not json"[..],
        br#"{"frequency":0}"#,
        br#"{"frequency":"400"}"#,
        br#"{"coreVoltage":70000}"#,
        br#"{"overheat_mode":1}"#,
    ] {
        let (status, _) = http(emu.addr(), "PATCH", "/api/system", bad).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(bad));
    }
    let huge = format!(r#"{{"hostname":"{}"}}"#, "x".repeat(20_000));
    let (status, _) = http(emu.addr(), "PATCH", "/api/system", huge.as_bytes()).await;
    assert_eq!(status, 500);
    assert_eq!(
        emu.snapshot().flash_writes,
        1,
        "refused PATCHes write nothing"
    );
    let cmds = emu.commands();
    assert_eq!(cmds.len(), 7);
    assert!(cmds[0].accepted && cmds[1..].iter().all(|c| !c.accepted));
    assert!(cmds[0].command.starts_with("PATCH /api/system {"));
    emu.shutdown().await;
}

#[tokio::test]
async fn axeos_pause_and_resume_exist_from_v2_14() {
    let emu = start(EmulatorKind::Axeos, None, 100.0).await;
    let (status, body) = http(emu.addr(), "POST", "/api/system/pause", b"").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["message"], "Mining paused");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = info(emu.addr()).await;
    assert_eq!(v["miningPaused"], true);
    assert!(v["power"].as_f64().unwrap() < 4.0, "{v}");
    assert!(v["hashRate"].as_f64().unwrap() < 50.0);
    let (status, _) = http(emu.addr(), "POST", "/api/system/resume", b"").await;
    assert_eq!(status, 200);
    assert!(!emu.snapshot().paused);
    assert_eq!(emu.snapshot().flash_writes, 0, "pause writes no flash");
    emu.shutdown().await;

    let old = emulate::start(
        EmulatorKind::Axeos,
        loopback(),
        EmulatorOptions {
            firmware: Some("v2.13.0".into()),
            ..EmulatorOptions::new(Clock::starting_at(0.0, 0, 1.0))
        },
    )
    .await
    .unwrap();
    let (status, _) = http(old.addr(), "POST", "/api/system/pause", b"").await;
    assert_eq!(status, 404);
    let v = info(old.addr()).await;
    assert!(v.get("miningPaused").is_none());
    old.shutdown().await;
}

#[tokio::test]
async fn axeos_overheat_mode_latches_safe_settings_until_cleared() {
    let emu = start(EmulatorKind::Axeos, None, 100.0).await;
    emu.set_overheat(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = info(emu.addr()).await;
        if v["overheat_mode"] == 1 {
            assert_eq!(v["frequency"], 50.0);
            assert_eq!(v["coreVoltage"], 1000);
            break;
        }
        assert!(Instant::now() < deadline, "never tripped: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    emu.set_overheat(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(info(emu.addr()).await["overheat_mode"], 1, "latched");
    let (status, _) = http(
        emu.addr(),
        "PATCH",
        "/api/system",
        br#"{"overheat_mode":0}"#,
    )
    .await;
    assert_eq!(status, 200);
    let v = info(emu.addr()).await;
    assert_eq!(v["overheat_mode"], 0);
    assert_eq!(v["frequency"], 50.0, "settings stay safe until changed");
    emu.shutdown().await;
}

#[tokio::test]
async fn axeos_http_status_faults_answer_every_request() {
    let emu = start(EmulatorKind::Axeos, None, 1.0).await;
    for code in [401u16, 500] {
        emu.set_fault(Fault::HttpStatus(code));
        let (status, _) = http(emu.addr(), "GET", "/api/system/info", b"").await;
        assert_eq!(status, code);
        let (status, _) = http(emu.addr(), "PATCH", "/api/system", br#"{"frequency":400}"#).await;
        assert_eq!(status, code);
    }
    emu.set_fault(Fault::None);
    assert_eq!(info(emu.addr()).await["frequency"], 525.0);
    emu.shutdown().await;
}

/// Reads one HTTP/1.1 response with a Content-Length from a kept-alive connection.
async fn read_response(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed mid-headers: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (status, body)
}

#[tokio::test]
async fn axeos_faults_reach_an_open_keep_alive_connection() {
    let emu = start(EmulatorKind::Axeos, None, 1.0).await;
    let mut s = TcpStream::connect(emu.addr()).await.unwrap();
    let get = format!(
        "GET /api/system/info HTTP/1.1\r\nHost: {}\r\n\r\n",
        emu.addr()
    );
    s.write_all(get.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    emu.set_fault(Fault::HttpStatus(500));
    s.write_all(get.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 500);
    emu.set_fault(Fault::Slow(0.3));
    let t0 = Instant::now();
    s.write_all(get.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    // A wire-level fault drops the open connection without an answer.
    emu.set_fault(Fault::Garbage);
    s.write_all(get.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    emu.shutdown().await;
}

#[tokio::test]
async fn axeos_wire_faults_cut_flood_and_refuse() {
    let emu = start(EmulatorKind::Axeos, None, 1.0).await;
    let get = format!(
        "GET /api/system/info HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        emu.addr()
    );
    emu.set_fault(Fault::Truncated);
    let raw = exchange(emu.addr(), get.as_bytes(), 1 << 20).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let declared: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(body.len() < declared, "{} of {declared}", body.len());
    assert!(serde_json::from_str::<Value>(body).is_err());

    emu.set_fault(Fault::Oversized);
    let raw = exchange(emu.addr(), get.as_bytes(), 1 << 20).await;
    assert!(raw.len() >= 1 << 20);

    emu.set_fault(Fault::Refuse);
    assert!(exchange(emu.addr(), get.as_bytes(), 1 << 20)
        .await
        .is_empty());
    emu.set_fault(Fault::None);
    assert_eq!(info(emu.addr()).await["overheat_mode"], 0);
    emu.shutdown().await;
}

mod braiins_client {
    use hearth::emulate::bos_proto::*;
    use tonic::codegen::http::uri::PathAndQuery;
    use tonic::transport::Channel;
    use tonic_prost::ProstCodec;

    pub async fn call<Req, Resp>(
        ch: &Channel,
        path: &'static str,
        msg: Req,
        token: Option<&str>,
    ) -> Result<tonic::Response<Resp>, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(ch.clone());
        grpc.ready().await.unwrap();
        let mut req = tonic::Request::new(msg);
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", t.parse().unwrap());
        }
        grpc.unary(
            req,
            PathAndQuery::from_static(path),
            ProstCodec::<Req, Resp>::default(),
        )
        .await
    }

    pub async fn login(ch: &Channel, user: &str, password: &str) -> Result<String, tonic::Status> {
        let r: tonic::Response<LoginResponse> = call(
            ch,
            "/braiins.bos.v1.AuthenticationService/Login",
            LoginRequest {
                username: user.into(),
                password: password.into(),
            },
            None,
        )
        .await?;
        Ok(r.metadata()
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string())
    }
}

#[tokio::test]
async fn braiins_needs_a_session_token_and_ramps_to_its_power_target() {
    use braiins_client::{call, login};
    use hearth::emulate::bos_proto::*;

    let emu = start(EmulatorKind::Braiins, None, 20.0).await;
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", emu.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let v: tonic::Response<ApiVersion> = call(
        &ch,
        "/braiins.bos.ApiVersionService/GetApiVersion",
        ApiVersionRequest::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(v.get_ref().major, 1);

    const STATS: &str = "/braiins.bos.v1.MinerService/GetMinerStats";
    let e = call::<_, GetMinerStatsResponse>(&ch, STATS, GetMinerStatsRequest::default(), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = login(&ch, "root", "wrong").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let token = login(&ch, "root", "").await.unwrap();
    let e = call::<_, GetMinerStatsResponse>(
        &ch,
        STATS,
        GetMinerStatsRequest::default(),
        Some(&format!("Bearer {token}")),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::Unauthenticated,
        "the raw token, no Bearer"
    );

    let s: tonic::Response<GetMinerStatsResponse> =
        call(&ch, STATS, GetMinerStatsRequest::default(), Some(&token))
            .await
            .unwrap();
    let watt = s
        .into_inner()
        .power_stats
        .unwrap()
        .approximated_consumption
        .unwrap()
        .watt;
    assert_eq!(watt, 3068);

    let c: tonic::Response<GetConstraintsResponse> = call(
        &ch,
        "/braiins.bos.v1.ConfigurationService/GetConstraints",
        GetConstraintsRequest::default(),
        Some(&token),
    )
    .await
    .unwrap();
    let pt = c
        .get_ref()
        .tuner_constraints
        .clone()
        .unwrap()
        .power_target
        .unwrap();
    assert_eq!((pt.min.unwrap().watt, pt.max.unwrap().watt), (1000, 3600));

    const SET: &str = "/braiins.bos.v1.PerformanceService/SetPowerTarget";
    let e = call::<_, SetPowerTargetResponse>(
        &ch,
        SET,
        SetPowerTargetRequest {
            save_action: SAVE_ACTION_SAVE_AND_APPLY,
            power_target: Some(Power { watt: 5000 }),
        },
        Some(&token),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let _: tonic::Response<SetPowerTargetResponse> = call(
        &ch,
        SET,
        SetPowerTargetRequest {
            save_action: SAVE_ACTION_SAVE_AND_APPLY,
            power_target: Some(Power { watt: 2068 }),
        },
        Some(&token),
    )
    .await
    .unwrap();
    let t: tonic::Response<GetTunerStateResponse> = call(
        &ch,
        "/braiins.bos.v1.PerformanceService/GetTunerState",
        GetTunerStateRequest::default(),
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!(t.get_ref().overall_tuner_state, TUNER_STATE_TUNING);
    // 1000 W at 20 W/s: 50 s of device time, 2.5 s real at 20x.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let snap = emu.snapshot();
    assert!((snap.wall_watts - 2068.0).abs() < 1.0, "{snap:?}");
    assert!(!snap.calibrating);
    let cmds = emu.commands();
    assert_eq!(cmds.len(), 2);
    assert!(!cmds[0].accepted && cmds[1].accepted);

    // Faults reach the open channel: an error status, a dropped call, then health again.
    emu.set_fault(Fault::HttpStatus(500));
    let e =
        call::<_, GetMinerStatsResponse>(&ch, STATS, GetMinerStatsRequest::default(), Some(&token))
            .await
            .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal);
    emu.set_fault(Fault::Garbage);
    assert!(call::<_, GetMinerStatsResponse>(
        &ch,
        STATS,
        GetMinerStatsRequest::default(),
        Some(&token)
    )
    .await
    .is_err());
    emu.set_fault(Fault::None);
    let s: tonic::Response<GetMinerStatsResponse> =
        call(&ch, STATS, GetMinerStatsRequest::default(), Some(&token))
            .await
            .unwrap();
    assert!(s.get_ref().power_stats.is_some());
    emu.shutdown().await;
}

#[test]
fn cli_emulator_prints_its_address_and_answers() {
    let mut child = common::bin::hearth()
        .args(["emulate", "avalon", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: SocketAddr = first
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("{first}"))
        .parse()
        .unwrap();
    assert!(first.contains("(avalon: Avalon Nano3s"), "{first}");
    assert!(addr.ip().is_loopback());
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(br#"{"command":"version"}"#).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let v = lenient_json(&unterminated(&raw));
    assert_eq!(v["VERSION"][0]["PROD"], "Avalon Nano3s");
    child.kill().unwrap();
    child.wait().unwrap();
}
