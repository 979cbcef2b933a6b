//! Unit tests of the Braiins driver: reply mapping, request mapping, token handling, probe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tonic::{Code, Response, Status};

use super::client::{self, Login, Session};
use super::proto::bos::v1 as pb;
use super::proto::bos::ApiVersion;
use super::telemetry::{self, Action, Limits, Overrides, Replies};
use crate::devices::driver::DeviceError;
use crate::mining::fleet::device::{DeviceState, PowerSteps, Setting};

fn power(w: u64) -> Option<pb::Power> {
    Some(pb::Power { watt: w })
}

fn limits() -> Limits {
    Limits {
        min_watts: 1000.0,
        max_watts: 3500.0,
        hot_celsius: Some(95.0),
        settle_seconds: 90.0,
    }
}

fn overrides() -> Overrides {
    Overrides {
        min_command_interval_seconds: 120.0,
        chip_limit_celsius: None,
    }
}

/// A miner mining at a 3 kW target, stable, drawing 2,950 W, hottest chip 72.5 °C.
fn mining() -> Replies {
    Replies {
        details: pb::GetMinerDetailsResponse {
            miner_identity: Some(pb::MinerIdentity {
                name: "Antminer S19".into(),
                miner_model: "Antminer S19j Pro".into(),
            }),
            bos_version: Some(pb::BosVersion {
                current: "26.05".into(),
            }),
            hostname: "miner".into(),
            status: pb::MinerStatus::Normal as i32,
        },
        stats: pb::GetMinerStatsResponse {
            pool_stats: Some(pb::PoolStats {
                accepted_shares: 120,
                rejected_shares: 3,
            }),
            miner_stats: Some(pb::WorkSolverStats {
                real_hashrate: Some(pb::RealHashrate {
                    last_5s: Some(pb::GigaHashrate {
                        gigahash_per_second: 99_000.0,
                    }),
                    last_1m: Some(pb::GigaHashrate {
                        gigahash_per_second: 100_000.0,
                    }),
                }),
            }),
            power_stats: Some(pb::MinerPowerStats {
                approximated_consumption: power(2950),
            }),
        },
        cooling: pb::GetCoolingStateResponse {
            highest_temperature: Some(pb::TemperatureSensor {
                id: Some(1),
                location: pb::SensorLocation::Chip as i32,
                temperature: Some(pb::Temperature { degree_c: 72.5 }),
            }),
        },
        tuner: pb::GetTunerStateResponse {
            overall_tuner_state: pb::TunerState::Stable as i32,
            mode_state: Some(
                pb::get_tuner_state_response::ModeState::PowerTargetModeState(
                    pb::PowerTargetModeState {
                        current_target: power(3000),
                    },
                ),
            ),
        },
    }
}

#[test]
fn a_mining_miner_maps_to_measured_telemetry() {
    let t = telemetry::telemetry(&mining(), &limits(), &overrides()).unwrap();
    assert_eq!(t.model, "Antminer S19j Pro");
    assert_eq!(t.watts, Some(2950.0));
    assert_eq!(t.setting, Some(Setting::Watts(3000.0)));
    assert_eq!(t.setting_name.as_deref(), Some("3000 W"));
    assert_eq!(t.chip_celsius, Some(72.5));
    assert_eq!(t.temperatures.len(), 1);
    assert_eq!(t.temperatures[0].sensor, "chip");
    assert_eq!(t.chip_limit_celsius, 95.0);
    assert_eq!(t.hashes_per_second, 100_000.0 * 1e9);
    assert_eq!((t.shares_accepted, t.shares_rejected), (120, 3));
    assert_eq!(t.state, DeviceState::Ok);
    assert_eq!(t.reason, None);
    assert_eq!(
        t.profile.steps,
        PowerSteps::Range {
            min_watts: 1000.0,
            max_watts: 3500.0
        }
    );
    assert_eq!(t.profile.stopped_watts, Some(telemetry::STOPPED_WATTS));
    assert_eq!(t.profile.settle_seconds, 90.0);
    assert_eq!(t.profile.min_command_interval_seconds, 120.0);
}

#[test]
fn a_paused_miner_is_stopped_and_its_zero_watts_count() {
    let mut r = mining();
    r.details.status = pb::MinerStatus::Paused as i32;
    r.stats.power_stats = Some(pb::MinerPowerStats {
        approximated_consumption: power(0),
    });
    let t = telemetry::telemetry(&r, &limits(), &overrides()).unwrap();
    assert_eq!(t.setting, Some(Setting::Stop));
    assert_eq!(t.setting_name.as_deref(), Some("paused"));
    assert_eq!(t.watts, Some(0.0));
    assert_eq!(t.state, DeviceState::Ok);
}

#[test]
fn zero_watts_while_mining_is_not_a_reading() {
    let mut r = mining();
    r.stats.power_stats = Some(pb::MinerPowerStats {
        approximated_consumption: power(0),
    });
    let t = telemetry::telemetry(&r, &limits(), &overrides()).unwrap();
    assert_eq!(t.watts, None);
    assert_eq!(t.setting, Some(Setting::Watts(3000.0)));
}

#[test]
fn missing_or_absurd_power_is_a_bad_reply() {
    let mut r = mining();
    r.stats.power_stats = None;
    let e = telemetry::telemetry(&r, &limits(), &overrides()).unwrap_err();
    assert!(
        matches!(&e, DeviceError::BadReply(m) if m.contains("approximated_consumption")),
        "{e}"
    );
    r.stats.power_stats = Some(pb::MinerPowerStats {
        approximated_consumption: None,
    });
    assert!(matches!(
        telemetry::telemetry(&r, &limits(), &overrides()),
        Err(DeviceError::BadReply(_))
    ));
    r.stats.power_stats = Some(pb::MinerPowerStats {
        approximated_consumption: power(u64::MAX),
    });
    assert!(matches!(
        telemetry::telemetry(&r, &limits(), &overrides()),
        Err(DeviceError::BadReply(_))
    ));
}

#[test]
fn tuning_is_ok_with_a_reason_and_faults_are_faults() {
    let mut r = mining();
    r.tuner.overall_tuner_state = pb::TunerState::Tuning as i32;
    let t = telemetry::telemetry(&r, &limits(), &overrides()).unwrap();
    assert_eq!(t.state, DeviceState::Ok);
    assert_eq!(t.reason.as_deref(), Some("tuning"));
    assert_eq!(t.setting, Some(Setting::Watts(3000.0)));

    r.tuner.overall_tuner_state = pb::TunerState::Error as i32;
    let t = telemetry::telemetry(&r, &limits(), &overrides()).unwrap();
    assert_eq!(t.state, DeviceState::Fault);

    r.tuner.overall_tuner_state = pb::TunerState::Stable as i32;
    r.details.status = pb::MinerStatus::NotStarted as i32;
    let t = telemetry::telemetry(&r, &limits(), &overrides()).unwrap();
    assert_eq!(t.state, DeviceState::Fault);
    assert_eq!(t.reason.as_deref(), Some("bosminer is not running"));

    // An enum value from a newer firmware is not an error.
    r.details.status = 99;
    r.tuner.overall_tuner_state = 99;
    let t = telemetry::telemetry(&r, &limits(), &overrides()).unwrap();
    assert_eq!(t.state, DeviceState::Ok);
}

#[test]
fn no_power_target_mode_means_no_known_setting() {
    let mut r = mining();
    r.tuner.mode_state = None;
    let t = telemetry::telemetry(&r, &limits(), &overrides()).unwrap();
    assert_eq!(t.setting, None);
    assert_eq!(t.setting_name, None);
    r.tuner.mode_state = Some(
        pb::get_tuner_state_response::ModeState::PowerTargetModeState(pb::PowerTargetModeState {
            current_target: power(0),
        }),
    );
    assert_eq!(
        telemetry::telemetry(&r, &limits(), &overrides())
            .unwrap()
            .setting,
        None
    );
}

#[test]
fn dead_or_missing_sensors_give_no_chip_reading() {
    let mut r = mining();
    for c in [0.0, f64::NAN, f64::INFINITY] {
        r.cooling.highest_temperature = Some(pb::TemperatureSensor {
            id: None,
            location: pb::SensorLocation::Chip as i32,
            temperature: Some(pb::Temperature { degree_c: c }),
        });
        let t = telemetry::telemetry(&r, &limits(), &overrides()).unwrap();
        assert_eq!(t.chip_celsius, None, "{c}");
        assert!(t.temperatures.is_empty());
    }
    r.cooling.highest_temperature = None;
    let t = telemetry::telemetry(&r, &limits(), &overrides()).unwrap();
    assert_eq!(t.chip_celsius, None);

    r.cooling.highest_temperature = Some(pb::TemperatureSensor {
        id: Some(2),
        location: pb::SensorLocation::Pcb as i32,
        temperature: Some(pb::Temperature { degree_c: 61.0 }),
    });
    let t = telemetry::telemetry(&r, &limits(), &overrides()).unwrap();
    assert_eq!(t.chip_celsius, Some(61.0));
    assert_eq!(t.temperatures[0].sensor, "board");
}

#[test]
fn chip_limit_is_the_config_else_the_miners_hot_temperature_else_the_default() {
    let r = mining();
    let mut o = overrides();
    o.chip_limit_celsius = Some(80.0);
    assert_eq!(
        telemetry::telemetry(&r, &limits(), &o)
            .unwrap()
            .chip_limit_celsius,
        80.0
    );
    let mut l = limits();
    l.hot_celsius = None;
    assert_eq!(
        telemetry::telemetry(&r, &l, &overrides())
            .unwrap()
            .chip_limit_celsius,
        telemetry::DEFAULT_HOT_CELSIUS
    );
}

fn constraints(min: u64, max: u64) -> pb::GetConstraintsResponse {
    pb::GetConstraintsResponse {
        tuner_constraints: Some(pb::TunerConstraints {
            power_target: Some(pb::PowerConstraints {
                default: power(3250),
                min: power(min),
                max: power(max),
            }),
        }),
        cooling_constraints: Some(pb::CoolingConstraints {
            hot_temperature: Some(pb::TemperatureConstraints {
                default: Some(pb::Temperature { degree_c: 90.0 }),
                min: None,
                max: None,
            }),
        }),
        hashboards_constraints: Some(pb::HashboardConstraints {
            quick_ramping_time_s: Some(pb::UInt32Constraints {
                default: 60,
                min: 0,
                max: 600,
            }),
        }),
    }
}

#[test]
fn constraints_give_the_range_hot_temperature_and_settling() {
    let l = telemetry::limits(&constraints(771, 6435)).unwrap();
    assert_eq!(
        l,
        Limits {
            min_watts: 771.0,
            max_watts: 6435.0,
            hot_celsius: Some(90.0),
            settle_seconds: 60.0,
        }
    );
    let mut c = constraints(771, 6435);
    c.cooling_constraints = None;
    c.hashboards_constraints = None;
    let l = telemetry::limits(&c).unwrap();
    assert_eq!(l.hot_celsius, None);
    assert_eq!(l.settle_seconds, telemetry::DEFAULT_SETTLE_SECONDS);
}

#[test]
fn constraints_without_a_sane_range_are_a_bad_reply() {
    for c in [
        constraints(0, 3000),
        constraints(3000, 1000),
        constraints(1000, u64::MAX),
        pb::GetConstraintsResponse::default(),
    ] {
        assert!(matches!(
            telemetry::limits(&c),
            Err(DeviceError::BadReply(_))
        ));
    }
    let mut c = constraints(1000, 3000);
    if let Some(p) = c
        .tuner_constraints
        .as_mut()
        .and_then(|t| t.power_target.as_mut())
    {
        p.max = None;
    }
    assert!(matches!(
        telemetry::limits(&c),
        Err(DeviceError::BadReply(_))
    ));
}

#[test]
fn settings_map_to_requests() {
    let profile = telemetry::profile(&limits(), &overrides());
    assert_eq!(
        telemetry::action(Setting::Stop, &profile).unwrap(),
        Action::Pause
    );
    let target = |w: f64| match telemetry::action(Setting::Watts(w), &profile).unwrap() {
        Action::PowerTarget(r) => {
            assert_eq!(r.save_action, 2, "SAVE_AND_APPLY");
            r.power_target.map(|p| p.watt)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(target(2000.4), Some(2000));
    assert_eq!(target(9000.0), Some(3500), "clamped to the range");
    assert_eq!(target(10.0), Some(1000), "clamped to the range");
    assert!(matches!(
        telemetry::action(Setting::Watts(f64::NAN), &profile),
        Err(DeviceError::Unsupported(_))
    ));
    assert!(matches!(
        telemetry::action(Setting::Level(1), &profile),
        Err(DeviceError::Unsupported(_))
    ));
}

#[test]
fn field_numbers_decode_upstream_bytes() {
    // GetMinerStatsResponse { power_stats (3) { approximated_consumption (1) { watt (1): 3000 } } }
    let stats =
        pb::GetMinerStatsResponse::decode(&[0x1a, 0x05, 0x0a, 0x03, 0x08, 0xb8, 0x17][..]).unwrap();
    assert_eq!(
        stats.power_stats.and_then(|p| p.approximated_consumption),
        power(3000)
    );
    // GetTunerStateResponse { overall_tuner_state (1): TUNING (3),
    //   power_target_mode_state (2) { profile (1) {}, which hearth does not read: skipped,
    //   current_target (2) { watt (1): 1500 } } }
    let tuner = pb::GetTunerStateResponse::decode(
        &[
            0x08, 0x03, 0x12, 0x07, 0x0a, 0x00, 0x12, 0x03, 0x08, 0xdc, 0x0b,
        ][..],
    )
    .unwrap();
    assert_eq!(tuner.overall_tuner_state, pb::TunerState::Tuning as i32);
    assert_eq!(
        tuner.mode_state,
        Some(
            pb::get_tuner_state_response::ModeState::PowerTargetModeState(
                pb::PowerTargetModeState {
                    current_target: power(1500)
                }
            )
        )
    );
    // SetPowerTargetRequest { save_action (1): 2, power_target (2) { watt (1): 1500 } }
    let req = pb::SetPowerTargetRequest {
        save_action: pb::SaveAction::SaveAndApply as i32,
        power_target: power(1500),
    };
    assert_eq!(
        req.encode_to_vec(),
        [0x08, 0x02, 0x12, 0x03, 0x08, 0xdc, 0x0b]
    );
    // GetMinerDetailsResponse { status (12): PAUSED (3) }
    let d = pb::GetMinerDetailsResponse::decode(&[0x60, 0x03][..]).unwrap();
    assert_eq!(d.status, pb::MinerStatus::Paused as i32);
}

#[test]
fn the_token_travels_raw_in_authorization() {
    let token = client::token_value("eUInGZBQ4yGyKiDe").unwrap();
    let request = client::with_token(pb::GetMinerStatsRequest {}, &token);
    let values: Vec<_> = request
        .metadata()
        .get_all(client::AUTHORIZATION)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(values, ["eUInGZBQ4yGyKiDe"]);
}

#[test]
fn unusable_tokens_are_bad_replies() {
    for t in [
        String::new(),
        "tok\u{e9}n".to_string(),
        "a\nb".to_string(),
        "x".repeat(5000),
    ] {
        assert!(
            matches!(client::token_value(&t), Err(DeviceError::BadReply(_))),
            "{t:?}"
        );
    }
}

/// Hands out tokens `t1`, `t2`, … and counts the logins.
struct Counting(Arc<AtomicU64>);

impl Login for Counting {
    async fn login(&mut self) -> Result<String, DeviceError> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(format!("t{n}"))
    }
}

/// A device that accepts only `valid` tokens, and records the tokens it was sent.
fn device(
    valid: &'static [&'static str],
    seen: &Arc<std::sync::Mutex<Vec<String>>>,
) -> impl Fn(
    tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
) -> std::future::Ready<Result<Response<u32>, Status>> {
    let seen = seen.clone();
    move |t| {
        let t = t.to_str().unwrap().to_string();
        seen.lock().unwrap().push(t.clone());
        std::future::ready(if valid.contains(&t.as_str()) {
            Ok(Response::new(7))
        } else {
            Err(Status::unauthenticated("session expired"))
        })
    }
}

#[tokio::test]
async fn a_session_logs_in_once_and_keeps_its_token() {
    let logins = Arc::new(AtomicU64::new(0));
    let seen = Arc::default();
    let mut s = Session::new(Counting(logins.clone()));
    let call = device(&["t1"], &seen);
    for _ in 0..3 {
        assert_eq!(s.run(&call).await.unwrap(), 7);
    }
    assert_eq!(logins.load(Ordering::SeqCst), 1);
    assert_eq!(s.logins, 1);
    assert_eq!(*seen.lock().unwrap(), ["t1", "t1", "t1"]);
}

#[tokio::test]
async fn an_expired_token_logs_in_again_once_and_retries() {
    let logins = Arc::new(AtomicU64::new(0));
    let seen = Arc::default();
    let mut s = Session::new(Counting(logins.clone()));
    // t1 is refused (expired), t2 works.
    assert_eq!(s.run(device(&["t2"], &seen)).await.unwrap(), 7);
    assert_eq!(logins.load(Ordering::SeqCst), 2);
    assert_eq!(*seen.lock().unwrap(), ["t1", "t2"]);
    // The new token is kept.
    assert_eq!(s.run(device(&["t2"], &seen)).await.unwrap(), 7);
    assert_eq!(logins.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_retry_is_an_auth_error_without_a_loop() {
    let logins = Arc::new(AtomicU64::new(0));
    let seen = Arc::default();
    let mut s = Session::new(Counting(logins.clone()));
    let e = s.run(device(&[], &seen)).await.unwrap_err();
    assert_eq!(e, DeviceError::Auth("session expired".into()));
    assert_eq!(logins.load(Ordering::SeqCst), 2, "one login, one re-login");
    assert_eq!(seen.lock().unwrap().len(), 2, "one call, one retry");
    // The refused token is dropped: the next call logs in afresh.
    let _ = s.run(device(&[], &seen)).await;
    assert_eq!(logins.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn other_errors_do_not_log_in_again() {
    let logins = Arc::new(AtomicU64::new(0));
    let mut s = Session::new(Counting(logins.clone()));
    let e = s
        .run(|_| std::future::ready(Err::<Response<u32>, _>(Status::unavailable("refused"))))
        .await
        .unwrap_err();
    assert_eq!(e, DeviceError::Connect("refused".into()));
    assert_eq!(logins.load(Ordering::SeqCst), 1);
}

#[test]
fn statuses_map_to_driver_errors() {
    use client::status_error;
    assert_eq!(
        status_error(&Status::unavailable("tcp connect error")),
        DeviceError::Connect("tcp connect error".into())
    );
    assert_eq!(
        status_error(&Status::unauthenticated("no token")),
        DeviceError::Auth("no token".into())
    );
    assert_eq!(
        status_error(&Status::invalid_argument("power target out of range")),
        DeviceError::Status("InvalidArgument: power target out of range".into())
    );
    assert!(matches!(
        status_error(&Status::new(Code::Internal, "")),
        DeviceError::Status(m) if !m.is_empty()
    ));
}

#[test]
fn probe_identity_names_the_api_and_what_the_miner_tells() {
    let v = ApiVersion {
        major: 1,
        minor: 11,
        patch: 0,
        pre: String::new(),
        build: String::new(),
    };
    let id = telemetry::identity("127.0.0.1:50051", &v, None).unwrap();
    assert_eq!(id.kind, "braiins");
    assert_eq!(id.model, "");
    assert_eq!(id.firmware, "public API 1.11.0");
    assert!(id.summary.contains("1.11.0") && id.summary.contains("127.0.0.1:50051"));
    let id = telemetry::identity("127.0.0.1:50051", &v, Some(&mining().details)).unwrap();
    assert_eq!(id.model, "Antminer S19j Pro");
    assert_eq!(id.firmware, "26.05");
    let beta = ApiVersion {
        major: 1,
        pre: "beta.6".into(),
        ..v.clone()
    };
    let id = telemetry::identity("h:1", &beta, None).unwrap();
    assert_eq!(id.firmware, "public API 1.11.0-beta.6");
    assert!(matches!(
        telemetry::identity("h:1", &ApiVersion::default(), None),
        Err(DeviceError::BadReply(_))
    ));
}

#[tokio::test]
async fn probe_of_a_closed_port_is_a_connect_error_within_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    match super::probe(&addr, timeout).await {
        Err(DeviceError::Connect(m)) => assert!(!m.is_empty()),
        Err(e) => panic!("expected a connect error, got {e}"),
        Ok(id) => panic!("a closed port identified as {}", id.summary),
    }
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
}

#[test]
fn an_address_that_is_not_host_port_is_a_connect_error() {
    assert!(matches!(
        client::channel("bad host", Duration::from_secs(1)),
        Err(DeviceError::Connect(_))
    ));
}
