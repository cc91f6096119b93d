//! Connections: the device's own accept loop over hyper, so it decides how many connections it
//! holds, how long a client may take to send a request head, and which connection gives way
//! when it is full.
//!
//! - Every connection must send a complete request head within
//!   [`ConnLimits::header_timeout`], also between two requests on a kept-alive connection
//!   (hyper's header-read timer starts as soon as the connection is idle), so idle and
//!   half-sent connections are closed, not kept.
//! - At most [`ConnLimits::max_connections`] are open. A new connection beyond that takes the
//!   place of the connection that has been idle (no request in flight) the longest; so a
//!   client holding hundreds of idle sockets cannot keep `/v1/health` or a real client out.
//!   With none idle, it takes the place of the one that has been sending its request body the
//!   longest (a client that declares a body and sends it slowly, or not at all, holds a request
//!   "in flight" without the device doing anything for it). Only when every open connection has
//!   a request the device is working on is the new one closed.
//! - TLS handshakes run in the connection's own task, bounded by [`HANDSHAKE_TIMEOUT`].
//! - Shutdown stops accepting, lets requests in flight finish (for at most
//!   [`DRAIN_TIMEOUT`]) and closes idle connections.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A TLS client gets this long to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, requests in flight get this long to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest read buffer per connection (request heads longer than this are refused with 431).
pub const MAX_READ_BUFFER: usize = 64 << 10;
/// Descriptors kept for everything but client connections (listener, database and WAL, log
/// files, module files, the blocking pool's work).
pub const RESERVED_FDS: usize = 64;

/// How many connections the device holds and how long it waits for a client.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// To send a request head (also between two requests on a kept-alive connection).
    pub header_timeout: Duration,
    /// A connection with no request being handled and no byte moving for this long is closed:
    /// a client that stops reading its answer cannot keep the answer (and the connection)
    /// in the device's memory.
    pub stall_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// What the accept loop knows about one open connection.
struct ConnState {
    /// Milliseconds since the registry's start at the last byte read or written.
    last_active_ms: AtomicU64,
    /// Requests of this connection being handled now.
    in_flight: AtomicUsize,
    /// Milliseconds since the registry's start when the request being handled began sending
    /// its body, while the body is not all read; 0 otherwise.
    receiving_since_ms: AtomicU64,
    /// Notified when the connection must give way to a new one.
    evict: Notify,
}

/// The open connections.
struct Registry {
    started: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn add(&self) -> (u64, Arc<ConnState>, usize) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            last_active_ms: AtomicU64::new(self.now_ms()),
            in_flight: AtomicUsize::new(0),
            receiving_since_ms: AtomicU64::new(0),
            evict: Notify::new(),
        });
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.insert(id, state.clone());
        (id, state, open.len())
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Asks one connection (other than `except`) to close to make room, and stops counting it
    /// at once: the one idle the longest, or else the one that has been sending a request body
    /// the longest. False if every other connection has a request the device is working on.
    fn evict_idlest(&self, except: u64) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let others = || open.iter().filter(|(id, _)| **id != except);
        let idlest = others()
            .filter(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, c)| c.last_active_ms.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        let slowest_sender = || {
            others()
                .map(|(id, c)| (*id, c.receiving_since_ms.load(Ordering::Acquire)))
                .filter(|(_, since)| *since > 0)
                .min_by_key(|(_, since)| *since)
                .map(|(id, _)| id)
        };
        match idlest
            .or_else(slowest_sender)
            .and_then(|id| open.remove(&id))
        {
            Some(c) => {
                // `notify_one` keeps the permit if the task is not waiting yet.
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` (through TLS when `tls` is given) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut limits = limits;
    // Never more connections than descriptors: a device out of descriptors cannot accept
    // anything, not even a health check, nor open its database.
    if let Some(fds) = open_files_limit() {
        let cap = fds.saturating_sub(RESERVED_FDS).max(2);
        if cap < limits.max_connections {
            tracing::warn!(
                configured = limits.max_connections,
                open_files_limit = fds,
                using = cap,
                "max_connections lowered to fit the open-files limit (raise it with `ulimit -n` or LimitNOFILE=)"
            );
            limits.max_connections = cap;
        }
    }
    let registry = Arc::new(Registry {
        started: Instant::now(),
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut accept_errors = super::guard::LogLimiter::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors (EMFILE) and the like: wait a little instead of
                    // spinning, and say so without flooding the log.
                    if let Some(suppressed) = accept_errors.allow() {
                        tracing::warn!(error = %e, suppressed, "accepting a connection failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (id, state, open) = registry.add();
        if open > limits.max_connections && !registry.evict_idlest(id) {
            // Every other connection is busy with a request: this one has to wait its turn.
            registry.remove(id);
            drop(tcp);
            continue;
        }
        let app = app.clone();
        let tls = tls.clone();
        let registry = registry.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let started = registry.started;
            match tls {
                None => serve_one(tcp, app, state, started, limits, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            serve_one(stream, app, state, started, limits, watcher).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            registry.remove(id);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the drain timeout; stopping anyway");
    }
    Ok(())
}

async fn serve_one<IO>(
    io: IO,
    app: Router,
    state: Arc<ConnState>,
    started: Instant,
    limits: ConnLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Tracked {
        inner: io,
        state: state.clone(),
        started,
    });
    let in_flight = state.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let busy = Busy::new(in_flight.clone());
        let app = app.clone();
        let state = in_flight.clone();
        async move {
            let req = req.map(|body| Body::new(Receiving::new(body, state, started)));
            let response = app.oneshot(req).await;
            drop(busy);
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper's default read buffer grows to ~400 KiB for a long request head; the API's
        // heads are small, and 512 connections x 400 KiB of headers is memory an attacker
        // could hold.
        .max_buf_size(MAX_READ_BUFFER)
        .keep_alive(true);
    let connection = watcher.watch(builder.serve_connection(io, service));
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = state.evict.notified() => {
            tracing::debug!("idle connection closed to make room for a new one");
        }
        _ = stalled(&state, started, limits.stall_timeout) => {
            tracing::debug!("stalled connection closed (no request running, no byte moving)");
        }
    }
}

/// Resolves once the connection has had no request in flight and moved no byte for
/// `timeout`. Requests that take long (a big batch) are not stalls: they are in flight.
async fn stalled(state: &ConnState, started: Instant, timeout: Duration) {
    let tick = (timeout / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        let now = started.elapsed().as_millis() as u64;
        let quiet = now.saturating_sub(state.last_active_ms.load(Ordering::Relaxed));
        if state.in_flight.load(Ordering::Acquire) == 0 && quiet >= timeout.as_millis() as u64 {
            return;
        }
    }
}

/// The soft limit on open files (Linux: `/proc/self/limits`); `None` if unlimited or unknown.
pub fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Counts a request as in flight on its connection until dropped (also when the request's
/// future is dropped midway).
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: Arc<ConnState>) -> Busy {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request body that marks its connection as "receiving" from the start until it was read
/// to the end (or dropped): such a connection gives way before any busy one.
struct Receiving {
    inner: hyper::body::Incoming,
    state: Arc<ConnState>,
    active: bool,
}

impl Receiving {
    fn new(inner: hyper::body::Incoming, state: Arc<ConnState>, started: Instant) -> Receiving {
        use hyper::body::Body as _;
        let active = !inner.is_end_stream();
        if active {
            let now = (started.elapsed().as_millis() as u64).max(1);
            state.receiving_since_ms.store(now, Ordering::Release);
        }
        Receiving {
            inner,
            state,
            active,
        }
    }

    fn finish(&mut self) {
        if self.active {
            self.active = false;
            self.state.receiving_since_ms.store(0, Ordering::Release);
        }
    }
}

impl hyper::body::Body for Receiving {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(poll, Poll::Ready(None | Some(Err(_)))) || this.inner.is_end_stream() {
            this.finish();
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A connection's byte stream that records when it last moved a byte.
struct Tracked<IO> {
    inner: IO,
    state: Arc<ConnState>,
    started: Instant,
}

impl<IO> Tracked<IO> {
    fn touch(&self) {
        self.state
            .last_active_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
