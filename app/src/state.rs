//! App-wide reactive state, shared through context (`provide_app_state` / `use_app_state`).

use std::collections::{BTreeMap, BTreeSet};

use leptos::prelude::*;

use crate::logic::dataset_choice::DatasetChoice;
use crate::registry::{Alert, Alias, DeviceStatus, ModelVersion};
use crate::run::RunSummary;
use crate::storage::{DeviceEntry, StoredDataset};

/// The dashboard's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Lab,
    Registry,
    Devices,
    Fleet,
    Automation,
    Logs,
    Settings,
}

/// A run's compiled module and what the browser measured running it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledModule {
    pub run_id: String,
    pub hash: String,
    pub bytes: Vec<u8>,
    pub n_outputs: usize,
    /// Outputs of the module, run in this browser, on the run's held-out rows.
    pub test_outputs: Vec<f64>,
    /// The run's primary metric, recomputed from the module's outputs in this browser.
    pub metric: &'static str,
    pub module_metric: f64,
    pub trained_metric: f64,
    pub conformance_rows: usize,
    /// When this browser compiled it (the module box scrolls into view only when new).
    pub compiled_at_ms: f64,
}

#[derive(Clone, Copy)]
pub struct AppState {
    /// Summaries of the stored runs (the full records stay in IndexedDB until opened).
    pub runs: RwSignal<Vec<RunSummary>>,
    /// While only the newest runs are read (the first screen), how many are stored in all.
    pub runs_pending: RwSignal<Option<usize>>,
    /// Imported datasets (built-ins are not stored).
    pub datasets: RwSignal<Vec<StoredDataset>>,
    pub selected_run: RwSignal<Option<String>>,
    /// The Train panel's dataset (an import chooses it).
    pub train_dataset: RwSignal<DatasetChoice>,
    pub compiled: RwSignal<Option<CompiledModule>>,
    pub page: RwSignal<Page>,
    /// The registry, newest version first.
    pub versions: RwSignal<Vec<ModelVersion>>,
    pub aliases: RwSignal<Vec<Alias>>,
    pub selected_version: RwSignal<Option<String>>,
    pub devices: RwSignal<Vec<DeviceEntry>>,
    /// What each device last told us, by URL.
    pub statuses: RwSignal<BTreeMap<String, DeviceStatus>>,
    pub selected_device: RwSignal<Option<String>>,
    /// Devices a deployment goes to (kept while moving between versions).
    pub deploy_targets: RwSignal<BTreeSet<String>>,
    pub alerts: RwSignal<Vec<Alert>>,
    /// Bumped after each pull, so views of stored telemetry reload.
    pub pulls: RwSignal<u64>,
    /// This session's log lines (see [`crate::logs`]).
    pub logs: RwSignal<Vec<crate::logs::LogLine>>,
    /// A run to train again: dataset, spec, run name.
    pub rerun: RwSignal<Option<(DatasetChoice, wasmops_trainer::TrainSpec, String)>>,
    /// The latest storage failure, shown in the header; never swallowed.
    pub storage_error: RwSignal<Option<String>>,
    /// The MLflow connection, when there is one (see [`crate::mlflow`]).
    pub mlflow: RwSignal<Option<crate::mlflow::Settings>>,
    /// What the server confirmed of each run, by run id.
    pub run_syncs: RwSignal<BTreeMap<String, crate::mlflow::RunSync>>,
    /// Versions on the server this dashboard refused, with why.
    pub remote_versions: RwSignal<Vec<crate::mlflow::RemoteVersion>>,
    pub sync_status: RwSignal<crate::mlflow::SyncStatus>,
}

pub fn provide_app_state() -> AppState {
    let state = AppState {
        runs: RwSignal::new(Vec::new()),
        runs_pending: RwSignal::new(None),
        datasets: RwSignal::new(Vec::new()),
        selected_run: RwSignal::new(None),
        train_dataset: RwSignal::new(DatasetChoice::default()),
        compiled: RwSignal::new(None),
        page: RwSignal::new(Page::Lab),
        versions: RwSignal::new(Vec::new()),
        aliases: RwSignal::new(Vec::new()),
        selected_version: RwSignal::new(None),
        devices: RwSignal::new(Vec::new()),
        statuses: RwSignal::new(BTreeMap::new()),
        selected_device: RwSignal::new(None),
        deploy_targets: RwSignal::new(BTreeSet::new()),
        alerts: RwSignal::new(Vec::new()),
        pulls: RwSignal::new(0),
        logs: RwSignal::new(Vec::new()),
        storage_error: RwSignal::new(None),
        rerun: RwSignal::new(None),
        mlflow: RwSignal::new(None),
        run_syncs: RwSignal::new(BTreeMap::new()),
        remote_versions: RwSignal::new(Vec::new()),
        sync_status: RwSignal::new(Default::default()),
    };
    crate::logs::install(state.logs);
    provide_context(state);
    state
}

pub fn use_app_state() -> AppState {
    expect_context::<AppState>()
}
