//! The HTTP listener for Prometheus scrapers (`[metrics] listen`): answers
//! `GET /metrics` (and `HEAD`) with what the render function gives, the
//! aggregator's `/metrics` as an administrator sees it. Anything else is
//! 404 (another path) or 405 (another method).
//!
//! It is unauthenticated, so it serves numbers only (never a process) and
//! the config check warns when it listens beyond loopback. It must not be
//! able to hurt the 9P service beside it on the same runtime: at most
//! [`MAX_CONNECTIONS`] are served at once (more wait in the kernel's
//! accept queue), request heads are bounded ([`MAX_HEAD_BYTES`],
//! [`MAX_HEADERS`]) and must arrive within [`HEAD_TIMEOUT`], and a
//! connection lives at most [`CONNECTION_LIFETIME`]. HTTP is parsed by
//! hyper, not by hand.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Connections served at once; scrapers need one or two.
pub const MAX_CONNECTIONS: usize = 8;
/// Bound on a request's line and headers, in bytes (hyper answers 431
/// past it).
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// Bound on the number of request headers.
pub const MAX_HEADERS: usize = 64;
/// A request head must arrive within this, or the connection is closed.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection, keep-alive included, so slow readers
/// cannot hold the slots.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// What answers a scrape: the body and its media type.
pub type Render =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = (Bytes, &'static str)> + Send>> + Send + Sync>;

/// Binds the listener (at start, so a bad address stops the aggregator
/// with a clear error rather than later in a task).
///
/// # Errors
/// The address cannot be bound; the message names it.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} for metrics ([metrics] listen): {e}"),
        )
    })
}

/// Serves scrapes on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, render: Render, shutdown: CancellationToken) {
    if let Ok(a) = listener.local_addr() {
        info!("serving metrics over HTTP on http://{a}/metrics (unauthenticated)");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!("metrics listener: accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let render = render.clone();
        let sd = shutdown.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let render = render.clone();
                async move { Ok::<_, Infallible>(answer(&req, &render).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES.max(8192))
                .max_header_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                r = tokio::time::timeout(CONNECTION_LIFETIME, conn) => match r {
                    Ok(Err(e)) => debug!("metrics connection from {peer}: {e}"),
                    Err(_) => debug!("metrics connection from {peer}: closed after {CONNECTION_LIFETIME:?}"),
                    Ok(Ok(())) => {}
                },
                _ = sd.cancelled() => {}
            }
            drop(permit);
        });
    }
}

/// The response to one request.
async fn answer(req: &Request<Incoming>, render: &Render) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: this server answers GET /metrics\n",
        );
    }
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: GET /metrics\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let (body, media) = render().await;
    let mut r = Response::new(Full::new(if head { Bytes::new() } else { body }));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media));
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
