//! CGMiner API replies: the repairs the field needs before JSON parsing (bare `inf`/`nan`
//! values, trailing commas), the joined-command shape, and the `STATUS` verdict of each part.
//!
//! A single command answers `{"STATUS":[{"STATUS":"S","Code":..,"Msg":..}],"STATS":[..],"id":1}`;
//! commands joined with `+` answer `{"version":[{"STATUS":[..],"VERSION":[..],"id":1}],
//! "estats":[{..}],"id":1}` (Canaan's Avalon_Nano3s `cg_miner/api/api.c`, `head_join` /
//! `tail_join` / `send_result`).

use serde_json::{Map, Value};

use crate::devices::driver::DeviceError;

/// One JSON object of a reply.
pub type Object = Map<String, Value>;

/// Makes the field's almost-JSON parseable: bare `inf`, `-inf`, `nan` and `-nan` outside strings
/// become `null` (cgminer prints doubles with `%f`), and a comma before `}` or `]` is dropped.
pub fn sanitise(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            i += push_char(&mut out, text, i);
            continue;
        }
        match c {
            b'"' => {
                in_string = true;
                out.push('"');
                i += 1;
            }
            b',' => {
                let next = bytes[i + 1..]
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .copied();
                if !matches!(next, Some(b'}') | Some(b']')) {
                    out.push(',');
                }
                i += 1;
            }
            b'i' | b'n' | b'-' if value_start(&out) => {
                let word_len = bytes[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphabetic() || **b == b'-')
                    .count();
                let word = &text[i..i + word_len];
                if matches!(
                    word.to_ascii_lowercase().as_str(),
                    "inf" | "-inf" | "nan" | "-nan" | "infinity" | "-infinity"
                ) {
                    out.push_str("null");
                    i += word_len;
                } else {
                    i += push_char(&mut out, text, i);
                }
            }
            _ => i += push_char(&mut out, text, i),
        }
    }
    out
}

/// Whether the next character of `out` starts a value (after `:`, `,` or `[`).
fn value_start(out: &str) -> bool {
    matches!(
        out.trim_end().chars().next_back(),
        Some(':') | Some(',') | Some('[')
    )
}

/// Pushes the character at byte `i` of `text`; its length in bytes.
fn push_char(out: &mut String, text: &str, i: usize) -> usize {
    match text[i..].chars().next() {
        Some(ch) => {
            out.push(ch);
            ch.len_utf8()
        }
        None => 1,
    }
}

/// Parses a reply text (NUL already removed) into its top-level object.
pub fn parse(text: &str) -> Result<Object, DeviceError> {
    let clean = sanitise(text.trim_end_matches('\0').trim());
    let value: Value = serde_json::from_str(&clean).map_err(|e| {
        if e.classify() == serde_json::error::Category::Eof {
            DeviceError::BadReply(format!("truncated reply ({} bytes)", text.len()))
        } else {
            DeviceError::BadReply(format!("not JSON: {e} (starts {:?})", prefix(text)))
        }
    })?;
    let Value::Object(root) = value else {
        return Err(DeviceError::BadReply(format!(
            "not a JSON object (starts {:?})",
            prefix(text)
        )));
    };
    // cgminer marks output it had to cut short with `"id":0`.
    if root.get("id").and_then(Value::as_i64) == Some(0) {
        return Err(DeviceError::BadReply(
            "the device truncated its reply (id 0)".into(),
        ));
    }
    Ok(root)
}

fn prefix(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The part of `root` that answers `command`: the joined reply's `command` entry, or the root of
/// a single-command reply. Its `STATUS` must say success.
pub fn section<'a>(root: &'a Object, command: &str) -> Result<&'a Object, DeviceError> {
    let part = match root.get(command) {
        Some(v) => v
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_object)
            .ok_or_else(|| DeviceError::BadReply(format!("{command}: not [{{..}}]")))?,
        None if root.contains_key("STATUS") => root,
        None => {
            return Err(DeviceError::BadReply(format!(
                "no answer to {command:?} in the reply"
            )))
        }
    };
    check_status(part)?;
    Ok(part)
}

/// The verdict of `STATUS[0]`: `S` or `I` is success; `E`, `W` or `F` is the device's refusal, or
/// [`DeviceError::Busy`] when its message says it is calibrating.
pub fn check_status(part: &Object) -> Result<(), DeviceError> {
    let status = part
        .get("STATUS")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_object)
        .ok_or_else(|| DeviceError::BadReply("no STATUS in the reply".into()))?;
    let letter = status.get("STATUS").and_then(Value::as_str).unwrap_or("");
    let msg = status.get("Msg").and_then(Value::as_str).unwrap_or("");
    match letter {
        "S" | "I" => Ok(()),
        "E" | "W" | "F" => {
            let code = status.get("Code").and_then(Value::as_i64).unwrap_or(-1);
            let text = format!("{msg} (code {code}, status {letter})");
            if is_calibrating_message(msg) {
                Err(DeviceError::Busy(text))
            } else {
                Err(DeviceError::Refused(text))
            }
        }
        other => Err(DeviceError::BadReply(format!(
            "unknown STATUS {other:?} ({msg})"
        ))),
    }
}

/// Whether a refusal is the firmware's "calibrating, try later": the Nano 3S answers a mode
/// switch during calibration with `current mode N is caling Don't permit switch mode`.
fn is_calibrating_message(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("caling") || m.contains("calibrat")
}

/// The first object of array `key` in `part` (`VERSION[0]`, `SUMMARY[0]`, `STATS[0]`).
pub fn first<'a>(part: &'a Object, key: &str) -> Option<&'a Object> {
    part.get(key)?.as_array()?.first()?.as_object()
}

/// A finite number at `key` of `obj` (numbers, or numbers written as strings); `null` (a
/// sanitised `inf`/`nan`) is missing.
pub fn number(obj: &Object, key: &str) -> Option<f64> {
    match obj.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

/// A non-empty string at `key` of `obj`.
pub fn text<'a>(obj: &'a Object, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}
