//! Avalon driver tests on replies written from the public protocol and field reports, and one
//! loopback listener for the connection handling.
//!
//! Sample shapes: the `version`, `summary` and `estats` objects and the joined reply follow
//! Canaan's Avalon_Nano3s `cg_miner/api/api.c` (`apiversion`, `summary`, `minerestats`,
//! `head_join`/`tail_join`/`send_result`: `{"cmd":[{..,"id":1}],...,"id":1}` then one NUL); the
//! `MM ID0` string follows `driver-avalon.c` `avalon_api_stats` (token order and formats,
//! `PS[]` with seven values, wall watts last). The quirks are the field's: bare `inf`/`nan`
//! (cgminer's `%f` doubles; pyasic's `_load_api_data` repairs them), `,}` (same), a reply cut off
//! after `"id":0` (issue 16), and the calibrating refusal text of `set_avalon_device_workmode`.

use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::models::{self, Model, PowerField};
use super::reply;
use super::tokens::Tokens;
use super::wire::{self, MAX_REPLY_BYTES};
use super::*;
use crate::devices::config::LevelConfig;

const NANO3S_MM: &str =
    "Ver[Nano3s-25012001_85ce93f] LVer[25012001_85ce93f] BVer[25012001_85ce93f] FW[Release] \
LED[0-0] DNA[0201000012345678] MEMFREE[12345] PFCnt[0] NETFAIL[0 0 0 0 0 0 0 0] \
SYSTEMSTATU[Work: In Work, Hash Board: 1] Elapsed[3600] BOOTBY[0x01.00000000] LW[123456] \
MH[0] DHW[0] HW[0] DH[1.234%] ITemp[21] OTemp[45] TMax[72] TAvg[65] TarT[75] Fan1[2100] \
FanR[40%] PS[0 0 2683 4900 0 2750 138] GHSspd[6012.50] DHspd[0.000%] GHSmm[6100.00] \
GHSavg[5990.10] WU[83600.00] Freq[520.00] MGHS[5990.10] MTmax[72] MTavg[65] TA[12] \
Core[A3197S] BIN[1] PING[45] SoftOFF[0] ECHU[0] ECMM[0] PLL0[10 20 30 40] SF0[500 510 520 530] \
PVT_T0[ 60  62  64  66  68  70  72  70  68  66  64  62] WORKMODE[2] WORKLEVEL[0] MPO[140] \
CALIALL[0] ADJ[1]";

fn version_part(prod: &str, model: &str) -> String {
    format!(
        r#"{{"STATUS":[{{"STATUS":"S","When":1733500000,"Code":22,"Msg":"CGMiner versions","Description":"cgminer 4.11.1"}}],"VERSION":[{{"CGMiner":"4.11.1","API":"3.7","PROD":"{prod}","MODEL":"{model}","HWTYPE":"N_MM1v1_X1","SWTYPE":"MM1v1_X1","LVERSION":"25012001_85ce93f","BVERSION":"25012001_85ce93f","CGVERSION":"25012001_85ce93f","DNA":"0201000012345678","MAC":"e0a1b2c3d4e5","UPAPI":"2"}}],"id":1}}"#
    )
}

fn summary_part(mhs_1m: &str) -> String {
    format!(
        r#"{{"STATUS":[{{"STATUS":"S","When":1733500000,"Code":11,"Msg":"Summary","Description":"cgminer 4.11.1"}}],"SUMMARY":[{{"Elapsed":3600,"MHS av":5990100.00,"MHS 30s":6001000.00,"MHS 1m":{mhs_1m},"MHS 5m":5995000.00,"Accepted":812,"Rejected":3,"Hardware Errors":0,"Utility":13.53}}],"id":1}}"#
    )
}

fn estats_part(mm: &str) -> String {
    format!(
        r#"{{"STATUS":[{{"STATUS":"S","When":1733500000,"Code":70,"Msg":"CGMiner stats","Description":"cgminer 4.11.1"}}],"STATS":[{{"STATS":0,"ID":"AVALON0","Elapsed":3600,"Calls":0,"Wait":0.000000,"Max":0.000000,"Min":99999999.000000,"MM ID0":"{mm}","MM Count":1,"Nonce Mask":25}}],"id":1}}"#
    )
}

/// A joined `version+summary+estats` reply, as `send_result` sends it (without the NUL).
fn joined(prod: &str, model: &str, mm: &str) -> String {
    format!(
        r#"{{"version":[{}],"summary":[{}],"estats":[{}],"id":1}}"#,
        version_part(prod, model),
        summary_part("6000000.00"),
        estats_part(mm)
    )
}

fn nano3s() -> String {
    joined("Avalon Nano3s", "Nano3s", NANO3S_MM)
}

fn avalon() -> Avalon {
    Avalon::new(&DeviceConfig::new(DeviceKind::Avalon, Some("127.0.0.1:1")))
}

fn poll_text(a: &mut Avalon, text: &str) -> Result<Telemetry, DeviceError> {
    let root = reply::parse(text)?;
    let r = read(&root)?;
    a.telemetry(&r)
}

#[test]
fn joined_reply_gives_the_nano3s_telemetry() {
    let mut a = avalon();
    let tel = poll_text(&mut a, &nano3s()).unwrap();
    assert_eq!(tel.model, "Avalon Nano 3S");
    assert_eq!(tel.watts, Some(138.0), "PS[6] is wall power on the Nano 3S");
    assert_eq!(tel.setting, Some(Setting::Level(2)));
    assert_eq!(tel.setting_name.as_deref(), Some("high"));
    assert_eq!(tel.chip_celsius, Some(72.0));
    assert_eq!(tel.chip_limit_celsius, 95.0);
    assert_eq!(tel.hashes_per_second, 6.0e12);
    assert_eq!((tel.shares_accepted, tel.shares_rejected), (812, 3));
    assert_eq!(tel.state, DeviceState::Ok);
    let sensors: Vec<_> = tel.temperatures.iter().map(|t| t.sensor.as_str()).collect();
    assert_eq!(sensors, ["chip max", "chip avg", "inlet", "outlet"]);
    assert_eq!(
        tel.profile.stopped_watts, None,
        "the Nano 3S has no soft-off"
    );
    assert_eq!(tel.profile.coldest(), Setting::Level(0));
    assert_eq!(tel.profile.max_watts(), 140.0);
    assert_eq!(a.firmware, "25012001_85ce93f");
}

#[test]
fn single_command_replies_have_their_own_status() {
    let root = reply::parse(&summary_part("1.0")).unwrap();
    let s = reply::section(&root, "summary").unwrap();
    assert!(reply::first(s, "SUMMARY").is_some());
    let err = reply::section(&reply::parse(r#"{"id":1}"#).unwrap(), "summary").unwrap_err();
    assert!(matches!(err, DeviceError::BadReply(m) if m.contains("summary")));
}

#[test]
fn power_index_is_per_model_data() {
    // The same PS[] on a Nano 3S is 138 W at index 6, not PS[4]/PS[5] (0 and 2750).
    let t = Tokens::parse(NANO3S_MM);
    let nano3s = models::lookup("Avalon Nano3s", "").unwrap();
    assert_eq!(
        nano3s.power,
        &[PowerField {
            token: "PS",
            index: 6
        }]
    );
    assert_eq!(power(&t, nano3s.power), Some(138.0));
    // A Mini 3 reports WALLPOWER[]; its PS[] is not power.
    let mini = models::lookup("Avalon Mini3", "").unwrap();
    assert_eq!(mini.name, "Avalon Mini 3");
    let t2 = Tokens::parse("PS[0 0 1 2 3 4 5] WALLPOWER[795]");
    assert_eq!(power(&t2, mini.power), Some(795.0));
    assert_eq!(power(&Tokens::parse("PS[0 0 1 2 3 4 5]"), mini.power), None);
    // Model keys: the most specific first.
    assert_eq!(
        models::lookup("AvalonNano", "Nano3").unwrap().name,
        "Avalon Nano 3"
    );
    assert_eq!(
        models::lookup("Avalon Nano3s-21", "").unwrap().name,
        "Avalon Nano 3S"
    );
    assert!(models::lookup("Avalon Q", "Q").is_none());
}

#[test]
fn a_known_model_without_its_power_token_is_a_bad_reply() {
    let mm = NANO3S_MM.replace("PS[0 0 2683 4900 0 2750 138]", "PS[0 0 2683 4900 0 2750]");
    let err = poll_text(&mut avalon(), &joined("Avalon Nano3s", "", &mm)).unwrap_err();
    assert!(
        matches!(&err, DeviceError::BadReply(m) if m.contains("PS[6]")),
        "{err}"
    );
}

#[test]
fn an_unknown_model_is_a_fault_naming_it_unless_levels_are_given() {
    let text = joined("Avalon Q", "Q", &format!("{NANO3S_MM} WALLPOWER[1650]"));
    let mut a = avalon();
    let tel = poll_text(&mut a, &text).unwrap();
    assert_eq!(tel.state, DeviceState::Fault);
    assert!(tel.reason.as_deref().unwrap().contains("\"Avalon Q Q\""));
    assert_eq!(tel.profile.steps, PowerSteps::Levels(vec![]));

    let mut cfg = DeviceConfig::new(DeviceKind::Avalon, Some("127.0.0.1:1"));
    cfg.levels = Some(vec![
        LevelConfig {
            value: 0,
            watts: 800.0,
        },
        LevelConfig {
            value: 2,
            watts: 1650.0,
        },
    ]);
    let mut a = Avalon::new(&cfg);
    let tel = poll_text(&mut a, &text).unwrap();
    assert_eq!(tel.state, DeviceState::Ok);
    assert_eq!(tel.watts, Some(1650.0));
    assert_eq!(tel.setting, Some(Setting::Level(1)));
    assert_eq!(tel.setting_name.as_deref(), Some("mode 2"));
}

#[test]
fn calibration_and_protection_show_in_the_state() {
    let calibrating = NANO3S_MM.replace("ADJ[1]", "ADJ[0] BAR[40]");
    let tel = poll_text(&mut avalon(), &joined("Avalon Nano3s", "", &calibrating)).unwrap();
    assert_eq!(tel.state, DeviceState::Calibrating);
    assert!(tel.reason.unwrap().contains("40 %"));

    let toohot = NANO3S_MM.replace("ECMM[0]", "ECMM[64]");
    let tel = poll_text(&mut avalon(), &joined("Avalon Nano3s", "", &toohot)).unwrap();
    assert_eq!(tel.state, DeviceState::Overheated);

    let hot = NANO3S_MM.replace("TMax[72]", "TMax[114]");
    let tel = poll_text(&mut avalon(), &joined("Avalon Nano3s", "", &hot)).unwrap();
    assert_eq!(tel.state, DeviceState::Overheated);

    let fault = NANO3S_MM.replace("Work: In Work", "Work: In Fault");
    let tel = poll_text(&mut avalon(), &joined("Avalon Nano3s", "", &fault)).unwrap();
    assert_eq!(tel.state, DeviceState::Fault);
}

#[test]
fn bare_inf_and_nan_become_missing_fields_not_lost_replies() {
    let text = format!(
        r#"{{"version":[{}],"summary":[{}],"estats":[{}],"id":1}}"#,
        version_part("Avalon Nano3s", ""),
        summary_part("inf").replace("\"MHS av\":5990100.00", "\"MHS av\":nan"),
        estats_part(NANO3S_MM).replace("\"Wait\":0.000000", "\"Wait\":-inf")
    );
    let tel = poll_text(&mut avalon(), &text).unwrap();
    // MHS 1m and MHS av are missing: the hashrate falls back to the device's GHSspd.
    assert_eq!(tel.hashes_per_second, 6012.5e9);
    assert_eq!(tel.watts, Some(138.0));
    // Inside strings they are text, untouched.
    assert_eq!(
        reply::sanitise(r#"{"a":"inf, nan","b":[inf,-nan , 1],"c":null}"#),
        r#"{"a":"inf, nan","b":[null,null , 1],"c":null}"#
    );
}

#[test]
fn trailing_commas_nul_and_cut_replies() {
    let text = format!(
        "{}\0",
        nano3s().replace(r#""Nonce Mask":25}"#, r#""Nonce Mask":25,}"#)
    );
    let text = text.replace(r#""id":1}],"summary""#, r#""id":1},],"summary""#);
    assert!(poll_text(&mut avalon(), &text).is_ok());

    let cut =
        r#"{"STATUS":[{"STATUS":"S","When":1,"Code":70,"Msg":"CGMiner stats"}],"STATS":[],"id":0"#;
    let err = reply::parse(cut).unwrap_err();
    assert!(
        matches!(&err, DeviceError::BadReply(m) if m.contains("truncated")),
        "{err}"
    );
    let marked = r#"{"STATUS":[{"STATUS":"S"}],"id":0}"#;
    assert!(matches!(
        reply::parse(marked),
        Err(DeviceError::BadReply(_))
    ));
    assert!(matches!(
        reply::parse("garbage"),
        Err(DeviceError::BadReply(_))
    ));
    assert!(matches!(
        reply::parse("[1,2]"),
        Err(DeviceError::BadReply(_))
    ));
    // A reply without an MM ID string says what is missing.
    let no_mm = joined("Avalon Nano3s", "", "x").replace("\"MM ID0\"", "\"Other\"");
    let err = poll_text(&mut avalon(), &no_mm).unwrap_err();
    assert!(
        matches!(&err, DeviceError::BadReply(m) if m.contains("MM ID")),
        "{err}"
    );
}

#[test]
fn status_letters_map_to_errors() {
    let status = |letter: &str, msg: &str| {
        let text = format!(
            r#"{{"STATUS":[{{"STATUS":"{letter}","When":1,"Code":120,"Msg":"{msg}","Description":"cgminer 4.11.1"}}],"id":1}}"#
        );
        reply::section(&reply::parse(&text).unwrap(), "ascset").map(|_| ())
    };
    assert_eq!(status("S", "ASC 0 set OK"), Ok(()));
    assert_eq!(status("I", "ASC 0 set info: workmode 2"), Ok(()));
    let busy = status(
        "E",
        "ASC 0 set failed: current mode 1 is caling Don't permit switch mode",
    );
    assert!(matches!(busy, Err(DeviceError::Busy(m)) if m.contains("caling")));
    let refused = status("E", "ASC 0 set failed: error:2 parameter error");
    assert!(matches!(refused, Err(DeviceError::Refused(m)) if m.contains("parameter error")));
    assert!(matches!(status("W", "x"), Err(DeviceError::Refused(_))));
    assert!(matches!(status("F", "x"), Err(DeviceError::Refused(_))));
    assert!(matches!(status("Q", "x"), Err(DeviceError::BadReply(_))));
}

#[test]
fn settings_map_to_ascset_requests() {
    let mut a = avalon();
    let tel = poll_text(&mut a, &nano3s()).unwrap();
    let p = &tel.profile;
    assert_eq!(
        a.requests(Setting::Level(0), p, 1_000).unwrap(),
        vec![r#"{"command":"ascset","parameter":"0,workmode,set,0"}"#]
    );
    assert_eq!(
        a.requests(Setting::Watts(120.0), p, 1_000).unwrap(),
        vec![r#"{"command":"ascset","parameter":"0,workmode,set,1"}"#]
    );
    assert!(matches!(
        a.requests(Setting::Stop, p, 1_000),
        Err(DeviceError::Unsupported(m)) if m.contains("no soft-off")
    ));
    assert!(matches!(
        a.requests(Setting::Level(3), p, 1_000),
        Err(DeviceError::Unsupported(_))
    ));
    assert_eq!(
        wire::request_text("version+summary+estats", None),
        r#"{"command":"version+summary+estats"}"#
    );
}

/// A model whose firmware has soft-off (as the Avalon A-series firmware does).
static SOFTOFF_MODEL: Model = Model {
    name: "Avalon with soft-off",
    key: "UNUSED",
    power: &[PowerField {
        token: "WALLPOWER",
        index: 0,
    }],
    modes: &[
        models::Mode {
            value: 0,
            name: "low",
            watts: 400.0,
        },
        models::Mode {
            value: 1,
            name: "high",
            watts: 800.0,
        },
    ],
    chip_limit_celsius: 95.0,
    overheat_celsius: 113.0,
    ecmm_overheat_mask: 0x40,
    softoff_watts: Some(12.0),
    settle_seconds: 600.0,
};

#[test]
fn soft_off_where_the_model_has_it() {
    let mut a = avalon();
    let reading = |status: &str| Reading {
        product: "Avalon X".into(),
        model: Some(&SOFTOFF_MODEL),
        firmware: "1".into(),
        tokens: Tokens::parse(&format!(
            "SYSTEMSTATU[Work: {status}, Hash Board: 1] WALLPOWER[14] WORKMODE[1] ADJ[1]"
        )),
        hashes_per_second: None,
        accepted: None,
        rejected: None,
    };
    let tel = a.telemetry(&reading("In Work")).unwrap();
    assert_eq!(tel.profile.stopped_watts, Some(12.0));
    assert_eq!(tel.profile.coldest(), Setting::Stop);
    assert_eq!(tel.setting, Some(Setting::Level(1)));
    assert_eq!(
        a.requests(Setting::Stop, &tel.profile, 1_000).unwrap(),
        vec![r#"{"command":"ascset","parameter":"0,softoff,1:1005"}"#]
    );
    let tel = a.telemetry(&reading("In Idle")).unwrap();
    assert_eq!(tel.setting, Some(Setting::Stop));
    assert_eq!(
        a.requests(Setting::Level(0), &tel.profile, 1_000).unwrap(),
        vec![
            r#"{"command":"ascset","parameter":"0,softon,1:1005"}"#.to_string(),
            r#"{"command":"ascset","parameter":"0,workmode,set,0"}"#.to_string()
        ]
    );
}

proptest! {
    #[test]
    fn the_token_parser_never_panics(s in ".{0,400}") {
        let t = Tokens::parse(&s);
        let _ = t.number("PS", 6);
        let _ = t.values("TMax");
    }

    #[test]
    fn the_reply_parser_never_panics(s in ".{0,400}") {
        let _ = reply::sanitise(&s);
        let _ = reply::parse(&s);
    }

    #[test]
    fn tokens_round_trip(names in proptest::collection::vec("[A-Za-z][A-Za-z0-9_]{0,8}", 1..8),
                          values in proptest::collection::vec(proptest::collection::vec(-1000i32..1000, 0..5), 8)) {
        let text: String = names.iter().zip(&values).map(|(n, v)| {
            format!("{n}[{}] ", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" "))
        }).collect();
        let t = Tokens::parse(&text);
        let mut seen = std::collections::HashSet::new();
        for (n, v) in names.iter().zip(&values) {
            if seen.insert(n.clone()) {
                for (i, x) in v.iter().enumerate() {
                    prop_assert_eq!(t.number(n, i), Some(f64::from(*x)));
                }
            }
        }
    }
}

#[test]
fn token_parser_handles_field_shapes() {
    let t = Tokens::parse("'STATS':Ver[1246-87] SYSTEMSTATU[Work: In Idle, Hash Board: 3 ] FanR[40%] Temp[-273] PVT_T0[ 60  62] broken[1 2");
    assert_eq!(t.raw("Ver"), Some("1246-87"));
    assert_eq!(t.raw("SYSTEMSTATU"), Some("Work: In Idle, Hash Board: 3"));
    assert_eq!(t.number("FanR", 0), Some(40.0));
    assert_eq!(t.number("Temp", 0), Some(-273.0));
    assert_eq!(t.values("PVT_T0"), ["60", "62"]);
    assert_eq!(t.raw("broken"), None);
    assert_eq!(t.len(), 5);
}

/// A loopback peer that accepts one connection and never answers; abort the task when done.
pub(crate) async fn silent_peer() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(s);
    });
    (addr, hold)
}

/// A loopback address nothing listens on any more.
pub(crate) async fn refused_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A loopback CGMiner stand-in: answers each connection with the next canned bytes, after
/// reading the request to its end (hearth half-closes); returns the requests it saw.
async fn serve(replies: Vec<Vec<u8>>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        for reply in replies {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            s.read_to_end(&mut req).await.unwrap();
            seen.push(String::from_utf8(req).unwrap());
            let _ = s.write_all(&reply).await;
            let _ = s.shutdown().await;
        }
        seen
    });
    (addr, task)
}

#[tokio::test]
async fn one_connection_per_request_read_to_nul_or_eof() {
    let mut with_nul = nano3s().into_bytes();
    with_nul.push(0);
    with_nul.extend_from_slice(b"ignored after the NUL");
    let ok = br#"{"STATUS":[{"STATUS":"S","When":1,"Code":119,"Msg":"ASC 0 set OK","Description":"cgminer 4.11.1"}],"id":1}"#.to_vec();
    let busy = br#"{"STATUS":[{"STATUS":"E","When":1,"Code":120,"Msg":"ASC 0 set failed: current mode 2 is caling Don't permit switch mode","Description":"cgminer 4.11.1"}],"id":1}"#;
    let (addr, server) = serve(vec![with_nul, nano3s().into_bytes(), ok, busy.to_vec()]).await;
    let mut cfg = DeviceConfig::new(DeviceKind::Avalon, Some(&addr));
    cfg.timeout_seconds = Some(5.0);
    let mut a = Avalon::new(&cfg);
    let tel = a.poll().await.unwrap();
    assert_eq!(tel.watts, Some(138.0));
    // Without a NUL the reply ends where the device closes.
    let tel = a.poll().await.unwrap();
    let profile = tel.profile.clone();
    assert_eq!(a.apply(Setting::Level(1), &profile).await, Ok(()));
    let busy = a.apply(Setting::Level(0), &profile).await;
    assert!(matches!(busy, Err(DeviceError::Busy(_))), "{busy:?}");
    let seen = server.await.unwrap();
    assert_eq!(
        seen,
        [
            r#"{"command":"version+summary+estats"}"#,
            r#"{"command":"version+summary+estats"}"#,
            r#"{"command":"ascset","parameter":"0,workmode,set,1"}"#,
            r#"{"command":"ascset","parameter":"0,workmode,set,0"}"#,
        ]
    );
}

#[tokio::test]
async fn oversized_silent_and_refused_devices_fail_clearly() {
    // Oversized: more than the cap and no NUL.
    let (addr, _server) = serve(vec![vec![b'{'; MAX_REPLY_BYTES + 10_000]]).await;
    let err = wire::exchange(&addr, "{}", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeviceError::BadReply(m) if m.contains("KiB")),
        "{err}"
    );

    // Silent: accepts, never answers.
    let (addr, hold) = silent_peer().await;
    let started = std::time::Instant::now();
    let err = wire::exchange(&addr, "{}", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, DeviceError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();

    // Refused: nothing listens on the port any more.
    let addr = refused_address().await;
    let err = probe(&addr, Duration::from_secs(2)).await.unwrap_err();
    assert!(matches!(err, DeviceError::Connect(_)), "{err}");
}

#[tokio::test]
async fn probe_identifies_a_nano3s() {
    let (addr, _server) = serve(vec![nano3s().into_bytes()]).await;
    let id = probe(&addr, Duration::from_secs(5)).await.unwrap();
    assert_eq!(id.kind, "avalon");
    assert_eq!(id.model, "Avalon Nano 3S");
    assert_eq!(id.firmware, "25012001_85ce93f");
    assert!(
        id.summary.contains("high") && id.summary.contains("138 W"),
        "{}",
        id.summary
    );
}
