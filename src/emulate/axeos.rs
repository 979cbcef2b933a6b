//! A Bitaxe on AxeOS (ESP-Miner) REST, over HTTP/1.1: `GET /api/system/info`, `PATCH /api/system`
//! (200 with an empty body; 400 "Invalid JSON" or "Wrong API input"; 500 "content too long" from
//! 10,240 bytes, the firmware's scratch buffer), and from firmware v2.14 `POST /api/system/pause`
//! and `/resume` (older firmware answers 404).
//!
//! Written from ESP-Miner's public source (`main/http_server/http_server.c`, `nvs_config.c`,
//! `system_api_json.c`, `tasks/power_management_task.c`). Every accepted PATCH writes the
//! board's flash; the emulator counts them. Over 75 °C chip or 105 °C regulator the firmware's
//! protection drops the settings to 50 MHz / 1000 mV and latches `overheat_mode = 1` until a
//! PATCH clears it (the v2 behaviour hearth must never fight; newer firmware also restarts at
//! reduced settings by itself).

use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::model::{self, state_of, Params, Physics, Ramp, Watch};
use super::net::{self, Server};
use super::{
    pick_model, EmulateError, EmulatorKind, EmulatorOptions, EmulatorState, Fault, Live, Shared,
};

/// What differs between Bitaxe boards (data, not code).
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The `--model` key.
    pub key: &'static str,
    /// `deviceModel`.
    pub device_model: &'static str,
    /// `ASICModel`.
    pub asic: &'static str,
    /// `boardVersion`.
    pub board_version: &'static str,
    /// Small cores per ASIC: hashrate GH/s = MHz × cores × ASICs / 1000, as the firmware
    /// computes its expected hashrate.
    pub small_cores: u32,
    /// ASICs on the board.
    pub asic_count: u32,
    /// Factory frequency, MHz.
    pub default_mhz: f64,
    /// Factory core voltage, mV.
    pub default_mv: u16,
    /// Power of the board with the ASIC idle (ESP32, regulator, fan), W.
    pub static_w: f64,
    /// ASIC power per MHz·V², W.
    pub w_per_mhz_v2: f64,
    /// Chip rise over ambient per watt, °C/W.
    pub chip_c_per_w: f64,
    /// Regulator rise over ambient per watt, °C/W.
    pub vr_c_per_w: f64,
}

/// The boards. Sources: ESP-Miner's ASIC drivers (small cores: BM1366 894, BM1368 1276, BM1370
/// 2040) and default frequency/voltage per board; watts at the defaults from the Bitaxe project's
/// published figures (Ultra ≈ 11.5 W, Supra ≈ 13 W, Gamma ≈ 17 W). The power law P = static +
/// k·f·V² is a model fitted through those points.
pub const MODELS: &[Model] = &[
    Model {
        key: "gamma",
        device_model: "Gamma",
        asic: "BM1370",
        board_version: "601",
        small_cores: 2040,
        asic_count: 1,
        default_mhz: 525.0,
        default_mv: 1150,
        static_w: 3.0,
        w_per_mhz_v2: 0.020_164,
        chip_c_per_w: 2.3,
        vr_c_per_w: 2.6,
    },
    Model {
        key: "supra",
        device_model: "Supra",
        asic: "BM1368",
        board_version: "401",
        small_cores: 1276,
        asic_count: 1,
        default_mhz: 490.0,
        default_mv: 1166,
        static_w: 3.0,
        w_per_mhz_v2: 0.015_011,
        chip_c_per_w: 2.9,
        vr_c_per_w: 3.2,
    },
    Model {
        key: "ultra",
        device_model: "Ultra",
        asic: "BM1366",
        board_version: "204",
        small_cores: 894,
        asic_count: 1,
        default_mhz: 485.0,
        default_mv: 1200,
        static_w: 3.0,
        w_per_mhz_v2: 0.012_171,
        chip_c_per_w: 3.3,
        vr_c_per_w: 3.6,
    },
];

/// Firmware version claimed without `--firmware`.
const DEFAULT_FIRMWARE: &str = "v2.14.0";
/// The firmware's request scratch buffer; a body this long is refused (500).
const SCRATCH: usize = 10_240;
/// Chip temperature over which the firmware's protection trips, °C.
const THROTTLE_C: f64 = 75.0;
/// Regulator temperature over which it trips, °C.
const VR_THROTTLE_C: f64 = 105.0;
/// Time constant of the board power following new settings, s.
const TAU_POWER_S: f64 = 3.0;
/// Time constant of its temperatures, s.
const TAU_TEMP_S: f64 = 40.0;
/// Input supply, mV.
const SUPPLY_MV: f64 = 5100.0;

struct Device {
    model: &'static Model,
    phys: Physics,
    frequency: f64,
    core_mv: u16,
    overheat: bool,
    paused: bool,
    flash_writes: u64,
    hostname: String,
    boot_s: f64,
    firmware: String,
    has_pause: bool,
}

impl Device {
    fn setting_w(&self) -> f64 {
        let v = f64::from(self.core_mv) / 1000.0;
        self.model.static_w + self.model.w_per_mhz_v2 * self.frequency * v * v
    }

    fn setting_ghs(&self) -> f64 {
        self.frequency * f64::from(self.model.small_cores * self.model.asic_count) / 1000.0
    }

    fn retarget(&mut self) {
        let full = self.setting_w();
        let target = if self.paused {
            self.model.static_w
        } else {
            full
        };
        let ghs = self.setting_ghs();
        self.phys.set_target(target, full, ghs);
    }

    fn info(&self, now: f64) -> serde_json::Value {
        let p = &self.phys;
        let power = p.power_w();
        let input_mv = SUPPLY_MV - 4.0 * power;
        let mut v = serde_json::json!({
            "power": round2(power),
            "voltage": round2(input_mv),
            "current": round2(power / (input_mv / 1000.0) * 1000.0),
            "temp": round2(p.chip_c()),
            "vrTemp": round2(p.board_c()),
            "hashRate": round2(p.hashrate_ghs()),
            "expectedHashrate": round2(self.setting_ghs()),
            "bestDiff": "1.2M",
            "bestSessionDiff": "310K",
            "freeHeap": 8_123_456,
            "coreVoltage": self.core_mv,
            "coreVoltageActual": if self.paused { 0 } else { self.core_mv.saturating_sub(6) },
            "frequency": self.frequency,
            "ssid": "emulated",
            "macAddr": "02:00:00:00:00:01",
            "hostname": self.hostname,
            "wifiStatus": "Connected!",
            "sharesAccepted": (p.work_gh() / 4.294967296 / 1024.0).floor() as u64,
            "sharesRejected": (p.work_gh() / 4.294967296 / 1024.0 / 500.0).floor() as u64,
            "uptimeSeconds": (now - self.boot_s).max(0.0).floor() as u64,
            "asicCount": self.model.asic_count,
            "smallCoreCount": self.model.small_cores,
            "ASICModel": self.model.asic,
            "deviceModel": self.model.device_model,
            "boardVersion": self.model.board_version,
            "stratumURL": "127.0.0.1",
            "stratumPort": 3333,
            "stratumUser": "hearth.emulator",
            "version": self.firmware,
            "idfVersion": "v5.4.1",
            "runningPartition": "factory",
            "overheat_mode": u8::from(self.overheat),
            "autofanspeed": 1,
            "fanspeed": ((p.chip_c() - 30.0) * 2.5).clamp(20.0, 100.0).round(),
            "fanrpm": (((p.chip_c() - 30.0) * 2.5).clamp(20.0, 100.0) * 60.0).round(),
        });
        if self.has_pause {
            v["miningPaused"] = serde_json::Value::Bool(self.paused);
        }
        v
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl model::Device for Device {
    fn physics(&mut self) -> &mut Physics {
        &mut self.phys
    }

    fn watch(&self) -> Watch {
        // The firmware acts only while above its safe settings.
        if self.frequency > 50.0 || self.core_mv > 1000 {
            Watch::ChipOrBoardAbove(THROTTLE_C, VR_THROTTLE_C)
        } else {
            Watch::Never
        }
    }

    fn react(&mut self) {
        tracing::info!(
            chip = self.phys.chip_c(),
            vr = self.phys.board_c(),
            "axeos emulator overheat: safe settings, overheat_mode=1"
        );
        self.overheat = true;
        self.frequency = 50.0;
        self.core_mv = 1000;
        self.flash_writes += 1;
        self.retarget();
    }

    fn state(&self, now: f64) -> EmulatorState {
        EmulatorState {
            setting: format!("{} MHz / {} mV", self.frequency, self.core_mv),
            paused: self.paused,
            overheated: self.overheat,
            flash_writes: self.flash_writes,
            ..state_of(EmulatorKind::Axeos, self.model.key, &self.phys, now)
        }
    }

    fn overheat_heat_c(&self) -> f64 {
        40.0
    }
}

type Axeos = Live<Device>;

/// Parses `v2.14.0` (or `2.14`) into (major, minor, patch).
fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let core = v.trim().trim_start_matches(['v', 'V']);
    let core = core.split(['-', '+']).next()?;
    let mut it = core.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |s| s.parse().ok())?;
    let patch = it.next().map_or(Some(0), |s| s.parse().ok())?;
    Some((major, minor, patch))
}

/// Builds an AxeOS emulator from `opts`.
pub(crate) fn build(opts: &EmulatorOptions, shared: Arc<Shared>) -> Result<Server, EmulateError> {
    let model = pick_model(
        EmulatorKind::Axeos,
        MODELS,
        |m| m.key,
        opts.model.as_deref(),
    )?;
    let firmware = opts
        .firmware
        .clone()
        .unwrap_or_else(|| DEFAULT_FIRMWARE.into());
    let version =
        parse_version(&firmware).ok_or_else(|| EmulateError::BadFirmware(firmware.clone()))?;
    let now = shared.clock.now_s();
    let params = Params {
        ramp: Ramp::FirstOrder { tau_s: TAU_POWER_S },
        tau_temp_s: TAU_TEMP_S,
        chip_c_per_w: model.chip_c_per_w,
        board_c_per_w: model.vr_c_per_w,
        idle_w: model.static_w,
    };
    let mut dev = Device {
        model,
        phys: Physics::settled(params, now, opts.ambient_celsius, 0.0, 0.0),
        frequency: model.default_mhz,
        core_mv: model.default_mv,
        overheat: false,
        paused: false,
        flash_writes: 0,
        hostname: "bitaxe".into(),
        boot_s: now,
        has_pause: version >= (2, 14, 0),
        firmware,
    };
    let (w, ghs) = (dev.setting_w(), dev.setting_ghs());
    dev.phys = Physics::settled(params, now, opts.ambient_celsius, w, ghs);
    let axeos = Arc::new(Axeos::new(shared, dev));
    let serving = axeos.clone();
    Ok(Server {
        device: axeos,
        serve: Arc::new(move |stream, fault| Box::pin(serve(serving.clone(), stream, fault))),
    })
}

/// Describes model `key` (or the default) in one line, for `hearth emulate`.
pub fn describe(key: Option<&str>) -> Result<String, EmulateError> {
    let m = pick_model(EmulatorKind::Axeos, MODELS, |m| m.key, key)?;
    let v = f64::from(m.default_mv) / 1000.0;
    Ok(format!(
        "Bitaxe {} ({}) on AxeOS REST; {} MHz / {} mV ≈ {:.1} W, {:.0} GH/s; overheat_mode above {} °C chip or {} °C VR",
        m.device_model,
        m.asic,
        m.default_mhz,
        m.default_mv,
        m.static_w + m.w_per_mhz_v2 * m.default_mhz * v * v,
        m.default_mhz * f64::from(m.small_cores * m.asic_count) / 1000.0,
        THROTTLE_C,
        VR_THROTTLE_C
    ))
}

async fn serve(dev: Arc<Axeos>, mut stream: TcpStream, fault: Fault) {
    match fault {
        Fault::Garbage => return net::write_garbage(&mut stream).await,
        Fault::Oversized => {
            let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"power\":[";
            return net::write_oversized(&mut stream, head, b'9').await;
        }
        Fault::Truncated => {
            let body = dev.with(|d, now| d.info(now).to_string());
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body.as_bytes()[..body.len() / 2]).await;
            let _ = stream.shutdown().await;
            return;
        }
        _ => {}
    }
    let svc = hyper::service::service_fn(move |req| {
        let dev = dev.clone();
        async move {
            // Faults set while a keep-alive connection is open act on its next request.
            let fault = dev.shared.fault();
            if net::breaks_the_wire(fault) {
                return Err(net::Dropped);
            }
            net::slow(fault).await;
            Ok(dev.handle(req, fault).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(net::HEADER_TIMEOUT)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "axeos emulator connection");
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html"),
    );
    r
}

fn json(v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Outcome of checking one PATCH field against the firmware's settings table.
fn valid_field(key: &str, v: &serde_json::Value) -> Option<bool> {
    let num = v.as_f64();
    let int_in = |lo: f64, hi: f64| num.is_some_and(|n| n.trunc() >= lo && n.trunc() <= hi);
    Some(match key {
        "frequency" => num.is_some_and(|n| (1.0..=65535.0).contains(&n)),
        "coreVoltage" => int_in(1.0, 65535.0),
        // The table allows 0 only: a PATCH may clear the flag, never set it.
        "overheat_mode" => match v {
            serde_json::Value::Bool(b) => !b,
            _ => int_in(0.0, 0.0),
        },
        "fanspeed" | "manualFanSpeed" => int_in(0.0, 100.0),
        "autofanspeed" => match v {
            serde_json::Value::Bool(_) => true,
            _ => int_in(0.0, 1.0),
        },
        "hostname" => v.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 32),
        _ => return None,
    })
}

impl Axeos {
    async fn handle(&self, req: Request<Incoming>, fault: Fault) -> Response<Full<Bytes>> {
        if let Fault::HttpStatus(code) = fault {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = if code == 401 {
                "Unauthorized"
            } else {
                "Internal error"
            };
            return text(status, body);
        }
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let has_pause = self.with(|d, _| d.has_pause);
        match (method, path.as_str()) {
            (Method::GET, "/api/system/info") => json(&self.with(|d, now| d.info(now))),
            (Method::PATCH, "/api/system") => self.patch(req).await,
            (Method::POST, "/api/system/pause") if has_pause => self.pause(true),
            (Method::POST, "/api/system/resume") if has_pause => self.pause(false),
            _ => text(StatusCode::NOT_FOUND, "Nothing matches the given URI"),
        }
    }

    fn pause(&self, on: bool) -> Response<Full<Bytes>> {
        self.with(|d, _| {
            d.paused = on;
            d.retarget();
        });
        let what = if on { "pause" } else { "resume" };
        self.shared
            .record(format!("POST /api/system/{what}"), true, "200");
        let msg = if on {
            "Mining paused"
        } else {
            "Mining resumed"
        };
        json(&serde_json::json!({ "message": msg }))
    }

    async fn patch(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n >= SCRATCH) {
            self.shared.record(
                "PATCH /api/system (too long)",
                false,
                "500 content too long",
            );
            return text(StatusCode::INTERNAL_SERVER_ERROR, "content too long");
        }
        let body = match Limited::new(req.into_body(), SCRATCH - 1).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                self.shared.record(
                    "PATCH /api/system (too long)",
                    false,
                    "500 content too long",
                );
                return text(StatusCode::INTERNAL_SERVER_ERROR, "content too long");
            }
        };
        let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        let command = format!("PATCH /api/system {shown}");
        let parsed: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                self.shared.record(command, false, "400 Invalid JSON");
                return text(StatusCode::BAD_REQUEST, "Invalid JSON");
            }
        };
        let fields: Vec<(String, serde_json::Value)> = match parsed.as_object() {
            Some(o) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            // cJSON parses a bare value; no setting matches it.
            None => Vec::new(),
        };
        if fields.iter().any(|(k, v)| valid_field(k, v) == Some(false)) {
            self.shared.record(command, false, "400 Wrong API input");
            return text(StatusCode::BAD_REQUEST, "Wrong API input");
        }
        self.with(|d, _| {
            for (k, v) in &fields {
                match k.as_str() {
                    "frequency" => d.frequency = v.as_f64().unwrap_or(d.frequency),
                    "coreVoltage" => d.core_mv = v.as_f64().map_or(d.core_mv, |n| n.trunc() as u16),
                    "overheat_mode" => d.overheat = false,
                    "hostname" => d.hostname = v.as_str().unwrap_or("bitaxe").to_string(),
                    _ => {}
                }
            }
            d.flash_writes += 1;
            d.retarget();
        });
        self.shared.record(command, true, "200");
        Response::new(Full::new(Bytes::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_or_without_v() {
        assert_eq!(parse_version("v2.14.0"), Some((2, 14, 0)));
        assert_eq!(parse_version("2.13"), Some((2, 13, 0)));
        assert_eq!(parse_version("v2.9.1-beta"), Some((2, 9, 1)));
        assert_eq!(parse_version("latest"), None);
    }

    #[test]
    fn patch_fields_follow_the_settings_table() {
        use serde_json::json;
        assert_eq!(valid_field("frequency", &json!(490)), Some(true));
        assert_eq!(valid_field("frequency", &json!(0)), Some(false));
        assert_eq!(valid_field("frequency", &json!("490")), Some(false));
        assert_eq!(valid_field("coreVoltage", &json!(70000)), Some(false));
        assert_eq!(valid_field("overheat_mode", &json!(0)), Some(true));
        assert_eq!(valid_field("overheat_mode", &json!(1)), Some(false));
        assert_eq!(valid_field("unknown", &json!(1)), None);
    }
}
