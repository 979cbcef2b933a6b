//! Load shedding: at most `max` calls are served at once over all connections; a call beyond
//! that is answered RESOURCE_EXHAUSTED at once, without reading its message, instead of
//! queueing. Memory under load is then bounded by `max` decoded requests plus the connections
//! themselves, whatever the number of clients.
//!
//! A permit is held until the handler has answered: for a server stream, until its first
//! response; for a client stream (UploadTensor), until the upload ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::codegen::http;

/// The layer that wraps every gRPC service of the server.
#[derive(Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ShedLayer {
    /// Serves at most `max` (at least 1) calls at once.
    pub fn new(max: usize) -> ShedLayer {
        let max = max.max(1);
        ShedLayer {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            permits: self.permits.clone(),
            max: self.max,
        }
    }
}

/// The service [`ShedLayer`] makes.
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    max: usize,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower::Service<http::Request<B>> for Shed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let r = fut.await;
                    drop(permit);
                    r
                })
            }
            Err(_) => {
                let max = self.max;
                tracing::debug!(max, "call shed: the server is at its in-flight cap");
                Box::pin(async move {
                    Ok(tonic::Status::resource_exhausted(format!(
                        "the server is busy: {max} calls in flight (--max-in-flight); \
                         retry with backoff"
                    ))
                    .into_http())
                })
            }
        }
    }
}
