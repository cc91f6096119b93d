//! The wasmops dashboard (leptos CSR).
//!
//! # Layout
//! - [`App`] and the page frame; [`panels`]: one file per panel (train, runs, device).
//! - [`state`]: app-wide signals in context.
//! - [`training`] (worker side) and [`worker_client`] (page side) with [`protocol`] between
//!   them; the worker binary is `src/bin/train_worker.rs`.
//! - [`storage`]: IndexedDB; [`run`]: the tracked run record.
//! - [`module_runner`]: model modules through the browser's WebAssembly API;
//!   [`device_client`]: the device HTTP API.
//!
//! `main.rs` only mounts [`App`].

pub mod charts;
pub mod device_client;
pub mod module_runner;
pub mod panels;
pub mod protocol;
pub mod run;
pub mod state;
pub mod storage;
pub mod training;
pub mod worker_client;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::storage::{DeviceEntry, Storage};

#[component]
pub fn App() -> impl IntoView {
    let state = state::provide_app_state();
    register_service_worker();
    // Load what IndexedDB holds, and take a device passed in the URL fragment
    // (`#device=URL&token=TOKEN`, as `cargo xtask run` prints it).
    spawn_local(async move {
        let result = async {
            let storage = Storage::open().await?;
            if let Some(device) = device_from_fragment() {
                storage.put_device(&device).await?;
            }
            state.runs.set(storage.runs().await?);
            state.datasets.set(storage.datasets().await?);
            state
                .device
                .set(storage.devices().await?.into_iter().next());
            Ok::<_, storage::StorageError>(())
        }
        .await;
        if let Err(e) = result {
            state.storage_error.set(Some(e.to_string()));
        }
    });

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
        <main>
            <panels::data::DataPanel />
            <panels::train::TrainPanel />
            <panels::runs::RunsPanel />
            <panels::device::DevicePanel />
        </main>
    }
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
