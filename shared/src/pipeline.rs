//! A trained pipeline as plain data: optional standard scaling, then a model.
//!
//! This is what training produces (in the dashboard's worker), what runs store, and what the
//! compiler turns into a module. It holds no linfa types so that `shared` stays light.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub n_features: usize,
    pub scaler: Option<StandardScaler>,
    pub model: Model,
}

/// `x' = (x - mean) / scale`, per feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Model {
    /// Multinomial logistic regression: logits `z_c = intercept_c + sum_j weights[c][j] * x_j`,
    /// outputs `[argmax class index, softmax probabilities...]`.
    LogisticRegression {
        weights: Vec<Vec<f64>>,
        intercepts: Vec<f64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline declares {declared} features but {what} has {found}")]
    FeatureMismatch {
        declared: usize,
        what: &'static str,
        found: usize,
    },
    #[error("a model needs at least one feature and one output")]
    Empty,
    #[error("{what} contains a non-finite value at index {index}")]
    NonFinite { what: &'static str, index: usize },
    #[error("logistic regression needs at least two classes, found {0}")]
    TooFewClasses(usize),
}

impl Model {
    pub fn kind(&self) -> &'static str {
        match self {
            Model::LogisticRegression { .. } => "logistic_regression",
        }
    }
}

impl Pipeline {
    /// Values written per output row.
    pub fn n_outputs(&self) -> usize {
        match &self.model {
            Model::LogisticRegression { intercepts, .. } => 1 + intercepts.len(),
        }
    }

    /// Checks shapes and that every parameter is finite, so the compiler never has to.
    pub fn validate(&self) -> Result<(), PipelineError> {
        let d = self.n_features;
        if d == 0 {
            return Err(PipelineError::Empty);
        }
        if let Some(s) = &self.scaler {
            check_len(d, "scaler mean", s.mean.len())?;
            check_len(d, "scaler scale", s.scale.len())?;
            check_finite("scaler mean", &s.mean)?;
            check_finite("scaler scale", &s.scale)?;
        }
        match &self.model {
            Model::LogisticRegression {
                weights,
                intercepts,
            } => {
                if intercepts.len() < 2 {
                    return Err(PipelineError::TooFewClasses(intercepts.len()));
                }
                check_len(intercepts.len(), "weights (classes)", weights.len())?;
                for w in weights {
                    check_len(d, "a weight row", w.len())?;
                    check_finite("weights", w)?;
                }
                check_finite("intercepts", intercepts)?;
            }
        }
        Ok(())
    }
}

fn check_len(declared: usize, what: &'static str, found: usize) -> Result<(), PipelineError> {
    if declared == found {
        Ok(())
    } else {
        Err(PipelineError::FeatureMismatch {
            declared,
            what,
            found,
        })
    }
}

fn check_finite(what: &'static str, values: &[f64]) -> Result<(), PipelineError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(PipelineError::NonFinite { what, index }),
        None => Ok(()),
    }
}
