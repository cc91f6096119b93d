//! Device panel: the device the dashboard knows, deploying the compiled module to it, checking
//! that it answers bit-identically to the browser, and its prediction count.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::digest::short;

use crate::device_client::DeviceClient;
use crate::state::{use_app_state, AppState, CompiledModule};
use crate::storage::{DeviceEntry, Storage};

#[component]
pub fn DevicePanel() -> impl IntoView {
    let state = use_app_state();
    let url = RwSignal::new(String::new());
    let token = RwSignal::new(String::new());
    let status = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let verdict = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    // Mirror the stored device into the form once it is loaded (or changed), and ask it how it
    // is doing right away.
    Effect::new(move |_| {
        if let Some(d) = state.device.get() {
            url.set(d.url);
            token.set(d.token);
            spawn_local(refresh_status(state, status, error));
        }
    });
    // Keep the device's status and counters current while the page is open.
    set_interval(
        move || {
            if state.device.get_untracked().is_some() {
                spawn_local(refresh_status(state, status, error));
            }
        },
        std::time::Duration::from_secs(10),
    );

    let save = move |_| {
        let entry = DeviceEntry {
            url: url.get_untracked().trim().to_string(),
            token: token.get_untracked(),
            name: "device".into(),
        };
        if !(entry.url.starts_with("http://") || entry.url.starts_with("https://")) {
            return error.set(Some(format!(
                "device URL must start with http:// or https://, got `{}`",
                entry.url
            )));
        }
        error.set(None);
        spawn_local(async move {
            match async { Storage::open().await?.put_device(&entry).await }.await {
                Ok(()) => state.device.set(Some(entry)),
                Err(e) => error.set(Some(format!("could not save the device: {e}"))),
            }
        });
    };

    let refresh = move |_| spawn_local(refresh_status(state, status, error));

    let deploy = move |_| {
        let (Some(device), Some(module)) =
            (state.device.get_untracked(), state.compiled.get_untracked())
        else {
            return error.set(Some("compile a run's module and set a device first".into()));
        };
        busy.set(true);
        error.set(None);
        verdict.set(None);
        spawn_local(async move {
            match deploy_and_check(&device, &module, &state).await {
                Ok(v) => verdict.set(Some(v)),
                Err(e) => error.set(Some(e)),
            }
            refresh_status(state, status, error).await;
            busy.set(false);
        });
    };

    view! {
        <section class="panel" id="device-panel">
            <h2>"Device"</h2>
            <div class="form">
                <label>"URL" <input id="device-url" placeholder="http://127.0.0.1:7878" prop:value=move || url.get() on:input=move |ev| url.set(event_target_value(&ev)) /></label>
                <label>"Token" <input id="device-token" type="password" prop:value=move || token.get() on:input=move |ev| token.set(event_target_value(&ev)) /></label>
            </div>
            <div class="actions">
                <button id="device-save" on:click=save>"Save device"</button>
                <button id="device-refresh" on:click=refresh disabled=move || state.device.get().is_none()>"Refresh"</button>
                <button id="deploy" on:click=deploy
                    disabled=move || busy.get() || state.compiled.get().is_none() || state.device.get().is_none()>
                    "Deploy module"
                </button>
            </div>
            {move || status.get().map(|s| view! { <p class="status" data-testid="device-status">{s}</p> })}
            {move || state.telemetry.get().map(|t| view! {
                <p class="telemetry" data-testid="device-telemetry">
                    {format!("predictions served: {} · requests: {} · errors: {}", t.predictions, t.requests, t.errors)}
                </p>
            })}
            {move || verdict.get().map(|v| view! { <p class="ok" data-testid="deploy-verdict">{v}</p> })}
            {move || error.get().map(|e| view! { <p class="error" data-testid="device-error">{e}</p> })}
        </section>
    }
}

async fn refresh_status(
    state: AppState,
    status: RwSignal<Option<String>>,
    error: RwSignal<Option<String>>,
) {
    let Some(device) = state.device.get_untracked() else {
        return;
    };
    let client = DeviceClient { device: &device };
    match client.info().await {
        Ok(info) => {
            let active = info
                .active
                .map(|a| format!("{} {}", a.kind.replace('_', " "), short(&a.hash)))
                .unwrap_or_else(|| "none".into());
            status.set(Some(format!(
                "{} (v{}) · up {} s · active model: {active}",
                info.name, info.version, info.uptime_s
            )));
        }
        Err(e) => {
            status.set(Some("unreachable".into()));
            error.set(Some(e.to_string()));
            return;
        }
    }
    match client.telemetry().await {
        Ok(t) => state.telemetry.set(Some(t)),
        Err(e) => error.set(Some(e.to_string())),
    }
}

/// Uploads and activates the module, then asks the device for the held-out rows and compares
/// its answers with the browser's, bit for bit.
async fn deploy_and_check(
    device: &DeviceEntry,
    module: &CompiledModule,
    state: &AppState,
) -> Result<String, String> {
    let client = DeviceClient { device };
    let uploaded = client
        .upload(&module.bytes)
        .await
        .map_err(|e| e.to_string())?;
    if uploaded.hash != module.hash {
        return Err(format!(
            "device stored hash {} but the module's hash is {}",
            uploaded.hash, module.hash
        ));
    }
    client
        .activate(&uploaded.hash)
        .await
        .map_err(|e| e.to_string())?;
    let run = state
        .runs
        .with_untracked(|runs| runs.iter().find(|r| r.id == module.run_id).cloned())
        .ok_or("the module's run is gone")?;
    let d = run.feature_names.len();
    let rows: Vec<Vec<f64>> = run.test_x.chunks(d).map(<[f64]>::to_vec).collect();
    let n = rows.len();
    let answer = client.predict(rows).await.map_err(|e| e.to_string())?;
    let device_bits: Vec<u64> = answer
        .outputs
        .iter()
        .flatten()
        .map(|v| v.to_bits())
        .collect();
    let browser_bits: Vec<u64> = module.test_outputs.iter().map(|v| v.to_bits()).collect();
    let same_rows = device_bits
        .chunks(module.n_outputs)
        .zip(browser_bits.chunks(module.n_outputs))
        .filter(|(a, b)| a == b)
        .count();
    if same_rows == n && device_bits.len() == browser_bits.len() {
        Ok(format!(
            "deployed {} · device answers bit-identical to this browser on {same_rows}/{n} held-out rows",
            short(&module.hash)
        ))
    } else {
        Err(format!(
            "device answers differ from this browser: only {same_rows}/{n} rows bit-identical"
        ))
    }
}
