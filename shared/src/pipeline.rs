//! A trained pipeline as plain data: optional standard scaling, then a model.
//!
//! This is what training produces (`wasmops-trainer`, in the dashboard's worker), what runs
//! store, and what the compiler turns into a module. It holds no linfa types so that `shared`
//! stays light. Output rows per kind are documented on [`Model`] and in `docs/module-abi.md`.

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
    /// Linear regression (OLS, ridge, elastic net): `[intercept + sum_j w_j x_j]`.
    Linear { weights: Vec<f64>, intercept: f64 },
    /// Logistic regression (binary as two classes with logits `[0, z]`): logits
    /// `z_c = intercept_c + sum_j weights[c][j] * x_j`; outputs `[argmax class, softmax...]`.
    LogisticRegression {
        weights: Vec<Vec<f64>>,
        intercepts: Vec<f64>,
    },
    /// Gaussian naive Bayes: joint log-likelihood
    /// `jll_c = log_prior_norm[c] + sum_j (x_j - means[c][j])^2 * neg_half_inv_var[c][j]`;
    /// outputs `[argmax class, softmax(jll)...]`.
    GaussianNb {
        means: Vec<Vec<f64>>,
        neg_half_inv_var: Vec<Vec<f64>>,
        log_prior_norm: Vec<f64>,
    },
    /// k-means: `[index of the nearest centroid]` (squared Euclidean, first on ties).
    KMeans { centroids: Vec<Vec<f64>> },
    /// Decision tree classifier: `[class, class probabilities...]` from the reached leaf.
    DecisionTree { n_classes: usize, tree: Tree },
    /// Random forest classifier: majority vote; `[class, vote share per class...]`.
    RandomForest { n_classes: usize, trees: Vec<Tree> },
    /// Histogram gradient boosting: `baseline.len()` raw scores (one per class above two
    /// classes, else one), each `z_s = baseline[s] + sum_i leaf value of trees[i * S + s]`
    /// summed in iteration order (`S = baseline.len()`). A boosted tree's leaf holds its value
    /// as its only `probabilities` entry (class 0). Regression (`n_classes: None`): `[z_0]`;
    /// two classes: logits `[0, z_0]`; more: logits `z`; classifiers output
    /// `[argmax class, softmax...]` exactly as logistic regression.
    GradientBoosting {
        n_classes: Option<usize>,
        baseline: Vec<f64>,
        trees: Vec<Tree>,
    },
}

/// A binary tree stored flat; node 0 is the root. Rows go left when `x[feature] < threshold`
/// (so NaN goes right), as in linfa-trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<TreeNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "node", rename_all = "snake_case")]
pub enum TreeNode {
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    /// Class index and per-class probabilities at the leaf.
    Leaf {
        class: usize,
        probabilities: Vec<f64>,
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
    #[error("a classifier needs at least two classes, found {0}")]
    TooFewClasses(usize),
    #[error("tree {tree}, node {node}: {reason}")]
    BadTree {
        tree: usize,
        node: usize,
        reason: String,
    },
}

impl Model {
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Linear { .. } => "linear_regression",
            Model::LogisticRegression { .. } => "logistic_regression",
            Model::GaussianNb { .. } => "gaussian_nb",
            Model::KMeans { .. } => "kmeans",
            Model::DecisionTree { .. } => "decision_tree",
            Model::RandomForest { .. } => "random_forest",
            Model::GradientBoosting { .. } => "gradient_boosting",
        }
    }

    /// Number of classes (or clusters) for classifiers; `None` for regression.
    pub fn n_classes(&self) -> Option<usize> {
        match self {
            Model::Linear { .. } => None,
            Model::LogisticRegression { intercepts, .. } => Some(intercepts.len()),
            Model::GaussianNb { log_prior_norm, .. } => Some(log_prior_norm.len()),
            Model::KMeans { centroids } => Some(centroids.len()),
            Model::DecisionTree { n_classes, .. } | Model::RandomForest { n_classes, .. } => {
                Some(*n_classes)
            }
            Model::GradientBoosting { n_classes, .. } => *n_classes,
        }
    }
}

impl Pipeline {
    /// Values written per output row.
    pub fn n_outputs(&self) -> usize {
        match &self.model {
            Model::Linear { .. } | Model::KMeans { .. } => 1,
            Model::LogisticRegression { intercepts, .. } => 1 + intercepts.len(),
            Model::GaussianNb { log_prior_norm, .. } => 1 + log_prior_norm.len(),
            Model::DecisionTree { n_classes, .. } | Model::RandomForest { n_classes, .. } => {
                1 + n_classes
            }
            Model::GradientBoosting { n_classes, .. } => n_classes.map_or(1, |k| 1 + k),
        }
    }

    /// Names of the values in one output row, for the model card.
    pub fn output_names(&self, classes: &[String]) -> Vec<String> {
        let per_class = |prefix: &str| -> Vec<String> {
            let mut names = vec!["class".to_string()];
            names.extend(classes.iter().map(|c| format!("{prefix}({c})")));
            names
        };
        match &self.model {
            Model::Linear { .. }
            | Model::GradientBoosting {
                n_classes: None, ..
            } => vec!["value".into()],
            Model::KMeans { .. } => vec!["cluster".into()],
            Model::RandomForest { .. } => per_class("votes"),
            _ => per_class("p"),
        }
    }

    /// Checks shapes, tree structure and that every parameter is finite, so the compiler and
    /// the reference never index out of bounds or loop.
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
            Model::Linear { weights, intercept } => {
                check_len(d, "weights", weights.len())?;
                check_finite("weights", weights)?;
                check_finite("intercept", &[*intercept])?;
            }
            Model::LogisticRegression {
                weights,
                intercepts,
            } => {
                check_classes(intercepts.len())?;
                check_matrix(d, intercepts.len(), "weights", weights)?;
                check_finite("intercepts", intercepts)?;
            }
            Model::GaussianNb {
                means,
                neg_half_inv_var,
                log_prior_norm,
            } => {
                let k = log_prior_norm.len();
                check_classes(k)?;
                check_matrix(d, k, "class means", means)?;
                check_matrix(d, k, "class variances", neg_half_inv_var)?;
                check_finite("class priors", log_prior_norm)?;
            }
            Model::KMeans { centroids } => {
                if centroids.is_empty() {
                    return Err(PipelineError::Empty);
                }
                check_matrix(d, centroids.len(), "centroids", centroids)?;
            }
            Model::DecisionTree { n_classes, tree } => {
                check_classes(*n_classes)?;
                tree.validate(0, d, *n_classes)?;
            }
            Model::RandomForest { n_classes, trees } => {
                check_classes(*n_classes)?;
                if trees.is_empty() {
                    return Err(PipelineError::Empty);
                }
                for (t, tree) in trees.iter().enumerate() {
                    tree.validate(t, d, *n_classes)?;
                }
            }
            Model::GradientBoosting {
                n_classes,
                baseline,
                trees,
            } => {
                let scores = match n_classes {
                    None => 1,
                    Some(k) => {
                        check_classes(*k)?;
                        if *k == 2 {
                            1
                        } else {
                            *k
                        }
                    }
                };
                check_len(scores, "baseline scores", baseline.len())?;
                check_finite("baseline", baseline)?;
                if trees.is_empty() || trees.len() % scores != 0 {
                    return Err(PipelineError::BadTree {
                        tree: trees.len(),
                        node: 0,
                        reason: format!(
                            "a boosted model needs a whole number of iterations of {scores} trees"
                        ),
                    });
                }
                // Leaves hold one value each (as a single "probability" of class 0).
                for (t, tree) in trees.iter().enumerate() {
                    tree.validate(t, d, 1)?;
                }
            }
        }
        Ok(())
    }
}

impl Tree {
    /// Children must come after their parent (so walks always terminate), indices and features
    /// must be in range, leaves must hold one probability per class.
    fn validate(&self, t: usize, d: usize, k: usize) -> Result<(), PipelineError> {
        let bad = |node: usize, reason: String| PipelineError::BadTree {
            tree: t,
            node,
            reason,
        };
        if self.nodes.is_empty() {
            return Err(bad(0, "tree has no nodes".into()));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            match n {
                TreeNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    if *feature >= d {
                        return Err(bad(i, format!("splits on feature {feature} of {d}")));
                    }
                    if threshold.is_nan() {
                        return Err(bad(i, "threshold is NaN".into()));
                    }
                    for c in [left, right] {
                        if *c <= i || *c >= self.nodes.len() {
                            return Err(bad(i, format!("child {c} is not a later node")));
                        }
                    }
                }
                TreeNode::Leaf {
                    class,
                    probabilities,
                } => {
                    if *class >= k || probabilities.len() != k {
                        return Err(bad(
                            i,
                            format!(
                                "leaf has class {class} and {} probabilities for {k} classes",
                                probabilities.len()
                            ),
                        ));
                    }
                    check_finite("leaf probabilities", probabilities)?;
                }
            }
        }
        Ok(())
    }

    /// The value of the leaf a row reaches, for a boosted tree (see
    /// [`Model::GradientBoosting`]).
    pub fn value_for(&self, x: &[f64]) -> f64 {
        match &self.nodes[self.leaf_for(x)] {
            TreeNode::Leaf { probabilities, .. } => probabilities[0],
            TreeNode::Split { .. } => unreachable!("leaf_for returns a leaf"),
        }
    }

    /// Index of the leaf a row reaches.
    pub fn leaf_for(&self, x: &[f64]) -> usize {
        let mut i = 0;
        while let TreeNode::Split {
            feature,
            threshold,
            left,
            right,
        } = &self.nodes[i]
        {
            i = if x[*feature] < *threshold {
                *left
            } else {
                *right
            };
        }
        i
    }
}

fn check_classes(k: usize) -> Result<(), PipelineError> {
    if k < 2 {
        Err(PipelineError::TooFewClasses(k))
    } else {
        Ok(())
    }
}

fn check_matrix(
    d: usize,
    rows: usize,
    what: &'static str,
    m: &[Vec<f64>],
) -> Result<(), PipelineError> {
    check_len(rows, what, m.len())?;
    for row in m {
        check_len(d, what, row.len())?;
        check_finite(what, row)?;
    }
    Ok(())
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
