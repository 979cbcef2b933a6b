//! Stratum V1 wire messages: newline-delimited JSON-RPC, typed in both directions.
//!
//! Parsing never panics: a line that is too long, not JSON, or JSON of the wrong shape becomes a
//! [`MessageError`] that names what is wrong, and the session decides whether to go on.

use serde_json::{json, Value};
use thiserror::Error;

use crate::mining::header::{decode_hex, decode_u32, HeaderError, NotifyFields, StratumJob};

/// The longest line either side accepts, bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Standard Stratum error codes.
pub mod codes {
    /// Other/unknown.
    pub const OTHER: i64 = 20;
    /// Job not found (stale).
    pub const STALE: i64 = 21;
    /// Duplicate share.
    pub const DUPLICATE: i64 = 22;
    /// Low difficulty share.
    pub const LOW_DIFFICULTY: i64 = 23;
    /// Unauthorized worker.
    pub const UNAUTHORIZED: i64 = 24;
    /// Not subscribed.
    pub const NOT_SUBSCRIBED: i64 = 25;
}

/// A line that is not a usable Stratum message.
#[derive(Debug, Error, PartialEq)]
pub enum MessageError {
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("line of {0} bytes exceeds the {MAX_LINE_BYTES}-byte limit")]
    TooLong(usize),
    /// Not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not the expected shape.
    #[error("{method}: {msg}")]
    Shape {
        /// The method (or "response").
        method: String,
        /// What is wrong.
        msg: String,
    },
}

fn shape(method: &str, msg: impl Into<String>) -> MessageError {
    MessageError::Shape {
        method: method.to_string(),
        msg: msg.into(),
    }
}

impl MessageError {
    fn from_header(method: &str, e: HeaderError) -> Self {
        shape(method, e.to_string())
    }
}

/// A JSON-RPC id: pools and miners use numbers, some strings.
pub type Id = Value;

/// An error a pool returned.
#[derive(Debug, Clone, PartialEq)]
pub struct StratumError {
    /// The code (21 stale, 22 duplicate, 23 low difficulty, 24 unauthorized …).
    pub code: i64,
    /// The pool's message.
    pub message: String,
}

/// `mining.submit` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Submit {
    /// Worker name.
    pub worker: String,
    /// Job id.
    pub job_id: String,
    /// Extranonce2 bytes.
    pub extranonce2: Vec<u8>,
    /// ntime.
    pub ntime: u32,
    /// Nonce.
    pub nonce: u32,
    /// Rolled version bits (BIP310), if rolling.
    pub version_bits: Option<u32>,
}

/// A message from a pool to a miner.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolMessage {
    /// A reply to a request of ours.
    Response {
        /// The request's id.
        id: Id,
        /// The result (`null` on error).
        result: Value,
        /// The error, if any.
        error: Option<StratumError>,
    },
    /// `mining.notify`: a new job.
    Notify(StratumJob),
    /// `mining.set_difficulty`.
    SetDifficulty(f64),
    /// `mining.set_extranonce`.
    SetExtranonce {
        /// New extranonce1.
        extranonce1: Vec<u8>,
        /// New extranonce2 size.
        extranonce2_size: usize,
    },
    /// `mining.set_version_mask`.
    SetVersionMask(u32),
    /// A notification we do not act on (logged by the session).
    Unknown {
        /// Its method.
        method: String,
    },
}

/// A message from a miner to a pool.
#[derive(Debug, Clone, PartialEq)]
pub enum MinerMessage {
    /// `mining.subscribe`.
    Subscribe {
        /// Request id.
        id: Id,
        /// The miner's user agent.
        user_agent: Option<String>,
        /// A previous session's id, to resume it (same extranonce1).
        session: Option<String>,
    },
    /// `mining.extranonce.subscribe`.
    ExtranonceSubscribe {
        /// Request id.
        id: Id,
    },
    /// `mining.authorize`.
    Authorize {
        /// Request id.
        id: Id,
        /// Worker name.
        user: String,
        /// Password.
        password: String,
    },
    /// `mining.configure` (BIP310), with the version-rolling mask the miner asks for.
    Configure {
        /// Request id.
        id: Id,
        /// The requested mask, if version rolling was asked for.
        version_rolling_mask: Option<u32>,
    },
    /// `mining.submit`.
    Submit {
        /// Request id.
        id: Id,
        /// The share.
        share: Submit,
    },
    /// Any other request (answered with an error by the pool).
    Unknown {
        /// Request id.
        id: Id,
        /// Its method.
        method: String,
    },
}

fn parse_json(line: &str) -> Result<serde_json::Map<String, Value>, MessageError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(MessageError::TooLong(line.len()));
    }
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(shape("message", "expected a JSON object")),
        Err(e) => Err(MessageError::NotJson(e.to_string())),
    }
}

fn str_at<'a>(p: &'a [Value], i: usize, method: &str, what: &str) -> Result<&'a str, MessageError> {
    p.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| shape(method, format!("param {i} ({what}) must be a string")))
}

fn parse_error(v: &Value) -> Option<StratumError> {
    match v {
        Value::Null => None,
        // [code, message, traceback]
        Value::Array(a) => Some(StratumError {
            code: a.first().and_then(Value::as_i64).unwrap_or(codes::OTHER),
            message: a.get(1).and_then(Value::as_str).unwrap_or("").to_string(),
        }),
        Value::Object(o) => Some(StratumError {
            code: o
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(codes::OTHER),
            message: o
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        }),
        other => Some(StratumError {
            code: codes::OTHER,
            message: other.to_string(),
        }),
    }
}

/// Parses one line from a pool.
pub fn parse_pool_line(line: &str) -> Result<PoolMessage, MessageError> {
    let m = parse_json(line)?;
    let method = m.get("method").and_then(Value::as_str);
    let Some(method) = method else {
        if !m.contains_key("result") && !m.contains_key("error") {
            return Err(shape("response", "neither a method nor a result"));
        }
        return Ok(PoolMessage::Response {
            id: m.get("id").cloned().unwrap_or(Value::Null),
            result: m.get("result").cloned().unwrap_or(Value::Null),
            error: m.get("error").and_then(parse_error),
        });
    };
    let empty = Vec::new();
    let params = m.get("params").and_then(Value::as_array).unwrap_or(&empty);
    match method {
        "mining.notify" => {
            if params.len() < 9 {
                return Err(shape(
                    method,
                    format!("expected 9 params, got {}", params.len()),
                ));
            }
            let branches: Vec<&str> = params[4]
                .as_array()
                .ok_or_else(|| shape(method, "param 4 (merkle_branch) must be an array"))?
                .iter()
                .map(|b| {
                    b.as_str()
                        .ok_or_else(|| shape(method, "merkle branches must be strings"))
                })
                .collect::<Result<_, _>>()?;
            let fields = NotifyFields {
                job_id: str_at(params, 0, method, "job_id")?,
                prevhash: str_at(params, 1, method, "prevhash")?,
                coinb1: str_at(params, 2, method, "coinb1")?,
                coinb2: str_at(params, 3, method, "coinb2")?,
                merkle_branches: &branches,
                version: str_at(params, 5, method, "version")?,
                nbits: str_at(params, 6, method, "nbits")?,
                ntime: str_at(params, 7, method, "ntime")?,
                clean_jobs: params[8]
                    .as_bool()
                    .ok_or_else(|| shape(method, "param 8 (clean_jobs) must be a bool"))?,
            };
            StratumJob::from_notify(&fields)
                .map(PoolMessage::Notify)
                .map_err(|e| MessageError::from_header(method, e))
        }
        "mining.set_difficulty" => {
            let d = params
                .first()
                .and_then(Value::as_f64)
                .ok_or_else(|| shape(method, "param 0 must be a number"))?;
            if !(d.is_finite() && d > 0.0) {
                return Err(shape(
                    method,
                    format!("difficulty must be positive, got {d}"),
                ));
            }
            Ok(PoolMessage::SetDifficulty(d))
        }
        "mining.set_extranonce" => {
            let en1 = decode_hex("extranonce1", str_at(params, 0, method, "extranonce1")?)
                .map_err(|e| MessageError::from_header(method, e))?;
            let size = params
                .get(1)
                .and_then(Value::as_u64)
                .filter(|&s| (1..=16).contains(&s))
                .ok_or_else(|| shape(method, "param 1 (extranonce2_size) must be 1–16"))?;
            Ok(PoolMessage::SetExtranonce {
                extranonce1: en1,
                extranonce2_size: size as usize,
            })
        }
        "mining.set_version_mask" => decode_u32("version_mask", str_at(params, 0, method, "mask")?)
            .map(PoolMessage::SetVersionMask)
            .map_err(|e| MessageError::from_header(method, e)),
        other => Ok(PoolMessage::Unknown {
            method: other.to_string(),
        }),
    }
}

/// Parses one line from a miner.
pub fn parse_miner_line(line: &str) -> Result<MinerMessage, MessageError> {
    let m = parse_json(line)?;
    let id = m.get("id").cloned().unwrap_or(Value::Null);
    let method = m
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("request", "missing method"))?;
    let empty = Vec::new();
    let params = m.get("params").and_then(Value::as_array).unwrap_or(&empty);
    Ok(match method {
        "mining.subscribe" => MinerMessage::Subscribe {
            id,
            user_agent: params.first().and_then(Value::as_str).map(str::to_string),
            session: params.get(1).and_then(Value::as_str).map(str::to_string),
        },
        "mining.extranonce.subscribe" => MinerMessage::ExtranonceSubscribe { id },
        "mining.authorize" => MinerMessage::Authorize {
            id,
            user: str_at(params, 0, method, "user")?.to_string(),
            password: params
                .get(1)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        },
        "mining.configure" => {
            let exts = params.first().and_then(Value::as_array);
            let rolling = exts.is_some_and(|e| e.iter().any(|x| x == "version-rolling"));
            let mask = params
                .get(1)
                .and_then(|o| o.get("version-rolling.mask"))
                .and_then(Value::as_str);
            let version_rolling_mask = match (rolling, mask) {
                (false, _) => None,
                (true, None) => Some(0xffff_ffff),
                (true, Some(h)) => Some(
                    decode_u32("version-rolling.mask", h)
                        .map_err(|e| MessageError::from_header(method, e))?,
                ),
            };
            MinerMessage::Configure {
                id,
                version_rolling_mask,
            }
        }
        "mining.submit" => {
            if params.len() < 5 {
                return Err(shape(
                    method,
                    format!("expected 5 or 6 params, got {}", params.len()),
                ));
            }
            let header = |e| MessageError::from_header(method, e);
            let share = Submit {
                worker: str_at(params, 0, method, "worker")?.to_string(),
                job_id: str_at(params, 1, method, "job_id")?.to_string(),
                extranonce2: decode_hex("extranonce2", str_at(params, 2, method, "extranonce2")?)
                    .map_err(header)?,
                ntime: decode_u32("ntime", str_at(params, 3, method, "ntime")?).map_err(header)?,
                nonce: decode_u32("nonce", str_at(params, 4, method, "nonce")?).map_err(header)?,
                version_bits: match params.get(5) {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(
                        decode_u32("version_bits", str_at(params, 5, method, "version_bits")?)
                            .map_err(header)?,
                    ),
                },
            };
            MinerMessage::Submit { id, share }
        }
        other => MinerMessage::Unknown {
            id,
            method: other.to_string(),
        },
    })
}

/// Encodes a request line.
pub fn request(id: u64, method: &str, params: Value) -> String {
    json!({"id": id, "method": method, "params": params}).to_string() + "\n"
}

/// Encodes a notification line (a request without an id).
pub fn notification(method: &str, params: Value) -> String {
    json!({"id": null, "method": method, "params": params}).to_string() + "\n"
}

/// Encodes a successful response line.
pub fn response(id: &Id, result: Value) -> String {
    json!({"id": id, "result": result, "error": null}).to_string() + "\n"
}

/// Encodes an error response line: `[code, message, null]`.
pub fn error_response(id: &Id, code: i64, message: &str) -> String {
    json!({"id": id, "result": null, "error": [code, message, null]}).to_string() + "\n"
}

/// The `mining.notify` params for a job.
pub fn notify_params(job: &StratumJob) -> Value {
    let mut swapped = job.prevhash;
    for w in swapped.chunks_exact_mut(4) {
        w.reverse();
    }
    json!([
        job.job_id,
        hex::encode(swapped),
        hex::encode(&job.coinb1),
        hex::encode(&job.coinb2),
        job.merkle_branches
            .iter()
            .map(hex::encode)
            .collect::<Vec<_>>(),
        format!("{:08x}", job.version),
        format!("{:08x}", job.nbits),
        format!("{:08x}", job.ntime),
        job.clean_jobs,
    ])
}

/// The `mining.submit` params for a share.
pub fn submit_params(s: &Submit) -> Value {
    let mut p = vec![
        json!(s.worker),
        json!(s.job_id),
        json!(hex::encode(&s.extranonce2)),
        json!(format!("{:08x}", s.ntime)),
        json!(format!("{:08x}", s.nonce)),
    ];
    if let Some(v) = s.version_bits {
        p.push(json!(format!("{v:08x}")));
    }
    Value::Array(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOTIFY: &str = r#"{"id":null,"method":"mining.notify","params":["bf","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"00000002","1c2ac4af","504e86b9",false]}"#;

    #[test]
    fn parses_the_reference_notify_and_reencodes_it_identically() {
        let PoolMessage::Notify(job) = parse_pool_line(NOTIFY).unwrap() else {
            panic!("not a notify");
        };
        assert_eq!(job.job_id, "bf");
        assert_eq!(
            (job.version, job.nbits, job.ntime),
            (2, 0x1c2ac4af, 0x504e86b9)
        );
        let again = notification("mining.notify", notify_params(&job));
        assert_eq!(parse_pool_line(&again).unwrap(), PoolMessage::Notify(job));
    }

    #[test]
    fn parses_the_reference_submit() {
        let line = r#"{"params": ["slush.miner1", "bf", "00000001", "504e86ed", "b2957c02"], "id": 4, "method": "mining.submit"}"#;
        let MinerMessage::Submit { id, share } = parse_miner_line(line).unwrap() else {
            panic!("not a submit");
        };
        assert_eq!(id, json!(4));
        assert_eq!(share.extranonce2, vec![0, 0, 0, 1]);
        assert_eq!(
            (share.ntime, share.nonce, share.version_bits),
            (0x504e86ed, 0xb2957c02, None)
        );
        let again = request(4, "mining.submit", submit_params(&share));
        assert_eq!(
            parse_miner_line(&again).unwrap(),
            MinerMessage::Submit { id, share }
        );
    }

    #[test]
    fn errors_in_both_encodings_are_understood() {
        let a =
            parse_pool_line(r#"{"id":3,"result":null,"error":[23,"Low difficulty share",null]}"#);
        let b = parse_pool_line(
            r#"{"id":3,"result":null,"error":{"code":21,"message":"Job not found"}}"#,
        );
        assert!(matches!(
            a,
            Ok(PoolMessage::Response {
                error: Some(StratumError { code: 23, .. }),
                ..
            })
        ));
        assert!(matches!(
            b,
            Ok(PoolMessage::Response {
                error: Some(StratumError { code: 21, .. }),
                ..
            })
        ));
    }

    #[test]
    fn configure_negotiates_version_rolling() {
        let line = r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}"#;
        assert_eq!(
            parse_miner_line(line).unwrap(),
            MinerMessage::Configure {
                id: json!(1),
                version_rolling_mask: Some(0x1fffe000)
            }
        );
        let m = parse_pool_line(
            r#"{"id":null,"method":"mining.set_version_mask","params":["1fffe000"]}"#,
        );
        assert_eq!(m.unwrap(), PoolMessage::SetVersionMask(0x1fffe000));
    }

    #[test]
    fn malformed_lines_are_errors_that_say_why() {
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        assert_eq!(
            parse_pool_line(&long),
            Err(MessageError::TooLong(MAX_LINE_BYTES + 1))
        );
        assert!(matches!(
            parse_pool_line("{nope"),
            Err(MessageError::NotJson(_))
        ));
        assert!(matches!(
            parse_pool_line("[1,2]"),
            Err(MessageError::Shape { .. })
        ));
        let e = parse_pool_line(r#"{"method":"mining.notify","params":["a"]}"#).unwrap_err();
        assert!(e.to_string().contains("9 params"), "{e}");
        let e = parse_pool_line(r#"{"method":"mining.set_difficulty","params":[-1]}"#).unwrap_err();
        assert!(e.to_string().contains("positive"), "{e}");
        let e = parse_miner_line(
            r#"{"id":1,"method":"mining.submit","params":["w","j","zz","00000000","00000000"]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("extranonce2"), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(line in ".{0,300}") {
            let _ = parse_pool_line(&line);
            let _ = parse_miner_line(&line);
        }

        #[test]
        fn arbitrary_json_shapes_never_panic(
            method in prop::sample::select(vec![
                "mining.notify", "mining.set_difficulty", "mining.set_extranonce",
                "mining.set_version_mask", "mining.submit", "mining.authorize",
                "mining.configure", "mining.subscribe", "client.reconnect",
            ]),
            params in prop::collection::vec(
                prop_oneof![
                    Just(json!(null)), any::<bool>().prop_map(|b| json!(b)),
                    any::<i64>().prop_map(|n| json!(n)), any::<f64>().prop_map(|f| json!(f)),
                    "[0-9a-f]{0,80}".prop_map(|s| json!(s)), Just(json!([])),
                    Just(json!({"version-rolling.mask": "zz"})),
                ],
                0..12,
            ),
        ) {
            let line = json!({"id": 1, "method": method, "params": params}).to_string();
            let _ = parse_pool_line(&line);
            let _ = parse_miner_line(&line);
        }

        #[test]
        fn submits_round_trip(
            worker in "[a-z.0-9]{1,20}", job in "[0-9a-f]{1,8}",
            en2 in prop::collection::vec(any::<u8>(), 1..8),
            ntime in any::<u32>(), nonce in any::<u32>(), bits in prop::option::of(any::<u32>()),
        ) {
            let share = Submit { worker, job_id: job, extranonce2: en2, ntime, nonce, version_bits: bits };
            let line = request(9, "mining.submit", submit_params(&share));
            prop_assert_eq!(parse_miner_line(&line).unwrap(), MinerMessage::Submit { id: json!(9), share });
        }
    }
}
