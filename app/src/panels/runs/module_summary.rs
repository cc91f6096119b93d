//! The compiled module of a run, under its name: hash, checks, and Register.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::digest::short;

use crate::logic::register;
use crate::run::Run;
use crate::state::{use_app_state, CompiledModule};
use crate::storage::{Storage, StoredModule};

#[component]
pub fn ModuleSummary(m: CompiledModule) -> impl IntoView {
    let matches = m.module_metric == m.trained_metric;
    let state = use_app_state();
    let default_name = state
        .runs
        .with_untracked(|r| {
            r.iter()
                .find(|x| x.id == m.run_id)
                .map(|r| register::default_model_name(&r.dataset.name, &r.algorithm_label()))
        })
        .unwrap_or_default();
    let name = RwSignal::new(default_name);
    let error = RwSignal::new(None::<String>);
    let stored = StoredValue::new(m.clone());
    let register = move |_| {
        let m = stored.get_value();
        error.set(None);
        spawn_local(async move {
            let run = match async { Storage::open().await?.run(&m.run_id).await }.await {
                Ok(Some(run)) => run,
                Ok(None) => return error.set(Some("the module's run is gone".into())),
                Err(e) => return error.set(Some(e.to_string())),
            };
            match register_version(&run, &m, name.get_untracked().trim()).await {
                Ok(v) => {
                    crate::logs::info(
                        "registry",
                        format!(
                            "registered {} ({}) from run {}",
                            v.label(),
                            short(&v.hash),
                            v.run_name
                        ),
                    );
                    state.selected_version.set(Some(v.hash.clone()));
                    state.versions.update(|all| all.insert(0, v));
                    state.page.set(crate::state::Page::Registry);
                    crate::mlflow::request_sync(state);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let registered = move || {
        state.versions.with(|all| {
            all.iter()
                .find(|v| v.hash == stored.with_value(|m| m.hash.clone()))
                .map(|v| v.label())
        })
    };
    let run_name = state
        .runs
        .with_untracked(|r| r.iter().find(|x| x.id == m.run_id).map(|r| r.name.clone()))
        .unwrap_or_else(|| m.run_id.clone());
    // Where the user looks after clicking Compile: bring the result into view once, when it
    // appears (the details above it may be long).
    let node = NodeRef::<leptos::html::Div>::new();
    let fresh = js_sys::Date::now() - m.compiled_at_ms < 5_000.0;
    Effect::new(move |_| {
        if let (true, Some(el)) = (fresh, node.get()) {
            el.scroll_into_view();
        }
    });
    view! {
        <div class="module" data-testid="module" node_ref=node>
            <h3>{format!("Model module of {run_name}")}</h3>
            <dl>
                <dt>"hash"</dt><dd class="mono" data-testid="module-hash">{m.hash.clone()}</dd>
                <dt>"size"</dt><dd data-testid="module-size">{format!("{} bytes", m.bytes.len())}</dd>
                <dt>{format!("{} in this browser", m.metric)}</dt>
                <dd data-testid="module-metric">{format!("{:.4}", m.module_metric)}</dd>
                <dt>{format!("{} at training", m.metric)}</dt><dd>{format!("{:.4}", m.trained_metric)}</dd>
                <dt>"check"</dt>
                <dd data-testid="module-check" class=if matches { "ok" } else { "error" }>
                    {if matches { "module matches the trained model" } else { "MISMATCH with the trained model" }}
                    {format!("; {} conformance rows bit-identical in this browser", m.conformance_rows)}
                </dd>
            </dl>
            {move || match registered() {
                Some(label) => view! {
                    <p class="ok" data-testid="registered">{format!("registered as {label}")}</p>
                }.into_any(),
                None => view! {
                    <div class="actions register">
                        <label>"Model name" <input id="model-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) /></label>
                        <button id="register" on:click=register>"Register version"</button>
                    </div>
                }.into_any(),
            }}
            {move || error.get().map(|e| view! { <p class="error" data-testid="register-error">{e}</p> })}
        </div>
    }
}
/// Registers a verified module as the next version of `name`, with its lineage; refuses a
/// module whose evaluation in this browser differs from the trained model.
pub async fn register_version(
    run: &Run,
    m: &CompiledModule,
    name: &str,
) -> Result<crate::registry::ModelVersion, String> {
    register::check(name, m)?;
    let storage = Storage::open().await.map_err(|e| e.to_string())?;
    let existing = storage.versions().await.map_err(|e| e.to_string())?;
    let version = register::next_version(&existing, name);
    let v = crate::registry::ModelVersion {
        hash: m.hash.clone(),
        model: name.to_string(),
        version,
        size: m.bytes.len(),
        registered_at_ms: js_sys::Date::now(),
        run_id: run.id.clone(),
        run_name: run.name.clone(),
        dataset: run.dataset.clone(),
        code_version: run.code_version.clone(),
        card: run.card(),
        profile: run.profile.clone(),
        conformance_rows: m.conformance_rows,
        metric: m.metric.to_string(),
        module_metric: m.module_metric,
        trained_metric: m.trained_metric,
        check_rows: run.test_x.clone(),
        check_outputs: m.test_outputs.clone(),
        mlflow: None,
        pulled: None,
    };
    // The module as compiled (with its signature) if it was stored; signed now if not.
    let signature = match storage
        .module(&m.hash)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.signature)
    {
        Some(sig) => Some(sig),
        None => crate::signing::sign(&storage, &m.bytes).await.ok(),
    };
    let module = StoredModule {
        hash: m.hash.clone(),
        run_id: run.id.clone(),
        bytes: m.bytes.clone(),
        signature,
    };
    storage
        .register(&v, &module)
        .await
        .map_err(|e| e.to_string())?;
    Ok(v)
}
