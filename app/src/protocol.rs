//! Messages between the page and the training worker, as JSON strings.
//!
//! JSON rather than structured clone or bincode: the types are plain serde, internally tagged
//! enums work, and f64 values survive exactly (serde_json has `float_roundtrip`).

use serde::{Deserialize, Serialize};
use wasmops_trainer::TrainSpec;

use crate::run::Run;

/// Page -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRequest {
    pub run_id: String,
    pub run_name: String,
    /// Built-in dataset name (see `wasmops_trainer::datasets::BUILTIN`).
    pub dataset: String,
    pub spec: TrainSpec,
    pub started_at_ms: f64,
}

/// Worker -> page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// The worker's wasm is loaded; messages posted before this would be lost.
    Ready,
    Progress {
        stage: String,
        fraction: f64,
    },
    Done {
        run: Box<Run>,
    },
    Failed {
        error: String,
    },
}
