//! The Prometheus text exposition format (version 0.0.4): the one parser of the tests, and a
//! scrape of `GET /metrics` over plain HTTP/1.1.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One scrape, parsed.
#[derive(Debug, Default)]
pub struct Scrape {
    /// `name{labels}` (labels as rendered) → value.
    pub values: BTreeMap<String, f64>,
    /// Family name → `# TYPE`.
    pub types: BTreeMap<String, String>,
    /// Family name → `# HELP`.
    pub help: BTreeMap<String, String>,
}

impl Scrape {
    /// The value of `series` (`name{labels}` as rendered); fails the test if it was not scraped.
    pub fn get(&self, series: &str) -> f64 {
        *self
            .values
            .get(series)
            .unwrap_or_else(|| panic!("{series} not scraped: {:#?}", self.values))
    }

    /// The value of `series`, if it was scraped.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.values.get(series).copied()
    }

    /// Every series of the family `name`, keyed by the value of its one label `label`.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let prefix = format!("{name}{{{label}=\"");
        self.values
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                Some((rest.to_string(), *v))
            })
            .collect()
    }
}

/// Parses the text exposition format (version 0.0.4); fails the test on a malformed line.
pub fn parse(body: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            s.types.insert(name.into(), kind.into());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP line");
            s.help.insert(name.into(), help.into());
        } else if line.starts_with('#') {
            continue;
        } else {
            let (series, v) = line.rsplit_once(' ').expect("sample line");
            let v: f64 = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            s.values.insert(series.into(), v);
        }
    }
    s
}

/// The value of `series` in a scrape's body, if it is there.
pub fn value(body: &str, series: &str) -> Option<f64> {
    parse(body).value(series)
}

/// `GET /metrics` at `addr` (`HOST:PORT`) over HTTP/1.1: the response's head and body, or why
/// there is none (nothing listening yet, or no more).
pub fn get(addr: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    Ok((head.to_string(), body.to_string()))
}

/// The body of a `GET /metrics` at `addr` (`HOST:PORT`), or why there is none.
pub fn body(addr: &str) -> std::io::Result<String> {
    get(addr).map(|(_, body)| body)
}

/// Scrapes the exporter on `127.0.0.1:port` from async code (on a blocking thread), checks the
/// response (200, `text/plain`, a body of its content-length) and parses it.
pub async fn scrape(port: u16) -> Scrape {
    let addr = format!("127.0.0.1:{port}");
    let (head, body) = tokio::task::spawn_blocking(move || get(&addr))
        .await
        .unwrap()
        .expect("a scrape");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/plain"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(body.len(), len);
    parse(&body)
}
