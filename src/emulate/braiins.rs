//! A Braiins OS+ miner on its public gRPC API (package `braiins.bos.v1`), over HTTP/2 without
//! TLS. `braiins.bos.ApiVersionService/GetApiVersion` needs no token;
//! `AuthenticationService/Login` answers a session token in the `authorization` response header,
//! which every other call sends back raw (no "Bearer") in its `authorization` metadata, else
//! UNAUTHENTICATED; a session ends after 3,600 s without use. Power follows
//! `PerformanceService/SetPowerTarget` at the model's W/s while the tuner reports TUNING.
//!
//! The messages are in [`super::bos_proto`], written with the field numbers of Braiins' published
//! `bos-plus-api` protos (no .proto file, so the emulator shares nothing with the driver's proto);
//! the services are routed by hand onto `tonic::server::Grpc`. Only the subset hearth needs is
//! served; other methods answer UNIMPLEMENTED.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::Rng;
use tokio::net::TcpStream;
use tonic::server::{Grpc, UnaryService};
use tonic::Status;
use tonic_prost::ProstCodec;

use super::bos_proto::*;
use super::model::{self, state_of, Params, Physics, Ramp, Watch};
use super::net::{self, Server};
use super::{
    pick_model, EmulateError, EmulatorKind, EmulatorOptions, EmulatorState, Fault, Live, Shared,
};

/// What differs between miners (data, not code).
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The `--model` key.
    pub key: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Lowest power target, W.
    pub min_w: u64,
    /// Default power target, W.
    pub default_w: u64,
    /// Highest power target, W.
    pub max_w: u64,
    /// Hashrate at the default target, TH/s.
    pub ths_at_default: f64,
    /// Wall power paused (controller, fans), W.
    pub idle_w: f64,
    /// How fast power moves towards a new target, W/s.
    pub ramp_w_per_s: f64,
    /// Chip rise over ambient per wall watt, °C/W.
    pub chip_c_per_w: f64,
    /// Board rise over ambient per wall watt, °C/W.
    pub board_c_per_w: f64,
    /// Chip temperature at which bosminer stops, °C.
    pub dangerous_c: f64,
}

/// The miners. Sources: Bitmain's specs (Antminer S19j Pro 104 TH/s at 3068 W; S9 13.5 TH/s at
/// 1323 W); the power-target ranges and ramp rates are of the order Braiins OS+ allows and
/// owners report, not Braiins figures.
pub const MODELS: &[Model] = &[
    Model {
        key: "s19jpro",
        name: "Antminer S19J Pro",
        min_w: 1000,
        default_w: 3068,
        max_w: 3600,
        ths_at_default: 104.0,
        idle_w: 45.0,
        ramp_w_per_s: 20.0,
        chip_c_per_w: 0.016,
        board_c_per_w: 0.012,
        dangerous_c: 110.0,
    },
    Model {
        key: "s9",
        name: "Antminer S9",
        min_w: 500,
        default_w: 1323,
        max_w: 1500,
        ths_at_default: 13.5,
        idle_w: 25.0,
        ramp_w_per_s: 10.0,
        chip_c_per_w: 0.035,
        board_c_per_w: 0.028,
        dangerous_c: 110.0,
    },
];

/// A session token ends after this many schedule seconds without use.
const SESSION_S: f64 = 3600.0;
/// Sessions kept at most; the least recently used goes first.
const MAX_SESSIONS: usize = 64;
/// Time constant of the temperatures, s.
const TAU_TEMP_S: f64 = 120.0;
/// Chip temperature below which a miner stopped for heat starts again, °C.
const RESUME_C: f64 = 80.0;

struct Device {
    model: &'static Model,
    phys: Physics,
    target_w: u64,
    paused: bool,
    hot: bool,
    boot_s: f64,
    sessions: HashMap<String, f64>,
    username: String,
    password: String,
}

impl Device {
    fn ghs_at(&self, w: f64) -> f64 {
        let m = self.model;
        let span = m.default_w as f64 - m.idle_w;
        m.ths_at_default * 1000.0 * ((w - m.idle_w) / span).max(0.0)
    }

    fn retarget(&mut self) {
        let full = self.target_w as f64;
        let ghs = self.ghs_at(full);
        let target = if self.paused || self.hot {
            self.model.idle_w
        } else {
            full
        };
        self.phys.set_target(target, full, ghs);
    }

    fn tuning(&self) -> bool {
        !self.phys.settled_within(0.01)
    }
}

impl Device {
    fn new(model: &'static Model, opts: &EmulatorOptions, now: f64) -> Self {
        let params = Params {
            ramp: Ramp::Linear {
                w_per_s: model.ramp_w_per_s,
            },
            tau_temp_s: TAU_TEMP_S,
            chip_c_per_w: model.chip_c_per_w,
            board_c_per_w: model.board_c_per_w,
            idle_w: model.idle_w,
        };
        let w = model.default_w as f64;
        Device {
            model,
            phys: Physics::settled(
                params,
                now,
                opts.ambient_celsius,
                w,
                model.ths_at_default * 1000.0,
            ),
            target_w: model.default_w,
            paused: false,
            hot: false,
            boot_s: now,
            sessions: HashMap::new(),
            username: opts.username.clone(),
            password: opts.password.clone(),
        }
    }

    /// Checks a raw session token and refreshes its session.
    fn authorize(&mut self, token: &str, now: f64) -> Result<(), Status> {
        self.sessions.retain(|_, last| now - *last <= SESSION_S);
        match self.sessions.get_mut(token) {
            Some(last) => {
                *last = now;
                Ok(())
            }
            None => Err(Status::unauthenticated("invalid or expired token")),
        }
    }

    /// Opens a session for the right credentials; returns its token.
    fn login(&mut self, user: &str, password: &str, now: f64) -> Result<String, Status> {
        if user != self.username || password != self.password {
            return Err(Status::unauthenticated("invalid username or password"));
        }
        self.sessions.retain(|_, last| now - *last <= SESSION_S);
        if self.sessions.len() >= MAX_SESSIONS {
            let oldest = self
                .sessions
                .iter()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        let token: String = rand::rng()
            .sample_iter(&rand::distr::Alphanumeric)
            .take(16)
            .map(char::from)
            .collect();
        self.sessions.insert(token.clone(), now);
        Ok(token)
    }
}

impl model::Device for Device {
    fn physics(&mut self) -> &mut Physics {
        &mut self.phys
    }

    fn watch(&self) -> Watch {
        if self.hot {
            Watch::ChipBelow(RESUME_C)
        } else {
            Watch::ChipAtLeast(self.model.dangerous_c)
        }
    }

    fn react(&mut self) {
        self.hot = !self.hot;
        tracing::info!(
            hot = self.hot,
            "braiins emulator dangerous-temperature stop"
        );
        self.retarget();
    }

    fn state(&self, now: f64) -> EmulatorState {
        EmulatorState {
            setting: format!("{} W", self.target_w),
            calibrating: self.tuning(),
            paused: self.paused,
            overheated: self.hot,
            ..state_of(EmulatorKind::Braiins, self.model.key, &self.phys, now)
        }
    }

    fn overheat_heat_c(&self) -> f64 {
        // Enough to pass the dangerous temperature even at the lowest power target.
        95.0
    }
}

type Braiins = Live<Device>;

impl Braiins {
    /// Checks the raw token in `authorization` and refreshes its session.
    fn authorize<T>(&self, req: &tonic::Request<T>) -> Result<(), Status> {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("missing authorization token"))?;
        self.with(|d, now| d.authorize(token, now))
    }

    fn login(
        &self,
        req: tonic::Request<LoginRequest>,
    ) -> Result<tonic::Response<LoginResponse>, Status> {
        let r = req.into_inner();
        let token = self.with(|d, now| d.login(&r.username, &r.password, now))?;
        let mut resp = tonic::Response::new(LoginResponse::default());
        let value = tonic::metadata::MetadataValue::try_from(token.as_str())
            .map_err(|_| Status::internal("token is not ASCII"))?;
        resp.metadata_mut().insert("authorization", value);
        Ok(resp)
    }

    fn set_power_target(&self, r: SetPowerTargetRequest) -> Result<SetPowerTargetResponse, Status> {
        let m = self.with(|d, _| d.model);
        let watt = r.power_target.map(|p| p.watt);
        let command = format!(
            "SetPowerTarget {} W (save_action {})",
            watt.map_or("none".into(), |w| w.to_string()),
            r.save_action
        );
        let result = match (r.save_action, watt) {
            (_, None) => Err(Status::invalid_argument("missing power target")),
            (a, _)
                if a != SAVE_ACTION_SAVE
                    && a != SAVE_ACTION_SAVE_AND_APPLY
                    && a != SAVE_ACTION_SAVE_AND_FORCE_APPLY =>
            {
                Err(Status::invalid_argument("unknown save action"))
            }
            (_, Some(w)) if w < m.min_w || w > m.max_w => Err(Status::invalid_argument(format!(
                "power target {w} W out of range {} - {} W",
                m.min_w, m.max_w
            ))),
            (a, Some(w)) => {
                if a != SAVE_ACTION_SAVE {
                    self.with(|d, _| {
                        d.target_w = w;
                        d.retarget();
                    });
                }
                Ok(SetPowerTargetResponse {
                    power_target: Some(Power { watt: w }),
                })
            }
        };
        let detail = match &result {
            Ok(_) => "OK".to_string(),
            Err(s) => s.message().to_string(),
        };
        self.shared.record(command, result.is_ok(), detail);
        result
    }

    fn pause(&self, on: bool) -> bool {
        let was = self.with(|d, _| {
            let was = d.paused;
            d.paused = on;
            d.retarget();
            was
        });
        let name = if on { "PauseMining" } else { "ResumeMining" };
        self.shared.record(name, true, "OK");
        was
    }

    fn stats(&self) -> GetMinerStatsResponse {
        self.with(|d, _| {
            let gh = Some(GigaHashrate {
                gigahash_per_second: d.phys.hashrate_ghs(),
            });
            GetMinerStatsResponse {
                miner_stats: Some(WorkSolverStats {
                    real_hashrate: Some(RealHashrate {
                        last_5s: gh,
                        last_15s: gh,
                        last_30s: gh,
                        last_1m: gh,
                        last_5m: gh,
                    }),
                    nominal_hashrate: Some(GigaHashrate {
                        gigahash_per_second: d.ghs_at(d.target_w as f64),
                    }),
                }),
                power_stats: Some(MinerPowerStats {
                    approximated_consumption: Some(Power {
                        watt: d.phys.power_w().round().max(0.0) as u64,
                    }),
                }),
            }
        })
    }

    fn details(&self) -> GetMinerDetailsResponse {
        self.with(|d, now| GetMinerDetailsResponse {
            uid: "hearthEmulator01".into(),
            miner_identity: Some(MinerIdentity {
                brand: 1,
                name: d.model.name.into(),
                miner_model: d.model.name.into(),
            }),
            bos_version: Some(BosVersion {
                current: "2025-01-01-0-emulated-25.01-plus".into(),
                major: "25.01".into(),
                bos_plus: true,
            }),
            hostname: "braiins-emulator".into(),
            sticker_hashrate: Some(GigaHashrate {
                gigahash_per_second: d.model.ths_at_default * 1000.0,
            }),
            bosminer_uptime_s: (now - d.boot_s).max(0.0) as u64,
            status: if d.paused || d.hot {
                MINER_STATUS_PAUSED
            } else {
                MINER_STATUS_NORMAL
            },
        })
    }

    fn cooling(&self) -> GetCoolingStateResponse {
        self.with(|d, _| {
            let ratio = ((d.phys.chip_c() - 40.0) / 50.0).clamp(0.1, 1.0);
            GetCoolingStateResponse {
                fans: (0..4)
                    .map(|i| FanState {
                        position: Some(i),
                        rpm: (ratio * 6000.0).round() as u32,
                        target_speed_ratio: Some(ratio),
                    })
                    .collect(),
                highest_temperature: Some(TemperatureSensor {
                    id: Some(0),
                    location: SENSOR_LOCATION_CHIP,
                    temperature: Some(Temperature {
                        degree_c: d.phys.chip_c(),
                    }),
                }),
            }
        })
    }

    fn tuner(&self) -> GetTunerStateResponse {
        self.with(|d, _| GetTunerStateResponse {
            overall_tuner_state: if d.tuning() {
                TUNER_STATE_TUNING
            } else {
                TUNER_STATE_STABLE
            },
            power_target_mode_state: Some(PowerTargetModeState {
                profile: Some(PowerTargetProfile {
                    target: Some(Power { watt: d.target_w }),
                    measured_hashrate: Some(GigaHashrate {
                        gigahash_per_second: d.phys.hashrate_ghs(),
                    }),
                    estimated_power_consumption: Some(Power {
                        watt: d.phys.power_w().round().max(0.0) as u64,
                    }),
                }),
                current_target: Some(Power { watt: d.target_w }),
            }),
        })
    }
}

/// Builds a Braiins OS+ emulator from `opts`.
pub(crate) fn build(opts: &EmulatorOptions, shared: Arc<Shared>) -> Result<Server, EmulateError> {
    let model = pick_model(
        EmulatorKind::Braiins,
        MODELS,
        |m| m.key,
        opts.model.as_deref(),
    )?;
    let now = shared.clock.now_s();
    let dev = Device::new(model, opts, now);
    let b = Arc::new(Braiins::new(shared, dev));
    let serving = b.clone();
    Ok(Server {
        device: b,
        serve: Arc::new(move |stream, fault| Box::pin(serve(serving.clone(), stream, fault))),
    })
}

/// Describes model `key` (or the default) in one line, for `hearth emulate`.
pub fn describe(key: Option<&str>) -> Result<String, EmulateError> {
    let m = pick_model(EmulatorKind::Braiins, MODELS, |m| m.key, key)?;
    Ok(format!(
        "{} on Braiins OS+ gRPC (braiins.bos.v1); power target {}-{} W (default {} W), ramps {} W/s",
        m.name, m.min_w, m.max_w, m.default_w, m.ramp_w_per_s
    ))
}

async fn serve(b: Arc<Braiins>, mut stream: TcpStream, fault: Fault) {
    match fault {
        Fault::Garbage => return net::write_garbage(&mut stream).await,
        Fault::Oversized => return net::write_oversized(&mut stream, b"", 0xff).await,
        // The connection ends before any answer.
        Fault::Truncated => return,
        _ => {}
    }
    let svc = hyper::service::service_fn(move |req| {
        let b = b.clone();
        async move {
            // Faults set while the channel is open act on its next call.
            let fault = b.shared.fault();
            if net::breaks_the_wire(fault) {
                return Err(net::Dropped);
            }
            net::slow(fault).await;
            Ok(route(b, req, fault).await)
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "braiins emulator connection");
    }
}

/// A one-shot unary handler for `tonic::server::Grpc`.
struct Once<F>(Option<F>);

impl<Req, Resp, F> UnaryService<Req> for Once<F>
where
    F: FnOnce(tonic::Request<Req>) -> Result<tonic::Response<Resp>, Status>,
{
    type Response = Resp;
    type Future = std::future::Ready<Result<tonic::Response<Resp>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        std::future::ready(match self.0.take() {
            Some(f) => f(request),
            None => Err(Status::internal("handler called twice")),
        })
    }
}

/// A message the server decodes.
trait Decoded: prost::Message + Default + Send + 'static {}
impl<T: prost::Message + Default + Send + 'static> Decoded for T {}

/// A message the server encodes.
trait Encoded: prost::Message + Send + 'static {}
impl<T: prost::Message + Send + 'static> Encoded for T {}

/// Decodes `Req`, runs `f`, encodes its answer (messages are capped at tonic's 4 MiB default).
async fn unary<Req: Decoded, Resp: Encoded, F>(
    req: hyper::Request<Incoming>,
    f: F,
) -> hyper::Response<tonic::body::Body>
where
    F: FnOnce(tonic::Request<Req>) -> Result<tonic::Response<Resp>, Status> + Send,
{
    let mut grpc = Grpc::new(ProstCodec::<Resp, Req>::default());
    grpc.unary(Once(Some(f)), req).await
}

/// Runs `f` after checking the session token.
async fn authed<Req: Decoded, Resp: Encoded, F>(
    b: Arc<Braiins>,
    req: hyper::Request<Incoming>,
    f: F,
) -> hyper::Response<tonic::body::Body>
where
    F: FnOnce(&Braiins, Req) -> Result<Resp, Status> + Send,
{
    unary(req, move |r: tonic::Request<Req>| {
        b.authorize(&r)?;
        f(&b, r.into_inner()).map(tonic::Response::new)
    })
    .await
}

async fn route(
    b: Arc<Braiins>,
    req: hyper::Request<Incoming>,
    fault: Fault,
) -> hyper::Response<tonic::body::Body> {
    if let Fault::HttpStatus(code) = fault {
        let s = if code == 401 {
            Status::unauthenticated("emulated fault")
        } else {
            Status::internal("emulated fault")
        };
        return s.into_http();
    }
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/braiins.bos.ApiVersionService/GetApiVersion" => {
            unary(req, |_: tonic::Request<ApiVersionRequest>| {
                Ok(tonic::Response::new(ApiVersion {
                    major: 1,
                    minor: 5,
                    patch: 0,
                    pre: String::new(),
                    build: String::new(),
                }))
            })
            .await
        }
        "/braiins.bos.v1.AuthenticationService/Login" => {
            unary(req, move |r: tonic::Request<LoginRequest>| b.login(r)).await
        }
        "/braiins.bos.v1.PerformanceService/SetPowerTarget" => {
            authed(b, req, |b, r: SetPowerTargetRequest| b.set_power_target(r)).await
        }
        "/braiins.bos.v1.PerformanceService/GetTunerState" => {
            authed(b, req, |b, _: GetTunerStateRequest| Ok(b.tuner())).await
        }
        "/braiins.bos.v1.ConfigurationService/GetConstraints" => {
            authed(b, req, |b, _: GetConstraintsRequest| {
                let m = b.with(|d, _| d.model);
                Ok(GetConstraintsResponse {
                    tuner_constraints: Some(TunerConstraints {
                        power_target: Some(PowerConstraints {
                            default: Some(Power { watt: m.default_w }),
                            min: Some(Power { watt: m.min_w }),
                            max: Some(Power { watt: m.max_w }),
                        }),
                        default_mode: 1,
                    }),
                })
            })
            .await
        }
        "/braiins.bos.v1.MinerService/GetMinerStats" => {
            authed(b, req, |b, _: GetMinerStatsRequest| Ok(b.stats())).await
        }
        "/braiins.bos.v1.MinerService/GetMinerDetails" => {
            authed(b, req, |b, _: GetMinerDetailsRequest| Ok(b.details())).await
        }
        "/braiins.bos.v1.CoolingService/GetCoolingState" => {
            authed(b, req, |b, _: GetCoolingStateRequest| Ok(b.cooling())).await
        }
        "/braiins.bos.v1.ActionsService/PauseMining" => {
            authed(b, req, |b, _: PauseMiningRequest| {
                Ok(PauseMiningResponse {
                    already_paused: b.pause(true),
                })
            })
            .await
        }
        "/braiins.bos.v1.ActionsService/ResumeMining" => {
            authed(b, req, |b, _: ResumeMiningRequest| {
                Ok(ResumeMiningResponse {
                    already_mining: !b.pause(false),
                })
            })
            .await
        }
        _ => Status::unimplemented(format!("{path} is not emulated")).into_http(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        let opts = EmulatorOptions::new(crate::clock::Clock::starting_at(0.0, 0, 1.0));
        Device::new(&MODELS[0], &opts, 0.0)
    }

    #[test]
    fn sessions_need_the_credentials_and_end_after_an_hour_idle() {
        let mut d = device();
        assert!(
            d.login("root", "root", 0.0).is_err(),
            "the default password is empty"
        );
        let t = d.login("root", "", 0.0).unwrap();
        assert_eq!(t.len(), 16);
        assert!(d.authorize(&t, 3000.0).is_ok());
        // Use refreshes it: 3000 + 3600 is still within.
        assert!(d.authorize(&t, 6500.0).is_ok());
        assert!(d.authorize(&t, 6500.0 + SESSION_S + 1.0).is_err());
        assert!(d.authorize("nope", 0.0).is_err());
    }

    #[test]
    fn overheat_stops_mining_even_at_the_lowest_target_until_it_cools() {
        use crate::emulate::model::{sync, Device as _};
        let mut d = device();
        d.target_w = d.model.min_w;
        d.retarget();
        sync(&mut d, 3600.0);
        assert!(!d.hot);
        let heat = d.overheat_heat_c();
        d.physics().set_extra_heat(heat);
        sync(&mut d, 7200.0);
        assert!(d.hot, "chip {}", d.phys.chip_c());
        assert!((d.phys.power_w() - d.model.idle_w).abs() < 1.0);
        d.physics().set_extra_heat(0.0);
        sync(&mut d, 10800.0);
        assert!(!d.hot);
        assert!((d.phys.power_w() - d.model.min_w as f64).abs() < 1.0);
    }

    #[test]
    fn sessions_are_capped() {
        let mut d = device();
        let first = d.login("root", "", 0.0).unwrap();
        for i in 0..MAX_SESSIONS {
            d.login("root", "", 1.0 + i as f64).unwrap();
        }
        assert_eq!(d.sessions.len(), MAX_SESSIONS);
        assert!(d.authorize(&first, 100.0).is_err(), "the oldest went first");
    }
}
