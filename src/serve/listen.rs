//! Accepting connections and driving hyper's HTTP/1 on each, for what `axum::serve` leaves out
//! and a server facing hostile clients needs:
//!
//! - a bound on connections held at once: one over it is answered 503 and closed at once;
//! - a timeout on request headers (which also closes idle keep-alive connections), answered 408
//!   when part of a request had arrived;
//! - a lingering close: after the last response the server closes its side, then reads and
//!   drops what the client still sends (bounded), so that a client still writing a body it was
//!   refused (413, 429) reads the answer instead of a connection reset.
//!
//! Each stretch of a body without progress is timed out by the router (tower-http); this module
//! only sees connections.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// For the request headers, for each stretch of body without progress, and for each read
    /// while lingering.
    pub read_timeout: Duration,
    pub max_connections: usize,
    /// Most bytes read and dropped while lingering: about the largest body a client may send.
    pub linger_bytes: u64,
}

/// How long a lingering close waits in all for the client to finish sending and close.
const LINGER_TIME: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets every
/// connection finish the request it is serving, and returns once all have closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let (stop, stopping) = watch::channel(false);
    let busy = busy_response(limits.read_timeout);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Best effort and never waited on: a client that has not read it gets a close.
            let _ = stream.try_write(&busy);
            tracing::debug!("refused a connection from {peer}: --max-connections {max} open");
            continue;
        };
        tokio::spawn(connection(
            stream,
            peer,
            router.clone(),
            limits,
            permit,
            stopping.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it has closed: holding them all means none is left.
    let _ = permits.acquire_many(max as u32).await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ListenLimits,
    _permit: OwnedSemaphorePermit,
    mut stopping: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        // Boxed so that the connection is Unpin and can be polled without shutting down.
        let answer: Pin<Box<dyn Future<Output = Result<_, Infallible>> + Send>> =
            Box::pin(router.clone().oneshot(request));
        answer
    });
    let mut conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut stop = pin!(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    });
    let mut stop_sent = false;
    let served = poll_fn(|cx| {
        if !stop_sent && stop.as_mut().poll(cx).is_ready() {
            stop_sent = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        conn.poll_without_shutdown(cx)
    })
    .await;
    let parts = conn.into_parts();
    let mut stream = parts.io.into_inner();
    if let Err(e) = served {
        // Bytes of a request that never completed: the client is waiting for an answer.
        if e.is_timeout() && !parts.read_buf.is_empty() {
            let timeout = request_timeout(limits.read_timeout);
            let _ = tokio::time::timeout(limits.read_timeout, stream.write_all(&timeout)).await;
            tracing::info!("{peer}: request headers incomplete after --read-timeout: 408");
        } else {
            tracing::debug!("{peer}: connection ended: {e}");
        }
    }
    linger(stream, parts.read_buf.len() as u64, limits).await;
}

/// Closes the server's side, then drains what the client still sends until it closes, goes
/// quiet for a read timeout, or passes the byte or time bound; the socket is then dropped. A
/// socket closed with unread input sends a reset, which can destroy a response the client has
/// not read yet.
async fn linger(mut stream: TcpStream, already: u64, limits: ListenLimits) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut drained = already;
    let mut buf = vec![0u8; 64 << 10];
    while drained <= limits.linger_bytes {
        let wait = deadline.min(Instant::now() + limits.read_timeout);
        match tokio::time::timeout_at(wait, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n as u64,
            _ => break,
        }
    }
}

/// Errors that end one connection, not the listener (as `axum::serve` sorts them).
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    // Out of file descriptors, most likely: wait for some to close rather than spin.
    tracing::error!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn busy_response(read_timeout: Duration) -> Vec<u8> {
    let body = serde_json::json!({
        "error": "too many open connections (--max-connections); retry later",
        "limit": "max_connections",
    })
    .to_string();
    let retry = read_timeout.as_secs_f64().ceil().max(1.0) as u64;
    raw_response(
        "503 Service Unavailable",
        &format!("Retry-After: {retry}\r\n"),
        &body,
    )
}

fn request_timeout(read_timeout: Duration) -> Vec<u8> {
    let body = serde_json::json!({
        "error": format!(
            "the request headers did not arrive within --read-timeout ({} s)",
            read_timeout.as_secs_f64()
        ),
        "limit": "read_timeout",
    })
    .to_string();
    raw_response("408 Request Timeout", "", &body)
}

/// A whole response written by hand: hyper has no request to answer at these points.
fn raw_response(status: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-type: application/json\r\n\
         {extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
