//! The wasmops dashboard (leptos CSR).
//!
//! # Layout
//! - [`App`] and the page frame with its three pages: the lab (data, train, runs panels), the
//!   registry and the devices; [`panels`]: one file per panel or page.
//! - [`state`]: app-wide signals in context.
//! - [`training`] (worker side) and [`worker_client`] (page side) with [`protocol`] between
//!   them; the worker binary is `src/bin/train_worker.rs`.
//! - [`storage`]: IndexedDB; [`run`]: the tracked run record; [`registry`]: model versions,
//!   aliases, device status, telemetry windows, deployments and alerts as stored.
//! - [`fleet`]: deploy, roll back and pull telemetry from devices.
//! - [`automation`]: the unattended loop (rules, gate, rollout plans) run by this tab; its
//!   page is `panels/automation.rs`.
//! - [`mlflow`]: the MLflow connection and the sync of runs and the registry (Settings page).
//! - [`module_runner`]: model modules through the browser's WebAssembly API;
//!   [`device_client`]: the device HTTP API.
//!
//! `main.rs` only mounts [`App`].

pub mod automation;
pub mod charts;
pub mod device_client;
pub mod fleet;
pub mod logic;
pub mod logs;
pub mod mlflow;
pub mod module_runner;
pub mod panels;
pub mod protocol;
pub mod registry;
pub mod run;
pub mod signing;
pub mod state;
pub mod storage;
pub mod tabs;
pub mod training;
pub mod worker_client;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::state::Page;
use crate::storage::{DeviceEntry, Storage};

#[component]
pub fn App() -> impl IntoView {
    let state = state::provide_app_state();
    // Lines at info and above outlive the session: the log hands them to IndexedDB here, so
    // `logs` needs no storage and `storage` no log.
    logs::persist_with(store_log_line);
    automation::start(state);
    // Datasets and devices another tab of the dashboard stored (the automation running in this
    // tab retrains on them and deploys to them).
    tabs::listen(move |m| match m {
        tabs::TabMessage::Datasets => spawn_local(async move {
            match async { Storage::open().await?.datasets().await }.await {
                Ok(d) => state.datasets.set(d),
                Err(e) => logs::warn("storage", format!("datasets not read again: {e}")),
            }
        }),
        tabs::TabMessage::Devices => spawn_local(async move {
            match async { Storage::open().await?.devices().await }.await {
                Ok(mut devices) => {
                    devices.sort_by(|a, b| a.added_ms.total_cmp(&b.added_ms));
                    state.devices.set(devices);
                }
                Err(e) => logs::warn("storage", format!("devices not read again: {e}")),
            }
        }),
        _ => {}
    });
    register_service_worker();
    // Load what IndexedDB holds, and take a device passed in the URL fragment
    // (`#device=URL&token=TOKEN`, as `cargo xtask run` prints it).
    spawn_local(async move {
        let result = async {
            let storage = Storage::open().await?;
            if let Some(device) = device_from_fragment() {
                storage.put_device(&device).await?;
            }
            // The runs table's first screen comes first, from an index; everything else after.
            let (newest, total) = storage
                .newest_run_summaries(panels::runs::FIRST_SCREEN)
                .await?;
            if newest.len() < total {
                state.runs_pending.set(Some(total));
            }
            state.runs.set(newest);
            logs::restore(storage.logs(logs::MAX_LINES).await?);
            state.datasets.set(storage.datasets().await?);
            state.versions.set(storage.versions().await?);
            state.aliases.set(storage.aliases().await?);
            state.alerts.set(storage.alerts().await?);
            state.statuses.set(
                storage
                    .device_statuses()
                    .await?
                    .into_iter()
                    .map(|s| (s.url.clone(), s))
                    .collect(),
            );
            state.mlflow.set(storage.mlflow_settings().await?);
            state.run_syncs.set(
                storage
                    .run_syncs()
                    .await?
                    .into_iter()
                    .map(|s| (s.id.clone(), s))
                    .collect(),
            );
            state.remote_versions.set(storage.remote_versions().await?);
            let mut devices = storage.devices().await?;
            devices.sort_by(|a, b| a.added_ms.total_cmp(&b.added_ms));
            state.devices.set(devices);
            let (all, indexed) = storage.run_summaries_indexing().await?;
            if indexed > 0 {
                logs::info(
                    "storage",
                    format!("indexed {indexed} runs for the runs table"),
                );
            }
            // Runs trained or imported while these were read are kept.
            state.runs.update(|shown| {
                let known: std::collections::BTreeSet<String> =
                    all.iter().map(|r| r.id.clone()).collect();
                shown.retain(|r| !known.contains(&r.id));
                shown.extend(all);
            });
            state.runs_pending.set(None);
            // Runs made while the server was away go now, then every SYNC_EVERY.
            if state
                .mlflow
                .with_untracked(|m| m.as_ref().is_some_and(|m| m.auto_sync))
            {
                mlflow::request_sync(state);
            }
            Ok::<_, storage::StorageError>(())
        }
        .await;
        match result {
            Ok(()) => logs::info(
                "storage",
                format!(
                    "loaded {} runs, {} datasets, {} model versions, {} devices",
                    state.runs.with_untracked(Vec::len),
                    state.datasets.with_untracked(Vec::len),
                    state.versions.with_untracked(Vec::len),
                    state.devices.with_untracked(Vec::len)
                ),
            ),
            Err(e) => {
                logs::error("storage", e.to_string());
                state.storage_error.set(Some(e.to_string()));
            }
        }
    });

    set_interval(
        move || {
            if state
                .mlflow
                .with_untracked(|m| m.as_ref().is_some_and(|m| m.auto_sync))
            {
                mlflow::request_sync(state);
            }
        },
        mlflow::SYNC_EVERY,
    );

    view! {
        <header>
            <h1>"wasmops"</h1>
            <span class="subtitle">"train in the tab, ship to the edge"</span>
            <span class="version">"build " {run::CODE_VERSION}</span>
        </header>
        <Show when=move || state.storage_error.get().is_some()>
            <p class="error banner" data-testid="storage-error">
                "Storage: " {move || state.storage_error.get().unwrap_or_default()}
            </p>
        </Show>
        <nav class="pages">
            {nav_button(state, Page::Lab, "nav-lab", "Lab")}
            {nav_button(state, Page::Registry, "nav-registry", "Registry")}
            {nav_button(state, Page::Devices, "nav-devices", "Devices")}
            {nav_button(state, Page::Fleet, "nav-fleet", "Fleet")}
            {nav_button(state, Page::Automation, "nav-automation", "Automation")}
            {nav_button(state, Page::Logs, "nav-logs", "Logs")}
            {nav_button(state, Page::Settings, "nav-settings", "Settings")}
        </nav>
        // Pages stay mounted (hidden), so a training run or a form keeps its state.
        <main class="lab" class:hidden=move || state.page.get() != Page::Lab>
            <panels::data::DataPanel />
            <panels::train::TrainPanel />
            <panels::runs::RunsPanel />
        </main>
        <main class="page" class:hidden=move || state.page.get() != Page::Registry>
            <panels::registry::RegistryPage />
        </main>
        <main class="page" class:hidden=move || state.page.get() != Page::Devices>
            <panels::devices::DevicesPage />
        </main>
        <main class="page" class:hidden=move || state.page.get() != Page::Fleet>
            <panels::fleet::FleetPage />
        </main>
        <main class="page" class:hidden=move || state.page.get() != Page::Automation>
            <panels::automation::AutomationPage />
        </main>
        <main class="page" class:hidden=move || state.page.get() != Page::Logs>
            <panels::logs::LogsPage />
        </main>
        <main class="page" class:hidden=move || state.page.get() != Page::Settings>
            <panels::settings::SettingsPage />
            <panels::settings::SigningKeySection />
        </main>
    }
}

fn nav_button(
    state: state::AppState,
    page: Page,
    id: &'static str,
    label: &'static str,
) -> impl IntoView {
    let alerts = move || {
        state
            .alerts
            .with(|a| a.iter().filter(|a| a.acknowledged_ms.is_none()).count())
    };
    view! {
        <button id=id class="nav" class:active=move || state.page.get() == page
            on:click=move |_| state.page.set(page)>
            {label}
            {move || (page == Page::Devices && alerts() > 0).then(|| view! {
                <span class="badge" data-testid="alert-badge">{alerts()}</span>
            })}
        </button>
    }
}

/// Writes one log line to IndexedDB (a failure goes to the console only: logging it would
/// loop).
fn store_log_line(line: logs::LogLine) {
    spawn_local(async move {
        if let Err(e) = async { Storage::open().await?.put_log(&line).await }.await {
            leptos::logging::error!("log line not stored: {e}");
        }
    });
}

/// Reads `#device=URL&token=TOKEN` and removes it from the address bar (it holds a secret).
fn device_from_fragment() -> Option<DeviceEntry> {
    let window = web_sys::window()?;
    let hash = window.location().hash().ok()?;
    let params = web_sys::UrlSearchParams::new_with_str(hash.trim_start_matches('#')).ok()?;
    let url = params.get("device")?;
    let token = params.get("token").unwrap_or_default();
    if let Ok(history) = window.history() {
        let path = window.location().pathname().unwrap_or_else(|_| "/".into());
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&path));
    }
    Some(DeviceEntry {
        url,
        token,
        name: params.get("name").unwrap_or_else(|| "local device".into()),
        window_s: storage::DEFAULT_WINDOW_S,
        added_ms: js_sys::Date::now(),
    })
}

/// Registers `sw.js` so the dashboard loads and trains offline after the first visit.
fn register_service_worker() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let navigator = window.navigator();
    // Absent in insecure contexts other than localhost; the dashboard then simply needs the network.
    let has_sw = js_sys::Reflect::has(&navigator, &"serviceWorker".into()).unwrap_or(false);
    if has_sw {
        let _ = navigator.service_worker().register("./sw.js");
    }
}
