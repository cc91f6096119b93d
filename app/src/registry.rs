//! The model registry and the fleet as stored records: versions, aliases, what each device
//! last told us, its telemetry windows, deployments and alerts.

use serde::{Deserialize, Serialize};
use wasmops_shared::digest::short;
use wasmops_shared::module::{DatasetRef, ModelCard};
use wasmops_shared::profile::Profile;
use wasmops_shared::wire::{ConceptDrift, DeviceInfo, Window};

pub use wasmops_shared::monitor::Alert;

/// One registered model version: an immutable, verified module with its lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Content hash of the module (its identity everywhere: devices report it).
    pub hash: String,
    /// Registered model name; versions of one name count up from 1.
    pub model: String,
    pub version: u32,
    pub size: usize,
    pub registered_at_ms: f64,
    pub run_id: String,
    pub run_name: String,
    pub dataset: DatasetRef,
    pub code_version: String,
    pub card: ModelCard,
    pub profile: Profile,
    /// Verification in the browser, through the module itself.
    pub conformance_rows: usize,
    pub metric: String,
    pub module_metric: f64,
    pub trained_metric: f64,
    /// Held-out rows (row-major) and the module's outputs on them: what a deployment checks a
    /// device against, bit for bit.
    pub check_rows: Vec<f64>,
    pub check_outputs: Vec<f64>,
    /// The MLflow registered model version this is, once the server confirmed it.
    #[serde(default)]
    pub mlflow: Option<MlflowRef>,
    /// Set for a version registered elsewhere and pulled from MLflow: how it was checked here
    /// (sha256 against its tag, conformance vectors in this browser). Its held-out rows are
    /// not known, so its check rows are its conformance vectors and its metric is the card's.
    #[serde(default)]
    pub pulled: Option<String>,
}

/// A registered model version on the MLflow server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MlflowRef {
    pub name: String,
    pub version: String,
    /// The tracking URI it is a version on.
    #[serde(default)]
    pub server: String,
}

impl ModelVersion {
    pub fn label(&self) -> String {
        format!("{} v{}", self.model, self.version)
    }

    /// Held-out accuracy, for classifiers (the live-accuracy alert compares against it).
    pub fn held_out_accuracy(&self) -> Option<f64> {
        (self.metric == "accuracy").then_some(self.module_metric)
    }

    /// First output of each held-out row: the reference prediction distribution.
    pub fn reference_predictions(&self) -> Vec<f64> {
        let k = self.card.outputs.len().max(1);
        self.check_outputs.chunks(k).map(|o| o[0]).collect()
    }
}

/// `name vN` for a registered hash, else its short hash.
pub fn version_label(versions: &[ModelVersion], hash: &str) -> String {
    versions
        .iter()
        .find(|v| v.hash == hash)
        .map(ModelVersion::label)
        .unwrap_or_else(|| short(hash).to_string())
}

/// A named pointer to a version (`champion`, `challenger`, ...), with where it pointed before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    /// `model/alias`.
    pub key: String,
    pub model: String,
    pub alias: String,
    pub hash: String,
    pub version: u32,
    pub moved_ms: f64,
    /// Earlier targets, oldest first.
    pub history: Vec<AliasMove>,
    /// The MLflow version the server's alias pointed at when this dashboard last agreed with
    /// it. A local move since then is pushed on the next sync unless the server moved too.
    #[serde(default)]
    pub mlflow_version: Option<String>,
    /// The tracking URI `mlflow_version` is a version on.
    #[serde(default)]
    pub mlflow_server: Option<String>,
    /// Both moved since they last agreed: shown, never overwritten either way.
    #[serde(default)]
    pub conflict: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasMove {
    pub hash: String,
    pub version: u32,
    pub from_ms: f64,
    pub until_ms: f64,
}

impl Alias {
    /// The alias pointing at `v`: new, or moved from where it pointed (kept in the history).
    pub fn point(existing: Option<&Alias>, alias: &str, v: &ModelVersion, now_ms: f64) -> Alias {
        let mut history = existing.map(|a| a.history.clone()).unwrap_or_default();
        if let Some(a) = existing {
            history.push(AliasMove {
                hash: a.hash.clone(),
                version: a.version,
                from_ms: a.moved_ms,
                until_ms: now_ms,
            });
        }
        Alias {
            key: format!("{}/{alias}", v.model),
            model: v.model.clone(),
            alias: alias.to_string(),
            hash: v.hash.clone(),
            version: v.version,
            moved_ms: now_ms,
            history,
            mlflow_version: existing.and_then(|a| a.mlflow_version.clone()),
            mlflow_server: existing.and_then(|a| a.mlflow_server.clone()),
            conflict: None,
        }
    }
}

/// What the dashboard last learned from a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub url: String,
    /// Last successful contact (browser clock, unix ms).
    pub last_seen_ms: Option<f64>,
    pub last_info: Option<DeviceInfo>,
    /// Why the last contact failed (cleared by the next success).
    pub last_error: Option<String>,
    /// Per window length (seconds, as text: IndexedDB stores maps as objects with string
    /// keys): start of the newest window stored. The next pull asks again from there (that
    /// window may have been partial), so nothing is missed, and windows are keyed, so nothing
    /// is counted twice.
    pub cursors: std::collections::BTreeMap<String, u64>,
    pub concept_drift: Vec<ConceptDrift>,
}

impl DeviceStatus {
    pub fn new(url: &str) -> DeviceStatus {
        DeviceStatus {
            url: url.to_string(),
            last_seen_ms: None,
            last_info: None,
            last_error: None,
            cursors: Default::default(),
            concept_drift: Vec::new(),
        }
    }
}

/// One telemetry window of one model on one device, as pulled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredWindow {
    pub key: String,
    pub device: String,
    pub window_s: u64,
    pub window: Window,
}

impl StoredWindow {
    pub fn prefix(device: &str, window_s: u64) -> String {
        format!("{device}|{window_s:08}|")
    }

    pub fn new(device: &str, window_s: u64, window: Window) -> StoredWindow {
        StoredWindow {
            key: format!(
                "{}{:015}|{}",
                Self::prefix(device, window_s),
                window.start_ms,
                window.model.as_deref().unwrap_or("-")
            ),
            device: device.to_string(),
            window_s,
            window,
        }
    }
}

/// One entry of a device's deployment history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// `device|at_ms|action`: sorts by device, then time.
    pub id: String,
    pub device: String,
    pub at_ms: f64,
    /// `deploy` or `rollback`.
    pub action: String,
    /// The version active afterwards (for a failed deploy: the one that was attempted).
    pub hash: Option<String>,
    pub version: String,
    pub ok: bool,
    /// What happened, as the device said it.
    pub message: String,
}

impl Deployment {
    pub fn new(
        device: &str,
        at_ms: f64,
        action: &str,
        hash: Option<String>,
        version: String,
        result: Result<String, String>,
    ) -> Deployment {
        let ok = result.is_ok();
        Deployment {
            id: format!("{device}|{:015}|{action}", at_ms as u64),
            device: device.to_string(),
            at_ms,
            action: action.to_string(),
            hash,
            version,
            ok,
            message: result.unwrap_or_else(|e| e),
        }
    }
}
