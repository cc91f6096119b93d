//! wasmops-trainer: a dataset and a [`TrainSpec`] in, a plain [`Pipeline`] out, trained with
//! linfa or the trainer's own algorithms. It runs inside the dashboard's Web Worker and
//! natively in tests and benchmarks.
//!
//! # Layout
//! - [`datasets`]: the built-in datasets.
//! - [`logistic`], [`kmeans`], [`tree`]: the fits implemented here instead of linfa's (each
//!   module says why); [`boosting`]: histogram gradient boosting (linfa has none).
//! - [`run`]: the tracked run (record, card, compiled module, MLflow record), shared by the
//!   dashboard and the `wasmops` CLI.
//! - this file: specs, the seeded split, standard scaling, fitting each algorithm and turning
//!   the fitted model into a [`Pipeline`] the compiler understands.
//!
//! Every conversion keeps the fit's own predictions for the test split
//! ([`Trained::linfa_test_predictions`]) so tests can check that the compiled module agrees
//! with the fitted model.

pub mod boosting;
pub mod catalog;
pub mod csv_import;
pub mod datasets;
pub mod kmeans;
pub mod logistic;
pub mod run;
pub mod tree;

use std::collections::BTreeMap;

use linfa::prelude::*;
use linfa_elasticnet::ElasticNet;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2, Axis};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};
use wasmops_shared::dataset::Dataset;
use wasmops_shared::pipeline::{Model, Pipeline, StandardScaler, Tree, TreeNode};

/// An algorithm and its hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum Algorithm {
    LinearRegression,
    /// Ridge regression as scikit-learn's `Ridge`: minimizes `||y - Xw - b||^2 + alpha ||w||^2`
    /// (the plain sum of squares; the intercept is not penalized), solved exactly.
    Ridge {
        alpha: f64,
    },
    /// Elastic net as scikit-learn's `ElasticNet` (linfa's objective is the same):
    /// minimizes `||y - Xw - b||^2 / (2 n) + alpha l1_ratio ||w||_1
    /// + alpha (1 - l1_ratio) / 2 ||w||^2`. The per-sample scaling of the squared error means
    /// `alpha` here is not ridge's: `Ridge(alpha)` is this with `l1_ratio = 0` and
    /// `alpha / n`. Runs stored before the rename call `alpha` `penalty` (same meaning).
    ///
    /// `alpha: None` chooses alpha by 5-fold cross-validation on the training rows, as
    /// scikit-learn's `ElasticNetCV` does (20 log-spaced alphas from the smallest that zeroes
    /// every weight down to a thousandth of it; more below `l1_ratio` 0.01, where its grid is
    /// undefined); the choice is in [`Trained::chosen_params`].
    ElasticNet {
        #[serde(alias = "penalty")]
        alpha: Option<f64>,
        l1_ratio: f64,
    },
    /// Multinomial logistic regression: minimizes the *summed* log loss `+ alpha / 2 ||W||^2`
    /// (intercepts not penalized), so `alpha` is `1 / C` of scikit-learn's
    /// `LogisticRegression` (and penalizes on the same unscaled scale as `Ridge`'s alpha).
    /// `max_iterations` is its `max_iter`, and the fit stops by its rules (see [`logistic`]).
    LogisticRegression {
        alpha: f64,
        max_iterations: u64,
    },
    /// A CART classification tree (Gini), as scikit-learn's `DecisionTreeClassifier`:
    /// `max_depth: None` grows until the leaves are pure.
    DecisionTree {
        max_depth: Option<usize>,
    },
    /// Bagged trees as scikit-learn's `RandomForestClassifier`: each tree is fitted on a
    /// bootstrap sample of the training rows (as many draws as rows) and each of its splits
    /// considers `max(1, floor(feature_proportion * n_features))` features drawn at random
    /// (scikit-learn's float `max_features`). `feature_proportion: None` is scikit-learn's
    /// default `"sqrt"`: `max(1, floor(sqrt(n_features)))` features per split.
    RandomForest {
        n_trees: usize,
        max_depth: Option<usize>,
        feature_proportion: Option<f64>,
    },
    GaussianNb,
    KMeans {
        k: usize,
        max_iterations: u64,
    },
    /// Histogram gradient boosting as scikit-learn's `HistGradientBoostingClassifier`
    /// (log loss; one tree per class and iteration above two classes), same parameter names
    /// and defaults (see [`boosting`]).
    GradientBoostingClassifier(boosting::Params),
    /// Histogram gradient boosting as scikit-learn's `HistGradientBoostingRegressor`
    /// (squared error).
    GradientBoostingRegressor(boosting::Params),
}

impl Algorithm {
    pub fn is_regression(&self) -> bool {
        matches!(
            self,
            Algorithm::LinearRegression
                | Algorithm::Ridge { .. }
                | Algorithm::ElasticNet { .. }
                | Algorithm::GradientBoostingRegressor(_)
        )
    }

    pub fn is_clustering(&self) -> bool {
        matches!(self, Algorithm::KMeans { .. })
    }

    /// Rejects hyperparameters before any work, naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, why: String| Err(TrainError::Param(format!("{field}: {why}")));
        match self {
            Algorithm::Ridge { alpha } if !(alpha.is_finite() && *alpha >= 0.0) => {
                return bad(
                    "alpha",
                    format!("must be a finite number >= 0, got {alpha}"),
                );
            }
            Algorithm::ElasticNet { alpha, l1_ratio } => {
                if let Some(alpha) = alpha {
                    if !(alpha.is_finite() && *alpha >= 0.0) {
                        return bad(
                            "alpha",
                            format!("must be a finite number >= 0 (or none: cross-validated), got {alpha}"),
                        );
                    }
                }
                if !(0.0..=1.0).contains(l1_ratio) {
                    return bad(
                        "l1_ratio",
                        format!("must be between 0 and 1, got {l1_ratio}"),
                    );
                }
            }
            Algorithm::LogisticRegression {
                alpha,
                max_iterations,
            } => {
                if !(alpha.is_finite() && *alpha >= 0.0) {
                    return bad(
                        "alpha",
                        format!("must be a finite number >= 0, got {alpha}"),
                    );
                }
                if *max_iterations == 0 {
                    return bad("max_iterations", "must be at least 1".into());
                }
            }
            Algorithm::DecisionTree { max_depth } | Algorithm::RandomForest { max_depth, .. }
                if *max_depth == Some(0) =>
            {
                return bad("max_depth", "must be at least 1 (or unlimited)".into());
            }
            Algorithm::RandomForest {
                n_trees,
                feature_proportion,
                ..
            } => {
                if *n_trees == 0 || *n_trees > 1000 {
                    return bad(
                        "n_trees",
                        format!("must be between 1 and 1000, got {n_trees}"),
                    );
                }
                if let Some(p) = feature_proportion {
                    if !(*p > 0.0 && *p <= 1.0) {
                        return bad(
                            "feature_proportion",
                            format!("must be in (0, 1] (or none: sqrt), got {p}"),
                        );
                    }
                }
            }
            Algorithm::GradientBoostingClassifier(p) | Algorithm::GradientBoostingRegressor(p) => {
                p.validate().map_err(TrainError::Param)?;
            }
            Algorithm::KMeans { k, max_iterations } => {
                if *k < 2 {
                    return bad("k", format!("must be at least 2, got {k}"));
                }
                if *max_iterations == 0 {
                    return bad("max_iterations", "must be at least 1".into());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What to train, on which split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    pub algorithm: Algorithm,
    /// Standard-scale features (fitted on the training split) before the model.
    pub scale: bool,
    /// Fraction of rows held out for testing.
    pub test_fraction: f64,
    /// Seeds the split and every random choice of the algorithm.
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrainError {
    #[error("invalid hyperparameter {0}")]
    Param(String),
    #[error("{0}")]
    Data(String),
    #[error("linfa failed: {0}")]
    Fit(String),
}

/// A trained pipeline with its split and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    pub pipeline: Pipeline,
    /// Class (or cluster) names by output class index; empty for regression.
    pub class_names: Vec<String>,
    pub train_x: Vec<f64>,
    pub test_x: Vec<f64>,
    /// Test targets: class indices or regression values (cluster runs: the true classes).
    pub test_y: Vec<f64>,
    /// What the fitted model itself predicts for the test rows (class index, cluster or
    /// value): linfa's model's prediction, or the trainer's own for its own fits (the name
    /// predates them).
    pub linfa_test_predictions: Vec<f64>,
    pub metrics: BTreeMap<String, f64>,
    /// Step metrics where the fit iterates: name -> (step, value), steps increasing. See
    /// [`curves`] for what each algorithm honestly offers.
    pub curves: BTreeMap<String, Vec<(u64, f64)>>,
    /// Trees and forests: permutation importance of each feature (see
    /// [`permutation_importance`]); empty for other models.
    pub importances: Vec<f64>,
    /// Hyperparameters left to the fit and what it chose (elastic net's `alpha: None`: the
    /// cross-validated alpha); empty otherwise.
    pub chosen_params: BTreeMap<String, f64>,
}

/// Trains `spec` on `data`. `progress(stage, fraction)` reports what is happening; linfa's
/// fits do not expose iterations, so stages are what can be reported honestly.
pub fn train(
    data: &Dataset,
    spec: &TrainSpec,
    progress: impl FnMut(&str, f64),
) -> Result<Trained, TrainError> {
    train_with(data, spec, progress, Done::default())
}

/// Parts of a fit done elsewhere (the dashboard spreads them over several Web Workers), each
/// as [`train`] would have done it: same spec, same data, same bits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Done {
    /// k-means: every run `0..KMEANS_RUNS` of [`kmeans::fit_runs`] on the training split
    /// ([`kmeans_runs`]).
    pub kmeans_runs: Option<Vec<(usize, kmeans::KMeansFit)>>,
}

/// k-means runs `runs` (of `0..KMEANS_RUNS`) of `spec` on `data`: the split and scaling of
/// [`train`], then [`kmeans::fit_runs`]. For [`Done::kmeans_runs`].
pub fn kmeans_runs(
    data: &Dataset,
    spec: &TrainSpec,
    runs: &[usize],
) -> Result<Vec<(usize, kmeans::KMeansFit)>, TrainError> {
    let Algorithm::KMeans { k, max_iterations } = spec.algorithm else {
        return Err(TrainError::Param(
            "algorithm: k-means runs of another algorithm".into(),
        ));
    };
    if runs.iter().any(|r| *r >= KMEANS_RUNS) {
        return Err(TrainError::Param(format!(
            "k-means runs: {runs:?}, there are {KMEANS_RUNS}"
        )));
    }
    let split = split(data, spec.test_fraction, spec.seed);
    let train_x = match spec.scale {
        true => apply_scaler(&fit_scaler(&split.train_x), &split.train_x),
        false => split.train_x,
    };
    kmeans::fit_runs(train_x.view(), k, max_iterations, runs, spec.seed).map_err(TrainError::Fit)
}

/// [`train`], with parts of the fit already `done`.
pub fn train_with(
    data: &Dataset,
    spec: &TrainSpec,
    mut progress: impl FnMut(&str, f64),
    done: Done,
) -> Result<Trained, TrainError> {
    spec.algorithm.validate()?;
    if !(spec.test_fraction > 0.0 && spec.test_fraction < 1.0) {
        return Err(TrainError::Param(format!(
            "test_fraction: must be in (0, 1), got {}",
            spec.test_fraction
        )));
    }
    let d = data.n_features();
    let n = data.n_rows();
    if n < 4 || d == 0 || data.x.len() != n * d {
        return Err(TrainError::Data(format!(
            "dataset `{}` has {n} rows of {d} features: too small to split",
            data.name
        )));
    }
    // CSV import and the built-ins only give finite numbers; the fits (bins, distances,
    // solvers) rely on it.
    if let Some(p) = data.x.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::Data(format!(
            "dataset `{}`: row {}, feature `{}` is not a finite number",
            data.name,
            p / d + 1,
            data.feature_names.get(p % d).map_or("?", String::as_str)
        )));
    }
    let classification = !spec.algorithm.is_regression() && !spec.algorithm.is_clustering();
    if classification && data.class_names.len() < 2 {
        return Err(TrainError::Data(format!(
            "`{}` has no class target; choose a regression algorithm",
            data.name
        )));
    }
    // A regression on class indices gives a number (R2 on class numbers) that means nothing.
    if spec.algorithm.is_regression() && !data.class_names.is_empty() {
        return Err(TrainError::Data(format!(
            "`{}` has a class target ({} classes); choose a classification algorithm, or import \
             the file again with its task set to regression",
            data.name,
            data.class_names.len()
        )));
    }

    progress("splitting", 0.1);
    let Split {
        train_x: train_raw,
        test_x: test_raw,
        train_y,
        test_y,
    } = split(data, spec.test_fraction, spec.seed);
    let scaler = spec.scale.then(|| fit_scaler(&train_raw));
    let scaled = scaler
        .as_ref()
        .map(|s| (apply_scaler(s, &train_raw), apply_scaler(s, &test_raw)));
    // Unscaled, the fits read the split's own arrays (no copies).
    let (train_x, test_x) = match &scaled {
        Some((train, test)) => (train, test),
        None => (&train_raw, &test_raw),
    };
    let train_y = Array1::from(train_y);
    let as_class = |y: &Array1<f64>| y.mapv(|v| v as usize);

    progress("fitting", 0.3);
    // Logistic regression records its curve during the fit (see [`logistic`]).
    let mut logistic_curves = None;
    // So does k-means (see [`kmeans`]).
    let mut kmeans_curve = None;
    // And boosting (see [`boosting`]).
    let mut boosting_curves = None;
    // The boosted model's raw scores of the held-out rows, summed while fitting.
    let mut boosted_scores = None;
    // Hyperparameters the fit chose itself.
    let mut chosen_params = BTreeMap::new();
    let (model, linfa_pred): (Model, Vec<f64>) = match &spec.algorithm {
        Algorithm::LinearRegression => {
            let fit = LinearRegression::new()
                .fit(&linfa::Dataset::new(train_x.clone(), train_y.clone()))
                .map_err(|e| TrainError::Fit(e.to_string()))?;
            let pred = fit.predict(test_x).to_vec();
            (
                Model::Linear {
                    weights: fit.params().to_vec(),
                    intercept: fit.intercept(),
                },
                pred,
            )
        }
        Algorithm::Ridge { alpha } => {
            let (weights, intercept) = ridge(&train_x, &train_y, *alpha)?;
            let pred = (test_x.dot(&weights) + intercept).to_vec();
            (
                Model::Linear {
                    weights: weights.to_vec(),
                    intercept,
                },
                pred,
            )
        }
        Algorithm::ElasticNet { alpha, l1_ratio } => {
            let alpha = match alpha {
                Some(a) => *a,
                None => {
                    let a = elastic_net_cv_alpha(&train_x, &train_y, *l1_ratio)?;
                    chosen_params.insert("alpha".to_string(), a);
                    a
                }
            };
            let fit = elastic_net(&train_x, &train_y, alpha, *l1_ratio)?;
            let pred = fit.predict(test_x).to_vec();
            (
                Model::Linear {
                    weights: fit.hyperplane().to_vec(),
                    intercept: fit.intercept(),
                },
                pred,
            )
        }
        Algorithm::LogisticRegression {
            alpha,
            max_iterations,
        } => {
            let labels = |y: &[f64]| y.iter().map(|v| *v as usize).collect::<Vec<_>>();
            let fit = logistic::fit(
                train_x.view(),
                &labels(train_y.as_slice().unwrap_or(&[])),
                data.class_names.len(),
                *alpha,
                *max_iterations,
                test_x.view(),
                &labels(&test_y),
            )
            .map_err(TrainError::Fit)?;
            let logits = test_x.dot(&fit.weights) + &fit.intercepts;
            let pred = logits
                .rows()
                .into_iter()
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .fold(
                            (0, f64::NEG_INFINITY),
                            |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
                        )
                        .0 as f64
                })
                .collect();
            logistic_curves = Some(BTreeMap::from([
                ("train_log_loss".to_string(), fit.train_log_loss.clone()),
                ("accuracy".to_string(), fit.accuracy.clone()),
            ]));
            (
                Model::LogisticRegression {
                    weights: fit
                        .weights
                        .columns()
                        .into_iter()
                        .map(|c| c.to_vec())
                        .collect(),
                    intercepts: fit.intercepts.to_vec(),
                },
                pred,
            )
        }
        Algorithm::GaussianNb => {
            let k = data.class_names.len();
            let model = gaussian_nb(train_x, &as_class(&train_y), k);
            // Each output row: the class, then its probabilities.
            let pred = wasmops_shared::reference::predict(
                &Pipeline {
                    n_features: d,
                    scaler: None,
                    model: model.clone(),
                },
                test_x.as_slice().expect("row-major"),
            )
            .into_iter()
            .step_by(1 + k)
            .collect();
            (model, pred)
        }
        Algorithm::DecisionTree { max_depth } => {
            let k = data.class_names.len();
            let train_class = as_class(&train_y);
            let x = train_x.as_standard_layout();
            let binned =
                tree::Binned::new(x.as_slice().expect("standard layout"), train_x.nrows(), d);
            let grown = tree::grow(
                &binned,
                train_class.as_slice().expect("contiguous"),
                &vec![1; train_x.nrows()],
                k,
                tree::Params {
                    max_depth: *max_depth,
                    max_features: None,
                    seed: spec.seed,
                },
            );
            let tree = grown.to_tree(true);
            let pred = predict_tree(&tree, &test_x);
            (Model::DecisionTree { n_classes: k, tree }, pred)
        }
        Algorithm::RandomForest {
            n_trees,
            max_depth,
            feature_proportion,
        } => {
            let k = data.class_names.len();
            let (trees, pred) = random_forest(
                &train_x,
                &as_class(&train_y),
                &test_x,
                k,
                *n_trees,
                *max_depth,
                max_features(*feature_proportion, d),
                spec.seed ^ 0x5eed,
            )?;
            (
                Model::RandomForest {
                    n_classes: k,
                    trees,
                },
                pred,
            )
        }
        Algorithm::GradientBoostingClassifier(params)
        | Algorithm::GradientBoostingRegressor(params) => {
            let (n_classes, loss) = if spec.algorithm.is_regression() {
                (None, boosting::Loss::Squared)
            } else {
                let k = data.class_names.len();
                (Some(k), boosting::Loss::LogLoss(k))
            };
            let rows = |x: &Array2<f64>| x.as_standard_layout().iter().copied().collect::<Vec<_>>();
            let fit = boosting::fit(
                &rows(&train_x),
                train_x.nrows(),
                d,
                train_y.as_slice().expect("contiguous"),
                loss,
                params,
                spec.seed,
                &rows(&test_x),
                &test_y,
            )
            .map_err(TrainError::Fit)?;
            let s = loss.n_scores();
            let pred = fit
                .eval_raw
                .chunks(s)
                .map(|z| match n_classes {
                    None => z[0],
                    // Logits [0, z] for two classes: class 1 when z > 0, as modules.
                    Some(2) => f64::from(u8::from(z[0] > 0.0)),
                    Some(_) => {
                        let mut best = 0;
                        for (c, v) in z.iter().enumerate() {
                            if *v > z[best] {
                                best = c;
                            }
                        }
                        best as f64
                    }
                })
                .collect();
            chosen_params.insert("n_iter".to_string(), fit.n_iter as f64);
            boosting_curves = Some(fit.curves);
            boosted_scores = Some(fit.eval_raw);
            (
                Model::GradientBoosting {
                    n_classes,
                    baseline: fit.baseline,
                    trees: fit.trees,
                },
                pred,
            )
        }
        Algorithm::KMeans { k, max_iterations } => {
            let fit = match done.kmeans_runs {
                Some(runs) => kmeans::best(runs, KMEANS_RUNS),
                None => kmeans::fit(train_x.view(), *k, *max_iterations, KMEANS_RUNS, spec.seed),
            }
            .map_err(TrainError::Fit)?;
            let pred = kmeans::predict(&fit.centroids, test_x.view());
            kmeans_curve = Some(fit.curve.clone());
            let centroids = fit
                .centroids
                .rows()
                .into_iter()
                .map(|r| r.to_vec())
                .collect();
            (
                Model::KMeans { centroids },
                pred.iter().map(|c| *c as f64).collect(),
            )
        }
    };

    progress("evaluating", 0.9);
    let pipeline = Pipeline {
        n_features: d,
        scaler,
        model,
    };
    pipeline
        .validate()
        .map_err(|e| TrainError::Fit(format!("linfa produced an unusable model: {e}")))?;
    let test_x_raw = test_raw.as_slice().expect("the split is row-major");
    // A boosted model's outputs from the scores the fit summed (the same bits as walking every
    // tree again; `agrees_with_its_fit` in trainer/tests/boosting.rs checks the metrics).
    let outputs = boosted_scores
        .and_then(|s| wasmops_shared::reference::predict_from_scores(&pipeline, &s))
        .unwrap_or_else(|| wasmops_shared::reference::predict(&pipeline, test_x_raw));
    let metrics = wasmops_shared::metrics::evaluate(&pipeline, test_x_raw, &outputs, &test_y);
    let class_names = match &spec.algorithm {
        Algorithm::KMeans { k, .. } => (0..*k).map(|c| format!("cluster {c}")).collect(),
        a if a.is_regression() => Vec::new(),
        _ => data.class_names.clone(),
    };
    progress("curves", 0.95);
    let curves = match (logistic_curves.or(boosting_curves), kmeans_curve) {
        (Some(c), _) => c,
        (None, Some(inertia)) => BTreeMap::from([("train_inertia".to_string(), inertia)]),
        (None, None) => curves(spec, &pipeline, train_x, test_x_raw, &test_y)?,
    };
    progress("importances", 0.97);
    let importances = match pipeline.model {
        Model::DecisionTree { .. } | Model::RandomForest { .. } => {
            tree_permutation_importance(&pipeline, test_x_raw, &test_y, spec.seed)
        }
        _ => Vec::new(),
    };
    progress("done", 1.0);
    Ok(Trained {
        pipeline,
        class_names,
        train_x: train_raw.into_raw_vec_and_offset().0,
        test_x: test_raw.into_raw_vec_and_offset().0,
        test_y,
        linfa_test_predictions: linfa_pred,
        metrics,
        curves,
        importances,
        chosen_params,
    })
}

/// Permutation importance (Breiman 2001): for each feature, how much the held-out primary
/// metric drops when that feature's column is shuffled (seeded), averaged over 3 shuffles.
/// Unlike split counts it measures what the model relies on for unseen rows.
pub fn permutation_importance(
    pipeline: &Pipeline,
    test_x: &[f64],
    test_y: &[f64],
    seed: u64,
) -> Vec<f64> {
    use rand::seq::SliceRandom;
    let d = pipeline.n_features;
    let metric = wasmops_shared::metrics::primary(pipeline);
    let score = |x: &[f64]| {
        let out = wasmops_shared::reference::predict(pipeline, x);
        wasmops_shared::metrics::evaluate(pipeline, x, &out, test_y)
            .get(metric)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let base = score(test_x);
    let n = test_y.len();
    let mut rng = Xoshiro256Plus::seed_from_u64(seed ^ 0x1e7);
    (0..d)
        .map(|j| {
            let mut drop = 0.0;
            for _ in 0..3 {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut rng);
                let mut x = test_x.to_vec();
                for (i, src) in order.iter().enumerate() {
                    x[i * d + j] = test_x[src * d + j];
                }
                drop += base - score(&x);
            }
            drop / 3.0
        })
        .collect()
}

/// [`permutation_importance`] of a tree or forest, the same figures (the same shuffles, the
/// same accuracy) at a fraction of the cost. Each row's leaf in each tree is found once. A
/// shuffled value of feature `j` ends in the same leaf exactly when it lies in the interval
/// of `j` values that leaf's path allows (`[lo, hi)`: above every threshold on `j` the path
/// passed on the right, below every one it passed on the left); only the rows whose new value
/// leaves that interval are walked again. Other models: the generic computation.
pub fn tree_permutation_importance(
    pipeline: &Pipeline,
    test_x: &[f64],
    test_y: &[f64],
    seed: u64,
) -> Vec<f64> {
    use rand::seq::SliceRandom;
    let (trees, k): (Vec<&Tree>, usize) = match &pipeline.model {
        Model::DecisionTree { tree, n_classes } => (vec![tree], *n_classes),
        Model::RandomForest { trees, n_classes } => (trees.iter().collect(), *n_classes),
        _ => return permutation_importance(pipeline, test_x, test_y, seed),
    };
    let d = pipeline.n_features;
    let n = test_y.len();
    // The rows as the trees see them (scaled exactly as `reference::predict` scales).
    let x: Vec<f64> = match &pipeline.scaler {
        Some(s) => test_x
            .iter()
            .enumerate()
            .map(|(p, v)| (v - s.mean[p % d]) / s.scale[p % d])
            .collect(),
        None => test_x.to_vec(),
    };
    // Flat trees: (feature, threshold, left, right); a leaf has feature `u32::MAX` and its
    // class in `left`.
    let flat: Vec<Vec<(u32, f64, u32, u32)>> = trees
        .iter()
        .map(|t| {
            t.nodes
                .iter()
                .map(|node| match node {
                    TreeNode::Split {
                        feature,
                        threshold,
                        left,
                        right,
                    } => (*feature as u32, *threshold, *left as u32, *right as u32),
                    TreeNode::Leaf { class, .. } => (u32::MAX, 0.0, *class as u32, 0),
                })
                .collect()
        })
        .collect();
    // The leaf a row reaches, with feature `j` replaced by `v` (`j = usize::MAX`: none).
    let walk = |tree: &[(u32, f64, u32, u32)], row: &[f64], j: usize, v: f64| {
        let mut at = 0usize;
        loop {
            let (f, threshold, left, right) = tree[at];
            if f == u32::MAX {
                return at;
            }
            let f = f as usize;
            let value = if f == j { v } else { row[f] };
            at = if value < threshold { left } else { right } as usize;
        }
    };
    let class = |t: usize, leaf: usize| flat[t][leaf].2 as usize;
    let mut base_leaf = vec![0u32; trees.len() * n];
    let mut base_votes = vec![0u32; n * k];
    for (t, tree) in flat.iter().enumerate() {
        for i in 0..n {
            let leaf = walk(tree, &x[i * d..(i + 1) * d], usize::MAX, 0.0);
            base_leaf[t * n + i] = leaf as u32;
            base_votes[i * k + class(t, leaf)] += 1;
        }
    }
    // Accuracy from votes: the class with the most votes, the lowest on a tie (as modules).
    let accuracy = |votes: &[u32]| {
        let hits = votes
            .chunks(k)
            .zip(test_y)
            .filter(|(v, y)| {
                let mut best = 0;
                for (c, n) in v.iter().enumerate() {
                    if *n > v[best] {
                        best = c;
                    }
                }
                best as f64 == **y
            })
            .count();
        hits as f64 / n.max(1) as f64
    };
    let base = accuracy(&base_votes);
    let mut rng = Xoshiro256Plus::seed_from_u64(seed ^ 0x1e7);
    let mut votes = base_votes.clone();
    let mut column = Vec::with_capacity(n);
    // Per tree, per node: the interval of feature `j` its path allows.
    let mut intervals: Vec<Vec<(f64, f64)>> =
        flat.iter().map(|t| vec![(0.0, 0.0); t.len()]).collect();
    (0..d)
        .map(|j| {
            for (tree, iv) in flat.iter().zip(&mut intervals) {
                let mut stack = vec![(0usize, f64::NEG_INFINITY, f64::INFINITY)];
                while let Some((at, lo, hi)) = stack.pop() {
                    iv[at] = (lo, hi);
                    let (f, threshold, left, right) = tree[at];
                    if f == u32::MAX {
                        continue;
                    }
                    if f as usize == j {
                        stack.push((left as usize, lo, hi.min(threshold)));
                        stack.push((right as usize, lo.max(threshold), hi));
                    } else {
                        stack.push((left as usize, lo, hi));
                        stack.push((right as usize, lo, hi));
                    }
                }
            }
            let mut drop = 0.0;
            for _ in 0..3 {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut rng);
                column.clear();
                column.extend(order.iter().map(|src| x[src * d + j]));
                votes.copy_from_slice(&base_votes);
                for (t, tree) in flat.iter().enumerate() {
                    let leaves = &base_leaf[t * n..(t + 1) * n];
                    for (i, (v, leaf)) in column.iter().zip(leaves).enumerate() {
                        let (lo, hi) = intervals[t][*leaf as usize];
                        if *v >= lo && *v < hi {
                            continue;
                        }
                        let moved = walk(tree, &x[i * d..(i + 1) * d], j, *v);
                        let (b, c) = (class(t, *leaf as usize), class(t, moved));
                        if c != b {
                            votes[i * k + b] -= 1;
                            votes[i * k + c] += 1;
                        }
                    }
                }
                drop += base - accuracy(&votes);
            }
            drop / 3.0
        })
        .collect()
}

/// Steps 1, 2, 4, ... up to and including `last`.
fn checkpoints(last: u64) -> Vec<u64> {
    let mut steps: Vec<u64> = std::iter::successors(Some(1u64), |s| s.checked_mul(2))
        .take_while(|s| *s < last)
        .collect();
    steps.push(last.max(1));
    steps
}

/// Step metrics, from what each fit honestly exposes. linfa reports no per-iteration history,
/// but its fits are deterministic, so a fit stopped after `t` iterations *is* the fit's state
/// at step `t`:
/// - logistic regression: not here; its fit records training log loss and held-out accuracy
///   at every L-BFGS iteration (see [`logistic`]);
/// - k-means: not here either; its fit records the inertia after every Lloyd iteration of
///   the winning run (see [`kmeans`]);
/// - random forest: held-out accuracy of the first 1, 2, 4, ... trees of the fitted forest;
/// - OLS, elastic net, Gaussian NB and a single tree do not iterate: no curve.
pub fn curves(
    _spec: &TrainSpec,
    pipeline: &Pipeline,
    _train_x: &Array2<f64>,
    test_x_raw: &[f64],
    test_y: &[f64],
) -> Result<BTreeMap<String, Vec<(u64, f64)>>, TrainError> {
    let mut out = BTreeMap::new();
    let accuracy = |p: &Pipeline| {
        let k = p.n_outputs();
        let o = wasmops_shared::reference::predict(p, test_x_raw);
        let hits = o.chunks(k).zip(test_y).filter(|(o, y)| o[0] == **y).count();
        hits as f64 / test_y.len().max(1) as f64
    };
    if let Model::RandomForest { n_classes, trees } = &pipeline.model {
        let mut acc = Vec::new();
        for t in checkpoints(trees.len() as u64) {
            let partial = Pipeline {
                model: Model::RandomForest {
                    n_classes: *n_classes,
                    trees: trees[..t as usize].to_vec(),
                },
                ..pipeline.clone()
            };
            acc.push((t, accuracy(&partial)));
        }
        out.insert("accuracy".to_string(), acc);
    }
    Ok(out)
}

/// k-means restarts (scikit-learn's `n_init=10`, linfa's `n_runs` default); the run with the
/// least inertia is kept.
pub const KMEANS_RUNS: usize = 10;

/// Features tried per split: scikit-learn's `max(1, floor(p * d))` for a float `max_features`,
/// `max(1, floor(sqrt(d)))` for its default `"sqrt"` (`None`).
pub fn max_features(feature_proportion: Option<f64>, d: usize) -> usize {
    let m = match feature_proportion {
        Some(p) => (p * d as f64).floor(),
        None => (d as f64).sqrt().floor(),
    };
    (m as usize).clamp(1, d.max(1))
}

/// A random forest as scikit-learn fits one: tree `t` sees a bootstrap sample of the rows
/// (`n` draws with replacement, as integer row weights) and draws `max_features` candidate
/// features at each split ([`tree`]; the rows are binned once for all trees). All randomness
/// comes from `seed`, tree after tree, so the same data and seed give the same forest. Returns
/// the trees and the forest's majority vote for `test_x` (lowest class on a tie, as modules
/// do).
#[allow(clippy::too_many_arguments)]
fn random_forest(
    train_x: &Array2<f64>,
    train_y: &Array1<usize>,
    test_x: &Array2<f64>,
    k: usize,
    n_trees: usize,
    max_depth: Option<usize>,
    max_features: usize,
    seed: u64,
) -> Result<(Vec<Tree>, Vec<f64>), TrainError> {
    use rand::{Rng, RngCore};
    let mut rng = Xoshiro256Plus::seed_from_u64(seed);
    let (n, d) = train_x.dim();
    let x = train_x.as_standard_layout();
    let binned = tree::Binned::new(x.as_slice().expect("standard layout"), n, d);
    let y = train_y.as_slice().expect("contiguous");
    let test_rows = test_x.as_standard_layout();
    let test_rows = test_rows.as_slice().expect("standard layout");
    let mut votes = vec![vec![0usize; k]; test_x.nrows()];
    let mut trees = Vec::with_capacity(n_trees);
    let mut weights = vec![0u32; n];
    for _ in 0..n_trees {
        weights.fill(0);
        for _ in 0..n {
            weights[rng.gen_range(0..n)] += 1;
        }
        let grown = tree::grow(
            &binned,
            y,
            &weights,
            k,
            tree::Params {
                max_depth,
                max_features: Some(max_features),
                seed: rng.next_u64(),
            },
        );
        let tree = grown.to_tree(false);
        for (v, row) in votes.iter_mut().zip(test_rows.chunks_exact(d)) {
            if let TreeNode::Leaf { class, .. } = &tree.nodes[tree.leaf_for(row)] {
                v[*class] += 1;
            }
        }
        trees.push(tree);
    }
    let pred = votes
        .iter()
        .map(|v| {
            let mut best = 0;
            for (c, n) in v.iter().enumerate() {
                if *n > v[best] {
                    best = c;
                }
            }
            best as f64
        })
        .collect();
    Ok((trees, pred))
}

/// The class a tree gives each row of `x`.
fn predict_tree(tree: &Tree, x: &Array2<f64>) -> Vec<f64> {
    x.rows()
        .into_iter()
        .map(|row| match &tree.nodes[tree.leaf_for(&row.to_vec())] {
            TreeNode::Leaf { class, .. } => *class as f64,
            TreeNode::Split { .. } => unreachable!("leaf_for returns a leaf"),
        })
        .collect()
}

fn elastic_net(
    x: &Array2<f64>,
    y: &Array1<f64>,
    alpha: f64,
    l1_ratio: f64,
) -> Result<linfa_elasticnet::ElasticNet<f64>, TrainError> {
    ElasticNet::params()
        .penalty(alpha)
        .l1_ratio(l1_ratio)
        .fit(&linfa::Dataset::new(x.clone(), y.clone()))
        .map_err(|e| TrainError::Fit(e.to_string()))
}

/// Elastic net's alpha by 5-fold cross-validation, as scikit-learn's `ElasticNetCV`: 20 alphas
/// log-spaced from `alpha_max = max_j |x_jᵀ y| / (n l1_ratio)` (centred; the smallest alpha
/// that zeroes every weight, with `l1_ratio` at least 0.001) down to `alpha_max / 1000`
/// (below `l1_ratio` 0.01, further down, see the grid);
/// contiguous folds of the (already shuffled) training rows; the alpha with the least summed
/// squared validation error, the larger on a tie. Deterministic. The fits along the path use
/// [`elastic_net_path`]; the chosen alpha is then fitted by linfa on all training rows.
fn elastic_net_cv_alpha(
    x: &Array2<f64>,
    y: &Array1<f64>,
    l1_ratio: f64,
) -> Result<f64, TrainError> {
    let n = x.nrows();
    let x_mean = x.sum_axis(Axis(0)) / n.max(1) as f64;
    let y_mean = y.sum() / n.max(1) as f64;
    let xty = (x - &x_mean).t().dot(&(y - y_mean));
    let alpha_max =
        xty.iter().fold(0.0f64, |m, v| m.max(v.abs())) / (n as f64 * l1_ratio.max(1e-3));
    if !(alpha_max.is_finite() && alpha_max > 0.0) {
        // A constant target: every alpha gives the same (zero) weights.
        return Ok(1.0);
    }
    // scikit-learn's grid (which refuses l1_ratio 0). Below l1_ratio 0.01 its top is far
    // above any useful ridge penalty, so the grid runs on down to where it would end for the
    // lasso (a thousandth of `max |xᵀy| / n`): 6 decades, 40 alphas at l1_ratio 0.
    let bottom = if l1_ratio >= 0.01 {
        alpha_max * 1e-3
    } else {
        alpha_max * l1_ratio.max(1e-3) * 1e-3
    };
    let decades = (alpha_max / bottom).log10();
    let points = ((20.0 * decades / 3.0).round() as usize).max(20);
    let grid: Vec<f64> = (0..points)
        .map(|i| alpha_max * 10f64.powf(-decades * i as f64 / (points - 1) as f64))
        .collect();
    let folds = n.min(5);
    if folds < 2 {
        return Ok(grid[grid.len() - 1]);
    }
    let mut sse = vec![0.0; grid.len()];
    for f in 0..folds {
        let (lo, hi) = (f * n / folds, (f + 1) * n / folds);
        let rows: Vec<usize> = (0..n).filter(|i| *i < lo || *i >= hi).collect();
        let held: Vec<usize> = (lo..hi).collect();
        let (xt, yt) = (x.select(Axis(0), &rows), y.select(Axis(0), &rows));
        let (xv, yv) = (x.select(Axis(0), &held), y.select(Axis(0), &held));
        let nt = rows.len() as f64;
        let xt_mean = xt.sum_axis(Axis(0)) / nt;
        let yt_mean = yt.sum() / nt;
        let xc = &xt - &xt_mean;
        let gram = xc.t().dot(&xc);
        let xty = xc.t().dot(&(&yt - yt_mean));
        let path = elastic_net_path(&gram, &xty, nt, &grid, l1_ratio);
        let xv = &xv - &xt_mean;
        for (w, s) in path.iter().zip(&mut sse) {
            let pred = xv.dot(w) + yt_mean;
            *s += pred
                .iter()
                .zip(&yv)
                .map(|(p, t)| (p - t) * (p - t))
                .sum::<f64>();
        }
    }
    let mut best = 0;
    for (i, s) in sse.iter().enumerate() {
        if *s < sse[best] {
            best = i;
        }
    }
    Ok(grid[best])
}

/// Elastic net weights along `alphas` (decreasing), by coordinate descent on the Gram matrix
/// of centred data (`gram = XᵀX`, `xty = Xᵀy`, `n` rows; scikit-learn's `precompute`), each
/// alpha starting from the previous one's weights. Only for choosing alpha: a sweep costs
/// `d²`, not `n d`, so the 100 fits of the cross-validation cost about one linfa fit. Stops
/// when no weight moves by more than 1e-6 of the largest (or after 1,000 sweeps).
fn elastic_net_path(
    gram: &Array2<f64>,
    xty: &Array1<f64>,
    n: f64,
    alphas: &[f64],
    l1_ratio: f64,
) -> Vec<Array1<f64>> {
    let d = xty.len();
    let mut w = Array1::<f64>::zeros(d);
    let mut path = Vec::with_capacity(alphas.len());
    for alpha in alphas {
        let (l1, l2) = (n * alpha * l1_ratio, n * alpha * (1.0 - l1_ratio));
        for _ in 0..1000 {
            let (mut max_change, mut max_w) = (0.0f64, 0.0f64);
            for j in 0..d {
                let denominator = gram[(j, j)] + l2;
                if denominator <= 0.0 {
                    continue;
                }
                let rho = xty[j] - gram.row(j).dot(&w) + gram[(j, j)] * w[j];
                let new = rho.signum() * (rho.abs() - l1).max(0.0) / denominator;
                max_change = max_change.max((new - w[j]).abs());
                max_w = max_w.max(new.abs());
                w[j] = new;
            }
            if max_change <= 1e-6 * max_w {
                break;
            }
        }
        path.push(w.clone());
    }
    path
}

/// Ridge regression in closed form: with centred `x` and `y`, `(XᵀX + alpha I) w = Xᵀy`
/// (Cholesky), then `b = mean(y) - mean(x)·w`: scikit-learn's `Ridge` objective exactly.
fn ridge(x: &Array2<f64>, y: &Array1<f64>, alpha: f64) -> Result<(Array1<f64>, f64), TrainError> {
    let n = x.nrows().max(1) as f64;
    let d = x.ncols();
    let x_mean = x.sum_axis(Axis(0)) / n;
    let y_mean = y.sum() / n;
    let xc = x - &x_mean;
    let yc = y - y_mean;
    let mut g = xc.t().dot(&xc);
    for j in 0..d {
        g[(j, j)] += alpha;
    }
    let b = xc.t().dot(&yc);
    // Cholesky: g = L Lᵀ.
    let mut l = Array2::<f64>::zeros((d, d));
    for i in 0..d {
        for j in 0..=i {
            let mut sum = g[(i, j)];
            for p in 0..j {
                sum -= l[(i, p)] * l[(j, p)];
            }
            if i == j {
                if sum.is_nan() || sum <= 1e-12 * g[(i, i)].abs().max(f64::MIN_POSITIVE) {
                    return Err(TrainError::Fit(
                        "ridge: the features are collinear; use an alpha above 0".into(),
                    ));
                }
                l[(i, i)] = sum.sqrt();
            } else {
                l[(i, j)] = sum / l[(j, j)];
            }
        }
    }
    let mut z = Array1::<f64>::zeros(d);
    for i in 0..d {
        let mut sum = b[i];
        for p in 0..i {
            sum -= l[(i, p)] * z[p];
        }
        z[i] = sum / l[(i, i)];
    }
    let mut w = Array1::<f64>::zeros(d);
    for i in (0..d).rev() {
        let mut sum = z[i];
        for p in i + 1..d {
            sum -= l[(p, i)] * w[p];
        }
        w[i] = sum / l[(i, i)];
    }
    let intercept = y_mean - x_mean.dot(&w);
    Ok((w, intercept))
}

/// Mean and population standard deviation per column (a constant column scales by 1).
/// The seeded split of [`train`]: rows in a seeded random order (linfa's `Dataset::shuffle`,
/// the same generator calls), the first `ceil(n * (1 - test_fraction))` (in `f32`, as linfa's
/// `split_with_ratio`) for training, the rest held out. Each row is copied once, straight into
/// its side (linfa copied the whole dataset three times over).
pub struct Split {
    pub train_x: Array2<f64>,
    pub test_x: Array2<f64>,
    pub train_y: Vec<f64>,
    pub test_y: Vec<f64>,
}

/// Appends `rows`' values and targets to `x` and `y`. A function of its own, called per block
/// of rows: V8 runs a wasm function in its baseline tier until it is hot and switches at its
/// next call, so this loop inlined into [`split`] (called once per job) ran at baseline speed
/// in a worker's first job.
#[inline(never)]
fn gather_rows(data: &Dataset, rows: &[usize], x: &mut Vec<f64>, y: &mut Vec<f64>) {
    let d = data.n_features();
    for i in rows {
        x.extend_from_slice(&data.x[i * d..(i + 1) * d]);
        y.push(data.y[*i]);
    }
}

pub fn split(data: &Dataset, test_fraction: f64, seed: u64) -> Split {
    use rand::seq::SliceRandom;
    let (n, d) = (data.n_rows(), data.n_features());
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut Xoshiro256Plus::seed_from_u64(seed));
    let n_train = ((n as f32 * (1.0 - test_fraction) as f32).ceil() as usize).min(n);
    let gather = |rows: &[usize]| {
        let mut x = Vec::with_capacity(rows.len() * d);
        let mut y = Vec::with_capacity(rows.len());
        for block in rows.chunks(1024) {
            gather_rows(data, block, &mut x, &mut y);
        }
        (
            Array2::from_shape_vec((rows.len(), d), x).expect("rows of d values"),
            y,
        )
    };
    let (train_x, train_y) = gather(&order[..n_train]);
    let (test_x, test_y) = gather(&order[n_train..]);
    Split {
        train_x,
        test_x,
        train_y,
        test_y,
    }
}

fn fit_scaler(x: &Array2<f64>) -> StandardScaler {
    let n = x.nrows().max(1) as f64;
    let mean: Vec<f64> = x.columns().into_iter().map(|c| c.sum() / n).collect();
    let scale = x
        .columns()
        .into_iter()
        .zip(&mean)
        .map(|(c, m)| {
            let sd = (c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt();
            if sd > 0.0 {
                sd
            } else {
                1.0
            }
        })
        .collect();
    StandardScaler { mean, scale }
}

/// Scales exactly as modules do: `(x - mean) / scale`.
fn apply_scaler(s: &StandardScaler, x: &Array2<f64>) -> Array2<f64> {
    let mut out = x.to_owned();
    for mut row in out.rows_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (*v - s.mean[j]) / s.scale[j];
        }
    }
    out
}

/// Gaussian naive Bayes as scikit-learn's `GaussianNB` (and linfa's) fits it, in one pass per
/// moment instead of linfa's per-class copies: per class the prior (its share of the rows), the
/// mean and the variance of each feature (sums in row order), every variance plus
/// `1e-9` times the largest feature variance over all rows (`var_smoothing`); then the
/// constants of the joint log-likelihood, as [`gaussian_nb_model`] takes them from linfa's fit.
/// A class without training rows never wins.
fn gaussian_nb(x: &Array2<f64>, y: &Array1<usize>, k: usize) -> Model {
    let (n, d) = x.dim();
    let x = x.as_standard_layout();
    let rows = x.as_slice().expect("standard layout");
    let mut counts = vec![0usize; k];
    let mut sums = vec![0.0; k * d];
    let mut all = vec![0.0; d];
    for (row, c) in rows.chunks_exact(d.max(1)).zip(y) {
        counts[*c] += 1;
        for ((s, a), v) in sums[c * d..(c + 1) * d].iter_mut().zip(&mut all).zip(row) {
            *s += v;
            *a += v;
        }
    }
    let mean_all: Vec<f64> = all.iter().map(|s| s / n.max(1) as f64).collect();
    let means: Vec<f64> = sums
        .chunks_exact(d.max(1))
        .zip(&counts)
        .flat_map(|(s, n)| s.iter().map(move |v| v / (*n).max(1) as f64))
        .collect();
    let mut squares = vec![0.0; k * d];
    let mut squares_all = vec![0.0; d];
    for (row, c) in rows.chunks_exact(d.max(1)).zip(y) {
        let m = &means[c * d..(c + 1) * d];
        for (j, v) in row.iter().enumerate() {
            let t = v - m[j];
            squares[c * d + j] += t * t;
            let u = v - mean_all[j];
            squares_all[j] += u * u;
        }
    }
    let epsilon = 1e-9
        * squares_all
            .iter()
            .map(|s| s / n.max(1) as f64)
            .fold(0.0, f64::max);
    let mut model_means = vec![vec![0.0; d]; k];
    let mut neg_half_inv_var = vec![vec![-0.5; d]; k];
    let mut log_prior_norm = vec![-1e300; k];
    for c in 0..k {
        if counts[c] == 0 {
            continue;
        }
        let var: Vec<f64> = squares[c * d..(c + 1) * d]
            .iter()
            .map(|s| s / counts[c] as f64 + epsilon)
            .collect();
        let norm: f64 = var
            .iter()
            .map(|s| libm::log(2.0 * std::f64::consts::PI * s))
            .sum();
        log_prior_norm[c] = libm::log(counts[c] as f64 / n as f64) - 0.5 * norm;
        model_means[c] = means[c * d..(c + 1) * d].to_vec();
        neg_half_inv_var[c] = var.iter().map(|s| -0.5 / s).collect();
    }
    Model::GaussianNb {
        means: model_means,
        neg_half_inv_var,
        log_prior_norm,
    }
}

/// Reads a fitted Gaussian NB through its serde form (linfa keeps the fields private) and
/// precomputes the constants of the joint log-likelihood. The trainer fitted with linfa
/// until [`gaussian_nb`]; its test compares the two.
#[cfg(test)]
fn gaussian_nb_model(
    fit: &linfa_bayes::GaussianNb<f64, usize>,
    d: usize,
    k: usize,
) -> Result<Model, TrainError> {
    #[derive(Deserialize)]
    struct Nb {
        class_info: BTreeMap<String, Info>,
    }
    #[derive(Deserialize)]
    struct Info {
        prior: f64,
        theta: Arr,
        sigma: Arr,
    }
    #[derive(Deserialize)]
    struct Arr {
        data: Vec<f64>,
    }
    let value = serde_json::to_value(fit).map_err(|e| TrainError::Fit(e.to_string()))?;
    let nb: Nb = serde_json::from_value(value)
        .map_err(|e| TrainError::Fit(format!("unexpected GaussianNb form: {e}")))?;
    let mut means = vec![vec![0.0; d]; k];
    let mut neg_half_inv_var = vec![vec![-0.5; d]; k];
    // Classes missing from the training split never win.
    let mut log_prior_norm = vec![-1e300; k];
    for (label, info) in nb.class_info {
        let c: usize = label
            .parse()
            .map_err(|_| TrainError::Fit(format!("class label {label}")))?;
        if c >= k || info.theta.data.len() != d || info.sigma.data.len() != d {
            return Err(TrainError::Fit(format!(
                "GaussianNb class {c} has unexpected shape"
            )));
        }
        let norm: f64 = info
            .sigma
            .data
            .iter()
            .map(|s| libm::log(2.0 * std::f64::consts::PI * s))
            .sum();
        log_prior_norm[c] = libm::log(info.prior) - 0.5 * norm;
        means[c] = info.theta.data.clone();
        neg_half_inv_var[c] = info.sigma.data.iter().map(|s| -0.5 / s).collect();
    }
    Ok(Model::GaussianNb {
        means,
        neg_half_inv_var,
        log_prior_norm,
    })
}

#[cfg(test)]
mod gaussian_nb_tests {
    use super::*;

    /// The trainer's own Gaussian NB is linfa's (which the trainer used before) up to rounding:
    /// same means, variances and priors, same predictions on held-out rows, with a class
    /// missing from training kept out.
    #[test]
    fn the_own_gaussian_nb_is_linfas() {
        let data = datasets::synthetic(5000, 6, 3);
        let x = Array2::from_shape_vec((5000, 6), data.x.clone()).unwrap();
        // Four classes, the last one absent.
        let y: Array1<usize> = data.y.iter().map(|v| *v as usize).collect();
        let ours = gaussian_nb(&x, &y, 4);
        let fit = linfa_bayes::GaussianNb::params()
            .fit(&linfa::Dataset::new(x.clone(), y.clone()))
            .unwrap();
        let theirs = gaussian_nb_model(&fit, 6, 4).unwrap();
        let (
            Model::GaussianNb {
                means: m1,
                neg_half_inv_var: v1,
                log_prior_norm: p1,
            },
            Model::GaussianNb {
                means: m2,
                neg_half_inv_var: v2,
                log_prior_norm: p2,
            },
        ) = (&ours, &theirs)
        else {
            panic!("not Gaussian NB models");
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        for c in 0..3 {
            for j in 0..6 {
                assert!(close(m1[c][j], m2[c][j]), "mean {c} {j}");
                assert!(close(v1[c][j], v2[c][j]), "variance {c} {j}");
            }
            assert!(close(p1[c], p2[c]), "prior {c}");
        }
        assert_eq!(p1[3], -1e300);
        let pipeline = |model: &Model| Pipeline {
            n_features: 6,
            scaler: None,
            model: model.clone(),
        };
        let a = wasmops_shared::reference::predict(&pipeline(&ours), &data.x);
        let b: Vec<f64> = fit.predict(&x).iter().map(|c| *c as f64).collect();
        let classes: Vec<f64> = a.into_iter().step_by(5).collect();
        assert_eq!(classes, b);
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    /// The split copies each row once, straight to its side, and gives the rows linfa's
    /// `shuffle` and `split_with_ratio` gave (the trainer's split before), in the same order.
    #[test]
    fn the_split_is_linfas_shuffle_and_split() {
        for (n, fraction, seed) in [(1000, 0.2, 42), (7, 0.25, 1), (101, 0.5, 9), (4, 0.1, 0)] {
            let data = datasets::synthetic(n, 3, 5);
            let records = Array2::from_shape_vec((n, 3), data.x.clone()).unwrap();
            let targets = Array1::from(data.y.clone());
            let mut rng = Xoshiro256Plus::seed_from_u64(seed);
            let (train, test) = linfa::Dataset::new(records, targets)
                .shuffle(&mut rng)
                .split_with_ratio((1.0 - fraction) as f32);
            let ours = split(&data, fraction, seed);
            assert_eq!(
                ours.train_x,
                train.records().to_owned(),
                "{n} {fraction} {seed}"
            );
            assert_eq!(
                ours.test_x,
                test.records().to_owned(),
                "{n} {fraction} {seed}"
            );
            assert_eq!(ours.train_y, train.targets().to_vec());
            assert_eq!(ours.test_y, test.targets().to_vec());
        }
    }
}
