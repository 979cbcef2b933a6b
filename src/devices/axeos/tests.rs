//! AxeOS driver tests on bodies written from the public API, and a loopback HTTP listener for
//! the connection handling.
//!
//! Sample shapes: `/api/system/info` fields and types follow ESP-Miner
//! `main/http_server/system_api_json.c` (floats for `power`, `temp`, `vrTemp`, `hashRate`,
//! `frequency`; numbers for `coreVoltage`, `overheat_mode`, shares; a bool `miningPaused`; `temp`
//! is -1 while the ASIC is powered down); older firmware (before v2.14) lacks `miningPaused` and
//! reported `deviceModel`. Status codes and bodies follow `http_server.c`: PATCH answers 200 with
//! an empty chunked body or 400 `Wrong API input`, pause/resume 200 `{"message":..}`, 401
//! `Unauthorized`; ESP-IDF's server sends chunked bodies and keeps the connection open.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::http::{self, MAX_BODY_BYTES};
use super::info;
use super::*;
use crate::devices::avalon::tests::{refused_address, silent_peer};
use crate::devices::config::LevelConfig;

const GAMMA_INFO: &str = r#"{"power":17.43,"voltage":5102.5,"current":3416.2,"temp":58.6,"temp2":-1,"vrTemp":49,
"coreVoltageActual":1148,"actualFrequency":525,"expectedHashrate":1228.8,"fanspeed":42,"fanrpm":3980,
"hashRate":1201.55,"hashRate_1m":1190.1,"errorPercentage":0.21,"sharesAccepted":4210,"sharesRejected":7,
"bestDiff":123456789,"uptimeSeconds":86400,"miningPaused":false,"overheat_mode":0,"version":"v2.14.0",
"axeOSVersion":"v2.14.0","boardVersion":"601","maxPower":40,"ASICModel":"BM1370","coreVoltage":1150,
"frequency":525,"hostname":"bitaxe","pools":[]}"#;

/// Firmware before pause/resume: no `miningPaused`, `deviceModel` present, some nulls.
const OLD_ULTRA_INFO: &str = r#"{"power":11.2,"temp":null,"vrTemp":null,"hashRate":480.2,"frequency":485,
"coreVoltage":1200,"sharesAccepted":10,"ASICModel":"BM1366","deviceModel":"Ultra","boardVersion":"204",
"version":"v2.1.8"}"#;

fn axeos() -> Axeos {
    Axeos::new(&DeviceConfig::new(DeviceKind::Axeos, Some("127.0.0.1:1")))
}

#[test]
fn info_gives_the_gamma_telemetry() {
    let mut a = axeos();
    let tel = a.telemetry(&info::parse(GAMMA_INFO).unwrap());
    assert_eq!(tel.model, "Bitaxe Gamma 601 (BM1370)");
    assert_eq!(tel.watts, Some(17.43));
    assert_eq!(tel.setting, Some(Setting::Level(1)));
    assert_eq!(tel.setting_name.as_deref(), Some("525 MHz"));
    assert_eq!(tel.chip_celsius, Some(58.6), "temp2 = -1 is no reading");
    assert_eq!(tel.chip_limit_celsius, 70.0);
    assert!((tel.hashes_per_second - 1201.55e9).abs() < 1.0);
    assert_eq!((tel.shares_accepted, tel.shares_rejected), (4210, 7));
    assert_eq!(tel.state, DeviceState::Ok);
    let sensors: Vec<_> = tel.temperatures.iter().map(|t| t.sensor.as_str()).collect();
    assert_eq!(sensors, ["chip", "vr"]);
    assert_eq!(
        tel.profile.stopped_watts,
        Some(3.5),
        "pause exists: the typical paused draw"
    );
    assert_eq!(tel.profile.coldest(), Setting::Stop);
    assert_eq!(a.firmware, "v2.14.0");
}

#[test]
fn old_firmware_with_missing_and_null_fields() {
    let info = info::parse(OLD_ULTRA_INFO).unwrap();
    assert_eq!(info.temp, None);
    assert_eq!(info.mining_paused, None);
    assert_eq!(info.overheat, None);
    let mut a = axeos();
    let tel = a.telemetry(&info);
    assert_eq!(tel.model, "Bitaxe Ultra 204 (BM1366)");
    assert_eq!(tel.chip_celsius, None);
    assert_eq!(tel.setting, Some(Setting::Level(1)));
    assert_eq!(tel.profile.stopped_watts, None, "no pause on this firmware");
    assert_eq!(tel.profile.coldest(), Setting::Level(0));
    // Empty, wrong-typed and all-null bodies are telemetry without those fields, not panics.
    let bare = info::parse(r#"{"power":"12","temp":"hot","frequency":null}"#).unwrap();
    assert_eq!(bare, info::Info::default());
    let tel = axeos().telemetry(&bare);
    assert_eq!(tel.state, DeviceState::Fault, "no ASIC known: no levels");
    assert!(tel.reason.unwrap().contains("unknown ASIC"));
    assert!(matches!(
        info::parse("<html>"),
        Err(DeviceError::BadReply(_))
    ));
    assert!(matches!(info::parse("[1]"), Err(DeviceError::BadReply(_))));
}

#[test]
fn overheat_mode_is_reported_not_fought() {
    let hot = GAMMA_INFO.replace("\"overheat_mode\":0", "\"overheat_mode\":1");
    let mut a = axeos();
    let tel = a.telemetry(&info::parse(&hot).unwrap());
    assert_eq!(tel.state, DeviceState::Overheated);
    assert!(tel.reason.unwrap().contains("never clears"));
    // No request hearth can make touches overheat_mode.
    for setting in [Setting::Stop, Setting::Level(0), Setting::Level(2)] {
        for call in a.calls(setting, &tel.profile).unwrap() {
            assert!(!call.body.unwrap_or_default().contains("overheat"));
        }
    }
    let fault = GAMMA_INFO.replace("\"pools\":[]", "\"power_fault\":\"VIN undervoltage\"");
    let tel = axeos().telemetry(&info::parse(&fault).unwrap());
    assert_eq!(tel.state, DeviceState::Fault);
}

#[test]
fn settings_map_to_patch_pause_and_resume() {
    let mut a = axeos();
    let tel = a.telemetry(&info::parse(GAMMA_INFO).unwrap());
    let p = &tel.profile;
    let patch = |body: &str| Call {
        method: "PATCH",
        path: "/api/system",
        body: Some(body.into()),
    };
    let post = |path: &'static str| Call {
        method: "POST",
        path,
        body: None,
    };
    assert_eq!(
        a.calls(Setting::Level(0), p).unwrap(),
        [patch(r#"{"frequency":400,"coreVoltage":1000}"#)]
    );
    assert_eq!(
        a.calls(Setting::Level(1), p).unwrap(),
        [],
        "already there: no flash write"
    );
    assert_eq!(
        a.calls(Setting::Watts(21.0), p).unwrap(),
        [],
        "21 W is level 1, which it runs"
    );
    assert_eq!(
        a.calls(Setting::Watts(25.0), p).unwrap(),
        [patch(r#"{"frequency":600,"coreVoltage":1200}"#)]
    );
    assert_eq!(
        a.calls(Setting::Stop, p).unwrap(),
        [post("/api/system/pause")]
    );

    let paused = GAMMA_INFO.replace("\"miningPaused\":false", "\"miningPaused\":true");
    let paused = paused.replace("\"power\":17.43", "\"power\":2.9");
    let tel = a.telemetry(&info::parse(&paused).unwrap());
    assert_eq!(tel.setting, Some(Setting::Stop));
    assert_eq!(
        tel.profile.stopped_watts,
        Some(2.9),
        "its own paused reading wins"
    );
    assert_eq!(
        a.calls(Setting::Level(1), &tel.profile).unwrap(),
        [post("/api/system/resume")]
    );
    assert_eq!(
        a.calls(Setting::Level(2), &tel.profile).unwrap(),
        [
            post("/api/system/resume"),
            patch(r#"{"frequency":600,"coreVoltage":1200}"#)
        ]
    );

    // Configured levels set the frequency only.
    let mut cfg = DeviceConfig::new(DeviceKind::Axeos, Some("127.0.0.1:1"));
    cfg.levels = Some(vec![
        LevelConfig {
            value: 450,
            watts: 13.0,
        },
        LevelConfig {
            value: 550,
            watts: 19.0,
        },
    ]);
    let mut a = Axeos::new(&cfg);
    let tel = a.telemetry(&info::parse(OLD_ULTRA_INFO).unwrap());
    assert_eq!(
        tel.setting, None,
        "485 MHz is none of the configured levels"
    );
    assert_eq!(
        a.calls(Setting::Level(1), &tel.profile).unwrap(),
        [patch(r#"{"frequency":550}"#)]
    );
    assert!(matches!(
        a.calls(Setting::Stop, &tel.profile),
        Err(DeviceError::Unsupported(_))
    ));
}

#[test]
fn request_text_is_plain_http11() {
    assert_eq!(
        http::request_text("GET", "/api/system/info", "127.0.0.1:80", None),
        "GET /api/system/info HTTP/1.1\r\nHost: 127.0.0.1:80\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    );
    assert_eq!(
        http::request_text("PATCH", "/api/system", "h", Some(r#"{"frequency":400}"#)),
        "PATCH /api/system HTTP/1.1\r\nHost: h\r\nConnection: close\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"frequency\":400}"
    );
    assert!(http::request_text("POST", "/api/system/pause", "h", None)
        .ends_with("Content-Length: 0\r\n\r\n"));
}

async fn parse_response(bytes: &[u8]) -> Result<http::Response, DeviceError> {
    http::read_response(BufReader::new(bytes)).await
}

#[tokio::test]
async fn response_framing_and_caps() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n";
    let r = parse_response(chunked).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "hello world"));
    let sized = b"HTTP/1.0 400 Bad Request\r\ncontent-length: 15\r\n\r\nWrong API inputEXTRA";
    let r = parse_response(sized).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (400, "Wrong API input"));
    let to_eof = b"HTTP/1.1 200 OK\n\n{}";
    assert_eq!(parse_response(to_eof).await.unwrap().body, "{}");

    let huge = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    assert!(matches!(
        parse_response(huge.as_bytes()).await,
        Err(DeviceError::BadReply(_))
    ));
    let huge_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffff\r\n";
    assert!(matches!(
        parse_response(huge_chunk).await,
        Err(DeviceError::BadReply(_))
    ));
    let long_line = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert!(
        matches!(parse_response(long_line.as_bytes()).await, Err(DeviceError::BadReply(m)) if m.contains("line"))
    );
    let endless = format!("HTTP/1.1 200 OK\r\n{}", "X: y\r\n".repeat(100));
    assert!(matches!(
        parse_response(endless.as_bytes()).await,
        Err(DeviceError::BadReply(_))
    ));
    let mut big_eof = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    big_eof.resize(big_eof.len() + MAX_BODY_BYTES + 1, b'x');
    assert!(matches!(
        parse_response(&big_eof).await,
        Err(DeviceError::BadReply(_))
    ));
    for garbage in [
        &b"SSH-2.0-OpenSSH\r\n"[..],
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
        b"HTTP/1.1 abc\r\n\r\n",
    ] {
        assert!(matches!(
            parse_response(garbage).await,
            Err(DeviceError::BadReply(_))
        ));
    }
}

/// A loopback AxeOS stand-in: for each connection, reads one request (headers and
/// `Content-Length` body), answers the next canned response and keeps the connection open, as
/// ESP-IDF's server may; returns the requests it saw (request line and body).
async fn serve(responses: Vec<String>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut open = Vec::new();
        for response in responses {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = BufReader::new(s);
            let mut first = String::new();
            s.read_line(&mut first).await.unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                s.read_line(&mut line).await.unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; length];
            s.read_exact(&mut body).await.unwrap();
            seen.push(format!(
                "{}{}",
                first.trim_end(),
                String::from_utf8(body).unwrap()
            ));
            s.get_mut().write_all(response.as_bytes()).await.unwrap();
            open.push(s);
        }
        seen
    });
    (addr, task)
}

fn chunked(status: &str, body: &str) -> String {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    if !body.is_empty() {
        r.push_str(&format!("{:x}\r\n{body}\r\n", body.len()));
    }
    r.push_str("0\r\n\r\n");
    r
}

#[tokio::test]
async fn polls_and_settings_over_a_kept_open_connection() {
    let (addr, server) = serve(vec![
        chunked("200 OK", GAMMA_INFO),
        chunked("200 OK", ""),
        chunked("400 Bad Request", "Wrong API input"),
        chunked("200 OK", r#"{"message":"Mining paused"}"#),
    ])
    .await;
    let mut cfg = DeviceConfig::new(DeviceKind::Axeos, Some(&addr));
    cfg.timeout_seconds = Some(5.0);
    let mut a = Axeos::new(&cfg);
    let started = std::time::Instant::now();
    let tel = a.poll().await.unwrap();
    assert_eq!(tel.watts, Some(17.43));
    assert_eq!(a.apply(Setting::Level(0), &tel.profile).await, Ok(()));
    let refused = a.apply(Setting::Level(2), &tel.profile).await;
    assert!(
        matches!(&refused, Err(DeviceError::Refused(m)) if m.contains("Wrong API input")),
        "{refused:?}"
    );
    assert_eq!(a.apply(Setting::Stop, &tel.profile).await, Ok(()));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "framing, not EOF, ends each response"
    );
    assert_eq!(
        server.await.unwrap(),
        [
            "GET /api/system/info HTTP/1.1",
            r#"PATCH /api/system HTTP/1.1{"frequency":400,"coreVoltage":1000}"#,
            r#"PATCH /api/system HTTP/1.1{"frequency":600,"coreVoltage":1200}"#,
            "POST /api/system/pause HTTP/1.1",
        ]
    );
}

#[tokio::test]
async fn http_errors_garbage_refusal_and_silence_are_clear() {
    let (addr, _server) = serve(vec![
        chunked("401 Unauthorized", "Unauthorized"),
        chunked("500 Internal Server Error", "Internal error"),
        chunked("200 OK", "<html>not json</html>"),
        chunked("200 OK", GAMMA_INFO),
        chunked("404 Not Found", "Nothing matches the given URI"),
    ])
    .await;
    let mut cfg = DeviceConfig::new(DeviceKind::Axeos, Some(&addr));
    cfg.timeout_seconds = Some(5.0);
    let mut a = Axeos::new(&cfg);
    assert!(matches!(a.poll().await, Err(DeviceError::Status(m)) if m.contains("401")));
    assert!(matches!(a.poll().await, Err(DeviceError::Status(m)) if m.contains("500")));
    assert!(matches!(a.poll().await, Err(DeviceError::BadReply(_))));
    let tel = a.poll().await.unwrap();
    assert_eq!(tel.profile.stopped_watts, Some(3.5));
    // A 404 on pause: the firmware cannot pause after all.
    assert!(matches!(
        a.apply(Setting::Stop, &tel.profile).await,
        Err(DeviceError::Unsupported(_))
    ));
    let tel = a.telemetry(&info::parse(GAMMA_INFO).unwrap());
    assert_eq!(tel.profile.stopped_watts, None);

    let addr = refused_address().await;
    assert!(matches!(
        probe(&addr, Duration::from_secs(2)).await,
        Err(DeviceError::Connect(_))
    ));

    let (addr, hold) = silent_peer().await;
    let started = std::time::Instant::now();
    let silent = probe(&addr, Duration::from_millis(300)).await;
    assert!(matches!(silent, Err(DeviceError::Timeout(_))), "{silent:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();
}

#[tokio::test]
async fn probe_identifies_a_gamma() {
    let (addr, _server) = serve(vec![format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{GAMMA_INFO}",
        GAMMA_INFO.len()
    )])
    .await;
    let id = probe(&addr, Duration::from_secs(5)).await.unwrap();
    assert_eq!(id.kind, "axeos");
    assert_eq!(id.model, "Bitaxe Gamma 601 (BM1370)");
    assert_eq!(id.firmware, "v2.14.0");
    assert!(
        id.summary.contains("525 MHz") && id.summary.contains("17 W"),
        "{}",
        id.summary
    );
}
