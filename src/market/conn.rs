//! Connecting to the market and publishing on it: what the tenant's client and the heater's
//! device share.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;

use super::layout::{event_subject, MarketError};
use super::wire::{self, Event, EventKind};

/// Connects to `url` (with a NATS `.creds` file if given) and opens the market's layout.
pub async fn connect(
    url: &str,
    credentials: Option<&Path>,
    name: &str,
) -> Result<jetstream::Context, MarketError> {
    let err = |e: Box<dyn std::error::Error + Send + Sync>| MarketError::JetStream {
        what: format!("connecting to the market at {url}"),
        source: e,
    };
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5));
    if let Some(c) = credentials {
        opts = opts
            .credentials_file(c)
            .await
            .map_err(|e| err(Box::new(e)))?;
    }
    let client = opts
        .connect(server_addrs(url)?)
        .await
        .map_err(|e| err(Box::new(e)))?;
    Ok(jetstream::new(client))
}

/// The servers of a comma-separated URL list (`nats://a:4222,nats://b:4222`).
pub fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, MarketError> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| MarketError::Config(format!("market url {u:?}: {e}")))
        })
        .collect()
}

/// A JetStream failure while doing `what`.
pub(super) fn js_err(what: &str, e: impl Into<async_nats::Error>) -> MarketError {
    MarketError::JetStream {
        what: what.to_string(),
        source: e.into(),
    }
}

/// Publishes an event on `market.events.<job>` and waits for the stream to store it.
pub async fn publish_event(
    js: &jetstream::Context,
    job: &str,
    kind: EventKind,
) -> Result<(), MarketError> {
    let ev = Event {
        job_id: job.to_string(),
        at_unix_ms: wire::now_unix_ms(),
        kind,
    };
    let bytes = serde_json::to_vec(&ev).unwrap_or_default();
    js.publish(event_subject(job), bytes.into())
        .await
        .map_err(|e| js_err("publishing an event", e))?
        .await
        .map_err(|e| js_err("storing an event", e))?;
    Ok(())
}
