//! Settings page: the MLflow tracking server a team shares runs and the registry through.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::mlflow::{self, Auth, Settings, SyncState};
use crate::panels::registry::clock;
use crate::state::use_app_state;
use crate::storage::Storage;

#[component]
pub fn SettingsPage() -> impl IntoView {
    let state = use_app_state();
    let uri = RwSignal::new(String::new());
    let auth = RwSignal::new("none".to_string());
    let user = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let token = RwSignal::new(String::new());
    let experiment = RwSignal::new("wasmops".to_string());
    let auto_sync = RwSignal::new(true);
    let message = RwSignal::new(None::<(bool, String)>);
    let experiments = RwSignal::new(Vec::<String>::new());
    // The form shows what is stored, once it is read.
    Effect::new(move |filled: Option<bool>| {
        if filled == Some(true) {
            return true;
        }
        let Some(s) = state.mlflow.get() else {
            return false;
        };
        uri.set(s.uri);
        experiment.set(s.experiment);
        auto_sync.set(s.auto_sync);
        match s.auth {
            Auth::None => auth.set("none".into()),
            Auth::Basic {
                user: u,
                password: p,
            } => {
                auth.set("basic".into());
                user.set(u);
                password.set(p);
            }
            Auth::Bearer { token: t } => {
                auth.set("bearer".into());
                token.set(t);
            }
        }
        true
    });
    let form = move || {
        Settings {
            key: mlflow::SETTINGS_KEY.into(),
            uri: uri.get_untracked(),
            auth: match auth.get_untracked().as_str() {
                "basic" => Auth::Basic {
                    user: user.get_untracked(),
                    password: password.get_untracked(),
                },
                "bearer" => Auth::Bearer {
                    token: token.get_untracked(),
                },
                _ => Auth::None,
            },
            experiment: experiment.get_untracked(),
            auto_sync: auto_sync.get_untracked(),
        }
        .checked()
    };
    let save = move |_| {
        let settings = match form() {
            Ok(s) => s,
            Err(e) => return message.set(Some((false, e))),
        };
        spawn_local(async move {
            match async { Storage::open().await?.put_mlflow_settings(&settings).await }.await {
                Ok(()) => {
                    crate::logs::info(
                        "mlflow",
                        format!(
                            "connected to {} (experiment `{}`)",
                            settings.uri, settings.experiment
                        ),
                    );
                    message.set(Some((true, "Saved; syncing.".into())));
                    state.mlflow.set(Some(settings));
                    mlflow::request_sync(state);
                }
                Err(e) => message.set(Some((false, format!("settings not saved: {e}")))),
            }
        });
    };
    // Asks the server for its experiments; the button waits while the action is pending.
    let test_connection = Action::new_local(move |settings: &mlflow::Settings| {
        let settings = settings.clone();
        async move {
            match mlflow::client(&settings).experiments().await {
                Ok(list) => {
                    let names: Vec<String> = list
                        .into_iter()
                        .filter(|e| e.lifecycle_stage != "deleted")
                        .map(|e| e.name)
                        .collect();
                    let has = names.contains(&settings.experiment);
                    message.set(Some((
                        true,
                        format!(
                            "MLflow at {} answers: {} experiments; `{}` {}.",
                            settings.uri,
                            names.len(),
                            settings.experiment,
                            if has {
                                "exists"
                            } else {
                                "will be created on the first sync"
                            }
                        ),
                    )));
                    experiments.set(names);
                }
                Err(e) => message.set(Some((false, e.to_string()))),
            }
        }
    });
    let testing = test_connection.pending();
    let test = move |_| {
        let settings = match form() {
            Ok(s) => s,
            Err(e) => return message.set(Some((false, e))),
        };
        message.set(None);
        test_connection.dispatch_local(settings);
    };
    let disconnect = move |_| {
        spawn_local(async move {
            match async { Storage::open().await?.delete_mlflow_settings().await }.await {
                Ok(()) => {
                    state.mlflow.set(None);
                    message.set(Some((
                        true,
                        "Disconnected: runs stay in this browser, and sync states are kept for when you connect again.".into(),
                    )));
                }
                Err(e) => message.set(Some((false, e.to_string()))),
            }
        });
    };
    let counts = move || {
        let settings = state.mlflow.get()?;
        let (mut synced, mut pending, mut failed) = (0, 0, 0);
        state.runs.with(|runs| {
            state.run_syncs.with(|syncs| {
                for r in runs {
                    match mlflow::state_of(r, syncs.get(&r.id), &settings) {
                        SyncState::Synced => synced += 1,
                        SyncState::Pending => pending += 1,
                        SyncState::Failed(_) => failed += 1,
                    }
                }
            })
        });
        Some(format!(
            "{synced} runs synced, {pending} pending, {failed} failed"
        ))
    };
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default();
    view! {
        <section class="panel" id="settings-panel">
            <h2>"MLflow tracking server"</h2>
            <p class="muted">
                "Runs and the registry stay in this browser. Connect a team's MLflow server and they also go there (and versions and aliases made elsewhere come back), so colleagues, CI jobs and the MLflow UI see the same runs. Start one with:"
            </p>
            <pre class="mono" data-testid="mlflow-command">{format!("mlflow server --host 127.0.0.1 --port 5000 --cors-allowed-origins {origin}")}</pre>
            <div class="form settings-form">
                <label>"Tracking URI"
                    <input id="mlflow-uri" placeholder="http://127.0.0.1:5000" prop:value=move || uri.get() on:input=move |ev| uri.set(event_target_value(&ev)) />
                </label>
                <label>"Experiment"
                    <input id="mlflow-experiment" list="mlflow-experiments" prop:value=move || experiment.get() on:input=move |ev| experiment.set(event_target_value(&ev)) />
                    <datalist id="mlflow-experiments">
                        {move || experiments.get().into_iter().map(|e| view! { <option value=e></option> }).collect_view()}
                    </datalist>
                </label>
                <label>"Credentials"
                    <select id="mlflow-auth" prop:value=move || auth.get() on:change=move |ev| auth.set(event_target_value(&ev))>
                        <option value="none">"none"</option>
                        <option value="basic">"user and password (MLflow basic auth)"</option>
                        <option value="bearer">"bearer token"</option>
                    </select>
                </label>
                <Show when=move || auth.get() == "basic">
                    <label>"User"<input id="mlflow-user" autocomplete="off" prop:value=move || user.get() on:input=move |ev| user.set(event_target_value(&ev)) /></label>
                    <label>"Password"<input id="mlflow-password" type="password" autocomplete="off" prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev)) /></label>
                </Show>
                <Show when=move || auth.get() == "bearer">
                    <label>"Token"<input id="mlflow-token" type="password" autocomplete="off" prop:value=move || token.get() on:input=move |ev| token.set(event_target_value(&ev)) /></label>
                </Show>
                <label class="check">
                    <input type="checkbox" id="mlflow-auto" prop:checked=move || auto_sync.get() on:change=move |ev| auto_sync.set(event_target_checked(&ev)) />
                    {format!("sync on its own (after each run, and every {} s)", mlflow::SYNC_EVERY.as_secs())}
                </label>
            </div>
            <p class="muted">"Credentials are kept in this browser only: never exported, never logged."</p>
            <div class="actions">
                <button id="mlflow-save" on:click=save>"Save and sync"</button>
                <button id="mlflow-test" class="secondary" on:click=test disabled=move || testing.get()>"Test connection"</button>
                <button id="mlflow-sync" class="secondary" on:click=move |_| mlflow::request_sync(state)
                    disabled=move || state.mlflow.with(Option::is_none) || state.sync_status.with(|s| s.busy)>"Sync now"</button>
                <button id="mlflow-disconnect" class="secondary" on:click=disconnect
                    disabled=move || state.mlflow.with(Option::is_none)>"Disconnect"</button>
            </div>
            {move || message.get().map(|(ok, text)| view! {
                <p class=if ok { "ok" } else { "error" } data-testid="mlflow-message">{text}</p>
            })}
            <div data-testid="mlflow-status"
                data-session-requests=move || state.sync_status.with(|s| s.session.requests)
                data-session-bytes-sent=move || state.sync_status.with(|s| s.session.bytes_sent)>
                {move || match state.mlflow.get() {
                    None => view! { <p class="muted">"Not connected."</p> }.into_any(),
                    Some(s) => view! {
                        <p>{format!("Connected to {} (experiment `{}`). ", s.uri, s.experiment)}
                            <span data-testid="mlflow-counts">{counts}</span></p>
                    }.into_any(),
                }}
                {move || {
                    let st = state.sync_status.get();
                    if st.busy {
                        return Some(view! { <p class="muted" data-testid="mlflow-last">"Syncing…"</p> }.into_any());
                    }
                    let at = st.at_ms.map(clock).unwrap_or_default();
                    match st.last? {
                        Ok(r) => Some(view! {
                            <p data-testid="mlflow-last">{format!("Last sync {at}: {} ({} requests, {:.1} KB sent)", r.summary(), r.traffic.requests, r.traffic.bytes_sent as f64 / 1024.0)}</p>
                            {r.stopped.map(|why| view! { <p class="error" data-testid="mlflow-error">{format!("Stopped: {why}. Nothing stored was lost; the next sync continues.")}</p> })}
                            {(!r.waiting.is_empty()).then(|| view! { <p class="muted">{r.waiting.join("; ")}</p> })}
                        }.into_any()),
                        Err(e) => Some(view! { <p class="error" data-testid="mlflow-error">{format!("Last sync {at} failed: {e}")}</p> }.into_any()),
                    }
                }}
            </div>
        </section>
    }
}

/// This browser's module-signing key: its id and public half, for devices' `--trusted-keys`.
#[component]
pub fn SigningKeySection() -> impl IntoView {
    let key = RwSignal::new(None::<Result<crate::signing::PublicKey, String>>);
    spawn_local(async move {
        let result = async {
            let storage = Storage::open().await.map_err(|e| e.to_string())?;
            crate::signing::public_key(&storage).await
        }
        .await;
        key.set(Some(result));
    });
    view! {
        <section class="panel" id="signing-panel">
            <h2>"Module signing"</h2>
            <p class="muted">
                "Every module compiled here is signed with this browser's key (ECDSA P-256, made by WebCrypto and kept in this browser: it cannot be read out, exported or backed up). The signature travels with the module: beside it in MLflow and with each deploy. A device started with "
                <code>"--trusted-keys DIR"</code>
                " runs only modules signed by a key in DIR: put this public key there (several keys can be trusted at once, to rotate)."
            </p>
            {move || match key.get() {
                None => view! { <p class="muted">"Reading the key…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" data-testid="signing-error">{format!("No signing key: {e}. Modules are sent unsigned.")}</p> }.into_any(),
                Some(Ok(k)) => {
                    let url = crate::panels::runs::bytes_url(k.pem.as_bytes(), "application/x-pem-file").ok();
                    let file = format!("wasmops-{}.pem", k.id);
                    view! {
                        <p>"Key id " <code data-testid="signing-key-id">{k.id.clone()}</code></p>
                        <pre class="mono" data-testid="signing-public-pem">{k.pem.clone()}</pre>
                        <div class="actions">
                            {url.map(|u| view! { <a id="signing-download" class="button secondary" href=u download=file.clone()>"Download public key (.pem)"</a> })}
                        </div>
                        <pre class="mono">{format!("mkdir -p keys && mv {file} keys/\nwasmops-edge serve --trusted-keys keys")}</pre>
                    }.into_any()
                }
            }}
        </section>
    }
}
