//! Runs panel: every tracked run; compile a run into a module and verify it in this browser.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::digest::{content_hash, short};
use wasmops_shared::module::ModuleInfo;

use crate::module_runner::BrowserModule;
use crate::run::Run;
use crate::state::{use_app_state, CompiledModule};
use crate::storage::{Storage, StoredModule};
use wasmops_shared::metrics::evaluate;

#[component]
pub fn RunsPanel() -> impl IntoView {
    let state = use_app_state();
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    let compile = move |run: Run| {
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            match compile_and_verify(&run).await {
                Ok(m) => {
                    let stored = StoredModule {
                        hash: m.hash.clone(),
                        run_id: run.id.clone(),
                        bytes: m.bytes.clone(),
                    };
                    if let Err(e) = async { Storage::open().await?.put_module(&stored).await }.await
                    {
                        error.set(Some(format!("module compiled but not saved: {e}")));
                    }
                    state.compiled.set(Some(m));
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    view! {
        <section class="panel" id="runs-panel">
            <h2>"Runs"</h2>
            <Show
                when=move || !state.runs.with(Vec::is_empty)
                fallback=|| view! { <p class="empty">"No runs yet: train a model."</p> }
            >
                <table class="runs" data-testid="runs">
                    <thead><tr>
                        <th>"Run"</th><th>"Dataset"</th><th>"Model"</th><th>"Metric"</th><th class="num">"Value"</th>
                        <th class="num">"Duration"</th><th>"Code"</th><th></th>
                    </tr></thead>
                    <tbody>
                        <For each=move || state.runs.get() key=|r| r.id.clone() let:run>
                            <RunRow run=run.clone() busy=busy on_compile=compile />
                        </For>
                    </tbody>
                </table>
            </Show>
            {move || error.get().map(|e| view! { <p class="error" data-testid="runs-error">{e}</p> })}
            {move || state.compiled.get().map(|m| view! { <ModuleSummary m=m /> })}
        </section>
    }
}

#[component]
fn RunRow(
    run: Run,
    busy: RwSignal<bool>,
    on_compile: impl Fn(Run) + Copy + 'static,
) -> impl IntoView {
    let (metric, value) = run.primary_metric();
    let value = value
        .map(|a| format!("{a:.4}"))
        .unwrap_or_else(|| "-".into());
    let dataset = format!("{} @{}", run.dataset.name, short(&run.dataset.hash));
    let duration = format!("{:.0} ms", run.duration_ms);
    let kind = run.pipeline.model.kind().replace('_', " ");
    let code = run.code_version.clone();
    let name = run.name.clone();
    let id = run.id.clone();
    view! {
        <tr data-run-id=id>
            <td>{name}</td>
            <td class="mono">{dataset}</td>
            <td>{kind}</td>
            <td>{metric}</td>
            <td class="num" data-testid="run-metric">{value}</td>
            <td class="num">{duration}</td>
            <td class="mono">{code}</td>
            <td><button class="compile" disabled=move || busy.get() on:click=move |_| on_compile(run.clone())>
                "Compile & verify"
            </button></td>
        </tr>
    }
}

#[component]
fn ModuleSummary(m: CompiledModule) -> impl IntoView {
    let matches = m.module_metric == m.trained_metric;
    view! {
        <div class="module" data-testid="module">
            <h3>"Model module"</h3>
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
        </div>
    }
}

/// Compiles a run's pipeline, runs the module through the browser's WebAssembly engine on
/// the conformance vectors (must match bit for bit) and the held-out split.
async fn compile_and_verify(run: &Run) -> Result<CompiledModule, String> {
    let bytes = run.compile().map_err(|e| format!("compile failed: {e}"))?;
    let info = ModuleInfo::parse(&bytes)
        .map_err(|e| format!("compiled module failed its own checks: {e}"))?;
    let module = BrowserModule::instantiate(&bytes).await?;
    let conformance_out = module.predict(&info.conformance.input_values())?;
    info.conformance
        .verify(&conformance_out)
        .map_err(|e| format!("module disagrees with the reference in this browser: {e}"))?;
    let test_outputs = module.predict(&run.test_x)?;
    let (metric, trained) = run.primary_metric();
    Ok(CompiledModule {
        run_id: run.id.clone(),
        hash: content_hash(&bytes),
        n_outputs: module.n_outputs(),
        metric,
        module_metric: evaluate(&run.pipeline, &run.test_x, &test_outputs, &run.test_y)
            .get(metric)
            .copied()
            .unwrap_or(f64::NAN),
        trained_metric: trained.unwrap_or(f64::NAN),
        conformance_rows: info.conformance.n_rows,
        test_outputs,
        bytes,
    })
}
