//! A tracked training run, as stored in IndexedDB.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmops_shared::module::{DatasetRef, ModelCard};
use wasmops_shared::pipeline::Pipeline;
use wasmops_shared::profile::Profile;

/// The dashboard build that produced a run (git commit, embedded by build.rs).
pub const CODE_VERSION: &str = env!("WASMOPS_CODE_VERSION");

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
    /// Step metrics of iterative fits: name -> (step, value) (see `wasmops_trainer::curves`).
    #[serde(default)]
    pub metric_steps: BTreeMap<String, Vec<(u64, f64)>>,
    /// Trees and forests: permutation importance per feature (drop of the held-out metric).
    #[serde(default)]
    pub feature_importances: Vec<f64>,
    /// Hidden from the runs table unless archived runs are shown; kept otherwise.
    #[serde(default)]
    pub archived: bool,
    /// What the training worker did, with times since the run started (the click on Train).
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

    /// Compiles this run's pipeline into a model module (deterministic bytes).
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
    pub fn spec(&self) -> Result<wasmops_trainer::TrainSpec, String> {
        let mut params = self.params.clone();
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
        let algorithm =
            serde_json::from_value(serde_json::Value::Object(params.into_iter().collect()))
                .map_err(|e| format!("the run's algorithm params: {e}"))?;
        Ok(wasmops_trainer::TrainSpec {
            algorithm,
            scale,
            test_fraction,
            seed,
        })
    }

    /// The metric this run is judged by (accuracy, r2 or inertia) and its value.
    pub fn primary_metric(&self) -> (&'static str, Option<f64>) {
        let name = wasmops_shared::metrics::primary(&self.pipeline);
        (name, self.metrics.get(name).copied())
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

/// The number for a new run's default name (`logistic regression #7`): one more than the
/// highest `#n` any run's name ends with, so a delete never makes a name repeat.
pub fn next_run_number<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names
        .into_iter()
        .filter_map(|name| name.rsplit_once(" #")?.1.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1
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
    /// `finished`, `failed` or `cancelled`. Only finished runs have a full [`Run`] record; the
    /// others are tracked by their summary alone, with what stopped them.
    #[serde(default = "finished")]
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
}

pub const FINISHED: &str = "finished";

fn finished() -> String {
    FINISHED.to_string()
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
            status: finished(),
            error: None,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.status == FINISHED
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
            r.pipeline.validate().map_err(|e| format!("{at}: {e}"))?;
            let d = r.pipeline.n_features;
            if r.feature_names.len() != d || r.test_x.len() != r.test_y.len() * d {
                return Err(format!("{at}: held-out rows do not match its {d} features"));
            }
        }
        Ok(b)
    }
}
