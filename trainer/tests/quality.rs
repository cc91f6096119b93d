//! Quality floors on fixed seeds, each next to what scikit-learn scores on the same split
//! (`docs/benchmarks.md`, "Training quality against scikit-learn": the split is the trainer's,
//! exported by `examples/quality.rs`). A test fails if quality drops below its floor; the
//! linear models must also match scikit-learn's score, since they solve the same objective.

mod common;

use common::digits;

use wasmops_shared::dataset::Dataset;
use wasmops_trainer::{datasets, train, Algorithm, TrainSpec, Trained};

fn fit(data: &Dataset, algorithm: Algorithm) -> Trained {
    let spec = TrainSpec {
        algorithm: algorithm.clone(),
        scale: false,
        test_fraction: 0.25,
        seed: 7,
    };
    train(data, &spec, |_, _| {}).unwrap_or_else(|e| panic!("{algorithm:?}: {e}"))
}

/// Ridge and elastic net mean what scikit-learn's `Ridge` and `ElasticNet` mean: the same
/// alpha gives the same fit. (Issue 14: "ridge regression (penalty 0.1)" scored R2 0.04 where
/// `Ridge(alpha=0.1)` scores 0.42, its penalty being elastic net's per-sample one.)
#[test]
fn ridge_and_elastic_net_match_scikit_learn_on_diabetes() {
    let diabetes = datasets::builtin("diabetes").unwrap();
    // scikit-learn 1.9.1 on this split: Ridge(alpha=0.1) 0.4387, Ridge() 0.3779,
    // ElasticNet(alpha=0.001, l1_ratio=0.5) 0.4363, ElasticNetCV(l1_ratio=0.5, cv=5) 0.3956
    // (LinearRegression() 0.4436). Before: "ridge regression (penalty 0.1)" 0.054.
    for (algorithm, sklearn) in [
        (Algorithm::Ridge { alpha: 0.1 }, 0.4387),
        (Algorithm::Ridge { alpha: 1.0 }, 0.3779),
        (
            Algorithm::ElasticNet {
                alpha: Some(0.001),
                l1_ratio: 0.5,
            },
            0.4363,
        ),
        // The default: alpha by 5-fold cross-validation, as ElasticNetCV(l1_ratio=0.5, cv=5).
        (
            Algorithm::ElasticNet {
                alpha: None,
                l1_ratio: 0.5,
            },
            0.3956,
        ),
    ] {
        let r2 = fit(&diabetes, algorithm.clone()).metrics["r2"];
        assert!(
            (r2 - sklearn).abs() < 2e-3,
            "{algorithm:?}: R2 {r2}, scikit-learn {sklearn}"
        );
    }
}

/// The cross-validated default also works at `l1_ratio` 0, where scikit-learn's alpha grid
/// is undefined (the grid's top would be infinite) and a grid capped as at 0.001 sits far
/// above any useful ridge penalty (R2 0.003 on this split before the grid ran further down).
#[test]
fn cross_validated_elastic_net_works_without_l1() {
    let diabetes = datasets::builtin("diabetes").unwrap();
    let t = fit(
        &diabetes,
        Algorithm::ElasticNet {
            alpha: None,
            l1_ratio: 0.0,
        },
    );
    // This split: 0.3963; Ridge(alpha=0.1) 0.4387, Ridge() 0.3779.
    assert!(t.metrics["r2"] > 0.39, "{:?}", t.metrics);
    let alpha = t.chosen_params["alpha"];
    assert!(alpha > 0.0 && alpha < 0.1, "chosen alpha {alpha}");
}

/// Logistic regression solves scikit-learn's problem by its rules (L-BFGS-B's line search and
/// stopping tests, `tol` 1e-4 on the gradient's largest component): the same held-out
/// accuracy on the same split, about as many iterations when it converges, and `max_iterations`
/// is `max_iter` when it does not.
#[test]
fn logistic_regression_matches_scikit_learn() {
    let logistic = |max_iterations| Algorithm::LogisticRegression {
        alpha: 1.0,
        max_iterations,
    };
    // scikit-learn 1.9.1, `LogisticRegression(C=1.0, max_iter=100)` on these splits (seed 7,
    // 25% held out): accuracy and `n_iter_`.
    for (data, sklearn, n_iter) in [
        (digits(), 0.953229, 100),
        (datasets::synthetic(20_000, 20, 42), 0.9686, 14),
        (datasets::builtin("iris").unwrap(), 0.972973, 85),
    ] {
        let t = fit(&data, logistic(100));
        let held_out = t.test_y.len() as f64;
        let accuracy = t.metrics["accuracy"];
        assert!(
            (accuracy - sklearn).abs() * held_out < 1.5,
            "{}: {accuracy} where scikit-learn scores {sklearn}",
            data.name
        );
        let iterations = t.curves["accuracy"].len() as i64;
        assert!(
            (iterations - n_iter).abs() <= n_iter / 5 + 2,
            "{}: {iterations} iterations where scikit-learn takes {n_iter}",
            data.name
        );
    }
    // On 75,000 rows of the benchmark's data (`synthetic:100000`, seed 42) this fit and
    // scipy's L-BFGS-B driven as scikit-learn drives it take the same 21 iterations and 23
    // evaluations, their objectives equal to 12 digits (`docs/benchmarks.md`).
}

/// Issue 14: an unlimited tree scored 0.76 on digits where scikit-learn's scores 0.85 (the
/// split search skipped most boundaries of deep nodes; `docs/benchmarks.md`, training quality).
#[test]
fn decision_tree_on_digits() {
    let t = fit(&digits(), Algorithm::DecisionTree { max_depth: None });
    // This split: 0.837 (was 0.73-0.80 before the fix); scikit-learn's tree 0.817.
    assert!(t.metrics["accuracy"] >= 0.82, "{:?}", t.metrics);
}

/// Issue 14: 100 trees scored 0.945 on digits where scikit-learn's forest scores 0.974
/// (features were drawn once per tree, not per split). 30 trees keep the test quick.
#[test]
fn random_forest_on_digits_is_reproducible() {
    let data = digits();
    let algorithm = Algorithm::RandomForest {
        n_trees: 30,
        max_depth: None,
        feature_proportion: None,
    };
    let t = fit(&data, algorithm.clone());
    // This split: 0.971; scikit-learn's RandomForestClassifier(n_estimators=30) 0.962.
    assert!(t.metrics["accuracy"] >= 0.955, "{:?}", t.metrics);
    assert_eq!(t.pipeline, fit(&data, algorithm).pipeline);
}

/// Runs stored before issue 14 still read: elastic net's `penalty` is now `alpha` (the same
/// quantity, scikit-learn's name), a forest's `feature_proportion` a number or none.
#[test]
fn stored_specs_from_before_the_renames_still_read() {
    let old: Algorithm =
        serde_json::from_str(r#"{"algorithm":"elastic_net","penalty":0.1,"l1_ratio":0.0}"#)
            .unwrap();
    assert_eq!(
        old,
        Algorithm::ElasticNet {
            alpha: Some(0.1),
            l1_ratio: 0.0
        }
    );
    let forest: Algorithm = serde_json::from_str(
        r#"{"algorithm":"random_forest","n_trees":20,"max_depth":6,"feature_proportion":0.7}"#,
    )
    .unwrap();
    assert_eq!(
        forest,
        Algorithm::RandomForest {
            n_trees: 20,
            max_depth: Some(6),
            feature_proportion: Some(0.7)
        }
    );
    assert_eq!(wasmops_trainer::max_features(None, 64), 8);
    assert_eq!(wasmops_trainer::max_features(Some(0.7), 20), 14);
    assert_eq!(wasmops_trainer::max_features(Some(0.01), 20), 1);
}

/// Issue 14 (speed): trees are grown on histograms; features with more than 255 distinct
/// values (all 20 here: continuous) are binned by quantiles, so split candidates are bin
/// boundaries instead of every value. Quality stays scikit-learn's (exact search) on the same
/// split, and the same seed gives the same forest.
#[test]
fn trees_on_binned_continuous_features() {
    let data = datasets::synthetic(5000, 20, 42);
    let tree = fit(&data, Algorithm::DecisionTree { max_depth: Some(8) });
    // This split: 0.8896; DecisionTreeClassifier(max_depth=8) 0.8944.
    assert!(tree.metrics["accuracy"] >= 0.88, "{:?}", tree.metrics);
    let algorithm = Algorithm::RandomForest {
        n_trees: 20,
        max_depth: Some(8),
        feature_proportion: Some(0.7),
    };
    let forest = fit(&data, algorithm.clone());
    // This split: 0.9448; RandomForestClassifier(n_estimators=20, max_depth=8,
    // max_features=0.7) 0.9344 (random_state 0) and 0.9360 (1).
    assert!(forest.metrics["accuracy"] >= 0.935, "{:?}", forest.metrics);
    assert_eq!(forest.pipeline, fit(&data, algorithm).pipeline);
}

/// Issue 14 (speed): k-means is the trainer's own (greedy k-means++, blockwise Lloyd,
/// scikit-learn's tolerance). Held-out inertia as scikit-learn's on the same split, and the
/// same seed gives the same centroids and curve.
#[test]
fn kmeans_on_digits_is_reproducible() {
    let data = digits();
    let algorithm = Algorithm::KMeans {
        k: 10,
        max_iterations: 300,
    };
    let t = fit(&data, algorithm.clone());
    // This split: 304,321; KMeans(n_clusters=10, n_init=10, max_iter=300) 306,656
    // (random_state 0) and 304,200 (1).
    assert!(t.metrics["inertia"] <= 307_000.0, "{:?}", t.metrics);
    let again = fit(&data, algorithm);
    assert_eq!(t.pipeline, again.pipeline);
    assert_eq!(t.curves, again.curves);
}
