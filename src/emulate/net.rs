//! The emulators' socket side: the accept loop (connection cap, refusals, shutdown) and the raw
//! faults every protocol shares (garbage, an oversized reply).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::{Emulated, Fault, Shared};

/// One connection's work.
pub(crate) type ConnFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves one accepted connection under the fault in force when it was accepted.
pub(crate) type ServeFn = Arc<dyn Fn(TcpStream, Fault) -> ConnFuture + Send + Sync>;

/// A kind's device model and its connection handler.
pub(crate) struct Server {
    /// The device model, for the handle.
    pub device: Arc<dyn Emulated>,
    /// The connection handler.
    pub serve: ServeFn,
}

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;

/// Bytes of an oversized reply.
pub(crate) const OVERSIZED_BYTES: usize = 4 << 20;

/// Accepts connections until `stop` turns true, then drops every connection.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    server: Server,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let fault = shared.fault();
        if fault == Fault::Refuse {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let conn = (server.serve)(stream, fault);
        let mut conn_stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                _ = conn_stop.changed() => {}
            }
            drop(permit);
        });
    }
}

/// Whether a fault acts on the connection itself (so an open HTTP connection is dropped and the
/// next one meets it), rather than on one request.
pub(crate) fn breaks_the_wire(f: Fault) -> bool {
    matches!(
        f,
        Fault::Refuse | Fault::Garbage | Fault::Truncated | Fault::Oversized
    )
}

/// A request's connection dropped by a fault set while it was open.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an emulated fault")]
pub(crate) struct Dropped;

/// Real seconds an HTTP client has to send a request's headers.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits out a [`Fault::Slow`] (real seconds); returns at once for any other fault.
pub(crate) async fn slow(fault: Fault) {
    if let Fault::Slow(s) = fault {
        if let Ok(d) = Duration::try_from_secs_f64(s.max(0.0)) {
            tokio::time::sleep(d).await;
        }
    }
}

/// Answers with bytes that no protocol here parses, then closes.
pub(crate) async fn write_garbage(stream: &mut TcpStream) {
    let junk: &[u8] = b"\xff\xfe\x00garbage \x01\x02 not-a-reply {{{ ]]] \x7f\x80\x81\r\n";
    let _ = stream.write_all(junk).await;
    let _ = stream.shutdown().await;
}

/// Sends `prefix` then [`OVERSIZED_BYTES`] of filler with no terminator, then closes.
pub(crate) async fn write_oversized(stream: &mut TcpStream, prefix: &[u8], filler: u8) {
    let _ = stream.write_all(prefix).await;
    let chunk = vec![filler; 64 * 1024];
    let mut sent = 0;
    while sent < OVERSIZED_BYTES {
        if stream.write_all(&chunk).await.is_err() {
            return;
        }
        sent += chunk.len();
    }
    let _ = stream.shutdown().await;
}
