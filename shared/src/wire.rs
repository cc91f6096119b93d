//! The device HTTP API's JSON bodies. Both the dashboard (client) and `wasmops-edge` (server)
//! use these types, so the wire format is defined once. Paths live in [`paths`].

use serde::{Deserialize, Serialize};

pub mod paths {
    pub const HEALTH: &str = "/v1/health";
    pub const INFO: &str = "/v1/info";
    pub const MODULES: &str = "/v1/modules";
    pub const PREDICT: &str = "/v1/predict";
    pub const TELEMETRY: &str = "/v1/telemetry";

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
