//! The device's HTTP API (`/v1`, JSON; bodies in `wasmops_shared::wire`).
//!
//! [`router`] builds the app so tests can drive it; [`run`] serves it on a listener the caller
//! bound (tests bind `127.0.0.1:0`) until `shutdown` resolves, [`run_tls`] the same over TLS.
//!
//! Every predict call, answered or refused, becomes one telemetry record, and its answer is
//! sent only after that record committed (see [`crate::telemetry`]).

mod handlers;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
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
            | ApiError::UnsupportedMediaType(m) => m,
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
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(wire::PURPOSE_HEADER),
        ])
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
        .layer(DefaultBodyLimit::max(max_body))
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
