//! Registry page: every registered version with its aliases; a version's card, lineage,
//! verification, training profile, where it is deployed, and deploying it to devices.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::digest::short;

use crate::fleet;
use crate::registry::{Alias, ModelVersion};
use crate::state::use_app_state;
use crate::storage::{DeviceEntry, Storage};

#[component]
pub fn RegistryPage() -> impl IntoView {
    let state = use_app_state();
    let aliases_of = move |hash: &str| {
        state.aliases.with(|all| {
            all.iter()
                .filter(|a| a.hash == hash)
                .map(|a| a.alias.clone())
                .collect::<Vec<_>>()
        })
    };
    view! {
        <section class="panel" id="registry-panel">
            <h2>"Model registry"</h2>
            <Show
                when=move || !state.versions.with(Vec::is_empty)
                fallback=|| view! { <p class="empty">"No versions yet: compile a run in the Lab, check it, and register it."</p> }
            >
                <table class="runs" data-testid="versions">
                    <thead><tr>
                        <th>"Model"</th><th>"Version"</th><th>"Aliases"</th><th>"Hash"</th>
                        <th class="num">"Size"</th><th>"Metric"</th><th>"Dataset"</th><th>"Registered"</th>
                        {move || state.mlflow.with(Option::is_some).then(|| view! { <th>"MLflow"</th> })}
                    </tr></thead>
                    <tbody>
                        <For each=move || state.versions.get() key=|v| (v.hash.clone(), v.mlflow.clone()) let:v>
                            {
                                let hash = v.hash.clone();
                                let select = hash.clone();
                                let aliases_hash = hash.clone();
                                view! {
                                    <tr data-version=hash.clone()
                                        class:selected=move || state.selected_version.get().as_deref() == Some(hash.as_str())>
                                        <td><a href="#" class="version-link" on:click=move |ev| { ev.prevent_default(); state.selected_version.set(Some(select.clone())); }>{v.model.clone()}</a></td>
                                        <td>{format!("v{}", v.version)}</td>
                                        <td>{move || aliases_of(&aliases_hash).into_iter().map(|a| view! { <span class="tag">{a}</span> }).collect_view()}</td>
                                        <td class="mono">{short(&v.hash).to_string()}</td>
                                        <td class="num">{format!("{:.1} KB", v.size as f64 / 1024.0)}</td>
                                        <td>{format!("{} {:.4}", v.metric, v.module_metric)}</td>
                                        <td class="mono">{format!("{} @{}", v.dataset.name, short(&v.dataset.hash))}</td>
                                        <td>{clock(v.registered_at_ms)}</td>
                                        {
                                            let mlflow = v.mlflow.as_ref().map(|m| format!("v{}", m.version));
                                            move || state.mlflow.with(Option::is_some).then(|| view! {
                                                <td data-testid="version-mlflow">{mlflow.clone().unwrap_or_else(|| "pending".into())}</td>
                                            })
                                        }
                                    </tr>
                                }
                            }
                        </For>
                    </tbody>
                </table>
            </Show>
            {move || {
                let refused = state.remote_versions.get();
                (!refused.is_empty()).then(|| view! {
                    <h4>"On the MLflow server, not taken here"</h4>
                    <ul class="results" data-testid="refused-versions">
                        {refused.into_iter().map(|r| view! {
                            <li class="error">{format!("{} v{} (MLflow): {}. It cannot be deployed from this dashboard.", r.name, r.version, r.reason)}</li>
                        }).collect_view()}
                    </ul>
                })
            }}
        </section>
        {move || {
            let hash = state.selected_version.get()?;
            let v = state.versions.with(|all| all.iter().find(|v| v.hash == hash).cloned())?;
            Some(view! { <VersionPage v=v /> })
        }}
    }
}

/// Local date and time of a unix-ms instant.
pub fn clock(ms: f64) -> String {
    js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms))
        .to_locale_string("en-GB", &wasm_bindgen::JsValue::UNDEFINED)
        .into()
}

#[component]
fn VersionPage(v: ModelVersion) -> impl IntoView {
    let state = use_app_state();
    let download = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    {
        let hash = v.hash.clone();
        spawn_local(async move {
            match async { Storage::open().await?.module_bytes(&hash).await }.await {
                Ok(Some(bytes)) => match crate::panels::runs::bytes_url(&bytes, "application/wasm")
                {
                    Ok(url) => download.set(Some(url)),
                    Err(e) => error.set(Some(e)),
                },
                Ok(None) => error.set(Some(
                    "the module's bytes are not stored in this browser".into(),
                )),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    }
    let stored = StoredValue::new(v.clone());
    let card = v.card.clone();
    let verified = v.module_metric.to_bits() == v.trained_metric.to_bits();
    let file_name = format!("{}-v{}.wasm", v.model, v.version);
    let deployed_on = move || {
        let hash = stored.with_value(|v| v.hash.clone());
        state.devices.with(|devices| {
            state.statuses.with(|statuses| {
                devices
                    .iter()
                    .filter(|d| {
                        statuses
                            .get(&d.url)
                            .and_then(|s| s.last_info.as_ref())
                            .and_then(|i| i.active.as_ref())
                            .is_some_and(|a| a.hash == hash)
                    })
                    .map(|d| d.name.clone())
                    .collect::<Vec<_>>()
            })
        })
    };
    view! {
        <section class="panel version" data-testid="version-page">
            <h2>{v.label()} <span class="mono muted">{format!(" {}", v.hash)}</span></h2>
            <div class="kv">
                <dl data-testid="version-card">
                    <dt>"kind"</dt><dd>{card.kind.replace('_', " ")}</dd>
                    <dt>"features"</dt><dd>{card.feature_names.join(", ")}</dd>
                    <dt>"target"</dt><dd>{card.target_name.clone()}</dd>
                    <dt>"outputs"</dt><dd>{card.outputs.join(", ")}</dd>
                    <dt>"size"</dt><dd>{format!("{} bytes", v.size)}</dd>
                    <dt>"ABI"</dt><dd>{format!("v{}", card.abi_version)}</dd>
                </dl>
                <dl data-testid="version-lineage">
                    <dt>"run"</dt><dd>{v.run_name.clone()}</dd>
                    <dt>"dataset"</dt><dd class="mono">{format!("{} @{}", v.dataset.name, short(&v.dataset.hash))}</dd>
                    <dt>"code version"</dt><dd class="mono">{v.code_version.clone()}</dd>
                    <dt>"registered"</dt><dd>{clock(v.registered_at_ms)}</dd>
                    <dt>"verified in this browser"</dt>
                    {match v.pulled.clone() {
                        Some(how) => view! { <dd class="ok" data-testid="version-verified">{format!("{how}; {} {:.4} as trained (from its card)", v.metric, v.trained_metric)}</dd> }.into_any(),
                        None => view! {
                            <dd class=if verified { "ok" } else { "error" } data-testid="version-verified">
                                {format!("{} {:.4} through the module = {:.4} trained; {} conformance rows bit-identical",
                                    v.metric, v.module_metric, v.trained_metric, v.conformance_rows)}
                            </dd>
                        }.into_any(),
                    }}
                    {v.mlflow.clone().map(|m| view! { <dt>"MLflow"</dt><dd data-testid="version-mlflow-ref">{format!("{} v{}", m.name, m.version)}</dd> })}
                    <dt>"deployed on"</dt>
                    <dd data-testid="deployed-on">{move || { let d = deployed_on(); if d.is_empty() { "no device (as last seen)".to_string() } else { d.join(", ") } }}</dd>
                </dl>
            </div>
            <div class="actions">
                {move || download.get().map(|url| view! { <a id="download-wasm" class="button secondary" href=url download=file_name.clone()>"Download .wasm"</a> })}
            </div>
            <AliasEditor v=v.clone() />
            <DeployBox v=v.clone() />
            {move || error.get().map(|e| view! { <p class="error">{e}</p> })}
            <h4>"Training data profile"</h4>
            <div class="charts" data-testid="version-profile">
                {v.profile.features.iter().map(|f| match crate::charts::profile_histogram(f, 300, 180) {
                    Ok(svg) => view! { <div class="chart" inner_html=svg></div> }.into_any(),
                    Err(e) => view! { <p class="error">{format!("chart of {}: {e}", f.name)}</p> }.into_any(),
                }).collect_view()}
            </div>
        </section>
    }
}

/// Points an alias of this model at this version (moving it if it pointed elsewhere), and shows
/// where the model's aliases pointed over time.
#[component]
fn AliasEditor(v: ModelVersion) -> impl IntoView {
    let state = use_app_state();
    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let stored = StoredValue::new(v);
    let set_alias = move |alias: String| {
        let v = stored.get_value();
        let alias = alias.trim().to_lowercase();
        if alias.is_empty()
            || !alias
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return error.set(Some(format!(
                "an alias is letters, digits, `-` and `_`, got `{alias}`"
            )));
        }
        // MLflow keeps these for itself (`models:/name/latest`, `models:/name/3`).
        let reserved = alias == "latest"
            || (alias.len() > 1
                && alias.starts_with('v')
                && alias[1..].bytes().all(|b| b.is_ascii_digit()));
        if reserved {
            return error.set(Some(format!(
                "`{alias}` is reserved by MLflow (`latest` and `v<number>` name versions there): pick another alias"
            )));
        }
        error.set(None);
        let key = format!("{}/{alias}", v.model);
        let existing = state
            .aliases
            .with_untracked(|all| all.iter().find(|a| a.key == key).cloned());
        if existing.as_ref().is_some_and(|a| a.hash == v.hash) {
            return;
        }
        let moved = Alias::point(existing.as_ref(), &alias, &v, js_sys::Date::now());
        spawn_local(async move {
            match async { Storage::open().await?.put_alias(&moved).await }.await {
                Ok(()) => {
                    state.aliases.update(|all| {
                        all.retain(|a| a.key != moved.key);
                        all.push(moved);
                    });
                    // Connected: the server's alias moves too (on the next sync, if offline).
                    crate::mlflow::request_sync(state);
                }
                Err(e) => error.set(Some(format!("alias not saved: {e}"))),
            }
        });
    };
    let model = stored.with_value(|v| v.model.clone());
    let history = move || {
        let mut rows: Vec<(String, String, f64, Option<f64>)> = Vec::new();
        state.aliases.with(|all| {
            for a in all.iter().filter(|a| a.model == model) {
                rows.push((a.alias.clone(), format!("v{}", a.version), a.moved_ms, None));
                for m in &a.history {
                    rows.push((
                        a.alias.clone(),
                        format!("v{}", m.version),
                        m.from_ms,
                        Some(m.until_ms),
                    ));
                }
            }
        });
        rows.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.total_cmp(&a.2)));
        rows
    };
    let model_c = stored.with_value(|v| v.model.clone());
    let conflicts = move || {
        state.aliases.with(|all| {
            all.iter()
                .filter(|a| a.model == model_c && a.conflict.is_some())
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    // Resolving a conflict: take the server's target, or keep this one (pushed on the sync).
    let resolve = move |a: Alias, keep_mine: bool| {
        let uri = state.mlflow.get_untracked().map(|s| s.uri);
        let removed = a
            .conflict
            .as_deref()
            .is_some_and(|c| c.starts_with("removed on the server"));
        if removed && !keep_mine {
            // The server's word: the alias is gone.
            let key = a.key.clone();
            spawn_local(async move {
                match async { Storage::open().await?.delete_alias(&key).await }.await {
                    Ok(()) => state.aliases.update(|all| all.retain(|x| x.key != key)),
                    Err(e) => error.set(Some(format!("alias not removed: {e}"))),
                }
            });
            return;
        }
        let server = a
            .conflict
            .as_ref()
            .and_then(|c| c.rsplit_once("MLflow v"))
            .and_then(|(_, rest)| rest.split(')').next())
            .map(str::to_string);
        let resolved = if keep_mine {
            Some(Alias {
                mlflow_version: server,
                mlflow_server: uri.clone(),
                conflict: None,
                ..a.clone()
            })
        } else {
            let target = server.as_ref().and_then(|sv| {
                state.versions.with_untracked(|all| {
                    all.iter()
                        .find(|v| {
                            v.model == a.model
                                && v.mlflow.as_ref().is_some_and(|m| &m.version == sv)
                        })
                        .cloned()
                })
            });
            target.map(|v| Alias {
                mlflow_version: server.clone(),
                mlflow_server: uri.clone(),
                conflict: None,
                ..Alias::point(Some(&a), &a.alias, &v, js_sys::Date::now())
            })
        };
        let Some(resolved) = resolved else {
            return error.set(Some(
                "the server's version of this alias is not in this browser yet: sync first".into(),
            ));
        };
        spawn_local(async move {
            match async { Storage::open().await?.put_alias(&resolved).await }.await {
                Ok(()) => {
                    state.aliases.update(|all| {
                        all.retain(|x| x.key != resolved.key);
                        all.push(resolved);
                    });
                    crate::mlflow::request_sync(state);
                }
                Err(e) => error.set(Some(format!("alias not saved: {e}"))),
            }
        });
    };
    view! {
        <h4>"Aliases"</h4>
        {move || conflicts().into_iter().map(|a| {
            let (a1, a2) = (a.clone(), a.clone());
            view! {
                <p class="error" data-testid="alias-conflict">
                    {format!("`{}` {}. ", a.alias, a.conflict.clone().unwrap_or_default())}
                    <button class="secondary" on:click=move |_| resolve(a1.clone(), false)>"Use the server's"</button>
                    " "
                    <button class="secondary" on:click=move |_| resolve(a2.clone(), true)>"Keep this one"</button>
                </p>
            }
        }).collect_view()}
        <div class="actions aliases">
            <button class="secondary alias-quick" id="alias-champion" on:click=move |_| set_alias("champion".into())>"Make champion"</button>
            <button class="secondary alias-quick" id="alias-challenger" on:click=move |_| set_alias("challenger".into())>"Make challenger"</button>
            <input id="alias-name" placeholder="other alias, e.g. staging" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
            <button class="secondary" id="set-alias" on:click=move |_| set_alias(name.get_untracked())>"Set alias"</button>
        </div>
        {move || error.get().map(|e| view! { <p class="error" data-testid="alias-error">{e}</p> })}
        <table class="runs compact" data-testid="alias-history">
            <thead><tr><th>"Alias"</th><th>"Version"</th><th>"From"</th><th>"Until"</th></tr></thead>
            <tbody>
                {move || history().into_iter().map(|(alias, version, from, until)| view! {
                    <tr class:current=until.is_none()>
                        <td>{alias}</td><td>{version}</td><td>{clock(from)}</td>
                        <td>{until.map(clock).unwrap_or_else(|| "now".into())}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// Deploys this version to the chosen devices, one after the other, each outcome as the device
/// said it.
#[component]
fn DeployBox(v: ModelVersion) -> impl IntoView {
    let state = use_app_state();
    let results = RwSignal::new(Vec::<(String, bool, String)>::new());
    let stored = StoredValue::new(v);
    // The deployment to the chosen devices; Deploy is disabled while it is pending.
    let deploying = Action::new_local(move |targets: &Vec<DeviceEntry>| {
        let v = stored.get_value();
        let targets = targets.clone();
        async move {
            let outcome = async {
                let storage = Storage::open().await.map_err(|e| e.to_string())?;
                let bytes = storage
                    .module_bytes(&v.hash)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("the module's bytes are not stored in this browser")?;
                // Its signature (made now if the module has none yet): devices with trusted
                // keys run only signed modules.
                let signature = crate::signing::signature_of(&storage, &v.hash)
                    .await
                    .unwrap_or_else(|e| {
                        crate::logs::warn("signing", format!("{} sent unsigned: {e}", v.label()));
                        None
                    });
                for device in targets {
                    let d =
                        fleet::deploy(&storage, &device, &v, &bytes, signature.as_deref()).await;
                    results.update(|r| r.push((device.name.clone(), d.ok, d.message.clone())));
                    // Refresh what the dashboard knows of the device (its active version).
                    let versions = state.versions.get_untracked();
                    match fleet::pull(&storage, &device, &versions).await {
                        Ok(p) => state.statuses.update(|s| {
                            s.insert(device.url.clone(), p.status);
                        }),
                        Err(fleet::PullError::Device(_)) => {} // shown in its row and logged
                        Err(fleet::PullError::Storage(e)) => return Err(e.to_string()),
                    }
                }
                state
                    .alerts
                    .set(storage.alerts().await.map_err(|e| e.to_string())?);
                state.pulls.update(|n| *n += 1);
                Ok::<_, String>(())
            }
            .await;
            if let Err(e) = outcome {
                results.update(|r| r.push(("registry".into(), false, e)));
            }
        }
    });
    let busy = deploying.pending();
    let deploy = move |_| {
        let targets: Vec<DeviceEntry> = state.devices.with_untracked(|all| {
            state
                .deploy_targets
                .with_untracked(|t| all.iter().filter(|d| t.contains(&d.url)).cloned().collect())
        });
        results.set(Vec::new());
        deploying.dispatch_local(targets);
    };
    view! {
        <h4>"Deploy"</h4>
        <Show
            when=move || !state.devices.with(Vec::is_empty)
            fallback=|| view! { <p class="empty">"No devices yet: add one on the Devices page."</p> }
        >
            <div class="targets">
                <For each=move || state.devices.get() key=|d| d.url.clone() let:d>
                    {
                        let url = d.url.clone();
                        let url2 = d.url.clone();
                        view! {
                            <label class="check">
                                <input type="checkbox" class="deploy-target" data-device=d.url.clone()
                                    prop:checked=move || state.deploy_targets.with(|t| t.contains(&url))
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        state.deploy_targets.update(|t| { if on { t.insert(url2.clone()); } else { t.remove(&url2); } });
                                    } />
                                {format!("{} ({})", d.name, d.url)}
                            </label>
                        }
                    }
                </For>
            </div>
            <div class="actions">
                <button id="deploy" on:click=deploy
                    disabled=move || busy.get() || state.deploy_targets.with(|t| t.is_empty())>
                    "Deploy to selected devices"
                </button>
            </div>
        </Show>
        <ul class="results" data-testid="deploy-results">
            {move || results.get().into_iter().map(|(device, ok, message)| view! {
                <li class=if ok { "ok" } else { "error" } data-testid="deploy-result">{format!("{device}: {message}")}</li>
            }).collect_view()}
        </ul>
    }
}
