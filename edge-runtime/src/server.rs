//! The device's HTTP API (`/v1`, JSON; bodies in `wasmops_shared::wire`).
//!
//! [`router`] builds the app so tests can drive it; [`run`] serves it on a listener the caller
//! bound (tests bind `127.0.0.1:0`) until `shutdown` resolves.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use wasmops_shared::wire::{
    self, paths, ActivateResponse, Health, PredictRequest, PredictResponse, UploadResponse,
};

use crate::device::{Device, DeviceError};
use crate::sandbox::SandboxError;

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
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, error) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong access token (send `Authorization: Bearer <token>`)".to_string(),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Rejected(m) => (StatusCode::UNPROCESSABLE_ENTITY, "module_rejected", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the device log".to_string(),
                )
            }
        };
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
            DeviceError::NoActiveModel => ApiError::Conflict(e.to_string()),
            DeviceError::Io(io) => ApiError::Internal(io.to_string()),
        }
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
    Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::INFO, get(info))
        .route(paths::MODULES, post(upload))
        .route("/v1/modules/{hash}/activate", post(activate))
        .route(paths::PREDICT, post(predict))
        .route(paths::TELEMETRY, get(telemetry))
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

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn info(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<wire::DeviceInfo>, ApiError> {
    authorize(&s, &headers)?;
    Ok(Json(s.device.info()?))
}

async fn upload(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<UploadResponse>, ApiError> {
    authorize(&s, &headers)?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "empty body: send the module's bytes as application/wasm".into(),
        ));
    }
    let device = s.device.clone();
    // Compiling and conformance-testing is CPU work: keep it off the async workers.
    let result = tokio::task::spawn_blocking(move || device.upload(&body))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match result {
        Ok(m) => Ok(Json(UploadResponse {
            hash: m.info.hash.clone(),
            size: m.info.size,
            conformance_rows: m.info.conformance.n_rows,
        })),
        Err(e) => {
            tracing::warn!(error = %e, "module rejected");
            Err(e.into())
        }
    }
}

async fn activate(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Json<ActivateResponse>, ApiError> {
    authorize(&s, &headers)?;
    let device = s.device.clone();
    let h = hash.clone();
    let previous = tokio::task::spawn_blocking(move || device.activate(&h))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(ActivateResponse {
        active: hash,
        previous,
    }))
}

async fn predict(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PredictResponse>, ApiError> {
    let t = &s.device.telemetry;
    t.requests.fetch_add(1, Ordering::Relaxed);
    let result = predict_inner(&s, &headers, &body);
    if result.is_err() {
        t.errors.fetch_add(1, Ordering::Relaxed);
    }
    result.map(Json)
}

fn predict_inner(
    s: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PredictResponse, ApiError> {
    if s.http.predict_requires_token {
        authorize(s, headers)?;
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::BadRequest(
            "predict takes `Content-Type: application/json`".into(),
        ));
    }
    let req: PredictRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed predict request: {e}")))?;
    let module = s.device.active().ok_or(DeviceError::NoActiveModel)?;
    let d = module.n_features();
    if req.rows.is_empty() {
        return Err(ApiError::BadRequest("`rows` is empty".into()));
    }
    let mut flat = Vec::with_capacity(req.rows.len() * d);
    for (i, row) in req.rows.iter().enumerate() {
        if row.len() != d {
            return Err(ApiError::BadRequest(format!(
                "row {i} has {} values; the active model takes {d} features ({})",
                row.len(),
                module.info.card.feature_names.join(", ")
            )));
        }
        flat.extend_from_slice(row);
    }
    let out = s
        .device
        .sandbox()
        .predict(&module, &flat)
        .map_err(|e| match e {
            SandboxError::TooManyRows { .. } => ApiError::BadRequest(e.to_string()),
            SandboxError::Internal(m) => ApiError::Internal(m),
            other => ApiError::Rejected(other.to_string()),
        })?;
    let n = req.rows.len() as u64;
    let first_id = s
        .device
        .telemetry
        .predictions
        .fetch_add(n, Ordering::Relaxed);
    Ok(PredictResponse {
        model: module.info.hash.clone(),
        first_id,
        outputs: out
            .chunks(module.n_outputs())
            .map(<[f64]>::to_vec)
            .collect(),
    })
}

async fn telemetry(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<wire::Telemetry>, ApiError> {
    authorize(&s, &headers)?;
    Ok(Json(s.device.telemetry.snapshot()))
}
