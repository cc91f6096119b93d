//! Training, as run inside the worker: load a built-in dataset, split it with a seed, fit with
//! linfa, and turn the fitted model into a plain [`Pipeline`].

use std::collections::BTreeMap;

use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use wasmops_shared::dataset::Dataset;
use wasmops_shared::module::DatasetRef;
use wasmops_shared::pipeline::{Model, Pipeline};
use wasmops_shared::profile::Profile;

use crate::protocol::TrainRequest;
use crate::run::{Run, CODE_VERSION};

/// Loads a built-in dataset by name.
pub fn builtin(name: &str) -> Result<Dataset, String> {
    match name {
        "iris" => {
            let ds = linfa_datasets::iris();
            Ok(Dataset {
                name: "iris".into(),
                feature_names: ds.feature_names().to_vec(),
                target_name: "species".into(),
                class_names: vec!["setosa".into(), "versicolor".into(), "virginica".into()],
                x: ds.records().iter().copied().collect(),
                y: ds.targets().iter().map(|c| *c as f64).collect(),
            })
        }
        other => Err(format!(
            "unknown built-in dataset `{other}` (available: iris)"
        )),
    }
}

/// Trains a run. `progress(stage, fraction)` reports what is happening.
pub fn train(
    req: &TrainRequest,
    mut progress: impl FnMut(&str, f64),
    now_ms: impl Fn() -> f64,
) -> Result<Run, String> {
    req.params.validate()?;
    progress("loading dataset", 0.1);
    let data = builtin(&req.dataset)?;
    let hash = data.content_hash();
    let d = data.n_features();

    progress("splitting", 0.2);
    let records = ndarray::Array2::from_shape_vec((data.n_rows(), d), data.x.clone())
        .map_err(|e| e.to_string())?;
    let targets = ndarray::Array1::from_iter(data.y.iter().map(|v| *v as usize));
    let mut rng = Xoshiro256Plus::seed_from_u64(req.params.seed);
    let (train, test) = linfa::Dataset::new(records, targets)
        .shuffle(&mut rng)
        .split_with_ratio((1.0 - req.params.test_fraction) as f32);

    progress("fitting multinomial logistic regression", 0.3);
    let model = MultiLogisticRegression::default()
        .alpha(req.params.alpha)
        .max_iterations(req.params.max_iterations)
        .fit(&train)
        .map_err(|e| format!("training failed: {e}"))?;

    progress("evaluating on the held-out split", 0.9);
    let predicted = model.predict(test.records());
    let hits = predicted
        .iter()
        .zip(test.targets().iter())
        .filter(|(p, y)| p == y)
        .count();
    let accuracy = hits as f64 / test.nsamples().max(1) as f64;

    let classes = model.classes();
    let params = model.params();
    let pipeline = Pipeline {
        n_features: d,
        scaler: None,
        model: Model::LogisticRegression {
            weights: (0..classes.len())
                .map(|c| params.column(c).to_vec())
                .collect(),
            intercepts: model.intercept().to_vec(),
        },
    };
    let class_names = classes
        .iter()
        .map(|c| {
            data.class_names
                .get(*c)
                .cloned()
                .unwrap_or_else(|| c.to_string())
        })
        .collect();
    // The module's class index c means linfa's classes[c]; tests compare against that index.
    let index_of = |label: usize| {
        classes
            .iter()
            .position(|c| *c == label)
            .unwrap_or(usize::MAX) as f64
    };

    let train_x: Vec<f64> = train.records().iter().copied().collect();
    let mut metrics = BTreeMap::new();
    metrics.insert("accuracy".to_string(), accuracy);
    let mut run_params = BTreeMap::new();
    run_params.insert(
        "model".to_string(),
        serde_json::json!("logistic_regression"),
    );
    run_params.insert("alpha".to_string(), serde_json::json!(req.params.alpha));
    run_params.insert(
        "max_iterations".to_string(),
        serde_json::json!(req.params.max_iterations),
    );
    run_params.insert(
        "test_fraction".to_string(),
        serde_json::json!(req.params.test_fraction),
    );
    run_params.insert("seed".to_string(), serde_json::json!(req.params.seed));

    progress("done", 1.0);
    Ok(Run {
        id: req.run_id.clone(),
        name: req.run_name.clone(),
        started_at_ms: req.started_at_ms,
        duration_ms: now_ms() - req.started_at_ms,
        code_version: CODE_VERSION.to_string(),
        dataset: DatasetRef {
            name: data.name.clone(),
            hash,
            n_rows: data.n_rows(),
        },
        feature_names: data.feature_names.clone(),
        target_name: data.target_name.clone(),
        class_names,
        params: run_params,
        metrics,
        pipeline,
        profile: Profile::from_rows(&data.feature_names, &train_x),
        test_x: test.records().iter().copied().collect(),
        test_y: test.targets().iter().map(|c| index_of(*c)).collect(),
    })
}
