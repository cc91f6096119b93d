//! One device opened: its stored telemetry per model version and its deployment history.

use leptos::prelude::*;
use wasmops_shared::wire::Window;

use super::telemetry::TelemetryCharts;
use super::usage::DeviceUsage;
use crate::logic::pull;
use crate::panels::registry::clock;
use crate::registry::version_label;
use crate::state::use_app_state;
use crate::storage::{DeviceEntry, Storage};

/// One device: its deployment history and its stored telemetry, charted per model version.
#[component]
pub fn DeviceDetail(d: DeviceEntry) -> impl IntoView {
    let state = use_app_state();
    let url = d.url.clone();
    let window_s = d.window_s;
    // What is stored, read again after every pull (a read a newer one overtook is dropped).
    let stored = LocalResource::new(move || {
        state.pulls.track();
        let url = url.clone();
        // The newest stored window (device clock) and the chart's span back from it.
        let cursor = state.statuses.with_untracked(|s| {
            s.get(&url)
                .and_then(|st| st.cursors.get(&window_s.to_string()).copied())
        });
        let since = pull::since(cursor, pull::CHART_WINDOWS, window_s);
        async move {
            let storage = Storage::open().await?;
            let history = storage.deployments(&url).await?;
            let windows: Vec<Window> = storage
                .windows(&url, window_s, since)
                .await?
                .into_iter()
                .map(|w| w.window)
                .collect();
            Ok::<_, crate::storage::StorageError>((history, windows))
        }
    });
    let windows = Memo::new(move |_| {
        stored.with(|s| match s {
            Some(Ok((_, w))) => w.clone(),
            _ => Vec::new(),
        })
    });
    let history = move || {
        stored.with(|s| match s {
            Some(Ok((h, _))) => h.clone(),
            _ => Vec::new(),
        })
    };
    let error = move || {
        stored.with(|s| match s {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        })
    };
    let models = move || {
        // Newest window first: the model that served last comes first.
        let mut seen = Vec::<String>::new();
        windows.with(|ws| {
            for w in ws.iter().rev() {
                if let Some(m) = &w.model {
                    if !seen.contains(m) {
                        seen.push(m.clone());
                    }
                }
            }
        });
        seen
    };
    let chosen = RwSignal::new(None::<String>);
    let model = move || chosen.get().or_else(|| models().into_iter().next());
    let totals = move || {
        windows.with(|ws| {
            (
                ws.iter().map(|w| w.requests).sum::<u64>(),
                ws.iter().map(|w| w.rows).sum::<u64>(),
                ws.iter()
                    .map(|w| w.errors.values().sum::<u64>())
                    .sum::<u64>(),
                ws.iter().map(|w| w.labeled).sum::<u64>(),
            )
        })
    };
    let url = d.url.clone();
    let ddm = Memo::new(move |_| {
        let m = model()?;
        state.statuses.with(|s| {
            s.get(&url)?
                .concept_drift
                .iter()
                .find(|c| c.model == m)
                .cloned()
        })
    });
    view! {
        <section class="panel device-detail" data-testid="device-detail">
            <h2>{format!("{} · telemetry in {} s windows", d.name, d.window_s)}</h2>
            <p class="telemetry" data-testid="stored-telemetry">{move || {
                let (requests, rows, errors, labeled) = totals();
                format!("stored, last {} windows at most: {} windows · {requests} requests · {rows} rows predicted · {errors} errors · {labeled} labels",
                    crate::fleet::CHART_WINDOWS, windows.with(Vec::len))
            }}</p>
            <Show when=move || !models().is_empty()
                fallback=|| view! { <p class="empty">"No telemetry stored for this device yet."</p> }>
                <label class="inline">"Model version "
                    <select id="telemetry-model" on:change=move |ev| chosen.set(Some(event_target_value(&ev)))>
                        {move || models().into_iter().map(|m| {
                            let label = state.versions.with(|v| version_label(v, &m));
                            let selected = model().as_deref() == Some(m.as_str());
                            view! { <option value=m.clone() selected=selected>{label}</option> }
                        }).collect_view()}
                    </select>
                </label>
                {move || ddm.get().map(|c| view! {
                    <p class="telemetry" data-testid="concept-drift">
                        {format!("concept drift (DDM over {} labels): {} · error rate {:.3}", c.samples, c.state.words(), c.error_rate)}
                    </p>
                })}
                {move || model().map(|m| {
                    let ws: Vec<Window> = windows.with(|all| all.iter().filter(|w| w.model.as_deref() == Some(m.as_str())).cloned().collect());
                    let version = state.versions.with(|all| all.iter().find(|v| v.hash == m).cloned());
                    view! { <TelemetryCharts ws=ws window_s=window_s version=version /> }
                })}
            </Show>
            <DeviceUsage d=d.clone() model=Signal::derive(model) />
            <h3>"Deployment history"</h3>
            <table class="runs compact" data-testid="deployments">
                <thead><tr><th>"When"</th><th>"Action"</th><th>"Version"</th><th>"Outcome"</th></tr></thead>
                <tbody>
                    {move || history().into_iter().map(|h| view! {
                        <tr class:failed=!h.ok>
                            <td>{clock(h.at_ms)}</td>
                            <td>{h.action.clone()}</td>
                            <td>{h.version.clone()}</td>
                            <td class=if h.ok { "ok" } else { "error" }>{h.message.clone()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            {move || error().map(|e| view! { <p class="error">{e}</p> })}
        </section>
    }
}
