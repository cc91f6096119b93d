//! One function per endpoint. Blocking work (compiling modules, SQLite queries, large
//! batches) runs on the blocking pool, never on the async workers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use wasmops_shared::quote::{bounded, clipped};
use wasmops_shared::signature;
use wasmops_shared::wire::{
    self, ActivateResponse, FeedbackRequest, FeedbackResponse, Health, LabelPage, ModuleList,
    PredictResponse, RollbackResponse, TelemetryPage, UploadResponse, WindowsResponse,
};

use super::{panic_message, ApiError, AppState};
use crate::device::DeviceError;
use crate::input;
use crate::sandbox::{LoadedModule, SandboxError};
use crate::telemetry::{self, windows::WindowQuery, NewRecord, Purpose};

/// Batches above this many rows run on the blocking pool. Small enough that a module burning
/// its whole fuel budget holds an async worker for milliseconds at most.
const INLINE_ROWS: usize = 16;
/// Most labels in one feedback call.
const MAX_LABELS: usize = 100_000;

pub(super) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

pub(super) async fn info(State(s): State<AppState>) -> Result<Json<wire::DeviceInfo>, ApiError> {
    Ok(Json(blocking(move || s.device.info()).await??))
}

pub(super) async fn list_modules(State(s): State<AppState>) -> Result<Json<ModuleList>, ApiError> {
    Ok(Json(blocking(move || s.device.modules()).await??))
}

pub(super) async fn upload(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UploadResponse>, ApiError> {
    match content_type(&headers).as_deref() {
        None | Some("application/wasm") | Some("application/octet-stream") => {}
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "upload takes the module's bytes as `application/wasm`, not {}",
                bounded(other)
            )))
        }
    }
    let body = body_or_error(&s, body)?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "empty body: send the module's bytes as application/wasm".into(),
        ));
    }
    let signature = match headers.get(signature::HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::Rejected(format!(
                        "signature refused: the `{}` header is not ASCII text (send the signature document's compact JSON)",
                        signature::HEADER
                    ))
                })?
                .to_string(),
        ),
    };
    // The signature is checked before the module waits for a load slot or compiles: an
    // unsigned or forged module costs one ECDSA verification, nothing more.
    let device = s.device.clone();
    let (body, signature) = blocking(move || {
        device
            .verify_signature(&body, signature.as_deref())
            .map(|_| (body, signature))
    })
    .await?
    .inspect_err(|e| tracing::warn!(error = %e, "module refused"))?;
    let device = s.device.clone();
    // Compiling and conformance-testing is CPU work: keep it off the async workers, and wait
    // (asynchronously) for one of the few load slots first, however many uploads arrive.
    let permit = s.device.sandbox().load_permit().await;
    let loaded = blocking(move || {
        let loaded = device.upload_signed(&body, signature.as_deref());
        drop(permit);
        loaded
    })
    .await?;
    match loaded {
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

/// A device that follows an alias runs what the alias says: manual activation and rollback
/// would be undone by the next poll, so they are refused (409) with what to do instead.
fn refuse_if_following(s: &AppState, what: &str) -> Result<(), ApiError> {
    match s.device.follower() {
        Some(f) => Err(ApiError::Conflict(format!(
            "this device follows alias {} of model {} on {}: {what} by hand is refused; move the alias in the registry instead",
            bounded(&f.config.alias),
            bounded(&f.config.model),
            bounded(&f.config.tracking_uri)
        ))),
        None => Ok(()),
    }
}

pub(super) async fn activate(
    State(s): State<AppState>,
    Path(hash): Path<String>,
) -> Result<Json<ActivateResponse>, ApiError> {
    refuse_if_following(&s, "activating a module")?;
    let device = s.device.clone();
    let h = hash.clone();
    let permit = s.device.sandbox().load_permit().await;
    let previous = blocking(move || {
        let previous = device.activate(&h);
        drop(permit);
        previous
    })
    .await?
    .map_err(|e| {
        tracing::warn!(module = %hash.chars().take(80).collect::<String>(), error = %e, "activation refused");
        e
    })?;
    Ok(Json(ActivateResponse {
        active: hash,
        previous,
    }))
}

pub(super) async fn rollback(
    State(s): State<AppState>,
) -> Result<Json<RollbackResponse>, ApiError> {
    refuse_if_following(&s, "rolling back")?;
    let permit = s.device.sandbox().load_permit().await;
    let (active, rolled_back) = blocking(move || {
        let rolled_back = s.device.rollback();
        drop(permit);
        rolled_back
    })
    .await??;
    Ok(Json(RollbackResponse {
        active,
        rolled_back,
    }))
}

/// What a predict call produced before its record is stored.
struct Answer {
    module: Arc<LoadedModule>,
    batch: input::Batch,
    outputs: Vec<f64>,
}

pub(super) async fn predict(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let started = Instant::now();
    let active = s.device.active();
    let purpose = purpose(&headers);
    let result = predict_inner(&s, &headers, body, active.clone()).await;
    let latency_us = started.elapsed().as_micros() as u64;
    let store = &s.device.telemetry;
    // A panic while turning outputs into an answer (a bug) is a 500 with its record, too.
    let result = result.and_then(|a| {
        catch_unwind(AssertUnwindSafe(|| answered(a, store, latency_us, purpose)))
            .map_err(|panic| ApiError::Internal(panic_message("predict", panic.as_ref())))
    });
    let (record, reply) = match result {
        Ok((record, reply)) => (record, Ok(reply)),
        Err(e) => {
            let record = NewRecord {
                ts_ms: telemetry::now_ms(),
                model: active.map(|m| m.info.hash.clone()),
                latency_us,
                rows: 0,
                status: telemetry::Status::Error(e.kind()),
                first_id: None,
                predictions: Vec::new(),
                bins: Vec::new(),
                n_features: 0,
                purpose,
            };
            (record, Err(e))
        }
    };
    // The answer waits for the commit: an acknowledged request always has its record.
    if let Err(e) = store.commit(record).await {
        return ApiError::from(e).into_response();
    }
    match reply {
        Ok(r) => Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The record and the answer of a call the module answered.
fn answered(
    a: Answer,
    store: &telemetry::TelemetryStore,
    latency_us: u64,
    purpose: Purpose,
) -> (NewRecord, PredictResponse) {
    let d = a.module.n_features();
    let o = a.module.n_outputs();
    let first_id = store.allocate_ids(a.batch.rows as u64);
    let profile = &a.module.info.profile.features;
    let bins = a
        .batch
        .values
        .chunks_exact(d)
        .flat_map(|row| row.iter().zip(profile).map(|(v, f)| f.bin(*v) as u8))
        .collect();
    let record = NewRecord {
        ts_ms: telemetry::now_ms(),
        model: Some(a.module.info.hash.clone()),
        latency_us,
        rows: a.batch.rows as u64,
        status: telemetry::Status::Ok,
        first_id: Some(first_id),
        predictions: a.outputs.chunks_exact(o).map(|r| r[0]).collect(),
        bins,
        n_features: d,
        purpose,
    };
    let reply = PredictResponse {
        model: a.module.info.hash.clone(),
        first_id,
        outputs: a.outputs.chunks(o).map(<[f64]>::to_vec).collect(),
    };
    (record, reply)
}

/// A call marked as the dashboard's deployment check is not live traffic.
fn purpose(headers: &HeaderMap) -> Purpose {
    match headers.get(wire::PURPOSE_HEADER).map(|v| v.as_bytes()) {
        Some(v) if v == wire::PURPOSE_VERIFY.as_bytes() => Purpose::Verify,
        _ => Purpose::Live,
    }
}

async fn predict_inner(
    s: &AppState,
    headers: &HeaderMap,
    body: axum::body::Body,
    active: Option<Arc<LoadedModule>>,
) -> Result<Answer, ApiError> {
    let csv = match content_type(headers).as_deref() {
        Some("application/json") => false,
        Some("text/csv") => true,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "predict takes `application/json` ({{\"rows\": [[...]]}}) or `text/csv`, not {}",
                other.map_or("a body without Content-Type".into(), bounded)
            )))
        }
    };
    let (body, _budget) = s.guard.read_body(headers, body).await?;
    let module = active.ok_or(DeviceError::NoActiveModel)?;
    let features = &module.info.card.feature_names;
    // Parsing, the module call and the answer each catch a panic, so a predict call that
    // panics still gets its record (the router's CatchPanic layer answers for the rest).
    let parse = || {
        if csv {
            input::from_csv(&body, features)
        } else {
            input::from_json(&body, features)
        }
    };
    let batch = catch_unwind(AssertUnwindSafe(parse)).map_err(|panic| {
        ApiError::Internal(panic_message("reading a predict body", panic.as_ref()))
    })??;
    // The module call catches a panic of its own (see `Sandbox::predict_async`).
    let inline = batch.rows <= INLINE_ROWS;
    let (module, values, outputs) = s
        .device
        .sandbox()
        .predict_async(module, batch.values, inline)
        .await;
    let batch = input::Batch {
        rows: batch.rows,
        values,
    };
    let outputs = outputs.map_err(|e| match e {
        SandboxError::TooManyRows { .. } => ApiError::BadRequest(e.to_string()),
        SandboxError::Internal(m) => ApiError::Internal(m),
        other => {
            if let Some(suppressed) = super::guard::refusal_log_allowed() {
                tracing::error!(module = %module.info.hash, error = %other, suppressed, "active module failed a call");
            }
            ApiError::Rejected(other.to_string())
        }
    })?;
    Ok(Answer {
        module,
        batch,
        outputs,
    })
}

pub(super) async fn feedback(
    State(s): State<AppState>,
    body: Result<Json<FeedbackRequest>, JsonRejection>,
) -> Result<Json<FeedbackResponse>, ApiError> {
    let Json(req) = body.map_err(|e| match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "feedback takes `application/json`: {\"labels\": [{\"id\": n, \"label\": x}]}".into(),
        ),
        // Only a body over the limit is "too large"; one that breaks off or has a malformed
        // chunk is a bad request.
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(format!("body exceeds {} bytes", s.http.max_body))
        }
        JsonRejection::BytesRejection(b) => ApiError::BadRequest(format!(
            "could not read the request body: {}",
            b.body_text()
        )),
        other => ApiError::BadRequest(format!(
            "malformed feedback: {}",
            clipped(&other.body_text())
        )),
    })?;
    if req.labels.is_empty() || req.labels.len() > MAX_LABELS {
        return Err(ApiError::BadRequest(format!(
            "send between 1 and {MAX_LABELS} labels (got {})",
            req.labels.len()
        )));
    }
    // Each label is found with its prediction and model once (O(labels), off the writer),
    // checked against that model's classes, then written in chunks.
    let resolved = s.device.telemetry.resolve_labels(req.labels).await?;
    let device = s.device.clone();
    let (resolved, checked) = blocking(move || {
        let checked = device.check_labels(&resolved);
        (resolved, checked)
    })
    .await?;
    checked?;
    let accepted = s.device.telemetry.store_labels(resolved).await?;
    Ok(Json(FeedbackResponse { accepted }))
}

pub(super) async fn telemetry(
    State(s): State<AppState>,
) -> Result<Json<wire::Telemetry>, ApiError> {
    let c = blocking(move || s.device.telemetry.counters()).await??;
    Ok(Json(wire::Telemetry {
        requests: c.requests,
        predictions: c.predictions,
        errors: c.errors,
    }))
}

#[derive(Deserialize)]
pub(super) struct RecordsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

impl RecordsQuery {
    /// The cursor and page size, checked (the same rules for every cursor endpoint).
    fn checked(q: Result<Query<RecordsQuery>, QueryRejection>) -> Result<(u64, usize), ApiError> {
        let Query(q) =
            q.map_err(|e| ApiError::BadRequest(format!("bad query: {}", e.body_text())))?;
        let limit = q.limit.unwrap_or(1000);
        if !(1..=10_000).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and 10000, not {limit}"
            )));
        }
        Ok((q.after.unwrap_or(0), limit))
    }
}

pub(super) async fn records(
    State(s): State<AppState>,
    q: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Json<TelemetryPage>, ApiError> {
    let (after, limit) = RecordsQuery::checked(q)?;
    Ok(Json(
        blocking(move || s.device.telemetry.records(after, limit)).await??,
    ))
}

pub(super) async fn label_records(
    State(s): State<AppState>,
    q: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Json<LabelPage>, ApiError> {
    let (after, limit) = RecordsQuery::checked(q)?;
    Ok(Json(
        blocking(move || s.device.telemetry.labels(after, limit)).await??,
    ))
}

#[derive(Deserialize)]
pub(super) struct WindowsQuery {
    window_s: Option<u64>,
    count: Option<u64>,
}

pub(super) async fn windows(
    State(s): State<AppState>,
    q: Result<Query<WindowsQuery>, QueryRejection>,
) -> Result<Json<WindowsResponse>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(format!("bad query: {}", e.body_text())))?;
    let window_s = q.window_s.unwrap_or(60);
    let count = q.count.unwrap_or(60);
    if !(1..=86_400).contains(&window_s) || !(1..=1_000).contains(&count) {
        return Err(ApiError::BadRequest(format!(
            "window_s must be 1..=86400 and count 1..=1000 (got {window_s}, {count})"
        )));
    }
    let query = WindowQuery {
        window_s,
        count,
        now_ms: telemetry::now_ms(),
    };
    let device = s.device.clone();
    Ok(Json(
        blocking(move || device.telemetry.windows(query, &|h| device.module_info(h))).await??,
    ))
}

pub(super) async fn metrics(State(s): State<AppState>) -> Response {
    let device = s.device.clone();
    let unauthorized = s.guard.unauthorized();
    match blocking(move || device.metrics(unauthorized)).await {
        Ok(Ok(inputs)) => {
            let mut text = telemetry::prometheus::render(
                &telemetry::prometheus::collect(&inputs),
                &s.http.metric_labels,
            );
            text.push_str(&crate::follow::prometheus::render(&s.device));
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                text,
            )
                .into_response()
        }
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The body's media type without parameters, lowercased: media types are case-insensitive
/// (RFC 9110, 8.3.1), so `Application/JSON; charset=utf-8` is `application/json`.
fn content_type(headers: &HeaderMap) -> Option<String> {
    headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or("(not text)")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

fn body_or_error(s: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "request body exceeds the device's limit of {} bytes",
                s.http.max_body
            ))
        } else {
            ApiError::BadRequest(format!(
                "could not read the request body: {}",
                e.body_text()
            ))
        }
    })
}

/// Runs blocking work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("worker task failed: {e}")))
}
