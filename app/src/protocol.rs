//! Messages between the page and the training worker: JSON, with the big numeric arrays sent
//! beside it as transferred `Float64Array`s ([`Envelope`]).
//!
//! JSON rather than structured clone or bincode for the rest: the types are plain serde,
//! internally tagged enums work, and f64 values survive exactly (serde_json has
//! `float_roundtrip`).

use serde::{Deserialize, Serialize};
use wasmops_trainer::TrainSpec;

use crate::run::Run;

/// Page -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRequest {
    pub run_id: String,
    pub run_name: String,
    /// Built-in dataset name (see `wasmops_trainer::datasets::BUILTIN`), used when `data` is
    /// `None`.
    pub dataset: String,
    /// An imported dataset, sent along (the worker has no access to the page's state).
    pub data: Option<wasmops_shared::dataset::Dataset>,
    pub spec: TrainSpec,
    pub started_at_ms: f64,
    /// A part of a job, not a run: fit only these k-means runs (of
    /// `wasmops_trainer::KMEANS_RUNS`) and answer [`WorkerMessage::KMeansRuns`]. The page
    /// spreads a k-means job's runs over several workers this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kmeans_runs: Option<Vec<usize>>,
    /// The job with every k-means run already done (by the workers above).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kmeans_done: Vec<KMeansRun>,
    /// Lines the page adds to the run's log (where the parts of the job ran).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<crate::run::RunLogLine>,
}

/// One k-means run as a worker sends it back (`wasmops_trainer::kmeans::KMeansFit`; f64 values
/// survive JSON exactly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansRun {
    pub run: usize,
    pub centroids: Vec<Vec<f64>>,
    pub inertia: f64,
    pub curve: Vec<(u64, f64)>,
}

impl KMeansRun {
    pub fn of(run: usize, fit: &wasmops_trainer::kmeans::KMeansFit) -> KMeansRun {
        KMeansRun {
            run,
            centroids: fit
                .centroids
                .rows()
                .into_iter()
                .map(|r| r.to_vec())
                .collect(),
            inertia: fit.inertia,
            curve: fit.curve.clone(),
        }
    }

    pub fn into_fit(self) -> Result<(usize, wasmops_trainer::kmeans::KMeansFit), String> {
        let fit =
            wasmops_trainer::kmeans::KMeansFit::from_rows(self.centroids, self.inertia, self.curve)
                .map_err(|e| format!("k-means run {}: {e}", self.run))?;
        Ok((self.run, fit))
    }
}

/// Worker -> page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// The worker's wasm is loaded; messages posted before this would be lost.
    Ready,
    Progress {
        stage: String,
        fraction: f64,
    },
    Done {
        run: Box<Run>,
    },
    Failed {
        error: String,
    },
    /// The k-means runs a request asked for ([`TrainRequest::kmeans_runs`]).
    KMeansRuns {
        runs: Vec<KMeansRun>,
    },
}

/// A message as posted between page and worker: the JSON text, with the big numeric arrays
/// (a dataset's values, a run's held-out rows) moved out of it and sent alongside as
/// `Float64Array`s whose buffers are transferred, not copied. Text JSON of 2,000,000 values
/// took about a second each way; a transfer is a pointer move, and f64 bits are kept exactly.
pub struct Envelope {
    pub json: String,
    pub arrays: Vec<Vec<f64>>,
}

impl Envelope {
    /// The object to post, and the list of buffers to transfer with it.
    pub fn to_js(&self) -> (wasm_bindgen::JsValue, js_sys::Array) {
        let object = js_sys::Object::new();
        let arrays = js_sys::Array::new();
        let transfer = js_sys::Array::new();
        for a in &self.arrays {
            let typed = js_sys::Float64Array::new_with_length(a.len() as u32);
            typed.copy_from(a);
            transfer.push(&typed.buffer());
            arrays.push(&typed);
        }
        let _ = js_sys::Reflect::set(&object, &"json".into(), &self.json.as_str().into());
        let _ = js_sys::Reflect::set(&object, &"arrays".into(), &arrays);
        (object.into(), transfer)
    }

    pub fn from_js(value: &wasm_bindgen::JsValue) -> Result<Envelope, String> {
        use wasm_bindgen::JsCast;
        let json = js_sys::Reflect::get(value, &"json".into())
            .ok()
            .and_then(|j| j.as_string())
            .ok_or("message without its JSON part")?;
        let arrays = js_sys::Reflect::get(value, &"arrays".into())
            .ok()
            .and_then(|a| a.dyn_into::<js_sys::Array>().ok())
            .ok_or("message without its arrays")?;
        let arrays = arrays
            .iter()
            .map(|a| {
                a.dyn_into::<js_sys::Float64Array>()
                    .map(|t| t.to_vec())
                    .map_err(|_| "an array of the message is not a Float64Array".to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(Envelope { json, arrays })
    }
}

impl TrainRequest {
    /// A copy without the dataset's values (for a worker that holds them).
    pub fn clone_without_data(&self) -> TrainRequest {
        TrainRequest {
            run_id: self.run_id.clone(),
            run_name: self.run_name.clone(),
            dataset: self.dataset.clone(),
            data: None,
            spec: self.spec.clone(),
            started_at_ms: self.started_at_ms,
            kmeans_runs: self.kmeans_runs.clone(),
            kmeans_done: self.kmeans_done.clone(),
            log: self.log.clone(),
        }
    }

    /// Moves the dataset's values out of the JSON (see [`Envelope`]).
    pub fn into_envelope(mut self) -> Result<Envelope, String> {
        let arrays = match &mut self.data {
            Some(d) => vec![std::mem::take(&mut d.x), std::mem::take(&mut d.y)],
            None => Vec::new(),
        };
        let json = serde_json::to_string(&self).map_err(|e| e.to_string())?;
        Ok(Envelope { json, arrays })
    }

    pub fn from_envelope(e: Envelope) -> Result<TrainRequest, String> {
        let mut req: TrainRequest = serde_json::from_str(&e.json)
            .map_err(|e| format!("malformed training request: {e}"))?;
        if let Some(d) = &mut req.data {
            let [x, y]: [Vec<f64>; 2] = e
                .arrays
                .try_into()
                .map_err(|_| "training request: dataset values missing".to_string())?;
            if x.len() != y.len() * d.feature_names.len() {
                return Err(format!(
                    "training request: {} values for {} rows of {} features",
                    x.len(),
                    y.len(),
                    d.feature_names.len()
                ));
            }
            (d.x, d.y) = (x, y);
        }
        Ok(req)
    }
}

impl WorkerMessage {
    /// Moves a finished run's held-out rows out of the JSON (see [`Envelope`]).
    pub fn into_envelope(mut self) -> Envelope {
        let arrays = match &mut self {
            WorkerMessage::Done { run } => {
                vec![
                    std::mem::take(&mut run.test_x),
                    std::mem::take(&mut run.test_y),
                ]
            }
            _ => Vec::new(),
        };
        let json = serde_json::to_string(&self).expect("worker messages serialize");
        Envelope { json, arrays }
    }

    pub fn from_envelope(e: Envelope) -> Result<WorkerMessage, String> {
        let mut msg: WorkerMessage = serde_json::from_str(&e.json)
            .map_err(|e| format!("unreadable message from the training worker: {e}"))?;
        if let WorkerMessage::Done { run } = &mut msg {
            let [x, y]: [Vec<f64>; 2] = e
                .arrays
                .try_into()
                .map_err(|_| "the finished run came without its held-out rows".to_string())?;
            (run.test_x, run.test_y) = (x, y);
        }
        Ok(msg)
    }
}
