//! Devices page: alerts, the devices the dashboard knows (health, active version, last seen),
//! pulling their telemetry, rolling back, and per device its deployment history and telemetry
//! charts.

use std::collections::{BTreeMap, BTreeSet};

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::wire::{paths, Window};

use crate::charts::{self, Series, Threshold, ALERT, PALETTE, WARN};
use crate::fleet;
use crate::panels::registry::clock;
use crate::registry::{version_label, Deployment, ModelVersion};
use crate::state::{use_app_state, AppState};
use crate::storage::{DeviceEntry, Storage, DEFAULT_WINDOW_S};

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
async fn pull_one(state: AppState, pulling: RwSignal<BTreeSet<String>>, d: DeviceEntry) {
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

#[component]
fn DeviceForm() -> impl IntoView {
    let state = use_app_state();
    let name = RwSignal::new(String::new());
    let url = RwSignal::new(String::new());
    let token = RwSignal::new(String::new());
    let window = RwSignal::new(DEFAULT_WINDOW_S.to_string());
    let error = RwSignal::new(None::<String>);
    // Editing a device: its settings fill the form.
    Effect::new(move |_| {
        if let Some(sel) = state.selected_device.get() {
            if let Some(d) = state
                .devices
                .with_untracked(|all| all.iter().find(|d| d.url == sel).cloned())
            {
                name.set(d.name);
                url.set(d.url);
                token.set(d.token);
                window.set(d.window_s.to_string());
            }
        }
    });
    let save = move |_| {
        let u = url.get_untracked().trim().trim_end_matches('/').to_string();
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return error.set(Some(format!(
                "device URL must start with http:// or https://, got `{u}`"
            )));
        }
        let window_s = match window.get_untracked().trim().parse::<u64>() {
            Ok(w) if (1..=86_400).contains(&w) => w,
            _ => {
                return error.set(Some(format!(
                    "telemetry window must be 1 to 86400 seconds, got `{}`",
                    window.get_untracked()
                )))
            }
        };
        let existing = state
            .devices
            .with_untracked(|all| all.iter().find(|d| d.url == u).cloned());
        let n = name.get_untracked().trim().to_string();
        let entry = DeviceEntry {
            name: if n.is_empty() { u.clone() } else { n },
            url: u,
            token: token.get_untracked(),
            window_s,
            added_ms: existing.map_or_else(js_sys::Date::now, |d| d.added_ms),
        };
        error.set(None);
        spawn_local(async move {
            match async { Storage::open().await?.put_device(&entry).await }.await {
                Ok(()) => {
                    state
                        .devices
                        .update(|all| match all.iter_mut().find(|d| d.url == entry.url) {
                            Some(d) => *d = entry.clone(),
                            None => all.push(entry.clone()),
                        });
                    state.selected_device.set(Some(entry.url.clone()));
                }
                Err(e) => error.set(Some(format!("device not saved: {e}"))),
            }
        });
    };
    view! {
        <div class="form device-form">
            <label>"Name" <input id="device-name" placeholder="gateway-1" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) /></label>
            <label>"URL" <input id="device-url" placeholder="http://127.0.0.1:7878" prop:value=move || url.get() on:input=move |ev| url.set(event_target_value(&ev)) /></label>
            <label>"Token" <input id="device-token" type="password" prop:value=move || token.get() on:input=move |ev| token.set(event_target_value(&ev)) /></label>
            <label>"Telemetry window (s)" <input id="device-window" prop:value=move || window.get() on:input=move |ev| window.set(event_target_value(&ev)) /></label>
        </div>
        <div class="actions">
            <button id="device-save" on:click=save>"Save device"</button>
        </div>
        {move || error.get().map(|e| view! { <p class="error" data-testid="device-form-error">{e}</p> })}
    }
}

#[component]
fn DeviceRow(d: DeviceEntry, pulling: RwSignal<BTreeSet<String>>) -> impl IntoView {
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

/// What a device follows and where it stands, in a few words: `iris@champion v3, in sync`;
/// a refusal or an error with the device's reason. Labels and trusted keys follow.
pub fn follow_summary(info: &wasmops_shared::wire::DeviceInfo) -> String {
    use wasmops_shared::wire::FollowState;
    let mut parts = Vec::new();
    if let Some(f) = &info.follow {
        let want = f.desired_version.as_deref().map(|v| format!("v{v}"));
        let runs = f.running_version.as_deref().map(|v| format!("v{v}"));
        let mut text = format!("{}@{}", f.model, f.alias);
        match (f.state, &want, &runs) {
            (FollowState::InSync, _, Some(r)) => text.push_str(&format!(" {r}, in sync")),
            (FollowState::Starting, ..) => text.push_str(", first check pending"),
            (_, Some(w), r) if Some(w) != r.as_ref() => text.push_str(&format!(
                " wants {w}, runs {}",
                r.clone().unwrap_or_else(|| "nothing".into())
            )),
            _ => text.push_str(&format!(", {}", f.state)),
        }
        if let Some(e) = &f.last_error {
            text.push_str(&format!(" ({}: {e})", f.state));
        }
        parts.push(text);
    }
    if !info.labels.is_empty() {
        parts.push(
            info.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    if !info.trusted_keys.is_empty() {
        parts.push(format!(
            "signed modules only (keys {})",
            info.trusted_keys.join(", ")
        ));
    }
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join("; ")
    }
}

/// The features of a drift alert in a few words: all of them when few, else the worst three
/// (alerts list them worst first) and how many more.
fn feature_summary(features: &[String]) -> String {
    const NAMED: usize = 5;
    match features.len() {
        1 => features[0].clone(),
        n if n <= NAMED => format!("{n} features: {}", features.join(", ")),
        n => format!(
            "{n} features, worst {} and {} more",
            features[..3].join(", "),
            n - 3
        ),
    }
}

#[component]
fn Alerts() -> impl IntoView {
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

/// One device: its deployment history and its stored telemetry, charted per model version.
#[component]
fn DeviceDetail(d: DeviceEntry) -> impl IntoView {
    let state = use_app_state();
    let history = RwSignal::new(Vec::<Deployment>::new());
    let windows = RwSignal::new(Vec::<Window>::new());
    let error = RwSignal::new(None::<String>);
    let url = d.url.clone();
    let window_s = d.window_s;
    // Reload what is stored after every pull.
    Effect::new(move |_| {
        state.pulls.track();
        let url = url.clone();
        // The newest stored window (device clock) and the chart's span back from it.
        let since = state
            .statuses
            .with_untracked(|s| {
                s.get(&url)
                    .and_then(|st| st.cursors.get(&window_s.to_string()).copied())
            })
            .map_or(0, |c| {
                c.saturating_sub(crate::fleet::CHART_WINDOWS * window_s * 1000)
            });
        spawn_local(async move {
            let loaded = async {
                let storage = Storage::open().await?;
                Ok::<_, crate::storage::StorageError>((
                    storage.deployments(&url).await?,
                    storage.windows(&url, window_s, since).await?,
                ))
            }
            .await;
            match loaded {
                Ok((h, w)) => {
                    history.set(h);
                    windows.set(w.into_iter().map(|w| w.window).collect());
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    });
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
                        {format!("concept drift (DDM over {} labels): {} · error rate {:.3}", c.samples, c.state.replace('_', " "), c.error_rate)}
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
                    {move || history.get().into_iter().map(|h| view! {
                        <tr class:failed=!h.ok>
                            <td>{clock(h.at_ms)}</td>
                            <td>{h.action.clone()}</td>
                            <td>{h.version.clone()}</td>
                            <td class=if h.ok { "ok" } else { "error" }>{h.message.clone()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            {move || error.get().map(|e| view! { <p class="error">{e}</p> })}
        </section>
    }
}

/// How to send this device predictions and labels, with its URL and, when the model is
/// known, one of its own held-out rows filled in (the same as `docs/device-api.md`).
#[component]
fn DeviceUsage(d: DeviceEntry, model: Signal<Option<String>>) -> impl IntoView {
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
        let (header, row) = match &version {
            Some(v) if !v.card.feature_names.is_empty() => {
                let d = v.card.feature_names.len();
                let row: Vec<String> = v.check_rows.iter().take(d).map(|x| x.to_string()).collect();
                (v.card.feature_names.join(","), row)
            }
            _ => (String::new(), vec!["1.0".into(), "2.0".into()]),
        };
        let json_row = row.join(",");
        let csv = if header.is_empty() {
            String::new()
        } else {
            format!(
                "\n# or CSV, columns named as the model's features:\nprintf '{header}\\n{}\\n' | curl -H \"$AUTH\" -H 'Content-Type: text/csv' --data-binary @- {base}{}",
                row.join(","),
                paths::PREDICT
            )
        };
        format!(
            "AUTH=\"Authorization: Bearer $TOKEN\"   # the token saved for this device\n\
             # predict (each answer has first_id: row i gets prediction id first_id + i)\n\
             curl -H \"$AUTH\" -H 'Content-Type: application/json' -d '{{\"rows\":[[{json_row}]]}}' {base}{}{csv}\n\
             # send the true label of prediction 0 (class index or value) for live accuracy\n\
             curl -H \"$AUTH\" -H 'Content-Type: application/json' -d '{{\"labels\":[{{\"id\":0,\"label\":0}}]}}' {base}{}",
            paths::PREDICT,
            paths::FEEDBACK
        )
    };
    view! {
        <details class="device-usage" data-testid="device-usage">
            <summary>"Send this device predictions and labels"</summary>
            <pre class="mono">{text}</pre>
        </details>
    }
}

/// Rows of the latest window's drift table shown before "Show all".
const DRIFT_ROWS: usize = 10;
/// Feature lines a drift chart draws at most (the palette has six colours).
const DRIFT_LINES: usize = 5;
/// PSI values above this are drawn at it: 4x the alert threshold, so 0.1 and 0.25 stay legible.
const PSI_CAP: f64 = 1.0;

/// The `k` features with the highest PSI in any of `ws`, worst first (ties by name).
fn top_drift_features(ws: &[Window], k: usize) -> Vec<String> {
    let mut peak: BTreeMap<&str, f64> = BTreeMap::new();
    for w in ws {
        for d in &w.drift {
            let p = peak.entry(&d.feature).or_insert(f64::NEG_INFINITY);
            *p = p.max(d.psi);
        }
    }
    let mut ranked: Vec<(&str, f64)> = peak.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(k)
        .map(|(f, _)| f.to_string())
        .collect()
}

/// The charts of one model version on one device, from its stored windows.
#[component]
fn TelemetryCharts(ws: Vec<Window>, window_s: u64, version: Option<ModelVersion>) -> impl IntoView {
    const SIZE: (u32, u32) = (470, 250);
    let per_s = |n: u64| n as f64 / window_s.max(1) as f64;
    let t = |w: &Window| w.start_ms as f64;
    let mut charts: Vec<(&'static str, Result<String, String>)> = Vec::new();

    charts.push((
        "chart-rate",
        charts::time_series(
            "Requests and errors per second",
            "per second",
            &[
                Series {
                    name: "requests/s".into(),
                    points: ws.iter().map(|w| (t(w), per_s(w.requests))).collect(),
                    color: PALETTE[0],
                },
                Series {
                    name: "errors/s".into(),
                    points: ws
                        .iter()
                        .map(|w| (t(w), per_s(w.errors.values().sum())))
                        .collect(),
                    color: PALETTE[4],
                },
            ],
            &[],
            SIZE,
        ),
    ));
    charts.push((
        "chart-latency",
        charts::time_series(
            "Latency per window",
            "microseconds",
            &[
                Series {
                    name: "p50".into(),
                    points: ws.iter().map(|w| (t(w), w.latency_p50_us as f64)).collect(),
                    color: PALETTE[0],
                },
                Series {
                    name: "p95".into(),
                    points: ws.iter().map(|w| (t(w), w.latency_p95_us as f64)).collect(),
                    color: PALETTE[1],
                },
                Series {
                    name: "p99".into(),
                    points: ws.iter().map(|w| (t(w), w.latency_p99_us as f64)).collect(),
                    color: PALETTE[4],
                },
            ],
            &[],
            SIZE,
        ),
    ));
    // Drift per feature (only windows where rows were predicted carry drift). One line per
    // feature is unreadable with dozens: the charts draw the features with the highest PSI
    // (the table below lists every feature), and clip values far above the alert threshold
    // so the thresholds stay visible; a clipped line says its peak in the legend.
    let all_features = ws
        .iter()
        .find(|w| !w.drift.is_empty())
        .map_or(0, |w| w.drift.len());
    let features = top_drift_features(&ws, DRIFT_LINES);
    let drift_series =
        |pick: fn(&wasmops_shared::wire::FeatureDrift) -> f64, cap: f64| -> Vec<Series> {
            features
                .iter()
                .enumerate()
                .map(|(j, f)| {
                    let points: Vec<(f64, f64)> = ws
                        .iter()
                        .filter_map(|w| {
                            w.drift
                                .iter()
                                .find(|d| &d.feature == f)
                                .map(|d| (t(w), pick(d)))
                        })
                        .collect();
                    let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
                    Series {
                        name: if peak > cap {
                            format!("{f} (peak {peak:.1}, drawn at {cap})")
                        } else {
                            f.clone()
                        },
                        points: points.into_iter().map(|(x, y)| (x, y.min(cap))).collect(),
                        color: PALETTE[j % PALETTE.len()],
                    }
                })
                .collect()
        };
    let which = if all_features > features.len() {
        format!(
            " (top {} of {all_features} features by PSI)",
            features.len()
        )
    } else {
        String::new()
    };
    if !features.is_empty() {
        charts.push((
            "chart-psi",
            charts::time_series(
                &format!("Input drift: PSI vs training profile{which}"),
                "PSI",
                &drift_series(|d| d.psi, PSI_CAP),
                &[
                    Threshold {
                        label: "warn 0.1".into(),
                        y: 0.1,
                        color: WARN,
                    },
                    Threshold {
                        label: "alert 0.25".into(),
                        y: 0.25,
                        color: ALERT,
                    },
                ],
                SIZE,
            ),
        ));
        charts.push((
            "chart-js",
            charts::time_series(
                &format!("Input drift: Jensen-Shannon distance{which}"),
                "JS distance",
                &drift_series(|d| d.js, 1.0),
                &[Threshold {
                    label: "warn 0.1".into(),
                    y: 0.1,
                    color: WARN,
                }],
                SIZE,
            ),
        ));
    }
    if ws.iter().any(|w| w.labeled > 0) {
        let mut thresholds = Vec::new();
        if let Some(a) = version.as_ref().and_then(ModelVersion::held_out_accuracy) {
            thresholds.push(Threshold {
                label: format!("held-out {a:.3}"),
                y: a,
                color: PALETTE[2],
            });
            let floor = a - wasmops_shared::monitor::ACCURACY_DROP;
            thresholds.push(Threshold {
                label: format!("alert below {floor:.3}"),
                y: floor,
                color: ALERT,
            });
        }
        charts.push((
            "chart-accuracy",
            charts::time_series(
                "Live accuracy (labeled predictions)",
                "accuracy",
                &[Series {
                    name: "accuracy".into(),
                    points: ws
                        .iter()
                        .filter_map(|w| Some((t(w), w.accuracy?)))
                        .collect(),
                    color: PALETTE[0],
                }],
                &thresholds,
                SIZE,
            ),
        ));
    }
    charts.push((
        "chart-predictions",
        prediction_chart(&ws, version.as_ref(), SIZE),
    ));

    let errors: BTreeMap<String, u64> = ws.iter().fold(BTreeMap::new(), |mut acc, w| {
        for (k, v) in &w.errors {
            *acc.entry(k.clone()).or_default() += v;
        }
        acc
    });
    // The latest window's drift, worst feature first.
    let latest = ws
        .iter()
        .rev()
        .find(|w| !w.drift.is_empty())
        .cloned()
        .map(|mut w| {
            w.drift.sort_by(|a, b| b.psi.total_cmp(&a.psi));
            w
        });
    let requests: u64 = ws.iter().map(|w| w.requests).sum();
    let show_all_drift = RwSignal::new(false);
    view! {
        <p class="telemetry" data-testid="model-telemetry">{format!(
            "{} windows · {requests} requests · {} rows · {} labeled",
            ws.len(), ws.iter().map(|w| w.rows).sum::<u64>(), ws.iter().map(|w| w.labeled).sum::<u64>()
        )}</p>
        <div class="charts telemetry-charts" data-testid="telemetry-charts">
            {charts.into_iter().map(|(id, svg)| match svg {
                Ok(svg) => view! { <div class="chart" data-chart=id inner_html=svg></div> }.into_any(),
                Err(e) => view! { <p class="error">{format!("{id}: {e}")}</p> }.into_any(),
            }).collect_view()}
        </div>
        {latest.map(|w| {
            // The worst features first; beyond a screenful, the rest on demand.
            let n = w.drift.len();
            let rows = move || {
                let shown = if show_all_drift.get() { n } else { n.min(DRIFT_ROWS) };
                w.drift[..shown].iter().map(|f| view! {
                    <tr class=format!("level-{}", f.level)>
                        <td>{f.feature.clone()}</td>
                        <td class="num">{format!("{:.3}", f.psi)}</td>
                        <td class="num">{format!("{:.3}", f.js)}</td>
                        <td>{f.level.as_str()}</td>
                    </tr>
                }).collect_view()
            };
            view! {
                <table class="runs compact" data-testid="drift-table">
                    <caption>{format!("Drift in the latest window ({}, {} rows), worst first", clock(w.start_ms as f64), w.rows)}</caption>
                    <thead><tr><th>"Feature"</th><th class="num">"PSI"</th><th class="num">"JS"</th><th>"Level"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
                {(n > DRIFT_ROWS).then(|| view! {
                    <button class="secondary small" id="drift-all" on:click=move |_| show_all_drift.update(|s| *s = !*s)>
                        {move || if show_all_drift.get() { format!("Show the worst {DRIFT_ROWS}") } else { format!("Show all {n} features") }}
                    </button>
                })}
            }
        })}
        <table class="runs compact" data-testid="errors-by-kind">
            <caption>"Errors by kind"</caption>
            <tbody>
                {if errors.is_empty() {
                    view! { <tr><td class="muted">"none"</td></tr> }.into_any()
                } else {
                    errors.into_iter().map(|(k, v)| view! { <tr><td>{k}</td><td class="num">{v}</td></tr> }).collect_view().into_any()
                }}
            </tbody>
        </table>
    }
}

/// Live prediction shares against the module's predictions on its held-out split (the
/// reference a registered version carries). Classes (and clusters) are categories; regression
/// outputs are binned over the reference range.
fn prediction_chart(
    ws: &[Window],
    version: Option<&ModelVersion>,
    size: (u32, u32),
) -> Result<String, String> {
    let mut live: BTreeMap<String, u64> = BTreeMap::new();
    for w in ws {
        for (k, v) in &w.predictions {
            *live.entry(k.clone()).or_default() += v;
        }
    }
    let live_values: Vec<(f64, u64)> = live
        .iter()
        .filter_map(|(k, v)| Some((k.parse::<f64>().ok()?, *v)))
        .filter(|(x, _)| x.is_finite())
        .collect();
    let reference = version
        .map(ModelVersion::reference_predictions)
        .unwrap_or_default();
    // Categories: a registered classifier or clustering; for a version this browser does not
    // know, only when every prediction is a small class index. Anything else is binned.
    const MAX_CATEGORIES: f64 = 64.0;
    let categorical = match version {
        Some(v) => !v.card.classes.is_empty() || v.card.kind == "kmeans",
        None => live_values
            .iter()
            .all(|(x, _)| *x >= 0.0 && *x < MAX_CATEGORIES && x.fract() == 0.0),
    };
    let live_values: Vec<(f64, u64)> = if categorical {
        live_values
            .into_iter()
            .filter(|(x, _)| *x >= 0.0 && *x < MAX_CATEGORIES)
            .collect()
    } else {
        live_values
    };
    // Without a reference, numeric bins span the live values.
    let reference_or_live: Vec<f64> = if reference.is_empty() {
        live_values.iter().map(|(x, _)| *x).collect()
    } else {
        reference.clone()
    };
    let (categories, live_counts, ref_counts): (Vec<String>, Vec<f64>, Vec<f64>) = if categorical {
        let names: Vec<String> = version.map(|v| v.card.classes.clone()).unwrap_or_default();
        let reference: Vec<f64> = reference
            .iter()
            .copied()
            .filter(|x| *x >= 0.0 && *x < MAX_CATEGORIES)
            .collect();
        let n = live_values
            .iter()
            .map(|(x, _)| *x as usize + 1)
            .chain(reference.iter().map(|x| *x as usize + 1))
            .max()
            .unwrap_or(0)
            .max(names.len());
        let mut l = vec![0.0; n];
        let mut r = vec![0.0; n];
        for (x, c) in &live_values {
            l[*x as usize] += *c as f64;
        }
        for x in &reference {
            r[*x as usize] += 1.0;
        }
        let cats = (0..n)
            .map(|i| names.get(i).cloned().unwrap_or_else(|| i.to_string()))
            .collect();
        (cats, l, r)
    } else {
        let lo = reference_or_live
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let hi = reference_or_live
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let bins = 8usize;
        let span = if hi > lo {
            (hi - lo) / bins as f64
        } else {
            1.0
        };
        let bin = |x: f64| {
            if x < lo {
                0
            } else if x >= hi + 1e-12 {
                bins + 1
            } else {
                1 + (((x - lo) / span) as usize).min(bins - 1)
            }
        };
        let mut l = vec![0.0; bins + 2];
        let mut r = vec![0.0; bins + 2];
        for (x, c) in &live_values {
            l[bin(*x)] += *c as f64;
        }
        for x in &reference {
            r[bin(*x)] += 1.0;
        }
        let mut cats = vec![format!("<{lo:.3}")];
        cats.extend((0..bins).map(|i| format!("{:.3}", lo + span * (i as f64 + 0.5))));
        cats.push(format!(">{hi:.3}"));
        (cats, l, r)
    };
    let share = |v: Vec<f64>| {
        let total: f64 = v.iter().sum();
        v.into_iter()
            .map(|x| if total > 0.0 { x / total } else { 0.0 })
            .collect::<Vec<_>>()
    };
    let mut groups = vec![(
        format!("live ({} predictions)", live_counts.iter().sum::<f64>()),
        share(live_counts),
    )];
    if !reference.is_empty() {
        groups.insert(
            0,
            (
                format!("held-out at training ({} rows)", reference.len()),
                share(ref_counts),
            ),
        );
    }
    charts::share_bars("Prediction distribution", &categories, &groups, size)
}
