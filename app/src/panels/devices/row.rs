//! One device in the devices table: status, active version, what it follows; pull, roll back.

use std::collections::BTreeSet;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::page::pull_one;
use crate::fleet;
use crate::logic::follow::follow_summary;
use crate::panels::registry::clock;
use crate::registry::version_label;
use crate::state::use_app_state;
use crate::storage::{DeviceEntry, Storage};

#[component]
pub fn DeviceRow(d: DeviceEntry, pulling: RwSignal<BTreeSet<String>>) -> impl IntoView {
    let state = use_app_state();
    let url = d.url.clone();
    let status = {
        let url = url.clone();
        Memo::new(move |_| state.statuses.with(|s| s.get(&url).cloned()))
    };
    let stored = StoredValue::new(d.clone());
    let rollback = move |_| {
        let d = stored.get_value();
        // Like deleting a run, rolling back changes what serves traffic: ask first, naming
        // what is active now.
        let active = state
            .statuses
            .with_untracked(|s| s.get(&d.url).and_then(|s| s.last_info.clone()))
            .and_then(|i| i.active)
            .map(|a| state.versions.with_untracked(|v| version_label(v, &a.hash)))
            .unwrap_or_else(|| "its active version".into());
        let question = format!(
            "Roll back {} from {active} to the version active before it? The device serves the older version at once.",
            d.name
        );
        let confirmed = web_sys::window()
            .and_then(|w| w.confirm_with_message(&question).ok())
            .unwrap_or(false);
        if !confirmed {
            return;
        }
        spawn_local(async move {
            if let Ok(storage) = Storage::open().await {
                let versions = state.versions.get_untracked();
                fleet::rollback(&storage, &d, &versions).await;
                state.selected_device.set(Some(d.url.clone()));
            }
            pull_one(state, pulling, d).await;
        });
    };
    let pull = move |_| spawn_local(pull_one(state, pulling, stored.get_value()));
    let following = Memo::new(move |_| {
        status.with(|s| {
            s.as_ref()
                .and_then(|s| s.last_info.as_ref())
                .is_some_and(|i| i.follow.is_some())
        })
    });
    let select_url = url.clone();
    let pulling_url = url.clone();
    view! {
        <tr data-device=url.clone()
            class:selected=move || state.selected_device.get().as_deref() == Some(url.as_str())>
            <td><a href="#" class="device-link" on:click=move |ev| { ev.prevent_default(); state.selected_device.set(Some(select_url.clone())); }>{d.name.clone()}</a></td>
            <td class="mono">{d.url.clone()}</td>
            <td data-testid="device-status">{move || match status.get() {
                None => view! { <span class="muted">"not contacted yet"</span> }.into_any(),
                Some(s) => match s.last_error {
                    Some(e) => view! { <span class="error" data-testid="device-error">{e}</span> }.into_any(),
                    None => view! { <span class="ok">"ok"</span> }.into_any(),
                },
            }}</td>
            <td data-testid="device-active">{move || {
                let info = status.get().and_then(|s| s.last_info);
                let active = info.as_ref().and_then(|i| i.active.clone());
                match active {
                    Some(a) => {
                        let known = state.versions.with(|v| v.iter().any(|v| v.hash == a.hash));
                        // A version this browser has not registered: the registry version the
                        // device follows, when it runs it.
                        let followed = info.as_ref().and_then(|i| i.follow.as_ref()).and_then(|f| {
                            f.running_version.as_ref().map(|r| format!("{} v{r}", f.model))
                        });
                        match (known, followed) {
                            (false, Some(label)) => label,
                            _ => state.versions.with(|v| version_label(v, &a.hash)),
                        }
                    }
                    None => "none".into(),
                }
            }}</td>
            <td data-testid="device-follow" title=move || status.get().and_then(|s| s.last_info).and_then(|i| i.follow).map(|f| format!("polls {} for {}@{}", f.tracking_uri, f.model, f.alias)).unwrap_or_default()>
                {move || status.get().and_then(|s| s.last_info).map(|i| follow_summary(&i)).unwrap_or_default()}
            </td>
            <td class="num">{move || status.get().and_then(|s| s.last_info).map(|i| format!("{} s", i.uptime_s)).unwrap_or_default()}</td>
            <td data-testid="device-last-seen">{move || status.get().and_then(|s| s.last_seen_ms).map(clock).unwrap_or_else(|| "never".into())}</td>
            <td class="row-actions">
                <button class="secondary pull" on:click=pull disabled=move || pulling.with(|p| p.contains(&pulling_url))>"Pull"</button>
                // A device that follows an alias refuses manual changes (409): say so here.
                <button class="secondary rollback" on:click=rollback
                    disabled=move || following.get()
                    title=move || if following.get() { "this device follows a registry alias: move the alias instead (Registry)" } else { "activate the version that was active before" }>"Roll back"</button>
            </td>
        </tr>
    }
}
