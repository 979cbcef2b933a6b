//! The CGMiner API on the wire: one request per TCP connection. hearth connects, writes the JSON
//! request, half-closes, and reads until the NUL byte that ends the reply or until the device
//! closes; a reply larger than [`MAX_REPLY_BYTES`] is an error, never an unbounded read.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::devices::driver::DeviceError;

/// The largest reply hearth reads, bytes (a Nano 3S `estats` is about 4 KiB).
pub const MAX_REPLY_BYTES: usize = 256 * 1024;

/// The request text for `command` with an optional `parameter`, in the API's JSON form.
pub fn request_text(command: &str, parameter: Option<&str>) -> String {
    let mut req = serde_json::Map::new();
    req.insert("command".into(), command.into());
    if let Some(p) = parameter {
        req.insert("parameter".into(), p.into());
    }
    serde_json::Value::Object(req).to_string()
}

/// Sends one request to `addr` and returns the reply text (without its NUL), all within
/// `timeout`.
pub async fn exchange(addr: &str, request: &str, timeout: Duration) -> Result<String, DeviceError> {
    match tokio::time::timeout(timeout, exchange_untimed(addr, request)).await {
        Ok(r) => r,
        Err(_) => Err(DeviceError::Timeout(timeout.as_secs_f64())),
    }
}

async fn exchange_untimed(addr: &str, request: &str) -> Result<String, DeviceError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| DeviceError::Connect(format!("{addr}: {e}")))?;
    let broke = |e: std::io::Error| DeviceError::Connect(format!("{addr}: {e}"));
    stream.write_all(request.as_bytes()).await.map_err(broke)?;
    // The firmware reads one segment; the half-close tells any other reader the request is whole.
    stream.shutdown().await.map_err(broke)?;
    let bytes = read_reply(&mut stream).await.map_err(broke)??;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads until a NUL byte or EOF, at most [`MAX_REPLY_BYTES`]; the outer error is the socket's.
async fn read_reply(stream: &mut TcpStream) -> std::io::Result<Result<Vec<u8>, DeviceError>> {
    let mut reply = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Ok(reply));
        }
        let got = &chunk[..n];
        if let Some(nul) = got.iter().position(|&b| b == 0) {
            reply.extend_from_slice(&got[..nul]);
            return Ok(check_size(reply));
        }
        reply.extend_from_slice(got);
        if reply.len() > MAX_REPLY_BYTES {
            return Ok(check_size(reply));
        }
    }
}

fn check_size(reply: Vec<u8>) -> Result<Vec<u8>, DeviceError> {
    if reply.len() > MAX_REPLY_BYTES {
        Err(DeviceError::BadReply(format!(
            "reply longer than {} KiB",
            MAX_REPLY_BYTES / 1024
        )))
    } else {
        Ok(reply)
    }
}
