//! The algorithms offered for a dataset: only those of its task, with defaults that fit it
//! (k-means gets one cluster per class). The dashboard's Train form reads this; the trainer
//! refuses what it would not offer ([`crate::train`]).

use serde::{Deserialize, Serialize};
use wasmops_shared::dataset::Dataset;

use crate::{boosting, Algorithm};

/// Gradient boosting's label: scikit-learn's defaults, which suit typical tabular data.
const BOOSTING: &str = "gradient boosting (100 iterations, 31 leaves, learning rate 0.1, \
     early stopping above 10,000 rows)";

/// What a dataset's target asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Regression,
}

impl Task {
    /// A dataset with class names is a classification dataset; one without, regression.
    pub fn of(data: &Dataset) -> Task {
        if data.class_names.is_empty() {
            Task::Regression
        } else {
            Task::Classification
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }

    /// The inverse of [`Task::as_str`].
    pub fn parse(s: &str) -> Option<Task> {
        [Task::Classification, Task::Regression]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One algorithm on offer: its form name, what the user reads, and its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub name: &'static str,
    pub label: String,
    pub algorithm: Algorithm,
}

/// The algorithms for a dataset of `task` with `n_classes` classes (0 for regression).
pub fn offered(task: Task, n_classes: usize) -> Vec<Offer> {
    let offer = |name, label: &str, algorithm| Offer {
        name,
        label: label.to_string(),
        algorithm,
    };
    match task {
        Task::Classification => {
            let k = n_classes.max(2);
            vec![
                offer(
                    "logistic_regression",
                    "logistic regression (alpha 1, 100 iterations)",
                    Algorithm::LogisticRegression {
                        alpha: 1.0,
                        max_iterations: 100,
                    },
                ),
                offer(
                    "decision_tree",
                    "decision tree (unlimited depth)",
                    Algorithm::DecisionTree { max_depth: None },
                ),
                offer(
                    "random_forest",
                    "random forest (50 trees, depth 12, sqrt of the features per split)",
                    Algorithm::RandomForest {
                        n_trees: 50,
                        max_depth: Some(12),
                        feature_proportion: None,
                    },
                ),
                offer(
                    "gradient_boosting",
                    BOOSTING,
                    Algorithm::GradientBoostingClassifier(boosting::Params::default()),
                ),
                offer("gaussian_nb", "Gaussian naive Bayes", Algorithm::GaussianNb),
                offer(
                    "kmeans",
                    &format!("k-means clustering (k {k}, one per class)"),
                    Algorithm::KMeans {
                        k,
                        max_iterations: 100,
                    },
                ),
            ]
        }
        Task::Regression => vec![
            offer(
                "linear_regression",
                "linear regression (OLS)",
                Algorithm::LinearRegression,
            ),
            offer(
                "ridge",
                "ridge regression (alpha 1, as scikit-learn's Ridge)",
                Algorithm::Ridge { alpha: 1.0 },
            ),
            offer(
                "elastic_net",
                "elastic net (alpha cross-validated, l1 ratio 0.5)",
                Algorithm::ElasticNet {
                    alpha: None,
                    l1_ratio: 0.5,
                },
            ),
            offer(
                "gradient_boosting",
                BOOSTING,
                Algorithm::GradientBoostingRegressor(boosting::Params::default()),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_task_is_offered_only_its_own_algorithms() {
        let names = |task, k| -> Vec<&str> { offered(task, k).iter().map(|o| o.name).collect() };
        assert_eq!(
            names(Task::Classification, 10),
            [
                "logistic_regression",
                "decision_tree",
                "random_forest",
                "gradient_boosting",
                "gaussian_nb",
                "kmeans"
            ]
        );
        assert_eq!(
            names(Task::Regression, 0),
            [
                "linear_regression",
                "ridge",
                "elastic_net",
                "gradient_boosting"
            ]
        );
        for o in offered(Task::Classification, 10) {
            assert!(!o.algorithm.is_regression(), "{}", o.name);
        }
        for o in offered(Task::Regression, 0) {
            assert!(o.algorithm.is_regression(), "{}", o.name);
        }
    }

    #[test]
    fn kmeans_gets_one_cluster_per_class() {
        let kmeans = offered(Task::Classification, 10)
            .into_iter()
            .find(|o| o.name == "kmeans")
            .unwrap();
        assert_eq!(
            kmeans.algorithm,
            Algorithm::KMeans {
                k: 10,
                max_iterations: 100
            }
        );
        assert!(kmeans.label.contains("k 10"), "{}", kmeans.label);
    }
}
