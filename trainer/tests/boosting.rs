//! Histogram gradient boosting (issue 14): quality floors on fixed seeds next to scikit-learn's
//! `HistGradientBoostingClassifier`/`Regressor` on the same split (`docs/benchmarks.md`,
//! "Training quality against scikit-learn"), reproducibility, the pipeline against the fit's
//! own predictions, early stopping and its curves.

mod common;

use common::{digits, module_bytes};
use wasmops_shared::dataset::Dataset;
use wasmops_shared::module::ModuleInfo;
use wasmops_shared::pipeline::Model;
use wasmops_shared::reference;
use wasmops_trainer::boosting::{self, EarlyStopping, Params};
use wasmops_trainer::{datasets, train, Algorithm, TrainSpec, Trained};

fn spec(algorithm: Algorithm) -> TrainSpec {
    TrainSpec {
        algorithm,
        scale: false,
        test_fraction: 0.25,
        seed: 7,
    }
}

fn fit(data: &Dataset, algorithm: Algorithm) -> Trained {
    train(data, &spec(algorithm.clone()), |_, _| {})
        .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"))
}

/// Red wine quality as a binary task: quality 6 or better (classes 3.. of the built-in's six).
fn good_wine() -> Dataset {
    let mut data = datasets::builtin("winequality").unwrap();
    for y in &mut data.y {
        *y = f64::from(u8::from(*y >= 3.0));
    }
    data.class_names = vec!["below 6".into(), "6 or better".into()];
    data
}

/// The pipeline's class (or value) for every held-out row is the fit's own, bit for bit.
fn agrees_with_its_fit(t: &Trained, data: &Dataset) {
    let o = t.pipeline.n_outputs();
    let outputs = reference::predict(&t.pipeline, &t.test_x);
    for (i, (row, want)) in outputs.chunks(o).zip(&t.linfa_test_predictions).enumerate() {
        assert_eq!(row[0].to_bits(), want.to_bits(), "held-out row {i}");
    }
    // The run's metrics come from the scores the fit summed: the same bits as the reference
    // walking every tree.
    let metrics = wasmops_shared::metrics::evaluate(&t.pipeline, &t.test_x, &outputs, &t.test_y);
    assert_eq!(metrics.len(), t.metrics.len());
    for (name, v) in &metrics {
        assert_eq!(v.to_bits(), t.metrics[name].to_bits(), "{name}");
    }
    assert_eq!(
        reference::predict_from_scores(&t.pipeline, &[]).map(|o| o.len()),
        Some(0)
    );
    // The module loads (every section checked); `shared/tests/compiler.rs` shows boosted
    // modules equal the reference in wasmtime, and the e2e suite on a device.
    let info = ModuleInfo::parse(&module_bytes(t, data)).unwrap();
    assert_eq!(info.card.kind, "gradient_boosting");
}

fn boosting(params: Params, classifier: bool) -> Algorithm {
    if classifier {
        Algorithm::GradientBoostingClassifier(params)
    } else {
        Algorithm::GradientBoostingRegressor(params)
    }
}

#[test]
fn boosting_on_digits_is_reproducible() {
    let data = digits();
    let algorithm = boosting(Params::default(), true);
    let t = fit(&data, algorithm.clone());
    // This split: 0.9666 (0.9644 before gradients and hessians were kept in f32, as
    // scikit-learn keeps them); scikit-learn's HistGradientBoostingClassifier() 0.9688.
    assert!(t.metrics["accuracy"] >= 0.955, "{:?}", t.metrics);
    let Model::GradientBoosting {
        trees, baseline, ..
    } = &t.pipeline.model
    else {
        panic!("{:?}", t.pipeline.model.kind())
    };
    // 1,347 training rows: no early stopping (auto), every iteration, one tree per class.
    assert_eq!((trees.len(), baseline.len()), (100 * 10, 10));
    assert!(!t.curves.contains_key("validation_log_loss"));
    assert_eq!(t.curves["train_log_loss"].len(), 101);
    agrees_with_its_fit(&t, &data);
    let again = fit(&data, algorithm);
    assert_eq!(t.pipeline, again.pipeline);
    assert_eq!(module_bytes(&t, &data), module_bytes(&again, &data));
}

#[test]
fn boosting_on_diabetes() {
    let data = datasets::builtin("diabetes").unwrap();
    let t = fit(&data, boosting(Params::default(), false));
    // This split: 0.3981; HistGradientBoostingRegressor() 0.3957.
    assert!(t.metrics["r2"] >= 0.38, "{:?}", t.metrics);
    assert!(t.class_names.is_empty());
    assert!(t.curves.contains_key("train_mse") && t.curves.contains_key("test_mse"));
    agrees_with_its_fit(&t, &data);
}

#[test]
fn boosting_on_good_wine_binary() {
    let data = good_wine();
    let t = fit(&data, boosting(Params::default(), true));
    // This split: 0.7945 (ROC AUC 0.8813); HistGradientBoostingClassifier() 0.7920.
    assert!(t.metrics["accuracy"] >= 0.785, "{:?}", t.metrics);
    assert!(t.metrics["roc_auc"] >= 0.87, "{:?}", t.metrics);
    let Model::GradientBoosting {
        trees,
        baseline,
        n_classes,
    } = &t.pipeline.model
    else {
        panic!()
    };
    assert_eq!((trees.len(), baseline.len(), *n_classes), (100, 1, Some(2)));
    agrees_with_its_fit(&t, &data);
}

/// With early stopping on, a tenth of the training rows is held out, its loss is a curve, and
/// a fit that overfits stops before `max_iter` (keeping every iteration it fitted, as
/// scikit-learn does).
#[test]
fn early_stopping_stops_on_the_validation_loss() {
    let data = good_wine();
    let params = Params {
        learning_rate: 0.5,
        max_iter: 300,
        early_stopping: EarlyStopping::On,
        ..Params::default()
    };
    let t = fit(&data, boosting(params.clone(), true));
    let val = &t.curves["validation_log_loss"];
    let n_iter = t.chosen_params["n_iter"] as usize;
    assert!(n_iter < 300, "did not stop: {n_iter}");
    assert_eq!(val.len(), n_iter + 1);
    assert_eq!(t.curves["train_log_loss"].len(), n_iter + 1);
    // It stopped because the last 10 iterations did not beat the one before them.
    let reference = val[val.len() - 11].1;
    assert!(val[val.len() - 10..]
        .iter()
        .all(|(_, l)| *l >= reference - 1e-7));
    let Model::GradientBoosting { trees, .. } = &t.pipeline.model else {
        panic!()
    };
    assert_eq!(trees.len(), n_iter);
    // Same spec, same model.
    assert_eq!(fit(&data, boosting(params, true)).pipeline, t.pipeline);
}

/// `early_stopping: auto` is scikit-learn's: on above 10,000 training rows only.
#[test]
fn early_stopping_auto_turns_on_above_ten_thousand_rows() {
    for (n, on) in [(10_000, false), (10_001, true)] {
        let x: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| (v * 0.01).sin()).collect();
        let params = Params {
            max_iter: 2,
            ..Params::default()
        };
        let f = boosting::fit(&x, n, 1, &y, boosting::Loss::Squared, &params, 1, &[], &[]).unwrap();
        assert_eq!(f.early_stopping, on, "{n} rows");
        assert_eq!(f.curves.contains_key("validation_mse"), on, "{n} rows");
    }
}

/// The Train form's fields are scikit-learn's names; a spec round-trips through its JSON (as
/// runs store it and `wasmops train --spec` reads it), and bad values are refused by name.
#[test]
fn params_round_trip_and_bad_ones_are_named() {
    let algorithm = boosting(
        Params {
            max_leaf_nodes: None,
            max_depth: Some(4),
            early_stopping: EarlyStopping::Off,
            ..Params::default()
        },
        true,
    );
    let json = serde_json::to_value(&algorithm).unwrap();
    assert_eq!(json["algorithm"], "gradient_boosting_classifier");
    assert_eq!(json["early_stopping"], false);
    assert_eq!(json["max_leaf_nodes"], serde_json::Value::Null);
    assert_eq!(
        serde_json::from_value::<Algorithm>(json).unwrap(),
        algorithm
    );
    let spec = serde_json::json!({
        "algorithm": "gradient_boosting_regressor", "learning_rate": 0.1, "max_iter": 100,
        "max_leaf_nodes": 31, "max_depth": null, "min_samples_leaf": 20,
        "l2_regularization": 0.0, "early_stopping": "auto", "validation_fraction": 0.1,
        "n_iter_no_change": 10, "tol": 1e-7
    });
    assert_eq!(
        serde_json::from_value::<Algorithm>(spec).unwrap(),
        boosting(Params::default(), false)
    );
    let bad = boosting(
        Params {
            max_iter: 0,
            ..Params::default()
        },
        false,
    );
    let err = train(
        &datasets::builtin("diabetes").unwrap(),
        &spec_of(bad),
        |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("max_iter"), "{err}");
    // A classifier needs classes, a regressor refuses them.
    let err = train(
        &datasets::builtin("diabetes").unwrap(),
        &spec_of(boosting(Params::default(), true)),
        |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no class target"), "{err}");
}

fn spec_of(algorithm: Algorithm) -> TrainSpec {
    spec(algorithm)
}
