//! The device HTTP API's JSON bodies. Both the dashboard (client) and `wasmops-edge` (server)
//! use these types, so the wire format is defined once. Paths live in [`paths`].

use serde::{Deserialize, Serialize};

/// Request header that marks a predict call as the dashboard's deployment check rather than
/// live traffic (value [`PURPOSE_VERIFY`]): the device records it, and leaves it out of its
/// counters, windows and drift.
pub const PURPOSE_HEADER: &str = "x-wasmops-purpose";
pub const PURPOSE_VERIFY: &str = "verify";

pub mod paths {
    pub const HEALTH: &str = "/v1/health";
    pub const INFO: &str = "/v1/info";
    pub const MODULES: &str = "/v1/modules";
    pub const PREDICT: &str = "/v1/predict";
    pub const TELEMETRY: &str = "/v1/telemetry";
    /// `GET ?after=SEQ&limit=N`: telemetry records after a cursor.
    pub const TELEMETRY_RECORDS: &str = "/v1/telemetry/records";
    /// `GET ?window_s=S&count=N`: per-window aggregates with drift.
    pub const TELEMETRY_WINDOWS: &str = "/v1/telemetry/windows";
    /// `POST`: ground-truth labels for earlier prediction ids.
    pub const FEEDBACK: &str = "/v1/feedback";
    /// `GET ?after=SEQ&limit=N`: every label received, in arrival order, after a cursor.
    pub const FEEDBACK_RECORDS: &str = "/v1/feedback/records";
    /// `POST`: re-activate the version that was active before the current one.
    pub const ROLLBACK: &str = "/v1/rollback";
    /// Prometheus text exposition.
    pub const METRICS: &str = "/metrics";

    /// `POST` here activates an uploaded module by its hash.
    pub fn activate(hash: &str) -> String {
        format!("{MODULES}/{hash}/activate")
    }
}

/// Every non-2xx answer from a device carries this body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable machine-readable kind, e.g. `unauthorized`, `module_rejected`, `bad_request`.
    pub kind: String,
    /// What is wrong, for a person.
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    pub version: String,
    pub uptime_s: u64,
    pub active: Option<ActiveModel>,
    pub modules: Vec<String>,
    /// What the device follows, when it was started with `--follow` (absent otherwise, and
    /// from devices older than issue 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowStatus>,
    /// The device's `--label key=value` pairs (e.g. `group` = `canary`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Ids of the keys whose signatures this device accepts (`--trusted-keys`); empty: any
    /// module is accepted, signed or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
}

/// A following device's view of its alias (`GET /v1/info`'s `follow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowStatus {
    /// The MLflow tracking URI it polls.
    pub tracking_uri: String,
    /// Registered model name.
    pub model: String,
    pub alias: String,
    /// The version the alias pointed at on the last successful check.
    pub desired_version: Option<String>,
    /// The version the device runs (its module's hash is the version's `wasmops.sha256`).
    pub running_version: Option<String>,
    pub state: FollowState,
    /// When the device last asked MLflow (unix milliseconds).
    pub last_check: Option<u64>,
    /// Why the last check or update failed; cleared when the device runs the desired version.
    pub last_error: Option<String>,
}

/// Where a following device stands (JSON: the snake-case words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowState {
    /// No check has finished yet.
    Starting,
    /// Runs the version the alias points at.
    InSync,
    /// Downloading, verifying or loading the desired version.
    Updating,
    /// The desired version was refused (hash, signature, conformance...): still serving the
    /// previous one, not retrying it until the alias moves or a long backoff passed.
    Refused,
    /// The last check failed (MLflow unreachable, credentials refused, no such alias...):
    /// retrying with backoff, still serving what it had.
    Error,
}

impl FollowState {
    pub fn as_str(self) -> &'static str {
        match self {
            FollowState::Starting => "starting",
            FollowState::InSync => "in_sync",
            FollowState::Updating => "updating",
            FollowState::Refused => "refused",
            FollowState::Error => "error",
        }
    }
}

impl std::fmt::Display for FollowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveModel {
    pub hash: String,
    pub kind: String,
    pub feature_names: Vec<String>,
    pub classes: Vec<String>,
    pub outputs: Vec<String>,
}

/// Answer to a module upload: the module passed static checks and its conformance vectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    pub hash: String,
    pub size: usize,
    pub conformance_rows: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateResponse {
    pub active: String,
    pub previous: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictRequest {
    pub rows: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictResponse {
    /// Hash of the module that answered.
    pub model: String,
    /// Id of the first row's prediction; row `i` has id `first_id + i`.
    pub first_id: u64,
    /// One output row per input row, laid out as the card's `outputs`.
    pub outputs: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Telemetry {
    pub requests: u64,
    pub predictions: u64,
    pub errors: u64,
}

/// One entry of `GET /v1/modules`: a stored version and its card summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleSummary {
    pub hash: String,
    pub size: u64,
    /// When the device stored it (unix milliseconds).
    pub uploaded_ms: u64,
    pub kind: String,
    pub feature_names: Vec<String>,
    pub classes: Vec<String>,
    pub dataset: String,
    pub code_version: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleList {
    pub active: Option<String>,
    /// Newest upload first.
    pub modules: Vec<ModuleSummary>,
}

/// Answer to `POST /v1/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackResponse {
    /// The version now active.
    pub active: String,
    /// The version that was active before the call.
    pub rolled_back: String,
}

/// Labels for earlier predictions: `label` is the true class index (classifiers) or value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRequest {
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub id: u64,
    pub label: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackResponse {
    /// Labels stored (a label sent again for the same id replaces the earlier one).
    pub accepted: usize,
}

/// One label as the device received it. A label sent again for the same prediction id is a
/// new record with a higher `seq`; the latest one counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRecord {
    /// Cursor: strictly increasing in commit order (its own sequence, not the records').
    pub seq: u64,
    /// When the device received it (unix milliseconds).
    pub ts_ms: u64,
    /// The prediction id it labels.
    pub id: u64,
    pub label: f64,
}

/// Answer to `GET /v1/feedback/records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelPage {
    pub labels: Vec<LabelRecord>,
    /// Pass as `after` to get the labels that follow (equal to `after` when none did).
    pub next: u64,
}

/// One predict request as the device stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryRecord {
    /// Cursor: strictly increasing in commit order.
    pub seq: u64,
    pub ts_ms: u64,
    /// Hash of the module that answered (none when the request failed before one was chosen).
    pub model: Option<String>,
    pub latency_us: u64,
    pub rows: u64,
    /// `ok` or the error kind (`bad_request`, `unauthorized`, ...).
    pub status: String,
    /// Prediction id of the first row (`ok` records only).
    pub first_id: Option<u64>,
    /// First output per row (class index or value).
    pub predictions: Vec<f64>,
    /// Per row, per feature: the bin index in the module's training profile (0..=11).
    pub bins: Vec<Vec<u8>>,
}

/// Answer to `GET /v1/telemetry/records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryPage {
    pub records: Vec<TelemetryRecord>,
    /// Pass as `after` to get the records that follow (equal to `after` when none did).
    pub next: u64,
    /// Smallest seq still stored (older records were removed by retention).
    pub oldest: Option<u64>,
}

/// Drift of one feature in one window against the module's training profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub feature: String,
    /// Live counts in the profile's 12 bins.
    pub counts: Vec<u64>,
    pub psi: f64,
    /// Jensen-Shannon distance (base 2, in [0, 1]).
    pub js: f64,
    /// `ok`, `warn` (PSI >= 0.1 or JS >= 0.1) or `alert` (PSI >= 0.25).
    pub level: DriftLevel,
}

/// How far one feature drifted in one window (JSON: `"ok"`, `"warn"`, `"alert"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftLevel {
    Ok,
    Warn,
    Alert,
}

impl DriftLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftLevel::Ok => "ok",
            DriftLevel::Warn => "warn",
            DriftLevel::Alert => "alert",
        }
    }
}

impl std::fmt::Display for DriftLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Aggregates of one time window for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
    pub model: Option<String>,
    pub requests: u64,
    pub rows: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Latency histogram: counts per bucket upper bound in microseconds (last is +inf).
    pub latency_us_buckets: Vec<u64>,
    pub latency_us_counts: Vec<u64>,
    pub latency_p50_us: u64,
    /// Absent from devices older than this field.
    #[serde(default)]
    pub latency_p95_us: u64,
    pub latency_p99_us: u64,
    /// Predicted class/value -> count (keys are the first output, formatted).
    pub predictions: std::collections::BTreeMap<String, u64>,
    pub drift: Vec<FeatureDrift>,
    /// Features at `warn` or `alert` >= half of all features.
    pub dataset_drift: bool,
    pub labeled: u64,
    pub correct: u64,
    pub accuracy: Option<f64>,
}

/// DDM (error-rate) concept-drift state over the labeled predictions of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptDrift {
    pub model: String,
    pub samples: u64,
    pub error_rate: f64,
    pub state: ConceptState,
}

/// Where DDM stands for one model (JSON: `"warming_up"`, `"stable"`, `"warning"`, `"drift"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConceptState {
    /// Fewer than 30 labels.
    #[default]
    WarmingUp,
    Stable,
    /// The error rate is 2 sigma above its best.
    Warning,
    /// 3 sigma above.
    Drift,
}

impl ConceptState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConceptState::WarmingUp => "warming_up",
            ConceptState::Stable => "stable",
            ConceptState::Warning => "warning",
            ConceptState::Drift => "drift",
        }
    }

    /// The state in words: `warming up`, `stable`, ...
    pub fn words(self) -> String {
        self.as_str().replace('_', " ")
    }
}

impl std::fmt::Display for ConceptState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Answer to `GET /v1/telemetry/windows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowsResponse {
    pub window_s: u64,
    /// Oldest first.
    pub windows: Vec<Window>,
    pub concept_drift: Vec<ConceptDrift>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concept_drift_states_keep_their_words() {
        for (word, state) in [
            ("warming_up", ConceptState::WarmingUp),
            ("stable", ConceptState::Stable),
            ("warning", ConceptState::Warning),
            ("drift", ConceptState::Drift),
        ] {
            let json = format!(r#"{{"model":"m","samples":40,"error_rate":0.1,"state":"{word}"}}"#);
            let c: ConceptDrift = serde_json::from_str(&json).unwrap();
            assert_eq!(c.state, state);
            assert_eq!(serde_json::to_string(&c).unwrap(), json);
        }
        assert_eq!(ConceptState::WarmingUp.words(), "warming up");
    }

    #[test]
    fn info_without_follow_fields_still_parses_and_follow_round_trips() {
        let old = r#"{"name":"d","version":"0.1.0","uptime_s":3,"active":null,"modules":[]}"#;
        let info: DeviceInfo = serde_json::from_str(old).unwrap();
        assert!(info.follow.is_none() && info.labels.is_empty() && info.trusted_keys.is_empty());
        // A device that follows nothing writes what it wrote before.
        assert_eq!(serde_json::to_string(&info).unwrap(), old);
        let follow = FollowStatus {
            tracking_uri: "http://mlflow:5000".into(),
            model: "iris".into(),
            alias: "champion".into(),
            desired_version: Some("3".into()),
            running_version: Some("2".into()),
            state: FollowState::Refused,
            last_check: Some(1),
            last_error: Some("version 3 refused".into()),
        };
        let text = serde_json::to_string(&follow).unwrap();
        assert!(text.contains(r#""state":"refused""#), "{text}");
        assert_eq!(serde_json::from_str::<FollowStatus>(&text).unwrap(), follow);
    }
}
