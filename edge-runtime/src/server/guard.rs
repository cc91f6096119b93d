//! What stands between a client and a handler: the access token (one layer on every protected
//! route, checked before a byte of the body is read) and the request body (read with a size
//! limit, a time limit and a device-wide budget of buffered bytes).
//!
//! Refusals before authentication are counted in memory (`/metrics`) and logged at a bounded
//! rate: an unauthenticated client can neither write to the telemetry database nor fill the
//! log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::ApiError;

/// How long a request waits for room in the budget of buffered bytes before it is told to
/// come back later.
const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// The shared state of the guard layers.
pub struct Guard {
    token: String,
    max_body: usize,
    body_timeout: Duration,
    /// One permit per byte of request body held in memory by the device at once.
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    /// Shared with whoever reports it (`/metrics`, remote write): see [`super::HttpConfig`].
    unauthorized: Arc<AtomicU64>,
    unauthorized_log: Mutex<LogLimiter>,
}

impl Guard {
    pub fn new(
        token: String,
        max_body: usize,
        max_buffered: usize,
        body_timeout: Duration,
    ) -> Guard {
        Guard::counting(
            token,
            max_body,
            max_buffered,
            body_timeout,
            Arc::new(AtomicU64::new(0)),
        )
    }

    /// [`Guard::new`] counting refused requests in `unauthorized`.
    pub fn counting(
        token: String,
        max_body: usize,
        max_buffered: usize,
        body_timeout: Duration,
        unauthorized: Arc<AtomicU64>,
    ) -> Guard {
        let budget_bytes = max_buffered.max(max_body);
        Guard {
            token,
            max_body,
            body_timeout,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            unauthorized,
            unauthorized_log: Mutex::new(LogLimiter::new()),
        }
    }

    /// Requests refused for a missing or wrong token since the start.
    pub fn unauthorized(&self) -> u64 {
        self.unauthorized.load(Ordering::Relaxed)
    }

    /// Whether the request carries the token: `Authorization: Bearer <token>`, the scheme
    /// compared without regard to case (RFC 9110, 11.1), the token in constant time.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim_start().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim_start())
            })
            .unwrap_or("");
        bool::from(given.as_bytes().ct_eq(self.token.as_bytes()))
    }
}

/// The layer on every protected route: no token, no handler (and no body read).
pub async fn require_token(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if g.authorized(req.headers()) {
        return next.run(req).await;
    }
    let n = g.unauthorized.fetch_add(1, Ordering::Relaxed) + 1;
    let allowed = g
        .unauthorized_log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow();
    if let Some(suppressed) = allowed {
        tracing::warn!(
            path = %req.uri().path().chars().take(100).collect::<String>(),
            total = n,
            suppressed,
            "request refused: missing or wrong access token"
        );
    }
    let mut response = ApiError::Unauthorized.into_response_unlogged();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The layer that reads the whole body before the handler runs (see [`Guard::read_body`]).
/// The budget is held until the response is ready, since the handler holds the bytes.
pub async fn buffer_body(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    match g.read_body(&parts.headers, body).await {
        Ok((bytes, permit)) => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            drop(permit);
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Room taken in the budget of buffered bytes; given back when dropped.
pub struct BodyPermit(#[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>);

impl Guard {
    /// Reads a whole request body: refuses a declared length above the limit without reading
    /// it, waits (asynchronously, at most [`BUDGET_WAIT`]) for room in the device's budget of
    /// buffered bytes, and gives the client the body timeout to send it all. Hold the permit
    /// as long as the bytes are held.
    pub async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Bytes, BodyPermit), ApiError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        if declared == Some(0) || (declared.is_none() && !chunked) {
            return Ok((Bytes::new(), BodyPermit(None)));
        }
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(self.too_large());
        }
        let want = declared
            .map_or(self.max_body, |n| n as usize)
            .min(self.budget_bytes);
        let want = u32::try_from(want.max(1)).unwrap_or(u32::MAX);
        let deadline = Instant::now() + self.body_timeout;
        // A busy device says so quickly (503, Retry-After) rather than keeping the client
        // waiting.
        let budget_wait = BUDGET_WAIT.min(self.body_timeout);
        let mut permit =
            tokio::time::timeout(budget_wait, self.budget.clone().acquire_many_owned(want))
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| {
                    ApiError::Unavailable(
                        "the device is receiving too many request bodies at once; retry shortly"
                            .into(),
                    )
                })?;
        let bytes = match tokio::time::timeout_at(
            deadline.into(),
            Limited::new(body, self.max_body).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(self.too_large()),
            Ok(Err(e)) => {
                return Err(ApiError::BadRequest(format!(
                    "could not read the request body: {e}"
                )))
            }
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "the request body did not arrive within {} s",
                    self.body_timeout.as_secs()
                )))
            }
        };
        // A body without a declared length took the whole limit; keep only what it holds.
        let keep = bytes.len().max(1);
        if keep < permit.num_permits() {
            drop(permit.split(permit.num_permits() - keep));
        }
        Ok((bytes, BodyPermit(Some(permit))))
    }

    fn too_large(&self) -> ApiError {
        ApiError::PayloadTooLarge(format!(
            "request body exceeds the device's limit of {} bytes",
            self.max_body
        ))
    }
}

/// At most [`LogLimiter::PER_WINDOW`] lines per [`LogLimiter::WINDOW`]; the first line of the
/// next window says how many were left out.
pub struct LogLimiter {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new()
    }
}

impl LogLimiter {
    pub const WINDOW: Duration = Duration::from_secs(10);
    pub const PER_WINDOW: u32 = 20;

    pub const fn new() -> LogLimiter {
        LogLimiter {
            window_start: None,
            logged: 0,
            suppressed: 0,
        }
    }

    /// `Some(lines left out before this one)` when this line may be logged.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Self::WINDOW)
        {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged < Self::PER_WINDOW {
            self.logged += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// A process-wide limiter for refusal log lines (every refused request would otherwise be a
/// log line, and the log is on the device's disk).
pub fn refusal_log_allowed() -> Option<u64> {
    static REFUSALS: Mutex<LogLimiter> = Mutex::new(LogLimiter::new());
    REFUSALS.lock().unwrap_or_else(|p| p.into_inner()).allow()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new("tok".into(), 1 << 20, 8 << 20, Duration::from_secs(5))
    }

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
        let g = guard();
        for ok in ["Bearer tok", "bearer tok", "BEARER tok", "BeArEr  tok"] {
            assert!(g.authorized(&with_auth(ok)), "{ok}");
        }
        for bad in [
            "Bearer TOK",
            "Basic tok",
            "Bearertok",
            "tok",
            "Bearer tok2",
            "Bearer ",
        ] {
            assert!(!g.authorized(&with_auth(bad)), "{bad}");
        }
        assert!(!g.authorized(&HeaderMap::new()));
    }

    #[test]
    fn the_log_limiter_lets_a_few_lines_through_then_counts_the_rest() {
        let mut l = LogLimiter::new();
        let allowed = (0..100).filter(|_| l.allow().is_some()).count();
        assert_eq!(allowed, LogLimiter::PER_WINDOW as usize);
        assert_eq!(l.suppressed, 100 - LogLimiter::PER_WINDOW as u64);
    }
}
