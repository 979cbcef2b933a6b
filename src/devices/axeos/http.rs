//! A small HTTP/1.1 client for AxeOS: one request per connection (`Connection: close`), the
//! response framed by `Content-Length`, chunked encoding or EOF, every part capped: the status
//! line and each header at [`MAX_LINE_BYTES`], the headers at [`MAX_HEADERS`], the body at
//! [`MAX_BODY_BYTES`]. ESP-Miner's server answers in chunks and may keep the connection open,
//! so the framing is read, never "until the peer closes".

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::devices::driver::DeviceError;

/// The longest status line, header line or chunk-size line, bytes.
pub const MAX_LINE_BYTES: u64 = 8 * 1024;
/// The most header lines.
pub const MAX_HEADERS: usize = 64;
/// The largest body, bytes (`/api/system/info` is a few KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A response: status code and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// The request bytes for `method path` on `host`, with a JSON body if given.
pub fn request_text(method: &str, path: &str, host: &str, json: Option<&str>) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    match json {
        Some(body) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None if method == "GET" => req.push_str("\r\n"),
        None => req.push_str("Content-Length: 0\r\n\r\n"),
    }
    req
}

/// Sends one request to `addr` and reads its response, all within `timeout`.
pub async fn send(
    addr: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
    timeout: Duration,
) -> Result<Response, DeviceError> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| DeviceError::Connect(format!("{addr}: {e}")))?;
        let request = request_text(method, path, addr, json);
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| DeviceError::Connect(format!("{addr}: {e}")))?;
        read_response(BufReader::new(stream)).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(DeviceError::Timeout(timeout.as_secs_f64())),
    }
}

/// Reads one response from `reader`.
pub async fn read_response<R: AsyncRead + Unpin>(
    mut reader: BufReader<R>,
) -> Result<Response, DeviceError> {
    let status_line = read_line(&mut reader).await?;
    let status = parse_status(&status_line)?;
    let mut length = None;
    let mut chunked = false;
    let mut headers = 0;
    loop {
        let line = read_line(&mut reader).await?;
        if line.is_empty() {
            break;
        }
        headers += 1;
        if headers > MAX_HEADERS {
            return Err(bad(format!("more than {MAX_HEADERS} headers")));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("malformed header {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        read_chunked(&mut reader).await?
    } else if let Some(n) = length {
        if n > MAX_BODY_BYTES {
            return Err(too_long());
        }
        let mut body = vec![0u8; n];
        reader
            .read_exact(&mut body)
            .await
            .map_err(|e| bad(format!("body cut short: {e}")))?;
        body
    } else {
        let mut body = Vec::new();
        (&mut reader)
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .await
            .map_err(|e| DeviceError::Connect(e.to_string()))?;
        if body.len() > MAX_BODY_BYTES {
            return Err(too_long());
        }
        body
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `HTTP/1.x NNN reason` → NNN.
fn parse_status(line: &str) -> Result<u16, DeviceError> {
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let code = parts.next().and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if version.starts_with("HTTP/1.") && (100..600).contains(&c) => Ok(c),
        _ => Err(bad(format!("not an HTTP response: {:?}", clip(line)))),
    }
}

async fn read_chunked<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Result<Vec<u8>, DeviceError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader).await?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size {:?}", clip(&line))))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            while !read_line(reader).await?.is_empty() {}
            return Ok(body);
        }
        if size > MAX_BODY_BYTES - body.len() {
            return Err(too_long());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .await
            .map_err(|e| bad(format!("chunk cut short: {e}")))?;
        if !read_line(reader).await?.is_empty() {
            return Err(bad("chunk not followed by CRLF".into()));
        }
    }
}

/// One CRLF- (or LF-) terminated line, at most [`MAX_LINE_BYTES`].
async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Result<String, DeviceError> {
    let mut buf = Vec::new();
    let n = (&mut *reader)
        .take(MAX_LINE_BYTES)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| DeviceError::Connect(e.to_string()))?;
    if buf.last() != Some(&b'\n') {
        return Err(if n as u64 >= MAX_LINE_BYTES {
            bad(format!("line longer than {MAX_LINE_BYTES} bytes"))
        } else {
            bad("connection closed mid-response".into())
        });
    }
    let line = String::from_utf8_lossy(&buf);
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn bad(text: String) -> DeviceError {
    DeviceError::BadReply(text)
}

fn too_long() -> DeviceError {
    bad(format!("body longer than {} KiB", MAX_BODY_BYTES / 1024))
}

fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}
