//! MLflow's tracking and registry REST API (MLflow 3.x, `/api/2.0/mlflow/...` and the artifact
//! proxy `/api/2.0/mlflow-artifacts/...`), as the dashboard (and later the CLI and devices)
//! speak it.
//!
//! The HTTP itself is a [`Transport`] each side brings (the browser's `fetch`, a native client
//! in tests and benchmarks); this module builds the requests, respects MLflow's limits, reads
//! its errors, and syncs one run idempotently ([`sync_run`]): a run carries its client id as
//! the tag [`CLIENT_ID_TAG`], so a sync from any browser finds the MLflow run made before and
//! never creates a second one. Re-sending a part is harmless (MLflow ignores a metric point it
//! already has and a param with the same value), so a sync cut off in the middle resumes from
//! what was confirmed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The tag that ties an MLflow run to the dashboard's run id.
pub const CLIENT_ID_TAG: &str = "wasmops.client_id";
/// Module hash, size and kind on a registered model version.
pub const SHA256_TAG: &str = "wasmops.sha256";
pub const SIZE_TAG: &str = "wasmops.size";
pub const KIND_TAG: &str = "wasmops.kind";
/// Where a run's model module goes among its artifacts (`model/model.wasm`).
pub const MODEL_DIR: &str = "model";
pub const MODULE_FILE: &str = "model.wasm";

/// MLflow's limits (`mlflow/utils/validation.py`).
pub mod limits {
    pub const METRICS_PER_BATCH: usize = 1000;
    pub const PARAMS_PER_BATCH: usize = 100;
    pub const TAGS_PER_BATCH: usize = 100;
    pub const ENTITIES_PER_BATCH: usize = 1000;
    pub const KEY_LENGTH: usize = 250;
    pub const PARAM_VALUE_LENGTH: usize = 6000;
    pub const TAG_VALUE_LENGTH: usize = 8000;
    pub const DATASET_DIGEST_LENGTH: usize = 36;
    pub const DATASET_NAME_LENGTH: usize = 500;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
        }
    }
}

/// One HTTP request, relative to the tracking URI (`path` starts with `/api/`).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: Method,
    pub path: String,
    /// JSON text (sent as `application/json`) or raw bytes (`application/octet-stream`).
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Empty,
    Json(String),
    Bytes(Vec<u8>),
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::Json(s) => s.len(),
            Body::Bytes(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// How requests reach the server. `Err` is for requests that got no answer at all (network,
/// CORS, DNS): the text says why, in the transport's words.
#[allow(async_fn_in_trait)]
pub trait Transport {
    async fn send(&self, request: Request) -> Result<Response, String>;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MlflowError {
    #[error("the MLflow server is unreachable ({0}); is it running, and does it allow this page's origin (`mlflow server --cors-allowed-origins`)?")]
    Unreachable(String),
    #[error("the MLflow server refused the credentials (HTTP 401): check the user and password or the token in Settings")]
    Unauthorized(u16),
    #[error("MLflow {during}: the server's permissions do not allow it for this user (HTTP 403): {message}")]
    Forbidden { during: String, message: String },
    #[error("MLflow {during}: {code} (HTTP {status}): {message}")]
    Api {
        during: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("MLflow {during}: unreadable answer: {reason}")]
    Protocol { during: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
}

impl MlflowError {
    /// MLflow's error code (`RESOURCE_DOES_NOT_EXIST`, ...), if the server gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            MlflowError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// What a caller of the client counts: requests made and bytes sent and received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// The REST API over a [`Transport`].
pub struct Client<T> {
    pub transport: T,
    traffic: std::cell::Cell<Traffic>,
}

const API: &str = "/api/2.0/mlflow";
const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// A run as MLflow describes it (`info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    #[serde(default)]
    pub run_name: String,
    #[serde(default)]
    pub experiment_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(default)]
    pub lifecycle_stage: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub metrics: Vec<Value>,
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteRun {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

/// The value of the tag `key` among `tags`.
fn tag_in<'a>(tags: &'a [KeyValue], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

impl RemoteRun {
    pub fn tag(&self, key: &str) -> Option<&str> {
        tag_in(&self.data.tags, key)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub creation_timestamp: i64,
}

impl ModelVersion {
    pub fn tag(&self, key: &str) -> Option<&str> {
        tag_in(&self.tags, key)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRef {
    pub alias: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<AliasRef>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// `RUNNING`, `FINISHED`, `FAILED` or `KILLED` (MLflow's run statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
}

/// One metric point.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp_ms: i64,
    pub step: i64,
}

fn metric_json(m: &Metric) -> Value {
    // Protobuf's JSON form: non-finite doubles are the strings `NaN`, `Infinity`, `-Infinity`
    // (a JSON number cannot carry them; serde would write `null`).
    let value = if m.value.is_finite() {
        json!(m.value)
    } else if m.value.is_nan() {
        json!("NaN")
    } else if m.value > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    };
    json!({"key": m.key, "value": value, "timestamp": m.timestamp_ms, "step": m.step})
}

/// A dataset input (`log-inputs`): MLflow keeps at most 36 characters of digest.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInput {
    pub name: String,
    /// The full content hash; its first 36 characters become MLflow's digest, the whole of it
    /// stays in `source`.
    pub hash: String,
    pub n_rows: usize,
    pub features: Vec<String>,
    pub target: String,
}

/// A file among a run's artifacts.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// Relative path, e.g. `model/model.wasm`.
    pub path: String,
    pub bytes: Vec<u8>,
}

/// A run as it should be on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub client_id: String,
    pub name: String,
    pub status: RunStatus,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Params as MLflow keeps them: text.
    pub params: Vec<(String, String)>,
    /// Final metrics and step curves.
    pub metrics: Vec<Metric>,
    /// Every tag but the client id (added by the sync).
    pub tags: BTreeMap<String, String>,
    pub dataset: Option<DatasetInput>,
    pub artifacts: Vec<Artifact>,
}

/// What the server confirmed of a run; stored by the caller and handed back on the next sync.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Synced {
    pub run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
    /// Params, metrics and the dataset input are on the server.
    pub data_logged: bool,
    /// Artifacts uploaded: path -> content hash.
    pub artifacts: BTreeMap<String, String>,
    /// Tags as last confirmed (the client id included).
    pub tags: BTreeMap<String, String>,
    pub name: String,
    /// Status and end time as last confirmed.
    pub status: Option<RunStatus>,
    pub end_ms: i64,
}

/// Why a part of a run cannot be represented in MLflow, by name.
pub fn check_key(kind: &str, key: &str) -> Result<(), String> {
    let valid = !key.is_empty()
        && key.chars().count() <= limits::KEY_LENGTH
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/' | ':'))
        && !key.starts_with('/')
        && !key
            .split('/')
            .any(|part| part == "." || part == ".." || part.is_empty());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{kind} {} cannot be an MLflow key (at most {} letters, digits, `_ - . : /` and spaces)",
            crate::quote::bounded(key),
            limits::KEY_LENGTH
        ))
    }
}

impl RunRecord {
    /// Every part MLflow would refuse, by name. A sync refuses the whole run rather than drop
    /// a part of it.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        // A key MLflow refuses, or a value longer than it keeps (it counts characters).
        let mut check = |kind: &str, key: &str, value: &str, limit: usize| {
            if let Err(e) = check_key(kind, key) {
                out.push(e);
            }
            let n = value.chars().count();
            if n > limit {
                out.push(format!(
                    "{kind} `{key}` is {n} characters long (MLflow keeps at most {limit})"
                ));
            }
        };
        for (k, v) in &self.params {
            check("param", k, v, limits::PARAM_VALUE_LENGTH);
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.metrics {
            if seen.insert(m.key.as_str()) {
                check("metric", &m.key, "", 0);
            }
        }
        for (k, v) in &self.tags {
            check("tag", k, v, limits::TAG_VALUE_LENGTH);
        }
        out
    }

    fn all_tags(&self) -> BTreeMap<String, String> {
        let mut tags = self.tags.clone();
        tags.insert(CLIENT_ID_TAG.to_string(), self.client_id.clone());
        tags
    }
}

/// `log-batch` bodies for params, metrics and tags, within MLflow's per-request limits.
pub fn batches(
    params: &[(String, String)],
    metrics: &[Metric],
    tags: &[(String, String)],
) -> Vec<Value> {
    let mut out = Vec::new();
    let (mut p, mut m, mut t) = (0, 0, 0);
    while p < params.len() || m < metrics.len() || t < tags.len() {
        let np = (params.len() - p).min(limits::PARAMS_PER_BATCH);
        let nt = (tags.len() - t).min(limits::TAGS_PER_BATCH);
        let nm = (metrics.len() - m)
            .min(limits::METRICS_PER_BATCH)
            .min(limits::ENTITIES_PER_BATCH - np - nt);
        out.push(json!({
            "params": params[p..p + np].iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "metrics": metrics[m..m + nm].iter().map(metric_json).collect::<Vec<_>>(),
            "tags": tags[t..t + nt].iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        }));
        p += np;
        m += nm;
        t += nt;
    }
    out
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Text in single quotes for MLflow's search filters.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The artifact proxy's path for `rel` under a run's `mlflow-artifacts:` artifact URI.
pub fn artifact_path(artifact_uri: &str, rel: &str) -> Result<String, MlflowError> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
        MlflowError::Unsupported(format!(
            "the run's artifacts live at {} and not behind the server's artifact proxy: start `mlflow server` with artifact serving (the default; not `--no-serve-artifacts`)",
            crate::quote::bounded(artifact_uri)
        ))
    })?;
    // `mlflow-artifacts:/1/abc/artifacts` or `mlflow-artifacts://host:port/1/abc/artifacts`.
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest.trim_start_matches('/'),
    };
    let mut out = String::from(ARTIFACTS);
    for part in path
        .split('/')
        .chain(rel.split('/'))
        .filter(|p| !p.is_empty())
    {
        out.push('/');
        out.push_str(&encode(part));
    }
    Ok(out)
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T) -> Client<T> {
        Client {
            transport,
            traffic: Default::default(),
        }
    }

    pub fn traffic(&self) -> Traffic {
        self.traffic.get()
    }

    /// Sends a request; an answer outside 2xx becomes an [`MlflowError`].
    pub async fn raw(&self, request: Request, during: &str) -> Result<Vec<u8>, MlflowError> {
        let mut traffic = self.traffic.get();
        traffic.requests += 1;
        traffic.bytes_sent += request.body.len() as u64;
        let response = self
            .transport
            .send(request)
            .await
            .map_err(MlflowError::Unreachable)?;
        traffic.bytes_received += response.body.len() as u64;
        self.traffic.set(traffic);
        if (200..300).contains(&response.status) {
            return Ok(response.body);
        }
        if response.status == 401 {
            return Err(MlflowError::Unauthorized(response.status));
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            #[serde(default)]
            error_code: String,
            #[serde(default)]
            message: String,
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&response.body) {
            Ok(b) => (b.error_code, b.message),
            Err(_) => (
                String::new(),
                crate::quote::bounded(&String::from_utf8_lossy(&response.body)),
            ),
        };
        if response.status == 403 {
            return Err(MlflowError::Forbidden {
                during: during.to_string(),
                message,
            });
        }
        Err(MlflowError::Api {
            during: during.to_string(),
            status: response.status,
            code: if code.is_empty() {
                "HTTP_ERROR".into()
            } else {
                code
            },
            message,
        })
    }

    async fn call<R: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Value>,
        during: &str,
    ) -> Result<R, MlflowError> {
        let body = match body {
            Some(v) => Body::Json(v.to_string()),
            None => Body::Empty,
        };
        let bytes = self.raw(Request { method, path, body }, during).await?;
        let bytes = if bytes.is_empty() {
            b"{}".to_vec()
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| MlflowError::Protocol {
            during: during.to_string(),
            reason: e.to_string(),
        })
    }

    async fn post(&self, endpoint: &str, body: Value, during: &str) -> Result<Value, MlflowError> {
        self.call(
            Method::Post,
            format!("{API}/{endpoint}"),
            Some(body),
            during,
        )
        .await
    }

    /// One field of an answer (`{"run": {...}}` -> the run).
    async fn field<R: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Value>,
        field: &str,
        during: &str,
    ) -> Result<R, MlflowError> {
        let answer: Value = self.call(method, path, body, during).await?;
        serde_json::from_value(answer.get(field).cloned().unwrap_or(Value::Null)).map_err(|e| {
            MlflowError::Protocol {
                during: during.to_string(),
                reason: format!("`{field}`: {e}"),
            }
        })
    }

    /// Every page of a listing: `page(token)` is the request for one page; `field` holds its
    /// items (absent when there are none) and `next_page_token` the next page's.
    async fn pages<R: serde::de::DeserializeOwned>(
        &self,
        mut page: impl FnMut(Option<&str>) -> (Method, String, Option<Value>),
        field: &str,
        during: &str,
    ) -> Result<Vec<R>, MlflowError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (method, path, body) = page(token.as_deref());
            let answer: Value = self.call(method, path, body, during).await?;
            let items: Option<Vec<R>> = serde_json::from_value(
                answer.get(field).cloned().unwrap_or(Value::Null),
            )
            .map_err(|e| MlflowError::Protocol {
                during: during.to_string(),
                reason: format!("`{field}`: {e}"),
            })?;
            out.extend(items.unwrap_or_default());
            match answer.get("next_page_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    // ---- experiments ----

    pub async fn experiment_by_name(&self, name: &str) -> Result<Option<Experiment>, MlflowError> {
        let path = format!(
            "{API}/experiments/get-by-name?experiment_name={}",
            encode(name)
        );
        match self
            .field(
                Method::Get,
                path,
                None,
                "experiment",
                "looking up the experiment",
            )
            .await
        {
            Ok(e) => Ok(Some(e)),
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The experiment's id, made if it does not exist (a deleted one is refused by name).
    pub async fn ensure_experiment(&self, name: &str) -> Result<String, MlflowError> {
        if let Some(e) = self.experiment_by_name(name).await? {
            if e.lifecycle_stage == "deleted" {
                return Err(MlflowError::Unsupported(format!(
                    "the MLflow experiment {} is deleted: restore it in MLflow or pick another",
                    crate::quote::bounded(name)
                )));
            }
            return Ok(e.experiment_id);
        }
        let created = self
            .field::<String>(
                Method::Post,
                format!("{API}/experiments/create"),
                Some(json!({"name": name})),
                "experiment_id",
                "creating the experiment",
            )
            .await;
        match created {
            Ok(id) => Ok(id),
            // Made by someone else in the meantime.
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => self
                .experiment_by_name(name)
                .await?
                .map(|e| e.experiment_id)
                .ok_or(e),
            Err(e) => Err(e),
        }
    }

    pub async fn experiments(&self) -> Result<Vec<Experiment>, MlflowError> {
        self.pages(
            |token| {
                let mut body = json!({"max_results": 1000});
                if let Some(t) = token {
                    body["page_token"] = json!(t);
                }
                (
                    Method::Post,
                    format!("{API}/experiments/search"),
                    Some(body),
                )
            },
            "experiments",
            "listing experiments",
        )
        .await
    }

    // ---- runs ----

    /// Every run of the experiment that carries a client id (deleted ones too) and started at
    /// `since_ms` or later, by client id.
    pub async fn runs_by_client_id(
        &self,
        experiment_id: &str,
        since_ms: i64,
    ) -> Result<BTreeMap<String, RemoteRun>, MlflowError> {
        let runs: Vec<RemoteRun> = self
            .pages(
                |token| {
                    let mut body = json!({
                        "experiment_ids": [experiment_id],
                        "filter": format!("tags.`{CLIENT_ID_TAG}` LIKE '%' AND attributes.start_time >= {since_ms}"),
                        "run_view_type": "ALL",
                        "max_results": 1000,
                    });
                    if let Some(t) = token {
                        body["page_token"] = json!(t);
                    }
                    (Method::Post, format!("{API}/runs/search"), Some(body))
                },
                "runs",
                "looking for runs synced before",
            )
            .await?;
        let mut out = BTreeMap::new();
        for run in runs {
            if let Some(id) = run.tag(CLIENT_ID_TAG) {
                // Should one client id be on two runs, the active one is the run.
                let keep = out.get(id).is_none_or(|have: &RemoteRun| {
                    have.info.lifecycle_stage == "deleted" && run.info.lifecycle_stage != "deleted"
                });
                if keep {
                    out.insert(id.to_string(), run);
                }
            }
        }
        Ok(out)
    }

    pub async fn run(&self, run_id: &str) -> Result<RemoteRun, MlflowError> {
        self.field(
            Method::Get,
            format!("{API}/runs/get?run_id={}", encode(run_id)),
            None,
            "run",
            "reading a run",
        )
        .await
    }

    pub async fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        start_ms: i64,
        tags: &BTreeMap<String, String>,
    ) -> Result<RunInfo, MlflowError> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let run: RemoteRun = self
            .field(
                Method::Post,
                format!("{API}/runs/create"),
                Some(json!({"experiment_id": experiment_id, "run_name": name, "start_time": start_ms, "tags": tags})),
                "run",
                "creating the run",
            )
            .await?;
        Ok(run.info)
    }

    pub async fn log_batch(&self, run_id: &str, mut batch: Value) -> Result<(), MlflowError> {
        batch["run_id"] = json!(run_id);
        self.post("runs/log-batch", batch, "logging params, metrics and tags")
            .await
            .map(|_| ())
    }

    pub async fn log_dataset(&self, run_id: &str, d: &DatasetInput) -> Result<(), MlflowError> {
        let digest: String = d.hash.chars().take(limits::DATASET_DIGEST_LENGTH).collect();
        let name: String = d.name.chars().take(limits::DATASET_NAME_LENGTH).collect();
        let source = json!({"content_hash": d.hash}).to_string();
        let schema = json!({"mlflow_colspec": d.features.iter().map(|f| json!({"name": f, "type": "double"}))
            .chain(std::iter::once(json!({"name": d.target, "type": "double"}))).collect::<Vec<_>>()})
        .to_string();
        let profile =
            json!({"num_rows": d.n_rows, "num_elements": d.n_rows * (d.features.len() + 1)})
                .to_string();
        self.post(
            "runs/log-inputs",
            json!({"run_id": run_id, "datasets": [{
                "tags": [{"key": "mlflow.data.context", "value": "training"}],
                "dataset": {"name": name, "digest": digest, "source_type": "wasmops", "source": source,
                            "schema": schema, "profile": profile}
            }]}),
            "logging the dataset",
        )
        .await
        .map(|_| ())
    }

    pub async fn update_run(
        &self,
        run_id: &str,
        status: RunStatus,
        end_ms: i64,
        name: &str,
    ) -> Result<(), MlflowError> {
        self.post(
            "runs/update",
            json!({"run_id": run_id, "status": status.as_str(), "end_time": end_ms, "run_name": name}),
            "updating the run",
        )
        .await
        .map(|_| ())
    }

    /// Brings a run deleted in MLflow (not yet purged) back: it is still this client's run.
    pub async fn restore_run(&self, run_id: &str) -> Result<(), MlflowError> {
        self.post(
            "runs/restore",
            json!({"run_id": run_id}),
            "restoring the run deleted in MLflow",
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<(), MlflowError> {
        self.post(
            "runs/delete-tag",
            json!({"run_id": run_id, "key": key}),
            "removing a tag",
        )
        .await
        .map(|_| ())
    }

    pub async fn put_artifact(
        &self,
        artifact_uri: &str,
        rel: &str,
        bytes: Vec<u8>,
    ) -> Result<(), MlflowError> {
        let path = artifact_path(artifact_uri, rel)?;
        self.raw(
            Request {
                method: Method::Put,
                path,
                body: Body::Bytes(bytes),
            },
            &format!("uploading `{rel}`"),
        )
        .await
        .map(|_| ())
    }

    pub async fn get_artifact(
        &self,
        artifact_uri: &str,
        rel: &str,
    ) -> Result<Vec<u8>, MlflowError> {
        let path = artifact_path(artifact_uri, rel)?;
        self.raw(
            Request {
                method: Method::Get,
                path,
                body: Body::Empty,
            },
            &format!("downloading `{rel}`"),
        )
        .await
    }

    // ---- registry ----

    /// Makes the registered model if it does not exist yet.
    pub async fn ensure_registered_model(&self, name: &str) -> Result<(), MlflowError> {
        match self
            .post(
                "registered-models/create",
                json!({"name": name}),
                "registering the model",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn registered_models(&self) -> Result<Vec<RegisteredModel>, MlflowError> {
        self.pages(
            |token| {
                let mut path = format!("{API}/registered-models/search?max_results=1000");
                if let Some(t) = token {
                    path.push_str(&format!("&page_token={}", encode(t)));
                }
                (Method::Get, path, None)
            },
            "registered_models",
            "listing registered models",
        )
        .await
    }

    pub async fn registered_model(&self, name: &str) -> Result<RegisteredModel, MlflowError> {
        self.field(
            Method::Get,
            format!("{API}/registered-models/get?name={}", encode(name)),
            None,
            "registered_model",
            "reading the registered model",
        )
        .await
    }

    pub async fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>, MlflowError> {
        let filter = encode(&format!("name={}", quoted(name)));
        self.pages(
            |token| {
                let mut path =
                    format!("{API}/model-versions/search?max_results=10000&filter={filter}");
                if let Some(t) = token {
                    path.push_str(&format!("&page_token={}", encode(t)));
                }
                (Method::Get, path, None)
            },
            "model_versions",
            "listing model versions",
        )
        .await
    }

    /// The version an alias points at (`GET registered-models/alias`): what a following
    /// device asks on every poll. An alias that does not exist is MLflow's
    /// `RESOURCE_DOES_NOT_EXIST` (HTTP 404).
    pub async fn model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, MlflowError> {
        self.field(
            Method::Get,
            format!(
                "{API}/registered-models/alias?name={}&alias={}",
                encode(name),
                encode(alias)
            ),
            None,
            "model_version",
            "reading the alias",
        )
        .await
    }

    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[(String, String)],
    ) -> Result<ModelVersion, MlflowError> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        self.field(
            Method::Post,
            format!("{API}/model-versions/create"),
            Some(json!({"name": name, "source": source, "run_id": run_id, "tags": tags})),
            "model_version",
            "creating the model version",
        )
        .await
    }

    /// The model version of the module `hash` under `name`: the one already registered with
    /// that hash (a hash registers once), else a new version whose source is the module's
    /// content-addressed directory among its run's artifacts, tagged with its hash, size and
    /// kind. The run must have uploaded `model/<hash>/model.wasm` first.
    pub async fn register_module(
        &self,
        name: &str,
        run_id: &str,
        artifact_uri: &str,
        module: &ModuleRef<'_>,
    ) -> Result<ModelVersion, MlflowError> {
        self.ensure_registered_model(name).await?;
        let existing = self.model_versions(name).await?;
        if let Some(mv) = existing
            .into_iter()
            .find(|m| m.tag(SHA256_TAG) == Some(module.hash))
        {
            return Ok(mv);
        }
        self.create_model_version(
            name,
            &format!("{}/{}", model_source(artifact_uri), module.hash),
            run_id,
            &[
                (SHA256_TAG.into(), module.hash.to_string()),
                (SIZE_TAG.into(), module.size.to_string()),
                (KIND_TAG.into(), module.kind.to_string()),
            ],
        )
        .await
    }

    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        self.post(
            "registered-models/alias",
            json!({"name": name, "alias": alias, "version": version}),
            "moving the alias",
        )
        .await
        .map(|_| ())
    }

    /// Removes an alias (`DELETE registered-models/alias`): a rollback of an alias that had no
    /// version before. An alias that is already gone is not an error.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), MlflowError> {
        match self
            .call::<Value>(
                Method::Delete,
                format!(
                    "{API}/registered-models/alias?name={}&alias={}",
                    encode(name),
                    encode(alias)
                ),
                Some(json!({"name": name, "alias": alias})),
                "removing the alias",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets a tag on a model version (`model-versions/set-tag`), e.g. the automation's
    /// `wasmops.rollout.state`.
    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        self.post(
            "model-versions/set-tag",
            json!({"name": name, "version": version, "key": key, "value": value}),
            "tagging the model version",
        )
        .await
        .map(|_| ())
    }
}

/// What a model version records of its module (see [`Client::register_module`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleRef<'a> {
    /// The module's sha256 (`digest::content_hash`).
    pub hash: &'a str,
    pub size: usize,
    /// The model kind from its card (`logistic_regression`, ...).
    pub kind: &'a str,
}

/// How far a failed sync got: what to store so the next one resumes, and why it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub synced: Option<Synced>,
    pub error: MlflowError,
}

/// Brings one run on the server to `record`, from what `previous` says is there (or, when
/// this client has no record of it, the run `found` by its client id). Parts already confirmed
/// are not sent again; a new run is created only when neither knows one.
pub async fn sync_run<T: Transport>(
    client: &Client<T>,
    experiment_id: &str,
    record: &RunRecord,
    previous: Option<Synced>,
    found: Option<&RunInfo>,
) -> Result<Synced, Partial> {
    let problems = record.problems();
    if !problems.is_empty() {
        return Err(Partial {
            synced: previous,
            error: MlflowError::Unsupported(problems.join("; ")),
        });
    }
    let desired_tags = record.all_tags();
    let mut s = match (previous, found) {
        (Some(p), _) if p.experiment_id == experiment_id && !p.run_id.is_empty() => p,
        (_, Some(info)) => {
            if info.lifecycle_stage == "deleted" {
                client
                    .restore_run(&info.run_id)
                    .await
                    .map_err(|error| Partial {
                        synced: None,
                        error,
                    })?;
            }
            Synced {
                run_id: info.run_id.clone(),
                experiment_id: experiment_id.to_string(),
                artifact_uri: info.artifact_uri.clone(),
                // What the other client sent is not known: send it again (harmless).
                data_logged: false,
                artifacts: BTreeMap::new(),
                tags: BTreeMap::new(),
                name: info.run_name.clone(),
                status: None,
                end_ms: 0,
            }
        }
        _ => {
            let info = client
                .create_run(experiment_id, &record.name, record.start_ms, &desired_tags)
                .await
                .map_err(|error| Partial {
                    synced: None,
                    error,
                })?;
            Synced {
                run_id: info.run_id,
                experiment_id: experiment_id.to_string(),
                artifact_uri: info.artifact_uri,
                data_logged: false,
                artifacts: BTreeMap::new(),
                tags: desired_tags.clone(),
                name: record.name.clone(),
                status: None,
                end_ms: 0,
            }
        }
    };
    let fail = |s: &Synced, error: MlflowError| Partial {
        synced: Some(s.clone()),
        error,
    };

    // Tags that changed since the server last confirmed them (all, for a run found elsewhere).
    let changed: Vec<(String, String)> = desired_tags
        .iter()
        .filter(|(k, v)| s.tags.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !s.data_logged {
        for batch in batches(&record.params, &record.metrics, &changed) {
            client
                .log_batch(&s.run_id, batch)
                .await
                .map_err(|e| fail(&s, e))?;
        }
        if let Some(d) = &record.dataset {
            client
                .log_dataset(&s.run_id, d)
                .await
                .map_err(|e| fail(&s, e))?;
        }
        s.data_logged = true;
    } else if !changed.is_empty() {
        for batch in batches(&[], &[], &changed) {
            client
                .log_batch(&s.run_id, batch)
                .await
                .map_err(|e| fail(&s, e))?;
        }
    }
    s.tags.extend(changed);
    let removed: Vec<String> = s
        .tags
        .keys()
        .filter(|k| !desired_tags.contains_key(*k))
        .cloned()
        .collect();
    for key in removed {
        match client.delete_tag(&s.run_id, &key).await {
            Ok(()) => {}
            // Already gone (e.g. removed in the MLflow UI).
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => {}
            Err(e) => return Err(fail(&s, e)),
        }
        s.tags.remove(&key);
    }

    for a in &record.artifacts {
        let hash = crate::digest::content_hash(&a.bytes);
        if s.artifacts.get(&a.path) == Some(&hash) {
            continue;
        }
        client
            .put_artifact(&s.artifact_uri, &a.path, a.bytes.clone())
            .await
            .map_err(|e| fail(&s, e))?;
        s.artifacts.insert(a.path.clone(), hash);
    }

    if s.status != Some(record.status) || s.end_ms != record.end_ms || s.name != record.name {
        client
            .update_run(&s.run_id, record.status, record.end_ms, &record.name)
            .await
            .map_err(|e| fail(&s, e))?;
        s.status = Some(record.status);
        s.end_ms = record.end_ms;
        s.name = record.name.clone();
    }
    Ok(s)
}

/// What to do with one alias, from where it points here (as an MLflow version, `None` while
/// its version is not on the server), where it points on the server, and where both pointed
/// when they last agreed (`base`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasDecision {
    /// Same version on both sides.
    Agree,
    /// Only this side moved (or the server has no such alias): move the server's.
    Push(String),
    /// Only the server moved: follow it.
    Follow(String),
    /// Both moved since they last agreed: show it, change neither.
    Conflict { here: String, server: String },
    /// The server removed the alias this side still has where they last agreed: show it, do
    /// not put it back.
    RemovedOnServer,
    /// Nothing to do yet (this side's version is not on the server).
    Wait,
}

pub fn alias_decision(
    here: Option<&str>,
    base: Option<&str>,
    server: Option<&str>,
) -> AliasDecision {
    match (here, server) {
        (Some(h), Some(s)) if h == s => AliasDecision::Agree,
        (None, Some(s)) if base.is_none() => AliasDecision::Follow(s.to_string()),
        (None, _) => AliasDecision::Wait,
        (Some(h), None) if base == Some(h) => AliasDecision::RemovedOnServer,
        (Some(h), None) => AliasDecision::Push(h.to_string()),
        (Some(h), Some(s)) if base == Some(s) => AliasDecision::Push(h.to_string()),
        (Some(h), Some(s)) if base == Some(h) => AliasDecision::Follow(s.to_string()),
        (Some(h), Some(s)) => AliasDecision::Conflict {
            here: h.to_string(),
            server: s.to_string(),
        },
    }
}

/// The model version's source: the run's `model` artifact directory.
pub fn model_source(artifact_uri: &str) -> String {
    format!("{}/{MODEL_DIR}", artifact_uri.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(i: usize) -> Metric {
        Metric {
            key: "loss".into(),
            value: i as f64,
            timestamp_ms: 1,
            step: i as i64,
        }
    }

    #[test]
    fn batches_stay_within_every_limit_and_keep_everything() {
        let params: Vec<_> = (0..250)
            .map(|i| (format!("p{i}"), "v".to_string()))
            .collect();
        let tags: Vec<_> = (0..130)
            .map(|i| (format!("t{i}"), "v".to_string()))
            .collect();
        let metrics: Vec<_> = (0..2500).map(metric).collect();
        let b = batches(&params, &metrics, &tags);
        let count =
            |key: &str| -> usize { b.iter().map(|x| x[key].as_array().unwrap().len()).sum() };
        assert_eq!(
            (count("params"), count("metrics"), count("tags")),
            (250, 2500, 130)
        );
        for x in &b {
            let (p, m, t) = (
                x["params"].as_array().unwrap().len(),
                x["metrics"].as_array().unwrap().len(),
                x["tags"].as_array().unwrap().len(),
            );
            assert!(
                p <= 100 && t <= 100 && m <= 1000 && p + m + t <= 1000,
                "{p} {m} {t}"
            );
        }
        // Curves stay in step order across batches.
        let steps: Vec<i64> = b
            .iter()
            .flat_map(|x| x["metrics"].as_array().unwrap().clone())
            .map(|m| m["step"].as_i64().unwrap())
            .collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn non_finite_metrics_are_sent_as_protobuf_json_strings() {
        let mut m = metric(0);
        m.value = f64::NAN;
        assert_eq!(metric_json(&m)["value"], json!("NaN"));
        m.value = f64::NEG_INFINITY;
        assert_eq!(metric_json(&m)["value"], json!("-Infinity"));
        m.value = 0.25;
        assert_eq!(metric_json(&m)["value"], json!(0.25));
    }

    #[test]
    fn keys_mlflow_refuses_are_named() {
        assert!(check_key("tag", "baseline").is_ok());
        assert!(check_key("metric", "train_log_loss").is_ok());
        assert!(check_key("tag", "mlflow.note.content").is_ok());
        // MLflow counts characters, not bytes.
        assert!(check_key("tag", &"é".repeat(250)).is_ok());
        let e = check_key("tag", "needs review!").unwrap_err();
        assert!(e.contains("needs review!"), "{e}");
        assert!(check_key("param", "../x").is_err());
        assert!(check_key("param", "").is_err());
        assert!(check_key("param", &"k".repeat(251)).is_err());
    }

    #[test]
    fn artifact_paths_go_through_the_proxy() {
        assert_eq!(
            artifact_path("mlflow-artifacts:/1/abc/artifacts", "model/model.wasm").unwrap(),
            "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.wasm"
        );
        assert_eq!(
            artifact_path("mlflow-artifacts://h:5000/1/abc/artifacts", "card.json").unwrap(),
            "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/card.json"
        );
        let e = artifact_path("s3://bucket/1/abc", "x").unwrap_err();
        assert!(e.to_string().contains("s3://bucket"), "{e}");
    }

    #[test]
    fn aliases_follow_whoever_moved_and_conflict_when_both_did() {
        use AliasDecision::*;
        // New on the server, unknown here: follow.
        assert_eq!(alias_decision(None, None, Some("3")), Follow("3".into()));
        // Same version: nothing to move.
        assert_eq!(alias_decision(Some("2"), Some("2"), Some("2")), Agree);
        // Moved here while offline, server unchanged since: push.
        assert_eq!(
            alias_decision(Some("3"), Some("2"), Some("2")),
            Push("3".into())
        );
        // New here, not on the server: push.
        assert_eq!(alias_decision(Some("1"), None, None), Push("1".into()));
        // Removed on the server where both last agreed: not put back.
        assert_eq!(alias_decision(Some("2"), Some("2"), None), RemovedOnServer);
        // Moved here, then removed on the server: pushed (this side moved last).
        assert_eq!(alias_decision(Some("3"), Some("2"), None), Push("3".into()));
        // Moved on the server only: follow.
        assert_eq!(
            alias_decision(Some("2"), Some("2"), Some("4")),
            Follow("4".into())
        );
        // Both moved, to different versions: a conflict, never an overwrite.
        assert_eq!(
            alias_decision(Some("3"), Some("2"), Some("4")),
            Conflict {
                here: "3".into(),
                server: "4".into()
            }
        );
        // Never agreed, and they differ: a conflict too.
        assert_eq!(
            alias_decision(Some("3"), None, Some("4")),
            Conflict {
                here: "3".into(),
                server: "4".into()
            }
        );
        // This side's version is not on the server yet: wait.
        assert_eq!(alias_decision(None, Some("2"), Some("2")), Wait);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("name='a b'"), "name%3D%27a%20b%27");
        assert_eq!(quoted("it's"), "'it\\'s'");
    }
}
