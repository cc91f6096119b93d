//! The tracked run: what training records (spec, dataset, metrics, curves, held-out split), the
//! module compiled from it, and how it goes to MLflow. One definition for the dashboard (its
//! worker trains, its Runs panel compiles, its sync logs) and the headless `wasmops` CLI, so
//! the same spec on the same data with the same code gives the same run and the same module
//! bytes in both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmops_shared::dataset::Dataset;
use wasmops_shared::mlflow::{self as api, Artifact, DatasetInput, Metric, RunRecord, RunStatus};
use wasmops_shared::module::{DatasetRef, ModelCard};
use wasmops_shared::pipeline::Pipeline;
use wasmops_shared::profile::Profile;

use crate::TrainSpec;

/// The build that produced a run (git commit, embedded by build.rs): the dashboard and the CLI
/// built from one commit record the same version, in runs and in module cards.
pub const CODE_VERSION: &str = env!("WASMOPS_CODE_VERSION");

/// The largest whole number a JavaScript number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub name: String,
    pub started_at_ms: f64,
    pub duration_ms: f64,
    pub code_version: String,
    pub dataset: DatasetRef,
    pub feature_names: Vec<String>,
    pub target_name: String,
    pub class_names: Vec<String>,
    pub params: BTreeMap<String, serde_json::Value>,
    pub metrics: BTreeMap<String, f64>,
    pub pipeline: Pipeline,
    /// Profile of the training split (frozen into the module for drift).
    pub profile: Profile,
    /// Held-out split, row-major, with its class indices.
    pub test_x: Vec<f64>,
    pub test_y: Vec<f64>,
    /// Free labels, e.g. `baseline` (filter with `tags = baseline`).
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub notes: String,
    /// Step metrics of iterative fits: name -> (step, value) (see `crate::curves`).
    #[serde(default)]
    pub metric_steps: BTreeMap<String, Vec<(u64, f64)>>,
    /// Trees and forests: permutation importance per feature (drop of the held-out metric).
    #[serde(default)]
    pub feature_importances: Vec<f64>,
    /// Hidden from the runs table unless archived runs are shown; kept otherwise.
    #[serde(default)]
    pub archived: bool,
    /// What training did, with times since the run started.
    #[serde(default)]
    pub log: Vec<RunLogLine>,
}

/// One line of a run's own log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLogLine {
    /// Milliseconds since the run started.
    pub t_ms: f64,
    pub message: String,
}

/// Who started a run, and when: what [`train`] cannot decide itself.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    pub id: String,
    pub name: String,
    pub started_at_ms: f64,
    pub code_version: String,
    /// The dataset's content hash, as its import computed it (`Dataset::content_hash`).
    pub dataset_hash: String,
}

/// Trains `spec` on `data` into a tracked run. `log` holds what the caller already noted;
/// each training stage is added with its time since the start. `progress(stage, fraction)`
/// reports what is happening.
pub fn train(
    start: RunStart,
    data: &Dataset,
    spec: &TrainSpec,
    log: Vec<RunLogLine>,
    progress: impl FnMut(&str, f64),
    now_ms: impl Fn() -> f64,
) -> Result<Run, String> {
    train_with(
        start,
        data,
        spec,
        log,
        progress,
        now_ms,
        crate::Done::default(),
    )
}

/// [`train`], with parts of the fit already `done` (see [`crate::train_with`]).
pub fn train_with(
    start: RunStart,
    data: &Dataset,
    spec: &TrainSpec,
    log: Vec<RunLogLine>,
    mut progress: impl FnMut(&str, f64),
    now_ms: impl Fn() -> f64,
    done: crate::Done,
) -> Result<Run, String> {
    let params = params_of(spec);
    check_params(&params)?;
    let log = std::cell::RefCell::new(log);
    let note = |message: String| {
        log.borrow_mut().push(RunLogLine {
            t_ms: now_ms() - start.started_at_ms,
            message,
        })
    };
    let trained = crate::train_with(
        data,
        spec,
        |stage, fraction| {
            note(stage.to_string());
            progress(stage, fraction)
        },
        done,
    )
    .map_err(|e| e.to_string())?;
    let profile = Profile::from_rows(&data.feature_names, &trained.train_x);
    note("training split profiled (for drift); run recorded".into());
    Ok(Run {
        id: start.id,
        name: start.name,
        started_at_ms: start.started_at_ms,
        duration_ms: now_ms() - start.started_at_ms,
        code_version: start.code_version,
        dataset: DatasetRef {
            name: data.name.clone(),
            hash: start.dataset_hash,
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

/// A run's params: the algorithm's hyperparameters, scaling, split and seed, each as the
/// dashboard's store gives it back ([`as_stored`]).
pub fn params_of(spec: &TrainSpec) -> BTreeMap<String, serde_json::Value> {
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
    params.into_iter().map(|(k, v)| (k, as_stored(v))).collect()
}

/// A JSON value as the dashboard's IndexedDB store gives it back (serde-wasm-bindgen reads a
/// JavaScript number that is a safe integer as an integer): `1.0` becomes `1` and `-0.0`
/// becomes `0`; other numbers stay as they are. Params enter the module's card, so a run must
/// carry them in this form from the start: the tab compiles the stored run, and a fresh run,
/// a stored one and one trained by the CLI must give the same card bytes.
pub fn as_stored(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() <= MAX_SAFE_INTEGER as f64 => {
                Value::from(x as i64)
            }
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(as_stored).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, as_stored(v))).collect()),
        other => other,
    }
}

/// Whole-number params beyond what a JavaScript number holds exactly cannot be stored by the
/// dashboard (nor read back as the same spec): refused before training.
fn check_params(params: &BTreeMap<String, serde_json::Value>) -> Result<(), String> {
    for (key, v) in params {
        let too_big = v.as_u64().is_some_and(|u| u > MAX_SAFE_INTEGER)
            || v.as_i64()
                .is_some_and(|i| i.unsigned_abs() > MAX_SAFE_INTEGER);
        if too_big {
            return Err(format!(
                "{key}: {v} is too large; whole numbers can be at most {MAX_SAFE_INTEGER} \
                 (runs are stored as JavaScript numbers)"
            ));
        }
    }
    Ok(())
}

impl Run {
    /// The model card the compiler writes into this run's module.
    pub fn card(&self) -> ModelCard {
        ModelCard {
            abi_version: wasmops_shared::abi::ABI_VERSION,
            kind: self.pipeline.model.kind().to_string(),
            feature_names: self.feature_names.clone(),
            target_name: self.target_name.clone(),
            classes: self.class_names.clone(),
            outputs: self.pipeline.output_names(&self.class_names),
            dataset: self.dataset.clone(),
            params: self.params.clone(),
            metrics: self.metrics.clone(),
            code_version: self.code_version.clone(),
        }
    }

    /// Compiles this run's pipeline into a model module: a pure function of the pipeline, the
    /// card, the profile and the conformance rows, so deterministic bytes.
    pub fn compile(&self) -> Result<Vec<u8>, wasmops_shared::compiler::CompileError> {
        let d = self.feature_names.len();
        // The first 16 held-out rows become conformance vectors (edge cases are added).
        let rows = &self.test_x[..self.test_x.len().min(16 * d)];
        wasmops_shared::compiler::compile(&wasmops_shared::compiler::CompileInput {
            pipeline: &self.pipeline,
            card: &self.card(),
            profile: &self.profile,
            conformance_rows: rows,
        })
    }

    /// What trained this run, from its params: the same spec trains the same model again.
    pub fn spec(&self) -> Result<TrainSpec, String> {
        spec_of_params(&self.params)
    }

    /// The metric this run is judged by (accuracy, r2 or inertia) and its value.
    pub fn primary_metric(&self) -> (&'static str, Option<f64>) {
        let name = wasmops_shared::metrics::primary(&self.pipeline);
        (name, self.metrics.get(name).copied())
    }
}

/// A spec from a run's params (the algorithm's fields, `scale`, `test_fraction`, `seed`).
pub fn spec_of_params(params: &BTreeMap<String, serde_json::Value>) -> Result<TrainSpec, String> {
    let mut params = params.clone();
    let mut take = |key: &str| {
        params
            .remove(key)
            .ok_or_else(|| format!("the run has no `{key}` param"))
    };
    let scale = take("scale")?
        .as_bool()
        .ok_or("`scale` is not true or false")?;
    let test_fraction = take("test_fraction")?
        .as_f64()
        .ok_or("`test_fraction` is not a number")?;
    let seed = take("seed")?
        .as_u64()
        .ok_or("`seed` is not a whole number")?;
    let algorithm = serde_json::from_value(serde_json::Value::Object(params.into_iter().collect()))
        .map_err(|e| format!("the run's algorithm params: {e}"))?;
    Ok(TrainSpec {
        algorithm,
        scale,
        test_fraction,
        seed,
    })
}

/// What the runs table needs of a run: a few hundred bytes, against the kilobytes of a [`Run`]
/// (which keeps its held-out split, profile and step curves). Stored beside every run in its
/// own store and written in the same transaction, so the table of 10,000 runs never reads the
/// full records; they are read one by one when a run is opened, compared, compiled or exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub name: String,
    pub started_at_ms: f64,
    pub duration_ms: f64,
    pub code_version: String,
    pub dataset: DatasetRef,
    /// The model kind (`logistic`, `decision_tree`, ...).
    pub model: String,
    /// The primary metric's name (see [`Run::primary_metric`]).
    pub metric: String,
    pub params: BTreeMap<String, serde_json::Value>,
    pub metrics: BTreeMap<String, f64>,
    pub tags: Vec<String>,
    pub notes: String,
    pub archived: bool,
    /// Only finished runs have a full [`Run`] record; the others are tracked by their summary
    /// alone, with what stopped them. Summaries stored before there was a status are finished.
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub error: Option<String>,
}

/// How a run ended (JSON, and IndexedDB: `"finished"`, `"failed"`, `"cancelled"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Finished,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RunSummary {
    pub fn of(run: &Run) -> RunSummary {
        RunSummary {
            id: run.id.clone(),
            name: run.name.clone(),
            started_at_ms: run.started_at_ms,
            duration_ms: run.duration_ms,
            code_version: run.code_version.clone(),
            dataset: run.dataset.clone(),
            model: run.pipeline.model.kind().to_string(),
            metric: run.primary_metric().0.to_string(),
            params: run.params.clone(),
            metrics: run.metrics.clone(),
            tags: run.tags.clone(),
            notes: run.notes.clone(),
            archived: run.archived,
            status: Status::Finished,
            error: None,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.status == Status::Finished
    }

    /// What the runs table shows as the model: the algorithm as trained (ridge and elastic net
    /// are both linear models, but not the same choice) and whether features were scaled.
    pub fn model_label(&self) -> String {
        let name = self.algorithm_label();
        let scaled = self.params.get("scale").and_then(|v| v.as_bool()) == Some(true);
        if scaled {
            format!("{name}, scaled")
        } else {
            name
        }
    }

    /// The algorithm as trained, in words (`ridge`, `elastic net`, `k-means`).
    pub fn algorithm_label(&self) -> String {
        let algorithm = self
            .params
            .get("algorithm")
            .and_then(|v| v.as_str())
            .unwrap_or(&self.model);
        match algorithm {
            "elastic_net" if self.params.get("l1_ratio").and_then(|v| v.as_f64()) == Some(0.0) => {
                "ridge".to_string()
            }
            "k_means" | "kmeans" => "k-means".to_string(),
            "gaussian_nb" => "Gaussian NB".to_string(),
            other => other.replace('_', " "),
        }
    }

    /// The primary metric's value, if the run has it.
    pub fn metric_value(&self) -> Option<f64> {
        self.metrics.get(&self.metric).copied()
    }
}

/// A param as text, the same whichever way it was stored: IndexedDB keeps numbers as doubles,
/// so a seed of `42` read back is `42.0`; both are `42` here.
pub fn param_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(x) => format!("{x}"),
            None => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A file of runs, as exported and imported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub version: u32,
    pub runs: Vec<Run>,
}

pub const BUNDLE_FORMAT: &str = "wasmops-runs";
pub const BUNDLE_VERSION: u32 = 1;

impl Bundle {
    pub fn new(runs: Vec<Run>) -> Bundle {
        Bundle {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            runs,
        }
    }

    /// Parses and checks a whole bundle; any problem rejects all of it, naming the run.
    pub fn parse(text: &str) -> Result<Bundle, String> {
        let b: Bundle =
            serde_json::from_str(text).map_err(|e| format!("not a wasmops runs file: {e}"))?;
        if b.format != BUNDLE_FORMAT || b.version != BUNDLE_VERSION {
            return Err(format!(
                "unsupported file: format `{}` version {} (this dashboard reads `{BUNDLE_FORMAT}` version {BUNDLE_VERSION})",
                b.format, b.version
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, r) in b.runs.iter().enumerate() {
            let at = format!("run {} (`{}`)", i + 1, r.id);
            if r.id.is_empty() || !ids.insert(r.id.clone()) {
                return Err(format!("{at}: missing or duplicate id"));
            }
            r.check().map_err(|e| format!("{at}: {e}"))?;
        }
        Ok(b)
    }
}

impl Run {
    /// The checks an imported run must pass: a valid pipeline, held-out rows of its features.
    pub fn check(&self) -> Result<(), String> {
        self.pipeline.validate().map_err(|e| e.to_string())?;
        let d = self.pipeline.n_features;
        if self.feature_names.len() != d || self.test_x.len() != self.test_y.len() * d {
            return Err(format!("held-out rows do not match its {d} features"));
        }
        Ok(())
    }
}

/// A module among a run's artifacts, by content hash.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModuleFile<'a> {
    pub hash: &'a str,
    pub bytes: &'a [u8],
    /// Its detached signature document (`wasmops_shared::signature`), if it is signed.
    pub signature: Option<&'a str>,
}

/// Where a module goes among its run's artifacts: `model/<sha256>/model.wasm`.
pub fn module_path(hash: &str) -> String {
    format!("{}/{hash}/{}", api::MODEL_DIR, api::MODULE_FILE)
}

/// Where a module's detached signature goes: `model/<sha256>/model.wasm.sig`, beside it.
pub fn signature_path(hash: &str) -> String {
    format!(
        "{}/{hash}/{}",
        api::MODEL_DIR,
        wasmops_shared::signature::ARTIFACT
    )
}

/// The run as MLflow should have it, and the parts kept elsewhere than MLflow would put them.
/// `source` names what logged it (`mlflow.source.name`: `wasmops dashboard`, `wasmops cli`).
pub fn mlflow_record(
    s: &RunSummary,
    run: Option<&Run>,
    modules: &[ModuleFile<'_>],
    source: &str,
) -> (RunRecord, Vec<String>) {
    let status = match s.status {
        Status::Finished => RunStatus::Finished,
        Status::Cancelled => RunStatus::Killed,
        Status::Failed => RunStatus::Failed,
    };
    let start_ms = s.started_at_ms as i64;
    let end_ms = (s.started_at_ms + s.duration_ms) as i64;
    let mut metrics = Vec::new();
    let mut last_step = BTreeMap::new();
    if let Some(run) = run {
        for (key, curve) in &run.metric_steps {
            for &(step, value) in curve {
                metrics.push(Metric {
                    key: key.clone(),
                    value,
                    timestamp_ms: start_ms,
                    step: step as i64,
                });
            }
            if let Some(&(step, _)) = curve.last() {
                last_step.insert(key.clone(), step as i64);
            }
        }
    }
    // The final value at the curve's last step and the run's end: MLflow shows it as latest.
    for (key, &value) in &s.metrics {
        metrics.push(Metric {
            key: key.clone(),
            value,
            timestamp_ms: end_ms,
            step: last_step.get(key).copied().unwrap_or(0),
        });
    }
    let mut warnings = Vec::new();
    let mut tags = BTreeMap::from([
        ("mlflow.source.name".to_string(), source.to_string()),
        (
            "mlflow.source.git.commit".to_string(),
            s.code_version.clone(),
        ),
        ("wasmops.status".to_string(), s.status.to_string()),
        ("wasmops.model".to_string(), s.model.clone()),
    ]);
    if !s.notes.is_empty() {
        tags.insert("mlflow.note.content".into(), s.notes.clone());
    }
    if !s.tags.is_empty() {
        tags.insert("wasmops.labels".into(), s.tags.join(", "));
    }
    for label in &s.tags {
        match api::check_key("tag", label) {
            Ok(()) => {
                tags.insert(label.clone(), "true".into());
            }
            Err(why) => warnings.push(format!("{why}: kept in `wasmops.labels` only")),
        }
    }
    if s.archived {
        tags.insert("wasmops.archived".into(), "true".into());
    }
    if let Some(e) = &s.error {
        tags.insert("wasmops.error".into(), e.clone());
    }
    let dataset = Some(DatasetInput {
        name: s.dataset.name.clone(),
        hash: s.dataset.hash.clone(),
        n_rows: s.dataset.n_rows,
        features: run.map(|r| r.feature_names.clone()).unwrap_or_default(),
        target: run.map(|r| r.target_name.clone()).unwrap_or_default(),
    })
    .filter(|d| !d.hash.is_empty());
    let mut artifacts = Vec::new();
    if let Some(run) = run {
        let json = |v: serde_json::Result<String>| v.unwrap_or_default().into_bytes();
        artifacts.push(Artifact {
            path: format!("{}/card.json", api::MODEL_DIR),
            bytes: json(serde_json::to_string_pretty(&run.card())),
        });
        artifacts.push(Artifact {
            path: format!("{}/profile.json", api::MODEL_DIR),
            bytes: json(serde_json::to_string_pretty(&run.profile)),
        });
    }
    // Content-addressed: a run compiled again by a newer build keeps both modules, and each
    // registered version's source stays the bytes its hash names.
    for m in modules {
        artifacts.push(Artifact {
            path: module_path(m.hash),
            bytes: m.bytes.to_vec(),
        });
        // The detached signature beside it: devices that follow an alias verify it.
        if let Some(sig) = m.signature {
            artifacts.push(Artifact {
                path: signature_path(m.hash),
                bytes: sig.as_bytes().to_vec(),
            });
        }
    }
    let record = RunRecord {
        client_id: s.id.clone(),
        name: s.name.clone(),
        status,
        start_ms,
        end_ms,
        params: s
            .params
            .iter()
            .map(|(k, v)| (k.clone(), param_text(v)))
            .collect(),
        metrics,
        tags,
        dataset,
        artifacts,
    };
    (record, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_kept_as_the_dashboard_store_reads_them_back() {
        assert_eq!(as_stored(json!(1.0)).to_string(), "1");
        assert_eq!(as_stored(json!(-0.0)).to_string(), "0");
        assert_eq!(as_stored(json!(0.25)).to_string(), "0.25");
        assert_eq!(as_stored(json!(42)).to_string(), "42");
        assert_eq!(
            as_stored(json!(1e300)).to_string(),
            json!(1e300).to_string()
        );
        assert_eq!(as_stored(json!(null)), json!(null));
        let spec = TrainSpec {
            algorithm: crate::Algorithm::Ridge { alpha: 1.0 },
            scale: true,
            test_fraction: 0.2,
            seed: 7,
        };
        let params = params_of(&spec);
        assert_eq!(params["alpha"].to_string(), "1");
        // Still the same spec.
        assert_eq!(spec_of_params(&params).unwrap(), spec);
    }

    #[test]
    fn a_seed_beyond_what_the_dashboard_can_store_is_refused() {
        let spec = TrainSpec {
            algorithm: crate::Algorithm::GaussianNb,
            scale: false,
            test_fraction: 0.2,
            seed: MAX_SAFE_INTEGER + 1,
        };
        let err = check_params(&params_of(&spec)).unwrap_err();
        assert!(
            err.starts_with("seed: 9007199254740992 is too large"),
            "{err}"
        );
        let ok = TrainSpec {
            seed: MAX_SAFE_INTEGER,
            ..spec
        };
        assert!(check_params(&params_of(&ok)).is_ok());
    }
}
