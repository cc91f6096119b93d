//! App-wide reactive state, shared through context (`provide_app_state` / `use_app_state`).

use leptos::prelude::*;
use wasmops_shared::wire::Telemetry;

use crate::run::Run;
use crate::storage::DeviceEntry;

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
}

#[derive(Clone, Copy)]
pub struct AppState {
    pub runs: RwSignal<Vec<Run>>,
    pub selected_run: RwSignal<Option<String>>,
    pub compiled: RwSignal<Option<CompiledModule>>,
    pub device: RwSignal<Option<DeviceEntry>>,
    pub telemetry: RwSignal<Option<Telemetry>>,
    /// The latest storage failure, shown in the header; never swallowed.
    pub storage_error: RwSignal<Option<String>>,
}

pub fn provide_app_state() -> AppState {
    let state = AppState {
        runs: RwSignal::new(Vec::new()),
        selected_run: RwSignal::new(None),
        compiled: RwSignal::new(None),
        device: RwSignal::new(None),
        telemetry: RwSignal::new(None),
        storage_error: RwSignal::new(None),
    };
    provide_context(state);
    state
}

pub fn use_app_state() -> AppState {
    expect_context::<AppState>()
}
