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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn ask(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(req).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn get_head_and_everything_else() {
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let render: Render =
            Arc::new(|| Box::pin(async { (Bytes::from_static(b"up 1\n# EOF\n"), "text/x-test") }));
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(l, render, stop.clone()));

        let r = ask(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("content-type: text/x-test"), "{r}");
        assert!(r.ends_with("\r\n\r\nup 1\n# EOF\n"), "{r}");
        // A query string is still /metrics.
        let r = ask(
            addr,
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        let r = ask(
            addr,
            b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200") && !r.contains("up 1"), "{r}");
        let r = ask(
            addr,
            b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            r.starts_with("HTTP/1.1 405") && r.contains("allow: GET, HEAD"),
            "{r}"
        );
        let r = ask(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        // Too many headers, and a head past the byte bound: refused, not served.
        let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS + 10 {
            many.extend(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        let r = ask(addr, &many).await;
        assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 1));
        big.extend(b"\r\n\r\n");
        let r = ask(addr, &big).await;
        assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
        // Still serving.
        let r = ask(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"),
            "{r}"
        );

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    /// Slow or silent clients are closed (virtual time: the runtime's
    /// clock is paused and jumps to the next timer).
    #[tokio::test(start_paused = true)]
    async fn slow_heads_and_idle_connections_are_closed() {
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let render: Render = Arc::new(|| Box::pin(async { (Bytes::new(), "text/plain") }));
        let stop = CancellationToken::new();
        tokio::spawn(serve(l, render, stop.clone()));
        for first in [&b"GET /metrics HTTP/1.1\r\nHost:"[..], b""] {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(first).await.unwrap();
            let started = tokio::time::Instant::now();
            let mut out = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(3600), s.read_to_end(&mut out)).await;
            assert!(read.is_ok(), "{first:?}: never closed");
            assert!(
                started.elapsed() <= CONNECTION_LIFETIME,
                "{first:?}: closed after {:?}",
                started.elapsed()
            );
            assert!(!String::from_utf8_lossy(&out).contains(" 200 "));
        }
        stop.cancel();
    }
}
