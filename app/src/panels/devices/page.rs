//! The Devices page and its pull loop.

use std::collections::BTreeSet;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::alerts::Alerts;
use super::detail::DeviceDetail;
use super::form::DeviceForm;
use super::row::DeviceRow;
use crate::fleet;
use crate::state::{use_app_state, AppState};
use crate::storage::{DeviceEntry, Storage};

/// How often the page pulls every device while open.
const PULL_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[component]
pub fn DevicesPage() -> impl IntoView {
    let state = use_app_state();
    let pulling = RwSignal::new(BTreeSet::<String>::new());
    // Off: only the buttons pull (e.g. over a metered link).
    let auto_pull = RwSignal::new(true);
    let pull_all = move || {
        for d in state.devices.get_untracked() {
            spawn_local(pull_one(state, pulling, d));
        }
    };
    // Pull once the devices are known (what the dashboard shows is what it stored; a pull
    // catches up), then every PULL_EVERY while auto-pull is on.
    Effect::new(move |done: Option<bool>| {
        if done != Some(true) && !state.devices.with(Vec::is_empty) && auto_pull.get_untracked() {
            pull_all();
            return true;
        }
        done.unwrap_or(false)
    });
    set_interval(
        move || {
            if auto_pull.get_untracked() {
                pull_all();
            }
        },
        PULL_EVERY,
    );

    view! {
        <section class="panel" id="alerts-panel">
            <h2>"Alerts"</h2>
            <Alerts />
        </section>
        <section class="panel" id="devices-panel">
            <h2>"Devices"</h2>
            <DeviceForm />
            <div class="actions">
                <button id="pull-all" class="secondary" on:click=move |_| pull_all()
                    disabled=move || state.devices.with(Vec::is_empty)>"Pull telemetry now"</button>
                <label class="check inline">
                    <input type="checkbox" id="auto-pull" prop:checked=move || auto_pull.get()
                        on:change=move |ev| auto_pull.set(event_target_checked(&ev)) />
                    {format!(" pull every {} s", PULL_EVERY.as_secs())}
                </label>
            </div>
            <Show when=move || !state.devices.with(Vec::is_empty)
                fallback=|| view! { <p class="empty">"No devices yet. Start one with `wasmops-edge serve` and add its URL and token."</p> }>
                <table class="runs devices" data-testid="devices">
                    <thead><tr>
                        <th>"Device"</th><th>"URL"</th><th>"Status"</th><th>"Active version"</th><th>"Follows"</th>
                        <th class="num">"Uptime"</th><th>"Last seen"</th><th></th>
                    </tr></thead>
                    <tbody>
                        <For each=move || state.devices.get() key=|d| (d.url.clone(), d.name.clone(), d.window_s) let:d>
                            <DeviceRow d=d pulling=pulling />
                        </For>
                    </tbody>
                </table>
            </Show>
        </section>
        {move || {
            let url = state.selected_device.get()?;
            let d = state.devices.with(|all| all.iter().find(|d| d.url == url).cloned())?;
            Some(view! { <DeviceDetail d=d /> })
        }}
    }
}

/// Pulls one device unless a pull of it is already running, and publishes what changed.
pub async fn pull_one(state: AppState, pulling: RwSignal<BTreeSet<String>>, d: DeviceEntry) {
    if pulling.with_untracked(|p| p.contains(&d.url)) {
        return;
    }
    pulling.update(|p| {
        p.insert(d.url.clone());
    });
    let result = async {
        let storage = Storage::open().await?;
        let versions = state.versions.get_untracked();
        let pulled = fleet::pull(&storage, &d, &versions).await;
        // The stored status (with the error when the device was unreachable) and alerts.
        if let Some(s) = storage
            .device_statuses()
            .await?
            .into_iter()
            .find(|s| s.url == d.url)
        {
            state.statuses.update(|all| {
                all.insert(d.url.clone(), s);
            });
        }
        match pulled {
            Ok(p) if !p.alerts.is_empty() => state.alerts.set(storage.alerts().await?),
            Ok(_) | Err(fleet::PullError::Device(_)) => {}
            Err(fleet::PullError::Storage(e)) => return Err(e),
        }
        Ok::<_, crate::storage::StorageError>(())
    }
    .await;
    if let Err(e) = result {
        crate::logs::error(
            "storage",
            format!("telemetry of {} not stored: {e}", d.name),
        );
        state
            .storage_error
            .set(Some(format!("telemetry of {} not stored: {e}", d.name)));
    }
    pulling.update(|p| {
        p.remove(&d.url);
    });
    state.pulls.update(|n| *n += 1);
}
