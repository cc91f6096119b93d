//! The device's HTTP API (`/v1`, JSON; bodies in `wasmops_shared::wire`).
//!
//! [`router`] builds the app so tests can drive it; [`run`] serves it on a listener the caller
//! bound (tests bind `127.0.0.1:0`) until `shutdown` resolves, [`run_tls`] the same over TLS.
//! Connections (limits, timeouts, who gives way) are [`conn`]'s; the token and request bodies
//! are [`guard`]'s, one layer each, in front of every handler.
//!
//! Every authenticated predict call, answered or refused, becomes one telemetry record, and
//! its answer is sent only after that record committed (see [`crate::telemetry`]). Calls
//! refused for a missing token are only counted: they never reach the database.

pub mod conn;
pub mod guard;
mod handlers;
pub mod tls;

use std::any::Any;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use wasmops_shared::wire::{self, paths};

use crate::device::{Device, DeviceError};
use crate::input::InputError;
use crate::sandbox::SandboxError;
use crate::telemetry::prometheus::ConstLabels;
use crate::telemetry::{ErrorKind, TelemetryError};

/// What the HTTP layer needs besides the device.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Bearer token required for everything except health (and predict, if public).
    pub token: String,
    /// Whether predict needs the token too.
    pub predict_requires_token: bool,
    /// Origins (e.g. the dashboard's) allowed to call the API from a browser.
    pub allowed_origins: Vec<String>,
    /// Largest accepted request body in bytes.
    pub max_body: usize,
    /// Request bodies held in memory at once, in bytes, across all connections.
    pub max_buffered: usize,
    /// Time a client has to send a whole request body.
    pub body_timeout: Duration,
    /// Connection count and request-head timeout.
    pub conn: conn::ConnLimits,
    /// Labels every `/metrics` series carries (e.g. `group="canary"`).
    pub metric_labels: ConstLabels,
    /// Requests refused for their token since the start: counted by the token layer, shown by
    /// `/metrics` and pushed by remote write (memory only).
    pub unauthorized: Arc<AtomicU64>,
}

impl HttpConfig {
    /// The defaults around a token: 8 MiB bodies, 64 MiB buffered, 30 s per body, 512
    /// connections, 10 s per request head.
    pub fn new(token: impl Into<String>) -> HttpConfig {
        HttpConfig {
            token: token.into(),
            predict_requires_token: true,
            allowed_origins: Vec::new(),
            max_body: 8 << 20,
            max_buffered: 64 << 20,
            body_timeout: Duration::from_secs(30),
            conn: conn::ConnLimits::default(),
            metric_labels: ConstLabels::default(),
            unauthorized: Arc::new(AtomicU64::new(0)),
        }
    }
}

#[derive(Clone)]
struct AppState {
    device: Arc<Device>,
    http: Arc<HttpConfig>,
    guard: Arc<guard::Guard>,
}

/// One error type for every handler: the client gets the kind and a message that says what is
/// wrong; internal details are logged, not returned.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    BadRequest(String),
    NotFound(String),
    Rejected(String),
    Conflict(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    /// The client took too long to send its request.
    Timeout(String),
    /// The device is at a limit right now; retrying later may work.
    Unavailable(String),
    MethodNotAllowed(String),
    Internal(String),
}

impl ApiError {
    /// The stable machine-readable kind (also the status of a failed telemetry record).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Unauthorized => ErrorKind::Unauthorized,
            ApiError::BadRequest(_) => ErrorKind::BadRequest,
            ApiError::NotFound(_) => ErrorKind::NotFound,
            ApiError::Rejected(_) => ErrorKind::ModuleRejected,
            ApiError::Conflict(_) => ErrorKind::Conflict,
            ApiError::PayloadTooLarge(_) => ErrorKind::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorKind::UnsupportedMediaType,
            ApiError::Timeout(_) => ErrorKind::Timeout,
            ApiError::Unavailable(_) => ErrorKind::Unavailable,
            ApiError::MethodNotAllowed(_) => ErrorKind::MethodNotAllowed,
            ApiError::Internal(_) => ErrorKind::Internal,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(true)
    }
}

impl ApiError {
    /// The response, without a log line (the caller logs, or counts, itself).
    pub(crate) fn into_response_unlogged(self) -> Response {
        self.respond(false)
    }

    /// Client errors are logged at a bounded rate ([`guard::refusal_log_allowed`]): every
    /// refused request would otherwise be a line in the device's log files.
    fn respond(self, log: bool) -> Response {
        let status = self.status();
        let kind = self.kind().as_str();
        let error = match self {
            ApiError::Unauthorized => {
                "missing or wrong access token (send `Authorization: Bearer <token>`)".to_string()
            }
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                "internal error; see the device log".to_string()
            }
            ApiError::BadRequest(m)
            | ApiError::NotFound(m)
            | ApiError::Rejected(m)
            | ApiError::Conflict(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::Timeout(m)
            | ApiError::Unavailable(m)
            | ApiError::MethodNotAllowed(m) => m,
        };
        let retry = matches!(status, StatusCode::SERVICE_UNAVAILABLE);
        if log && status != StatusCode::INTERNAL_SERVER_ERROR {
            if let Some(suppressed) = guard::refusal_log_allowed() {
                tracing::warn!(status = status.as_u16(), kind, error = %error, suppressed, "request refused");
            }
        }
        let mut response = (
            status,
            Json(wire::ApiError {
                kind: kind.to_string(),
                error,
            }),
        )
            .into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::Sandbox(SandboxError::Internal(m)) => ApiError::Internal(m),
            DeviceError::Sandbox(s) => ApiError::Rejected(s.to_string()),
            DeviceError::Signature(_) => ApiError::Rejected(e.to_string()),
            DeviceError::UnknownModule(_) => ApiError::NotFound(e.to_string()),
            DeviceError::BadHash(_) => ApiError::BadRequest(e.to_string()),
            DeviceError::NoActiveModel | DeviceError::NothingToRollBack(_) => {
                ApiError::Conflict(e.to_string())
            }
            DeviceError::Io(io) => ApiError::Internal(io.to_string()),
            DeviceError::Telemetry(t) => t.into(),
            DeviceError::BadLabel { .. } => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<TelemetryError> for ApiError {
    fn from(e: TelemetryError) -> Self {
        match e {
            TelemetryError::UnknownPrediction(_) => ApiError::NotFound(e.to_string()),
            TelemetryError::BadLabel { .. } => ApiError::BadRequest(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

/// Builds the API router: health is open to anyone, predict too when configured so, every
/// other route sits behind the token layer. Bodies are read by [`guard::buffer_body`] after
/// the token was checked.
pub fn router(device: Arc<Device>, http: HttpConfig) -> Router {
    let origins: Vec<HeaderValue> = http
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(wire::PURPOSE_HEADER),
            // A push deploy from the dashboard carries the module's detached signature.
            HeaderName::from_static(wasmops_shared::signature::HEADER),
        ])
        .allow_private_network(true);
    let max_body = http.max_body;
    let guard = Arc::new(guard::Guard::counting(
        http.token.clone(),
        http.max_body,
        http.max_buffered,
        http.body_timeout,
        http.unauthorized.clone(),
    ));
    let public_predict = !http.predict_requires_token;
    let state = AppState {
        device,
        http: Arc::new(http),
        guard: guard.clone(),
    };
    use handlers::*;
    // Predict reads its own body (through the same guard), so that a body refused for its
    // size or speed is still a telemetry record.
    let with_body = Router::new()
        .route(paths::INFO, get(info))
        .route(paths::MODULES, post(upload).get(list_modules))
        .route("/v1/modules/{hash}/activate", post(activate))
        .route(paths::ROLLBACK, post(rollback))
        .route(paths::FEEDBACK, post(feedback))
        .route(paths::FEEDBACK_RECORDS, get(label_records))
        .route(paths::TELEMETRY, get(telemetry))
        .route(paths::TELEMETRY_RECORDS, get(records))
        .route(paths::TELEMETRY_WINDOWS, get(windows))
        .route(paths::METRICS, get(metrics))
        .route_layer(from_fn_with_state(guard.clone(), guard::buffer_body));
    let predict_route = Router::new().route(paths::PREDICT, post(predict));
    let (protected, public) = if public_predict {
        (with_body, predict_route)
    } else {
        (with_body.merge(predict_route), Router::new())
    };
    let protected = protected.route_layer(from_fn_with_state(guard.clone(), guard::require_token));
    let public = public.route(paths::HEALTH, get(health));
    Router::new()
        .merge(public)
        .merge(protected)
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; see docs/device-api.md".into())
        })
        .method_not_allowed_fallback(|method: Method, uri: axum::http::Uri| async move {
            ApiError::MethodNotAllowed(format!(
                "{method} is not allowed on {}; see docs/device-api.md",
                wasmops_shared::quote::bounded(uri.path())
            ))
        })
        .layer(DefaultBodyLimit::max(max_body))
        // Outermost but CORS: a panic in any handler still answers `{kind, error}` (500).
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(cors)
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    device: Arc<Device>,
    http: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = http.conn;
    conn::serve(listener, None, router(device, http), limits, shutdown).await
}

/// Serves HTTPS until `shutdown` resolves: like [`run`], with every connection going through
/// a TLS handshake first (in its own task, see [`conn`]).
pub async fn run_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    device: Arc<Device>,
    http: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = http.conn;
    conn::serve(
        listener,
        Some(acceptor),
        router(device, http),
        limits,
        shutdown,
    )
    .await
}

/// The answer to a request whose handler panicked: `{kind: "internal", error}`, 500; the
/// panic's message goes to the log only.
fn panic_response(panic: Box<dyn Any + Send>) -> Response {
    ApiError::Internal(panic_message("a request", panic.as_ref())).into_response()
}

/// What a caught panic says, for the log (the client gets only "internal error").
fn panic_message(during: &str, panic: &(dyn Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!("panic during {during}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_json_500() {
        let app = Router::new()
            .route(
                "/boom",
                get(|| async {
                    let v: Vec<u8> = Vec::new();
                    v[1].to_string()
                }),
            )
            .layer(CatchPanicLayer::custom(panic_response));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let r = reqwest::get(format!("http://{addr}/boom")).await.unwrap();
        assert_eq!(r.status().as_u16(), 500);
        let e: wire::ApiError = r.json().await.unwrap();
        assert_eq!(e.kind, "internal");
        assert_eq!(e.error, "internal error; see the device log");
        server.abort();
    }

    #[test]
    fn panic_messages_keep_what_the_panic_said() {
        let caught = std::panic::catch_unwind(|| panic!("bins for {} rows", 3)).unwrap_err();
        assert_eq!(
            panic_message("predict", caught.as_ref()),
            "panic during predict: bins for 3 rows"
        );
        let caught = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(
            panic_message("x", caught.as_ref()),
            "panic during x: static"
        );
    }
}
