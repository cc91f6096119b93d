//! Messages between the page and the training worker, as JSON strings.
//!
//! JSON rather than structured clone or bincode: the types are plain serde, internally tagged
//! enums work, and f64 values survive exactly (serde_json has `float_roundtrip`).

use serde::{Deserialize, Serialize};

use crate::run::Run;

/// Page -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRequest {
    pub run_id: String,
    pub run_name: String,
    /// Built-in dataset name (`iris`).
    pub dataset: String,
    pub params: LogisticParams,
    pub started_at_ms: f64,
}

/// Hyperparameters of multinomial logistic regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticParams {
    /// L2 penalty.
    pub alpha: f64,
    pub max_iterations: u64,
    /// Fraction of rows held out for testing.
    pub test_fraction: f64,
    pub seed: u64,
}

impl Default for LogisticParams {
    fn default() -> Self {
        LogisticParams {
            alpha: 1.0,
            max_iterations: 100,
            test_fraction: 0.2,
            seed: 42,
        }
    }
}

impl LogisticParams {
    /// Rejects hyperparameters before any work, saying which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(format!(
                "alpha must be a finite number >= 0, got {}",
                self.alpha
            ));
        }
        if self.max_iterations == 0 {
            return Err("max_iterations must be at least 1".into());
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(format!(
                "test_fraction must be between 0 and 1 (exclusive), got {}",
                self.test_fraction
            ));
        }
        Ok(())
    }
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
