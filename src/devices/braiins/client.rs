//! The gRPC side of the Braiins driver: one HTTP/2 channel, the session token and the calls.
//!
//! `AuthenticationService/Login` returns a session token that the miner forgets after 3,600 s
//! of inactivity (hearth polls far more often, so it rarely expires); every other call carries
//! it as the raw `authorization` metadata value (no `Bearer`). A call answered UNAUTHENTICATED
//! logs in again once and is retried once. `ApiVersionService/GetApiVersion` needs no token.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use super::proto::bos::api_version_service_client::ApiVersionServiceClient;
use super::proto::bos::v1 as pb;
use super::proto::bos::{ApiVersion, ApiVersionRequest};
use crate::devices::driver::DeviceError;
use pb::actions_service_client::ActionsServiceClient;
use pb::authentication_service_client::AuthenticationServiceClient;
use pb::configuration_service_client::ConfigurationServiceClient;
use pb::cooling_service_client::CoolingServiceClient;
use pb::miner_service_client::MinerServiceClient;
use pb::performance_service_client::PerformanceServiceClient;

/// Largest reply hearth decodes, bytes (tonic's default is 4 MiB): the biggest reply the driver
/// reads (`GetConstraints`) is well under 1 KiB.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Largest header list hearth accepts on a reply, bytes.
const MAX_HEADER_BYTES: u32 = 16 * 1024;

/// Longest session token hearth keeps, bytes (Braiins' are 16 characters).
const MAX_TOKEN_BYTES: usize = 1024;

/// The metadata key the token travels in.
pub const AUTHORIZATION: &str = "authorization";

/// The user a Braiins OS+ miner has when the config names none.
pub const DEFAULT_USERNAME: &str = "root";

/// A channel to `http://HOST_PORT` (plain HTTP/2); it connects on first use, with
/// `connect_timeout`, and reconnects by itself after a failure.
pub fn channel(host_port: &str, connect_timeout: Duration) -> Result<Channel, DeviceError> {
    let endpoint = Endpoint::from_shared(format!("http://{host_port}"))
        .map_err(|e| DeviceError::Connect(format!("{host_port:?} is not host:port: {e}")))?;
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_max_header_list_size(MAX_HEADER_BYTES)
        .connect_lazy())
}

/// The driver's error for a gRPC status: UNAVAILABLE (refused, reset, unreachable) is a
/// connection failure, UNAUTHENTICATED an authentication failure, any other the device's answer.
pub fn status_error(s: &Status) -> DeviceError {
    let msg = if s.message().is_empty() {
        s.code().description().to_string()
    } else {
        s.message().to_string()
    };
    match s.code() {
        Code::Unavailable => DeviceError::Connect(msg),
        Code::Unauthenticated => DeviceError::Auth(msg),
        code => DeviceError::Status(format!("{code:?}: {msg}")),
    }
}

/// `message` with the session token as its `authorization` metadata.
pub fn with_token<T>(message: T, token: &MetadataValue<Ascii>) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(AUTHORIZATION, token.clone());
    request
}

/// A token as metadata: printable ASCII without spaces, not empty, not oversized.
pub fn token_value(token: &str) -> Result<MetadataValue<Ascii>, DeviceError> {
    if token.is_empty() {
        return Err(DeviceError::BadReply("Login returned no token".into()));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(DeviceError::BadReply(format!(
            "Login returned a {} byte token (limit {MAX_TOKEN_BYTES})",
            token.len()
        )));
    }
    let bad = || DeviceError::BadReply("Login returned a token that is not printable ASCII".into());
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    MetadataValue::try_from(token).map_err(|_| bad())
}

/// How a session gets a token.
pub trait Login: Send {
    /// Logs in; the token.
    fn login(&mut self) -> impl Future<Output = Result<String, DeviceError>> + Send;
}

/// Logs in with a username and password through `AuthenticationService/Login`.
pub struct PasswordLogin {
    client: AuthenticationServiceClient<Channel>,
    username: String,
    password: String,
}

impl Login for PasswordLogin {
    async fn login(&mut self) -> Result<String, DeviceError> {
        let request = pb::LoginRequest {
            username: self.username.clone(),
            password: self.password.clone(),
        };
        let reply = self
            .client
            .login(request)
            .await
            .map_err(|s| match s.code() {
                Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument => {
                    DeviceError::Auth(format!(
                        "login as {:?} refused: {}",
                        self.username,
                        s.message()
                    ))
                }
                _ => status_error(&s),
            })?;
        // Older firmware also (or only) returns it as response metadata.
        let header = reply
            .metadata()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = reply.into_inner().token;
        Ok(if body.is_empty() {
            header.unwrap_or_default()
        } else {
            body
        })
    }
}

/// A session token and how to renew it.
pub struct Session<L> {
    login: L,
    token: Option<MetadataValue<Ascii>>,
    /// Logins attempted so far.
    pub logins: u64,
}

impl<L: Login> Session<L> {
    /// A session that logs in on first use.
    pub fn new(login: L) -> Self {
        Self {
            login,
            token: None,
            logins: 0,
        }
    }

    /// The token, logging in if there is none.
    async fn token(&mut self) -> Result<MetadataValue<Ascii>, DeviceError> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        self.logins += 1;
        let token = token_value(&self.login.login().await?)?;
        self.token = Some(token.clone());
        Ok(token)
    }

    /// Runs `call` with the token; on UNAUTHENTICATED logs in again and runs it once more.
    pub async fn run<T, F, Fut>(&mut self, call: F) -> Result<T, DeviceError>
    where
        F: Fn(MetadataValue<Ascii>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let first = call(self.token().await?).await;
        let result = match first {
            Err(s) if s.code() == Code::Unauthenticated => {
                tracing::debug!(
                    message = s.message(),
                    "session token refused; logging in again"
                );
                self.token = None;
                call(self.token().await?).await
            }
            other => other,
        };
        result.map(Response::into_inner).map_err(|s| {
            if s.code() == Code::Unauthenticated {
                self.token = None;
            }
            status_error(&s)
        })
    }
}

/// One Braiins OS+ miner's API over one channel.
pub struct Client {
    version: ApiVersionServiceClient<Channel>,
    miner: MinerServiceClient<Channel>,
    cooling: CoolingServiceClient<Channel>,
    performance: PerformanceServiceClient<Channel>,
    configuration: ConfigurationServiceClient<Channel>,
    actions: ActionsServiceClient<Channel>,
    session: Session<PasswordLogin>,
}

impl Client {
    /// A client over `channel` that logs in as `username` with `password`.
    pub fn new(channel: Channel, username: &str, password: &str) -> Self {
        let auth = AuthenticationServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_REPLY_BYTES);
        Self {
            version: ApiVersionServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            miner: MinerServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            cooling: CoolingServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            performance: PerformanceServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            configuration: ConfigurationServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            actions: ActionsServiceClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES),
            session: Session::new(PasswordLogin {
                client: auth,
                username: username.to_string(),
                password: password.to_string(),
            }),
        }
    }

    /// `GetApiVersion` (no token).
    pub async fn api_version(&mut self) -> Result<ApiVersion, DeviceError> {
        self.version
            .get_api_version(ApiVersionRequest {})
            .await
            .map(Response::into_inner)
            .map_err(|s| status_error(&s))
    }

    /// `GetMinerDetails` without a token (for `probe`; most firmware refuses it).
    pub async fn details_without_login(
        &mut self,
    ) -> Result<pb::GetMinerDetailsResponse, DeviceError> {
        self.miner
            .get_miner_details(pb::GetMinerDetailsRequest {})
            .await
            .map(Response::into_inner)
            .map_err(|s| status_error(&s))
    }

    /// `GetMinerDetails`: model, firmware, paused or mining.
    pub async fn details(&mut self) -> Result<pb::GetMinerDetailsResponse, DeviceError> {
        let req = pb::GetMinerDetailsRequest {};
        authed(&mut self.session, &self.miner, req, |mut c, r| async move {
            c.get_miner_details(r).await
        })
        .await
    }

    /// `GetMinerStats`: power, hashrate, shares.
    pub async fn stats(&mut self) -> Result<pb::GetMinerStatsResponse, DeviceError> {
        let req = pb::GetMinerStatsRequest {};
        authed(&mut self.session, &self.miner, req, |mut c, r| async move {
            c.get_miner_stats(r).await
        })
        .await
    }

    /// `GetCoolingState`: the hottest sensor.
    pub async fn cooling(&mut self) -> Result<pb::GetCoolingStateResponse, DeviceError> {
        let req = pb::GetCoolingStateRequest {};
        authed(
            &mut self.session,
            &self.cooling,
            req,
            |mut c, r| async move { c.get_cooling_state(r).await },
        )
        .await
    }

    /// `GetTunerState`: tuning or stable, and the power target in force.
    pub async fn tuner(&mut self) -> Result<pb::GetTunerStateResponse, DeviceError> {
        let req = pb::GetTunerStateRequest {};
        authed(
            &mut self.session,
            &self.performance,
            req,
            |mut c, r| async move { c.get_tuner_state(r).await },
        )
        .await
    }

    /// `GetConstraints`: the power-target range and the cooling and ramping defaults.
    pub async fn constraints(&mut self) -> Result<pb::GetConstraintsResponse, DeviceError> {
        let req = pb::GetConstraintsRequest {};
        authed(
            &mut self.session,
            &self.configuration,
            req,
            |mut c, r| async move { c.get_constraints(r).await },
        )
        .await
    }

    /// `SetPowerTarget` with `req`.
    pub async fn set_power_target(
        &mut self,
        req: pb::SetPowerTargetRequest,
    ) -> Result<pb::SetPowerTargetResponse, DeviceError> {
        authed(
            &mut self.session,
            &self.performance,
            req,
            |mut c, r| async move { c.set_power_target(r).await },
        )
        .await
    }

    /// `PauseMining`.
    pub async fn pause(&mut self) -> Result<pb::PauseMiningResponse, DeviceError> {
        let req = pb::PauseMiningRequest {};
        authed(
            &mut self.session,
            &self.actions,
            req,
            |mut c, r| async move { c.pause_mining(r).await },
        )
        .await
    }

    /// `ResumeMining`.
    pub async fn resume(&mut self) -> Result<pb::ResumeMiningResponse, DeviceError> {
        let req = pb::ResumeMiningRequest {};
        authed(
            &mut self.session,
            &self.actions,
            req,
            |mut c, r| async move { c.resume_mining(r).await },
        )
        .await
    }
}

/// Runs `call` on a clone of `client` with `request` and the session's token, through
/// [`Session::run`].
async fn authed<C, Q, T, Fut>(
    session: &mut Session<PasswordLogin>,
    client: &C,
    request: Q,
    call: impl Fn(C, Request<Q>) -> Fut,
) -> Result<T, DeviceError>
where
    C: Clone,
    Q: Clone,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    session
        .run(|t| call(client.clone(), with_token(request.clone(), &t)))
        .await
}
