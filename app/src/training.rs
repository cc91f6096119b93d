//! Training, as run inside the worker: a request in, a tracked [`Run`] out (through
//! `wasmops_trainer::run::train`, which the `wasmops` CLI runs too).

use wasmops_trainer::datasets;
use wasmops_trainer::run::RunStart;

use crate::protocol::TrainRequest;
use crate::run::{Run, RunLogLine, CODE_VERSION};

pub use wasmops_trainer::run::params_of;

/// Trains a run. `progress(stage, fraction)` reports what is happening; each stage also goes
/// into the run's log with its time, so a run says where its duration went.
pub fn train(
    req: &TrainRequest,
    mut progress: impl FnMut(&str, f64),
    now_ms: impl Fn() -> f64,
) -> Result<Run, String> {
    progress("loading dataset", 0.05);
    let data = match &req.data {
        Some(d) => d.clone(),
        None => datasets::builtin(&req.dataset)?,
    };
    let log = vec![RunLogLine {
        t_ms: now_ms() - req.started_at_ms,
        message: format!(
            "worker has the dataset `{}`: {} rows x {} features ({})",
            data.name,
            data.n_rows(),
            data.n_features(),
            if req.data.is_some() {
                "imported"
            } else {
                "built-in"
            }
        ),
    }];
    // An imported dataset is chosen by its content hash (computed at import by the same
    // function); only built-ins are hashed here.
    let dataset_hash = match (req.dataset.strip_prefix("csv:"), &req.data) {
        (Some(h), Some(_)) => h.to_string(),
        _ => data.content_hash(),
    };
    let start = RunStart {
        id: req.run_id.clone(),
        name: req.run_name.clone(),
        started_at_ms: req.started_at_ms,
        code_version: CODE_VERSION.to_string(),
        dataset_hash,
    };
    wasmops_trainer::run::train(start, &data, &req.spec, log, progress, now_ms)
}
