//! Training, as run inside the worker: a request in, a tracked [`Run`] out (through
//! `wasmops_trainer::run::train`, which the `wasmops` CLI runs too).

use wasmops_shared::dataset::Dataset;
use wasmops_trainer::datasets;
use wasmops_trainer::run::RunStart;

use crate::protocol::TrainRequest;
use crate::run::{Run, RunLogLine, CODE_VERSION};

pub use wasmops_trainer::run::params_of;

/// Trains a run on `data` (the request's imported dataset, or the one the worker `kept` from
/// an earlier request; `None`: the built-in the request names). `progress(stage, fraction)`
/// reports what is happening; each stage also goes into the run's log with its time, so a run
/// says where its duration went.
pub fn train(
    req: &TrainRequest,
    data: Option<&Dataset>,
    kept: bool,
    mut progress: impl FnMut(&str, f64),
    now_ms: impl Fn() -> f64,
) -> Result<Run, String> {
    progress("loading dataset", 0.05);
    let builtin;
    let data = match data {
        Some(d) => d,
        None => {
            builtin = datasets::builtin(&req.dataset)?;
            &builtin
        }
    };
    let imported = req.dataset.starts_with("csv:");
    // What the page noted first (k-means runs spread over workers), then the worker's lines.
    let mut log = req.log.clone();
    log.push(RunLogLine {
        t_ms: now_ms() - req.started_at_ms,
        message: format!(
            "worker has the dataset `{}`: {} rows x {} features ({})",
            data.name,
            data.n_rows(),
            data.n_features(),
            match (imported, kept) {
                (false, _) => "built-in",
                (true, false) => "imported",
                (true, true) => "imported, kept by the worker from an earlier run",
            }
        ),
    });
    // An imported dataset is chosen by its content hash (computed at import by the same
    // function); only built-ins are hashed here.
    let dataset_hash = match req.dataset.strip_prefix("csv:") {
        Some(h) => h.to_string(),
        None => data.content_hash(),
    };
    let start = RunStart {
        id: req.run_id.clone(),
        name: req.run_name.clone(),
        started_at_ms: req.started_at_ms,
        code_version: CODE_VERSION.to_string(),
        dataset_hash,
    };
    let done = wasmops_trainer::Done {
        kmeans_runs: match req.kmeans_done.is_empty() {
            true => None,
            false => Some(
                req.kmeans_done
                    .iter()
                    .cloned()
                    .map(crate::protocol::KMeansRun::into_fit)
                    .collect::<Result<_, _>>()?,
            ),
        },
    };
    wasmops_trainer::run::train_with(start, data, &req.spec, log, progress, now_ms, done)
}
