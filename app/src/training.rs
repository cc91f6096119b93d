//! Training, as run inside the worker: a request in, a tracked [`Run`] out.

use std::collections::BTreeMap;

use wasmops_shared::module::DatasetRef;
use wasmops_shared::profile::Profile;
use wasmops_trainer::datasets;

use crate::protocol::TrainRequest;
use crate::run::{Run, RunLogLine, CODE_VERSION};

/// A run's params: the algorithm's hyperparameters, scaling, split and seed.
pub fn params_of(spec: &wasmops_trainer::TrainSpec) -> BTreeMap<String, serde_json::Value> {
    let mut params: BTreeMap<String, serde_json::Value> =
        match serde_json::to_value(&spec.algorithm) {
            Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        };
    params.insert("scale".into(), serde_json::json!(spec.scale));
    params.insert(
        "test_fraction".into(),
        serde_json::json!(spec.test_fraction),
    );
    params.insert("seed".into(), serde_json::json!(spec.seed));
    params
}

/// Trains a run. `progress(stage, fraction)` reports what is happening; each stage also goes
/// into the run's log with its time, so a run says where its duration went.
pub fn train(
    req: &TrainRequest,
    mut progress: impl FnMut(&str, f64),
    now_ms: impl Fn() -> f64,
) -> Result<Run, String> {
    let log = std::cell::RefCell::new(Vec::new());
    let note = |message: String| {
        log.borrow_mut().push(RunLogLine {
            t_ms: now_ms() - req.started_at_ms,
            message,
        })
    };
    progress("loading dataset", 0.05);
    let data = match &req.data {
        Some(d) => d.clone(),
        None => datasets::builtin(&req.dataset)?,
    };
    note(format!(
        "worker has the dataset `{}`: {} rows x {} features ({})",
        data.name,
        data.n_rows(),
        data.n_features(),
        if req.data.is_some() {
            "imported"
        } else {
            "built-in"
        }
    ));
    let trained = wasmops_trainer::train(&data, &req.spec, |stage, fraction| {
        note(stage.to_string());
        progress(stage, fraction)
    })
    .map_err(|e| e.to_string())?;
    // An imported dataset is chosen by its content hash (computed at import by the same
    // function); only built-ins are hashed here.
    let hash = match (req.dataset.strip_prefix("csv:"), &req.data) {
        (Some(h), Some(_)) => h.to_string(),
        _ => data.content_hash(),
    };
    let profile = Profile::from_rows(&data.feature_names, &trained.train_x);
    note("training split profiled (for drift); run recorded".into());
    let params = params_of(&req.spec);
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
        profile,
        class_names: trained.class_names,
        params,
        metrics: trained.metrics,
        pipeline: trained.pipeline,
        test_x: trained.test_x,
        test_y: trained.test_y,
        metric_steps: trained.curves,
        feature_importances: trained.importances,
        tags: Vec::new(),
        notes: String::new(),
        archived: false,
        log: log.take(),
    })
}
