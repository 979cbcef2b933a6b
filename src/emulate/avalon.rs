//! A Canaan Avalon home miner (Nano 3, Nano 3S, Mini 3) on its CGMiner API: one request per TCP
//! connection, JSON `{"command":…,"parameter":…}` or plain `cmd|param`, the reply (JSON for a JSON
//! request, cgminer's `NAME=value,…|` text otherwise) followed by one NUL byte, then close.
//!
//! Written from Canaan's public Avalon_Nano3s firmware source (`cg_miner/api/api.c`,
//! `cg_miner/cgminer/driver-avalon.c`): the message codes and texts, the `+` joins, the
//! `ascset|0,workmode,set,N` family with its calibration refusal, and the bracket-token telemetry
//! in `STATS[0]["MM ID0"]`. Quirks seen in the field are reproduced: the trailing NUL, `inf` and
//! `nan` numbers (`SUMMARY[0]["Work Utility"]`, `STATS[1]["Pool Av"]`), a `,}` closing
//! `STATS[0]`; [`Fault::Truncated`] cuts a reply and ends it with `,"id":0`.
//!
//! Model facts are data ([`MODELS`]), not branches: level watts and hashrates, the calibration
//! time after a mode change, whether `softoff`/`softon` exist, and where in `PS[...]` the wall
//! watts sit.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::cgminer::{escape, render, single, when, Answer, Obj, Status};
use super::model::{self, state_of, Params, Physics, Ramp, Watch};
use super::net::{self, Server};
use super::{
    pick_model, EmulateError, EmulatorKind, EmulatorOptions, EmulatorState, Fault, Live, Shared,
};

/// One work mode of a model.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// The mode's name in Canaan's app.
    pub name: &'static str,
    /// Wall power, W.
    pub watts: f64,
    /// Hashrate, TH/s.
    pub ths: f64,
}

/// What differs between Avalon models (data, not code).
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The `--model` key.
    pub key: &'static str,
    /// `version` → `PROD`.
    pub prod: &'static str,
    /// `version` → `MODEL`.
    pub model: &'static str,
    /// Work modes, `workmode` 0, 1, 2, … in order.
    pub modes: &'static [Mode],
    /// `worklevel` range (the firmware's per-mode level bounds), inclusive.
    pub levels: (i8, i8),
    /// Schedule seconds the device calibrates after a work-mode change (refusing another).
    pub calibration_s: f64,
    /// Whether the firmware has `ascset|0,softoff` / `softon`.
    pub soft_off: bool,
    /// Index of the wall watts in `PS[...]` (7 values).
    pub ps_wall_index: usize,
    /// Wall power in standby (soft-off, over-temperature), W.
    pub standby_w: f64,
    /// Time constant of the power following a new mode, s.
    pub tau_power_s: f64,
    /// Time constant of the temperatures, s.
    pub tau_temp_s: f64,
    /// Chip rise over ambient per wall watt, °C/W.
    pub chip_c_per_w: f64,
    /// Outlet rise over ambient per wall watt, °C/W.
    pub outlet_c_per_w: f64,
    /// Hottest chip at which the firmware stops hashing, °C.
    pub overtemp_c: f64,
    /// Hottest chip below which it resumes, °C.
    pub recover_c: f64,
    /// ASIC count (`TA[...]`).
    pub asics: u32,
    /// Fans.
    pub fans: usize,
}

/// The models. Sources: Canaan's product pages and spec sheets (Avalon Nano 3: 4 TH/s at 140 W;
/// Nano 3S: 6 TH/s at 140 W; Mini 3: 37.5 TH/s at 800 W, each at its highest mode). The lower
/// modes' watts and hashrates are approximations from owners' reports, not Canaan figures.
/// Calibration times are of the order owners report (minutes); thermal constants are chosen so
/// the chips sit near 75 °C at the highest mode in a 21 °C room.
pub const MODELS: &[Model] = &[
    NANO3S,
    Model {
        key: "nano3",
        prod: "Avalon Nano3",
        model: "Nano3",
        modes: &[
            Mode {
                name: "low",
                watts: 70.0,
                ths: 2.0,
            },
            Mode {
                name: "medium",
                watts: 100.0,
                ths: 3.0,
            },
            Mode {
                name: "high",
                watts: 140.0,
                ths: 4.0,
            },
        ],
        ..NANO3S
    },
    Model {
        key: "mini3",
        prod: "Avalon Mini3",
        model: "Mini3",
        modes: &[
            Mode {
                name: "low",
                watts: 400.0,
                ths: 20.0,
            },
            Mode {
                name: "medium",
                watts: 600.0,
                ths: 29.0,
            },
            Mode {
                name: "high",
                watts: 800.0,
                ths: 37.5,
            },
        ],
        calibration_s: 300.0,
        soft_off: true,
        standby_w: 20.0,
        tau_power_s: 30.0,
        tau_temp_s: 120.0,
        chip_c_per_w: 0.068,
        outlet_c_per_w: 0.025,
        asics: 40,
        fans: 2,
        ..NANO3S
    },
];

/// The Nano 3S, the default and the base of the other entries.
const NANO3S: Model = Model {
    key: "nano3s",
    prod: "Avalon Nano3s",
    model: "Nano3s",
    modes: &[
        Mode {
            name: "low",
            watts: 70.0,
            ths: 3.5,
        },
        Mode {
            name: "medium",
            watts: 100.0,
            ths: 4.8,
        },
        Mode {
            name: "high",
            watts: 140.0,
            ths: 6.0,
        },
    ],
    levels: (0, 0),
    calibration_s: 240.0,
    soft_off: false,
    ps_wall_index: 6,
    standby_w: 8.0,
    tau_power_s: 20.0,
    tau_temp_s: 90.0,
    chip_c_per_w: 0.39,
    outlet_c_per_w: 0.12,
    overtemp_c: 100.0,
    recover_c: 80.0,
    asics: 10,
    fans: 1,
};

/// Firmware version strings the device reports (the public Nano 3S release).
const FW: &str = "25012001_85ce93f";
/// Bytes of a request read (the firmware reads half its 8 KiB buffer, less one).
const MAX_REQUEST: usize = 4095;
/// Real seconds a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pool difficulty the share counts are derived from.
const SHARE_DIFF: f64 = 16384.0;

struct Device {
    model: &'static Model,
    phys: Physics,
    mode: usize,
    level: i8,
    cal_start_s: f64,
    cal_until_s: f64,
    soft_off: bool,
    overtemp: bool,
    boot_s: f64,
}

impl Device {
    fn new(model: &'static Model, now_s: f64, ambient_c: f64) -> Self {
        let params = Params {
            ramp: Ramp::FirstOrder {
                tau_s: model.tau_power_s,
            },
            tau_temp_s: model.tau_temp_s,
            chip_c_per_w: model.chip_c_per_w,
            board_c_per_w: model.outlet_c_per_w,
            idle_w: model.standby_w,
        };
        // Boots in its highest mode, calibrated (as a unit that has run before).
        let mode = model.modes.len().saturating_sub(1);
        let m = model.modes[mode];
        Self {
            model,
            phys: Physics::settled(params, now_s, ambient_c, m.watts, m.ths * 1000.0),
            mode,
            level: model.levels.0.max(0).min(model.levels.1),
            cal_start_s: f64::NEG_INFINITY,
            cal_until_s: f64::NEG_INFINITY,
            soft_off: false,
            overtemp: false,
            boot_s: now_s,
        }
    }

    fn retarget(&mut self) {
        let m = self.model.modes[self.mode];
        let target = if self.soft_off || self.overtemp {
            self.model.standby_w
        } else {
            m.watts
        };
        self.phys.set_target(target, m.watts, m.ths * 1000.0);
    }

    fn calibrating(&self, now_s: f64) -> bool {
        now_s < self.cal_until_s
    }

    fn state_name(&self) -> &'static str {
        if self.overtemp {
            "In Fault"
        } else if self.soft_off {
            "In Idle"
        } else {
            "In Work"
        }
    }
}

impl model::Device for Device {
    fn physics(&mut self) -> &mut Physics {
        &mut self.phys
    }

    fn watch(&self) -> Watch {
        if self.overtemp {
            Watch::ChipBelow(self.model.recover_c)
        } else {
            Watch::ChipAtLeast(self.model.overtemp_c)
        }
    }

    fn react(&mut self) {
        self.overtemp = !self.overtemp;
        tracing::info!(
            overtemp = self.overtemp,
            chip = self.phys.chip_c(),
            "avalon emulator over-temperature state"
        );
        self.retarget();
    }

    fn state(&self, now: f64) -> EmulatorState {
        EmulatorState {
            level: Some(self.mode),
            setting: self.model.modes[self.mode].name.into(),
            calibrating: self.calibrating(now),
            paused: self.soft_off,
            overheated: self.overtemp,
            ..state_of(EmulatorKind::Avalon, self.model.key, &self.phys, now)
        }
    }

    fn overheat_heat_c(&self) -> f64 {
        60.0
    }
}

type Avalon = Live<Device>;

/// Builds an Avalon emulator from `opts`.
pub(crate) fn build(opts: &EmulatorOptions, shared: Arc<Shared>) -> Result<Server, EmulateError> {
    let model = pick_model(
        EmulatorKind::Avalon,
        MODELS,
        |m| m.key,
        opts.model.as_deref(),
    )?;
    let now = shared.clock.now_s();
    let dev = Arc::new(Avalon::new(
        shared,
        Device::new(model, now, opts.ambient_celsius),
    ));
    let serving = dev.clone();
    Ok(Server {
        device: dev,
        serve: Arc::new(move |stream, fault| Box::pin(serve(serving.clone(), stream, fault))),
    })
}

/// Describes model `key` (or the default) in one line, for `hearth emulate`.
pub fn describe(key: Option<&str>) -> Result<String, EmulateError> {
    let m = pick_model(EmulatorKind::Avalon, MODELS, |m| m.key, key)?;
    let modes: Vec<String> = m
        .modes
        .iter()
        .enumerate()
        .map(|(i, md)| format!("{i} {} {} W {} TH/s", md.name, md.watts, md.ths))
        .collect();
    Ok(format!(
        "{} on the CGMiner API; work modes: {}; calibrates {} s after a mode change; soft-off: {}",
        m.prod,
        modes.join(", "),
        m.calibration_s,
        if m.soft_off { "yes" } else { "no" }
    ))
}

async fn serve(dev: Arc<Avalon>, mut stream: TcpStream, fault: Fault) {
    let mut buf = vec![0u8; MAX_REQUEST];
    let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return,
    };
    buf.truncate(n);
    // The firmware handles the request as a C string.
    if let Some(nul) = buf.iter().position(|&b| b == 0) {
        buf.truncate(nul);
    }
    let request = String::from_utf8_lossy(&buf).into_owned();
    net::slow(fault).await;
    match fault {
        Fault::Garbage => return net::write_garbage(&mut stream).await,
        Fault::Oversized => {
            let prefix = br#"{"STATUS":[{"STATUS":"S","When":0,"Code":70,"Msg":"CGMiner stats","Description":"cgminer 4.11.1"}],"STATS":[{"MM ID0":""#;
            return net::write_oversized(&mut stream, prefix, b'A').await;
        }
        _ => {}
    }
    let (mut reply, isjson) = dev.answer(&request);
    if fault == Fault::Truncated {
        let mut cut = reply.len() / 2;
        while !reply.is_char_boundary(cut) {
            cut -= 1;
        }
        reply.truncate(cut);
        // The firmware's own truncation marker, in JSON.
        if isjson {
            reply.push_str(",\"id\":0");
        }
    }
    let mut bytes = reply.into_bytes();
    bytes.push(0);
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

/// Commands the firmware knows, and whether each may be joined with `+`.
const COMMANDS: &[(&str, bool)] = &[
    ("version", true),
    ("config", true),
    ("devs", true),
    ("edevs", true),
    ("pools", true),
    ("summary", true),
    ("stats", true),
    ("estats", true),
    ("check", false),
    ("ascset", false),
];

impl Avalon {
    /// The reply to a request (without the NUL) and whether it is JSON.
    fn answer(&self, request: &str) -> (String, bool) {
        if !request.starts_with('{') {
            let (cmd, param) = match request.split_once('|') {
                Some((c, p)) => (c, Some(p)),
                None => (request, None),
            };
            return (self.dispatch(cmd, param, false), false);
        }
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(request);
        let reply = match parsed {
            Ok(serde_json::Value::Object(map)) => match map.get("command") {
                None => single(Answer::status(Status::new(
                    'E',
                    24,
                    "Missing JSON 'command'",
                ))),
                Some(serde_json::Value::String(cmd)) => {
                    let param = match map.get("parameter") {
                        Some(serde_json::Value::String(s)) => Some(s.clone()),
                        Some(serde_json::Value::Number(n)) => Some(match n.as_i64() {
                            Some(i) => (i as i32).to_string(),
                            None => format!("{:.6}", n.as_f64().unwrap_or(0.0)),
                        }),
                        _ => None,
                    };
                    return (self.dispatch(cmd, param.as_deref(), true), true);
                }
                Some(_) => single(Answer::status(Status::new('E', 14, "Invalid command"))),
            },
            _ => single(Answer::status(Status::new('E', 23, "Invalid JSON"))),
        };
        (reply, true)
    }

    fn dispatch(&self, cmd: &str, param: Option<&str>, isjson: bool) -> String {
        if !cmd.contains('+') {
            let a = self.command(cmd, param);
            return if isjson { single(a) } else { render(&a, false) };
        }
        // A join: each command once, parameters dropped, non-joinable ones denied.
        let mut out = String::new();
        let mut seen: Vec<&str> = Vec::new();
        let mut first = true;
        for part in cmd.split('+') {
            if part.is_empty() || seen.contains(&part) {
                continue;
            }
            let known = COMMANDS.iter().find(|(n, _)| *n == part);
            if known.is_some() {
                seen.push(part);
            }
            let a = match known {
                Some((name, false)) => Answer::status(Status::new(
                    'E',
                    45,
                    format!("Access denied to '{name}' command"),
                )),
                _ => self.command(part, None),
            };
            if isjson {
                out.push_str(if first { "{" } else { "," });
                out.push('"');
                out.push_str(&escape(part, true));
                out.push_str("\":[");
                out.push_str(&render(&a, true));
                out.push_str(",\"id\":1}]");
            } else {
                out.push_str("CMD=");
                out.push_str(&escape(part, false));
                out.push('|');
                out.push_str(&render(&a, false));
            }
            first = false;
        }
        if isjson {
            // With nothing joined this leaves `,"id":1}` alone, as the firmware sends it.
            out.push_str(",\"id\":1}");
        }
        out
    }

    fn command(&self, cmd: &str, param: Option<&str>) -> Answer {
        match cmd {
            "version" => self.version(),
            "config" => Answer::with(
                Status::new('S', 33, "CGMiner config"),
                "CONFIG",
                true,
                vec![Obj::default()
                    .n("ASC Count", 1)
                    .n("PGA Count", 0)
                    .n("Pool Count", 1)
                    .s("Strategy", "Failover")
                    .n("Log Interval", 5)
                    .s("Device Code", "AVA10 ")
                    .s("OS", "Linux")
                    .s("Hotplug", "None")],
            ),
            "devs" | "edevs" => self.devs(),
            "pools" => self.pools(),
            "summary" => self.summary(),
            "stats" => self.stats(true),
            "estats" => self.stats(false),
            "check" => check(param),
            "ascset" => self.ascset(param),
            _ => Answer::status(Status::new('E', 14, "Invalid command")),
        }
    }

    fn version(&self) -> Answer {
        let m = self.with(|d, _| d.model);
        Answer::with(
            Status::new('S', 22, "CGMiner versions"),
            "VERSION",
            true,
            vec![Obj::default()
                .s("CGMiner", "4.11.1")
                .s("API", "3.7")
                .s("PROD", m.prod)
                .s("MODEL", m.model)
                .s("HWTYPE", format!("N_MM1v1_X{}", m.asics))
                .s("SWTYPE", "MM319")
                .s("LVERSION", FW)
                .s("BVERSION", FW)
                .s("CGVERSION", FW)
                .s("DNA", "020100003c1d2a1b")
                .s("MAC", "e0e1e2e3e4e5")
                .s("UPAPI", "2")],
        )
    }

    fn counters(&self) -> Counters {
        self.with(|d, now| {
            let elapsed = (now - d.boot_s).max(0.0);
            let work = d.phys.work_gh();
            let accepted = (work * 1e9 / (SHARE_DIFF * 4_294_967_296.0)).floor();
            Counters {
                elapsed,
                mhs_now: d.phys.hashrate_ghs() * 1000.0,
                mhs_av: if elapsed > 0.0 {
                    work * 1000.0 / elapsed
                } else {
                    0.0
                },
                total_mh: work * 1000.0,
                accepted,
                rejected: (accepted / 400.0).floor(),
                chip_c: d.phys.chip_c(),
            }
        })
    }

    fn summary(&self) -> Answer {
        let c = self.counters();
        let diff_acc = c.accepted * SHARE_DIFF;
        Answer::with(
            Status::new('S', 11, "Summary"),
            "SUMMARY",
            true,
            vec![Obj::default()
                .n("Elapsed", format!("{:.0}", c.elapsed))
                .f("MHS av", c.mhs_av, 2)
                .f("MHS 5s", c.mhs_now, 2)
                .f("MHS 1m", c.mhs_now, 2)
                .f("MHS 5m", c.mhs_now, 2)
                .f("MHS 15m", c.mhs_now, 2)
                .n("Found Blocks", 0)
                .n("Getworks", (c.elapsed / 30.0).floor())
                .n("Accepted", c.accepted)
                .n("Rejected", c.rejected)
                .n("Hardware Errors", 0)
                .f("Utility", per_minute(c.accepted, c.elapsed), 2)
                .n("Discarded", 0)
                .n("Stale", 0)
                .n("Get Failures", 0)
                .n("Local Work", (c.total_mh / 4294.967296).floor())
                .n("Remote Failures", 0)
                .n("Network Blocks", (c.elapsed / 600.0).floor())
                .f("Total MH", c.total_mh, 4)
                // Seen in the field: the work utility printed as `inf`.
                .f("Work Utility", f64::INFINITY, 2)
                .f("Difficulty Accepted", diff_acc, 8)
                .f("Difficulty Rejected", c.rejected * SHARE_DIFF, 8)
                .f("Difficulty Stale", 0.0, 8)
                .n("Best Share", (SHARE_DIFF * 37.0).floor())
                .f("Device Hardware%", 0.0, 4)
                .f(
                    "Device Rejected%",
                    pct(c.rejected, c.accepted + c.rejected),
                    4,
                )
                .f(
                    "Pool Rejected%",
                    pct(c.rejected, c.accepted + c.rejected),
                    4,
                )
                .f("Pool Stale%", 0.0, 4)
                .n("Last getwork", when())],
        )
    }

    fn devs(&self) -> Answer {
        let c = self.counters();
        Answer::with(
            Status::new('S', 9, "1 ASC(s)"),
            "DEVS",
            false,
            vec![Obj::default()
                .n("ASC", 0)
                .s("Name", "AVALON")
                .n("ID", 0)
                .s("Enabled", "Y")
                .s("Status", "Alive")
                .f("Temperature", c.chip_c, 2)
                .f("MHS av", c.mhs_av, 2)
                .f("MHS 5s", c.mhs_now, 2)
                .f("MHS 1m", c.mhs_now, 2)
                .f("MHS 5m", c.mhs_now, 2)
                .f("MHS 15m", c.mhs_now, 2)
                .n("Accepted", c.accepted)
                .n("Rejected", c.rejected)
                .n("Hardware Errors", 0)
                .f("Utility", per_minute(c.accepted, c.elapsed), 2)
                .n("Last Share Pool", 0)
                .n("Last Share Time", when())
                .f("Total MH", c.total_mh, 4)
                .n("Diff1 Work", (c.accepted * SHARE_DIFF).floor())
                .f("Difficulty Accepted", c.accepted * SHARE_DIFF, 8)
                .f("Difficulty Rejected", c.rejected * SHARE_DIFF, 8)
                .f("Last Share Difficulty", SHARE_DIFF, 8)
                .n("Last Valid Work", when())
                .f("Device Hardware%", 0.0, 4)
                .f(
                    "Device Rejected%",
                    pct(c.rejected, c.accepted + c.rejected),
                    4,
                )
                .n("Device Elapsed", format!("{:.0}", c.elapsed))],
        )
    }

    fn pools(&self) -> Answer {
        let c = self.counters();
        Answer::with(
            Status::new('S', 7, "1 Pool(s)"),
            "POOLS",
            false,
            vec![Obj::default()
                .n("POOL", 0)
                .s("URL", "stratum+tcp://127.0.0.1:3333")
                .s("Status", "Alive")
                .n("Priority", 0)
                .n("Quota", 1)
                .s("Long Poll", "N")
                .n("Getworks", (c.elapsed / 30.0).floor())
                .n("Accepted", c.accepted)
                .n("Rejected", c.rejected)
                .n("Works", (c.elapsed / 30.0).floor())
                .n("Discarded", 0)
                .n("Stale", 0)
                .n("Get Failures", 0)
                .n("Remote Failures", 0)
                .s("User", "hearth.emulator")
                .n("Last Share Time", when())
                .n("Diff1 Shares", (c.accepted * SHARE_DIFF).floor())
                .s("Proxy Type", "")
                .s("Proxy", "")
                .f("Difficulty Accepted", c.accepted * SHARE_DIFF, 8)
                .f("Difficulty Rejected", c.rejected * SHARE_DIFF, 8)
                .f("Difficulty Stale", 0.0, 8)
                .f("Last Share Difficulty", SHARE_DIFF, 8)
                .f("Work Difficulty", SHARE_DIFF, 8)
                .s("Has Stratum", "true")
                .s("Stratum Active", "true")
                .s("Stratum URL", "127.0.0.1")
                .f("Stratum Difficulty", SHARE_DIFF, 8)
                .s("Has Vmask", "true")
                .s("Has GBT", "false")
                .n("Best Share", (SHARE_DIFF * 37.0).floor())
                .f(
                    "Pool Rejected%",
                    pct(c.rejected, c.accepted + c.rejected),
                    4,
                )
                .f("Pool Stale%", 0.0, 4)
                .n("Bad Work", 0)
                .n("Current Block Height", 900_000)
                .n("Current Block Version", 536_870_912)],
        )
    }

    /// `stats` (with the pool's item) or `estats` (devices only).
    fn stats(&self, with_pool: bool) -> Answer {
        let (mm, elapsed) = self.with(|d, now| (mm_id(d, now), now - d.boot_s));
        let mut dev = Obj::default()
            .n("STATS", 0)
            .s("ID", "AVALON0")
            .n("Elapsed", format!("{:.0}", elapsed.max(0.0)))
            .n("Calls", 0)
            .n("Wait", "0.000000")
            .n("Max", "0.000000")
            .n("Min", "99999999.000000")
            .s("MM ID0", mm)
            .n("MM Count", 1)
            .n("Nonce Mask", 25);
        // Seen in the field: `,}` closing the device's stats.
        dev.trailing_comma = true;
        let mut objs = vec![dev];
        if with_pool {
            objs.push(
                Obj::default()
                    .n("STATS", 1)
                    .s("ID", "POOL0")
                    .n("Elapsed", format!("{:.0}", elapsed.max(0.0)))
                    .n("Calls", 0)
                    .n("Wait", "0.000000")
                    .n("Max", "0.000000")
                    .n("Min", "99999999.000000")
                    .n("Pool Calls", 0)
                    .n("Pool Attempts", 0)
                    .n("Pool Wait", "0.000000")
                    .n("Pool Max", "0.000000")
                    .n("Pool Min", "99999999.000000")
                    // Seen in the field: a rolling average printed as `nan`.
                    .f("Pool Av", f64::NAN, 6)
                    .s("Work Had Roll Time", "false")
                    .s("Work Can Roll", "false")
                    .s("Work Had Expire", "false")
                    .n("Work Roll Time", 0)
                    .f("Work Diff", SHARE_DIFF, 8)
                    .f("Min Diff", SHARE_DIFF, 8)
                    .f("Max Diff", SHARE_DIFF, 8)
                    .n("Min Diff Count", 0)
                    .n("Max Diff Count", 0)
                    .n("Times Sent", 0)
                    .n("Bytes Sent", 0)
                    .n("Times Recv", 0)
                    .n("Bytes Recv", 0)
                    .n("Net Bytes Sent", 0)
                    .n("Net Bytes Recv", 0),
            );
        }
        Answer::with(Status::new('S', 70, "CGMiner stats"), "STATS", true, objs)
    }

    /// `ascset|ID,OPTION[,SETTING]`, as `api.c` and `driver-avalon.c` parse it.
    /// `ascset`; every one that may change the device is logged (reads, `…,get` and `help`,
    /// are not, so a driver's polling does not count as commands).
    fn ascset(&self, param: Option<&str>) -> Answer {
        let raw = param.unwrap_or("");
        let answer = self.ascset_inner(param);
        let mut fields = raw.split(',').skip(1);
        let option = fields.next().unwrap_or("");
        let read = option.eq_ignore_ascii_case("help") || fields.next() == Some("get");
        if !read {
            let accepted = matches!(answer.status.severity, 'S' | 'I');
            self.shared
                .record(format!("ascset|{raw}"), accepted, answer.status.msg.clone());
        }
        answer
    }

    fn ascset_inner(&self, param: Option<&str>) -> Answer {
        let Some(param) = param.filter(|p| !p.is_empty()) else {
            return Answer::status(Status::new('E', 15, "Missing device id parameter"));
        };
        let (id, opt) = match param.split_once(',') {
            Some((id, opt)) if !opt.is_empty() => (id, opt),
            _ => return Answer::status(Status::new('E', 116, "Missing option after ASC number")),
        };
        let id = c_atoi(id).unwrap_or(0);
        if id != 0 {
            return Answer::status(Status::new(
                'E',
                107,
                format!("Invalid ASC id {id} - range is 0 - 0"),
            ));
        }
        let (option, setting) = match opt.split_once(',') {
            Some((o, s)) => (o, Some(s)),
            None => (opt, None),
        };
        match self.set_device(option, setting) {
            Err(msg) => Answer::status(Status::new('E', 120, format!("ASC 0 set failed: {msg}"))),
            Ok(Some(info)) => {
                Answer::status(Status::new('I', 118, format!("ASC 0 set info: {info}")))
            }
            Ok(None) => Answer::status(Status::new('S', 119, "ASC 0 set OK")),
        }
    }

    /// The driver's `set_device`: `Ok(None)` for OK, `Ok(Some)` for information, `Err` for a
    /// failure message.
    fn set_device(&self, option: &str, setting: Option<&str>) -> Result<Option<String>, String> {
        let option_lc = option.to_ascii_lowercase();
        let soft_off_cap = self.with(|d, _| d.model.soft_off);
        let needs_setting = matches!(
            option_lc.as_str(),
            "workmode" | "worklevel" | "work_mode_lvl"
        );
        let setting = setting.unwrap_or("");
        if needs_setting && setting.is_empty() {
            return Err(format!("missing {option_lc} setting"));
        }
        match option_lc.as_str() {
            "help" => Ok(Some(
                "help|workmode|worklevel|work_mode_lvl|".to_string()
                    + if soft_off_cap { "softoff|softon|" } else { "" },
            )),
            "workmode" => self.with(|d, now| workmode(d, now, setting)),
            "worklevel" => self.with(|d, now| worklevel(d, now, setting)),
            "work_mode_lvl" => self.with(|d, now| work_mode_lvl(d, now, setting)),
            "softoff" | "softon" if soft_off_cap => self.with(|d, _| {
                d.soft_off = option_lc == "softoff";
                d.retarget();
                Ok(None)
            }),
            _ => Err(format!("Unknown option: {option}")),
        }
    }
}

/// `workmode`: `get`, or `set,N` (refused while calibrating).
fn workmode(d: &mut Device, now: f64, setting: &str) -> Result<Option<String>, String> {
    let (cmd, arg) = scan_cmd_int(setting);
    match (cmd, arg) {
        ("get", None) => Ok(Some(format!("workmode {}", d.mode))),
        ("set", Some(n)) => {
            // `%hhd` into a `uint8_t`.
            let mode = (n as u8) as usize;
            let max_mode = d.model.modes.len() - 1;
            if mode > max_mode {
                return Err(format!(
                    "error:1 not support set workmode max_mode[{max_mode}]"
                ));
            }
            if d.calibrating(now) {
                return Err(format!(
                    "current mode {} is caling Don't permit switch mode",
                    d.mode
                ));
            }
            if mode != d.mode {
                set_mode(d, now, mode);
            }
            Ok(None)
        }
        _ => Err("error:2 parameter error".into()),
    }
}

/// `worklevel`: `get`, or `set,L` within the model's level bounds.
fn worklevel(d: &mut Device, now: f64, setting: &str) -> Result<Option<String>, String> {
    let (cmd, arg) = scan_cmd_int(setting);
    let (lo, hi) = d.model.levels;
    match (cmd, arg) {
        ("get", None) => Ok(Some(format!("worklevel {}", d.level))),
        ("set", Some(n)) if (lo..=hi).contains(&(n as i8)) => {
            if d.calibrating(now) {
                return Err(format!(
                    "current level {} is caling,Don't permit switch level",
                    d.level
                ));
            }
            d.level = n as i8;
            Ok(None)
        }
        _ => Err("worklevel unknown argument".into()),
    }
}

/// `work_mode_lvl`: `get`, or `set,M,L`. Like the firmware, it takes modes below the highest
/// index only (`mode < maxmode`, where `workmode` checks `mode <= maxmode`).
fn work_mode_lvl(d: &mut Device, now: f64, setting: &str) -> Result<Option<String>, String> {
    let mut parts = setting.splitn(3, ',');
    let cmd = parts.next().unwrap_or("");
    let mode = parts.next().and_then(c_atoi);
    let level = parts.next().and_then(c_atoi);
    match (cmd, mode, level) {
        ("get", None, None) => Ok(Some(format!("workmode {} worklevel {}", d.mode, d.level))),
        ("set", Some(m), Some(l)) => {
            if d.calibrating(now) {
                return Err(format!(
                    "current mode {} is caling. Don't permit switch mode",
                    d.mode
                ));
            }
            let mode = (m as u8) as usize;
            let max_mode = d.model.modes.len() - 1;
            if mode >= max_mode {
                return Err(format!(
                    "error:1 not support set workmode max_mode[{max_mode}]"
                ));
            }
            let (lo, hi) = d.model.levels;
            let level = l as i8;
            if !(lo..=hi).contains(&level) {
                return Err(format!(
                    "worklevel unknown argument level range:{lo} ~ {hi}"
                ));
            }
            d.level = level;
            if mode != d.mode {
                set_mode(d, now, mode);
            }
            Ok(None)
        }
        _ => Err("error:2 parameter error".into()),
    }
}

fn set_mode(d: &mut Device, now: f64, mode: usize) {
    d.mode = mode;
    d.cal_start_s = now;
    d.cal_until_s = now + d.model.calibration_s;
    d.retarget();
}

/// `sscanf(s, "%[^,],%hhd")`: the word before the first comma, and the integer after it.
fn scan_cmd_int(s: &str) -> (&str, Option<i64>) {
    match s.split_once(',') {
        Some((cmd, rest)) => (cmd, c_atoi(rest)),
        None => (s, None),
    }
}

/// C's integer scan: optional blanks and sign, then digits; `None` without digits.
fn c_atoi(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let v = digits[..end].parse::<i64>().unwrap_or(i64::MAX);
    Some(if neg { -v } else { v })
}

fn check(param: Option<&str>) -> Answer {
    let Some(p) = param.filter(|p| !p.is_empty()) else {
        return Answer::status(Status::new('E', 71, "Missing check cmd"));
    };
    let exists = COMMANDS.iter().any(|(n, _)| *n == p);
    let yn = if exists { "Y" } else { "N" };
    Answer::with(
        Status::new('S', 72, "Check command"),
        "CHECK",
        true,
        vec![Obj::default().s("Exists", yn).s("Access", yn)],
    )
}

struct Counters {
    elapsed: f64,
    mhs_now: f64,
    mhs_av: f64,
    total_mh: f64,
    accepted: f64,
    rejected: f64,
    chip_c: f64,
}

fn per_minute(n: f64, elapsed_s: f64) -> f64 {
    if elapsed_s > 0.0 {
        n / elapsed_s * 60.0
    } else {
        0.0
    }
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}

/// The bracket-token telemetry string of `STATS[0]["MM ID0"]`, in the firmware's token order.
fn mm_id(d: &Device, now: f64) -> String {
    let m = d.model;
    let p = &d.phys;
    let chip = p.chip_c().round() as i64;
    let elapsed = (now - d.boot_s).max(0.0) as i64;
    let ghs = p.hashrate_ghs();
    let mode = m.modes[d.mode];
    let fan_pct = (30.0 + (p.chip_c() - p.ambient_c()).max(0.0) * 1.2).clamp(10.0, 100.0);
    let fans: String = (1..=m.fans)
        .map(|i| format!(" Fan{i}[{}]", (fan_pct * 30.0).round() as i64))
        .collect();
    // PS: status, then supply readings; the wall watts sit at the model's index.
    let mut ps = [0i64, 1210, 1148, 2412, 1590, 2437, 0];
    ps[m.ps_wall_index.min(6)] = p.power_w().round() as i64;
    let ps: Vec<String> = ps.iter().map(i64::to_string).collect();
    let adj = if d.calibrating(now) { 0 } else { 1 };
    let mut s = format!(
        "Ver[{model}-{FW}] LVer[{FW}] BVer[{FW}] FW[Release] LED[0-0] LEDUser[0-0-0-0-0-0] \
         LcdOnoff[1] LcdSwitch[0] DNA[020100003c1d2a1b] MEMFREE[61440] PFCnt[0] \
         NETFAIL[0 0 0 0 0 0 0 0] SYSTEMSTATU[Work: {state}, Hash Board: 1] Elapsed[{elapsed}] \
         BOOTBY[0x04.00000000] LW[{lw}] MH[0] DHW[0] HW[0] DH[0.000%] ITemp[{it}] OTemp[{ot}] \
         TMax[{chip}] TAvg[{tavg}] TarT[70]{fans} FanR[{fanr}%] PS[{ps}] GHSspd[{ghs:.2}] \
         DHspd[0.000%] GHSmm[{ghs:.2}] GHSavg[{gavg:.2}] WU[{wu:.2}] Freq[{freq:.2}] \
         MGHS[{ghs:.2}] MTmax[{chip}] MTavg[{tavg}] TA[{ta}] Core[A3197S] BIN[1] PING[42] \
         SoftOFF[{soft}] ECHU[0] ECMM[{ecmm}] WORKMODE[{wm}] WORKLEVEL[{wl}] MPO[{mpo}] \
         CALIALL[7] ADJ[{adj}]",
        model = m.model,
        state = d.state_name(),
        lw = (p.work_gh() / 4.294967296).floor() as i64,
        it = p.ambient_c().round() as i64,
        ot = p.board_c().round() as i64,
        tavg = chip - 3,
        fanr = fan_pct.round() as i64,
        ps = ps.join(" "),
        gavg = if elapsed > 0 {
            p.work_gh() / elapsed as f64
        } else {
            0.0
        },
        wu = ghs * 60.0 / 4.294967296,
        freq = 400.0 * mode.watts / m.modes[m.modes.len() - 1].watts + 100.0,
        ta = m.asics,
        soft = u8::from(d.soft_off),
        ecmm = if d.overtemp { 0x2000 } else { 0 },
        wm = d.mode,
        wl = d.level,
        mpo = mode.watts.round() as i64,
    );
    if adj != 1 {
        let progress = ((now - d.cal_start_s) / m.calibration_s * 100.0).clamp(0.0, 99.0);
        s.push_str(&format!(" BAR[{}]", progress.floor() as i64));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hot_room_cycles_the_over_temperature_protection_over_a_long_gap() {
        use crate::emulate::model::sync;
        let mut d = Device::new(&MODELS[0], 0.0, 50.0);
        let mut trips = 0;
        let mut last = d.overtemp;
        // Queried rarely: each sync spans many trip/recovery cycles.
        for hour in 1..=5 {
            sync(&mut d, f64::from(hour) * 3600.0);
            assert!(d.phys.chip_c() < 101.0, "chip {}", d.phys.chip_c());
            trips += usize::from(d.overtemp != last);
            last = d.overtemp;
        }
        // Finer queries see it both hashing and stopped.
        let (mut on, mut off) = (0, 0);
        for k in 0..2000 {
            sync(&mut d, 5.0 * 3600.0 + f64::from(k) * 5.0);
            if d.overtemp {
                off += 1;
            } else {
                on += 1;
            }
        }
        assert!(on > 0 && off > 0, "on {on} off {off} trips {trips}");
    }

    #[test]
    fn c_atoi_reads_like_c() {
        assert_eq!(c_atoi("2"), Some(2));
        assert_eq!(c_atoi(" -1x"), Some(-1));
        assert_eq!(c_atoi("x"), None);
        assert_eq!(scan_cmd_int("set,1"), ("set", Some(1)));
        assert_eq!(scan_cmd_int("get"), ("get", None));
    }
}
