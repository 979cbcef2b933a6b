//! Reading newline-delimited messages with a length cap, so that a hostile peer cannot make a
//! session buffer without bound.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::message::MAX_LINE_BYTES;

/// One read from a capped line reader.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A complete line, without its newline (and without a trailing `\r`).
    Text(String),
    /// A line longer than the cap; its bytes were discarded up to the next newline.
    TooLong(usize),
    /// A line that is not UTF-8.
    NotUtf8,
}

/// Reads the next line, at most [`MAX_LINE_BYTES`] long. `Ok(None)` at end of stream.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Line>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            // End of stream: a final unterminated line still counts.
            return Ok(match total {
                0 => None,
                _ => Some(finish(buf, total)),
            });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let body = if done {
            &chunk[..take - 1]
        } else {
            &chunk[..take]
        };
        total += body.len();
        if total <= MAX_LINE_BYTES {
            buf.extend_from_slice(body);
        }
        r.consume(take);
        if done {
            return Ok(Some(finish(buf, total)));
        }
    }
}

fn finish(mut buf: Vec<u8>, total: usize) -> Line {
    if total > MAX_LINE_BYTES {
        return Line::TooLong(total);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    match String::from_utf8(buf) {
        Ok(s) => Line::Text(s),
        Err(_) => Line::NotUtf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn splits_lines_caps_length_and_recovers() {
        let long = "y".repeat(MAX_LINE_BYTES + 10);
        let input = format!("a\r\nb\n{long}\nc\n\u{0}\nlast");
        let mut bytes = input.into_bytes();
        bytes.extend_from_slice(b"\n\xff\xfe\n");
        let mut r = BufReader::with_capacity(1024, &bytes[..]);
        let mut got = Vec::new();
        while let Some(l) = read_line(&mut r).await.unwrap() {
            got.push(l);
        }
        assert_eq!(
            got,
            vec![
                Line::Text("a".into()),
                Line::Text("b".into()),
                Line::TooLong(MAX_LINE_BYTES + 10),
                Line::Text("c".into()),
                Line::Text("\u{0}".into()),
                Line::Text("last".into()),
                Line::NotUtf8,
            ]
        );
    }
}
