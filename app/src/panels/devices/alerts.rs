//! The alerts list: one line per alert, its detail on a click, acknowledge.

use std::collections::BTreeSet;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::logic::alerts::feature_summary;
use crate::panels::registry::clock;
use crate::state::use_app_state;
use crate::storage::Storage;

#[component]
pub fn Alerts() -> impl IntoView {
    let state = use_app_state();
    // Alerts whose detail the user opened.
    let opened = RwSignal::new(BTreeSet::<String>::new());
    let error = RwSignal::new(None::<String>);
    let ack = move |id: String| {
        let Some(mut alert) = state
            .alerts
            .with_untracked(|all| all.iter().find(|a| a.id == id).cloned())
        else {
            return;
        };
        alert.acknowledged_ms = Some(js_sys::Date::now());
        spawn_local(async move {
            match async {
                Storage::open()
                    .await?
                    .put_alerts(std::slice::from_ref(&alert))
                    .await
            }
            .await
            {
                Ok(()) => state.alerts.update(|all| {
                    if let Some(a) = all.iter_mut().find(|a| a.id == alert.id) {
                        *a = alert.clone();
                    }
                }),
                Err(e) => error.set(Some(format!("acknowledgement not saved: {e}"))),
            }
        });
    };
    view! {
        <Show when=move || !state.alerts.with(Vec::is_empty)
            fallback=|| view! { <p class="empty" data-testid="no-alerts">"No alerts."</p> }>
            <ul class="alerts" data-testid="alerts">
                <For each=move || state.alerts.get() key=|a| (a.id.clone(), a.acknowledged_ms.is_some(), a.updated_ms as u64) let:a>
                    {
                        let id = a.id.clone();
                        let (open_id, toggle_id) = (a.id.clone(), a.id.clone());
                        let what = match a.kind {
                            wasmops_shared::monitor::AlertKind::Drift => format!("input drift in {}", feature_summary(&a.features)),
                            wasmops_shared::monitor::AlertKind::Accuracy => "live accuracy dropped".to_string(),
                        };
                        view! {
                            <li class="alert" class:acknowledged=a.acknowledged_ms.is_some()
                                data-device=a.device.clone() data-kind=a.kind.as_str()>
                                <strong>{format!("{} · {} · {what}", a.device_name, a.version)}</strong>
                                // One line per alert; the numbers behind it on a click. Whether it is
                                // open lives here, not in the element: a pull that updates the alert
                                // draws it again.
                                <details class="detail" prop:open=move || opened.with(|o| o.contains(&open_id))>
                                    <summary on:click=move |ev| {
                                        ev.prevent_default();
                                        opened.update(|o| if !o.remove(&toggle_id) { o.insert(toggle_id.clone()); });
                                    }>"details"</summary>
                                    {a.detail.clone()}
                                </details>
                                <span class="muted">{format!("raised {}", clock(a.raised_ms))}</span>
                                {match a.acknowledged_ms {
                                    Some(t) => view! { <span class="muted">{format!("acknowledged {}", clock(t))}</span> }.into_any(),
                                    None => view! { <button class="secondary ack" on:click=move |_| ack(id.clone())>"Acknowledge"</button> }.into_any(),
                                }}
                            </li>
                        }
                    }
                </For>
            </ul>
        </Show>
        {move || error.get().map(|e| view! { <p class="error">{e}</p> })}
    }
}
