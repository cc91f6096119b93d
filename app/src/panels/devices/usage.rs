//! How to call a device: predict and feedback commands with its URL filled in.

use leptos::prelude::*;

use crate::logic::usage;
use crate::state::use_app_state;
use crate::storage::DeviceEntry;

/// How to send this device predictions and labels, with its URL and, when the model is
/// known, one of its own held-out rows filled in (the same as `docs/device-api.md`).
#[component]
pub fn DeviceUsage(d: DeviceEntry, model: Signal<Option<String>>) -> impl IntoView {
    let state = use_app_state();
    let base = d.url.trim_end_matches('/').to_string();
    let url = d.url.clone();
    let text = move || {
        // The version serving now, else the one whose telemetry is shown.
        let active = state.statuses.with(|s| {
            s.get(&url)
                .and_then(|s| s.last_info.as_ref())
                .and_then(|i| i.active.as_ref())
                .map(|a| a.hash.clone())
        });
        let version = active.or_else(|| model.get()).and_then(|m| {
            state
                .versions
                .with(|all| all.iter().find(|v| v.hash == m).cloned())
        });
        usage::commands(&base, version.as_ref())
    };
    view! {
        <details class="device-usage" data-testid="device-usage">
            <summary>"Send this device predictions and labels"</summary>
            <pre class="mono">{text}</pre>
        </details>
    }
}
