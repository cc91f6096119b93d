//! The device's HTTP API (`/v1`, JSON; bodies in `wasmops_shared::wire`).
//!
//! [`router`] builds the app so tests can drive it; [`run`] serves it on a listener the caller
//! bound (tests bind `127.0.0.1:0`) until `shutdown` resolves, [`run_tls`] the same over TLS.
//!
//! Every predict call, answered or refused, becomes one telemetry record, and its answer is
//! sent only after that record committed (see [`crate::telemetry`]).

mod handlers;
pub mod tls;

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use wasmops_shared::wire::{self, paths};

use crate::device::{Device, DeviceError};
use crate::input::InputError;
use crate::sandbox::SandboxError;
use crate::telemetry::TelemetryError;

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
}

#[derive(Clone)]
struct AppState {
    device: Arc<Device>,
    http: Arc<HttpConfig>,
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
    MethodNotAllowed(String),
    Internal(String),
}

impl ApiError {
    /// The stable machine-readable kind (also the status of a failed telemetry record).
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Rejected(_) => "module_rejected",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Internal(_) => "internal",
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
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let kind = self.kind();
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
            | ApiError::MethodNotAllowed(m) => m,
        };
        if status != StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(status = status.as_u16(), kind, error = %error, "request refused");
        }
        (
            status,
            Json(wire::ApiError {
                kind: kind.to_string(),
                error,
            }),
        )
            .into_response()
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::Sandbox(SandboxError::Internal(m)) => ApiError::Internal(m),
            DeviceError::Sandbox(s) => ApiError::Rejected(s.to_string()),
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

/// Builds the API router.
pub fn router(device: Arc<Device>, http: HttpConfig) -> Router {
    let origins: Vec<HeaderValue> = http
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .allow_private_network(true);
    let max_body = http.max_body;
    let state = AppState {
        device,
        http: Arc::new(http),
    };
    use handlers::*;
    Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::INFO, get(info))
        .route(paths::MODULES, post(upload).get(list_modules))
        .route("/v1/modules/{hash}/activate", post(activate))
        .route(paths::ROLLBACK, post(rollback))
        .route(paths::PREDICT, post(predict))
        .route(paths::FEEDBACK, post(feedback))
        .route(paths::FEEDBACK_RECORDS, get(label_records))
        .route(paths::TELEMETRY, get(telemetry))
        .route(paths::TELEMETRY_RECORDS, get(records))
        .route(paths::TELEMETRY_WINDOWS, get(windows))
        .route(paths::METRICS, get(metrics))
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
    axum::serve(listener, router(device, http))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves HTTPS until `shutdown` resolves: like [`run`], with every connection going through
/// a TLS handshake first (see [`tls`]).
pub async fn run_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    device: Arc<Device>,
    http: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        tls::TlsListener::new(listener, acceptor),
        router(device, http),
    )
    .with_graceful_shutdown(shutdown)
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

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(state.http.token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
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
