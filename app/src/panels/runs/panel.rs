//! The runs table: filter, sort, archive, compare, export and import; a run's details below.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::digest::short;
use wasmops_shared::run_filter::Filter;

use super::compile::compile_and_verify;
use super::details::RunDetails;
use super::download::blob_url;
use super::row::RunRow;
use super::stopped::StoppedRun;
use super::{MARGIN_ROWS, ROW_PX, SCREEN_ROWS};
use crate::logic::runs_table::{self, SortBy};
use crate::run::{Bundle, Run, RunSummary};
use crate::state::use_app_state;
use crate::storage::{Storage, StoredModule};

#[component]
pub fn RunsPanel() -> impl IntoView {
    let state = use_app_state();
    let error = RwSignal::new(None::<String>);
    let query = RwSignal::new(String::new());
    // (column, ascending); newest first by default.
    let sort = RwSignal::new((SortBy::Started, false));
    let filter = Memo::new(move |_| Filter::parse(&query.get()));
    let show_archived = RwSignal::new(false);
    let compare = RwSignal::new(std::collections::BTreeSet::<String>::new());
    // Indexes into `state.runs` of the runs shown, in table order. Only indexes are kept, so
    // filtering 10,000 summaries copies none of them.
    let visible = Memo::new(move |_| {
        let archived = show_archived.get();
        let (by, ascending) = sort.get();
        filter.with(|f| {
            let f = f.as_ref().ok().and_then(Option::as_ref);
            state
                .runs
                .with(|runs| runs_table::visible(runs, f, archived, by, ascending))
        })
    });
    // Virtualized rendering: only the rows on screen and a margin around them are in the DOM;
    // spacers above and below keep the scroll bar true to the whole list.
    let scroll_top = RwSignal::new(0.0_f64);
    let scroller = NodeRef::<leptos::html::Div>::new();
    let window = Memo::new(move |_| {
        let top = scroll_top.get();
        visible.with(|shown| {
            let (above, below, drawn) =
                runs_table::screen(shown.len(), top, ROW_PX, SCREEN_ROWS, MARGIN_ROWS);
            let rows: Vec<RunSummary> = state
                .runs
                .with(|runs| shown[drawn].iter().map(|&i| runs[i].clone()).collect());
            (above, below, rows)
        })
    });
    // A new filter, sort or archive choice starts at the top of the list.
    Effect::new(move |_| {
        query.track();
        sort.track();
        show_archived.track();
        if let Some(el) = scroller.get_untracked() {
            el.set_scroll_top(0);
        }
        scroll_top.set(0.0);
    });
    let export_url = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let export = move |_| {
        let ids: Vec<String> = visible.with_untracked(|shown| {
            state
                .runs
                .with_untracked(|runs| shown.iter().map(|&i| runs[i].id.clone()).collect())
        });
        error.set(None);
        spawn_local(async move {
            let runs = match async { Storage::open().await?.runs(&ids).await }.await {
                Ok(r) => r,
                Err(e) => return error.set(Some(format!("export failed: {e}"))),
            };
            let json = serde_json::to_string_pretty(&Bundle::new(runs)).unwrap_or_default();
            match blob_url(&json) {
                Ok(url) => export_url.set(Some(url)),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let import = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        input.set_value("");
        error.set(None);
        notice.set(None);
        spawn_local(async move {
            let text = wasm_bindgen_futures::JsFuture::from(file.text())
                .await
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default();
            let bundle = match Bundle::parse(&text) {
                Ok(b) => b,
                Err(e) => {
                    return error.set(Some(format!("{}: nothing imported: {e}", file.name())))
                }
            };
            let stored = async {
                let storage = Storage::open().await?;
                let known = storage.run_ids().await?;
                let new: Vec<Run> = bundle
                    .runs
                    .into_iter()
                    .filter(|r| !known.contains(&r.id))
                    .collect();
                storage.put_runs(&new).await?;
                Ok::<_, crate::storage::StorageError>(new)
            }
            .await;
            match stored {
                Ok(new) => {
                    notice.set(Some(format!(
                        "imported {} runs from {}",
                        new.len(),
                        file.name()
                    )));
                    crate::logs::info(
                        "runs",
                        format!("imported {} runs from {}", new.len(), file.name()),
                    );
                    state
                        .runs
                        .update(|r| r.extend(new.iter().map(RunSummary::of)));
                }
                Err(e) => error.set(Some(format!("nothing imported: {e}"))),
            }
        });
    };
    let header = move |label: &'static str, by: SortBy, class: &'static str| {
        view! {
            <th class=class on:click=move |_| sort.update(|s| *s = (by, if s.0 == by { !s.1 } else { true }))>
                {label}
                {move || match sort.get() { (b, true) if b == by => " ▲", (b, false) if b == by => " ▼", _ => "" }}
            </th>
        }
    };

    // One compile at a time: the Compile buttons are disabled while the action is pending.
    let compile = Action::new_local(move |id: &String| {
        let id = id.clone();
        async move {
            let run = match async { Storage::open().await?.run(&id).await }.await {
                Ok(Some(run)) => run,
                Ok(None) => return error.set(Some(format!("run {id} is no longer stored"))),
                Err(e) => return error.set(Some(e.to_string())),
            };
            match compile_and_verify(&run).await {
                Ok(m) => {
                    let saved = async {
                        let storage = Storage::open().await.map_err(|e| e.to_string())?;
                        // Signed by this browser's key as it is made: the signature travels
                        // with the module to MLflow and to devices.
                        let signature = match crate::signing::sign(&storage, &m.bytes).await {
                            Ok(sig) => Some(sig),
                            Err(e) => {
                                crate::logs::warn(
                                    "signing",
                                    format!("module {} not signed: {e}", short(&m.hash)),
                                );
                                None
                            }
                        };
                        let stored = StoredModule {
                            hash: m.hash.clone(),
                            run_id: run.id.clone(),
                            bytes: m.bytes.clone(),
                            signature,
                        };
                        storage.put_module(&stored).await.map_err(|e| e.to_string())
                    };
                    if let Err(e) = saved.await {
                        error.set(Some(format!("module compiled but not saved: {e}")));
                    } else {
                        crate::mlflow::request_sync(state);
                    }
                    crate::logs::info(
                        "compile",
                        format!(
                            "{}: module {} ({} bytes), {} {} through the module in this browser",
                            run.name,
                            short(&m.hash),
                            m.bytes.len(),
                            m.metric,
                            m.module_metric
                        ),
                    );
                    // The module is shown in its run's details: open them.
                    state.selected_run.set(Some(run.id.clone()));
                    state.compiled.set(Some(m));
                }
                Err(e) => {
                    crate::logs::error("compile", format!("{}: {e}", run.name));
                    error.set(Some(e))
                }
            }
        }
    });
    let busy = compile.pending();
    let on_compile = move |id: String| {
        error.set(None);
        compile.dispatch_local(id);
    };

    // Full records are read only for what is opened: the compared runs and the selected one.
    // They are read again when a run changes (rename, tags, ...). Resources: a read that a
    // newer choice overtook is dropped, so only the current choice is ever shown.
    let compared = LocalResource::new(move || {
        state.runs.track();
        let ids: Vec<String> = compare.get().into_iter().collect();
        async move {
            if ids.len() < 2 {
                return Ok(Vec::new());
            }
            Storage::open().await?.runs(&ids).await
        }
    });
    let selected = LocalResource::new(move || {
        state.runs.track();
        let id = state.selected_run.get();
        async move {
            match id {
                None => Ok(None),
                Some(id) => async { Storage::open().await?.run(&id).await }
                    .await
                    .map_err(|e| format!("run {id}: {e}")),
            }
        }
    });
    let count = move || {
        let shown = visible.with(Vec::len);
        let loaded = state.runs.with(Vec::len);
        match state.runs_pending.get() {
            Some(total) => {
                format!("{shown} of the newest {loaded} of {total} runs (reading the rest)")
            }
            None => format!("{shown} of {loaded} runs"),
        }
    };

    view! {
        <section class="panel" id="runs-panel">
            <h2>"Runs"</h2>
            // Import stays reachable with no runs: a new teammate starts from someone's export.
            <div class="actions runs-io">
                <button id="runs-export" class="secondary" on:click=export
                    disabled=move || state.runs.with(Vec::is_empty)>"Export shown runs"</button>
                {move || export_url.get().map(|url| view! { <a id="runs-download" href=url download="wasmops-runs.json">"download wasmops-runs.json"</a> })}
                <label class="file">"Import runs" <input type="file" id="runs-import" accept=".json,application/json" on:change=import /></label>
            </div>
            {move || notice.get().map(|n| view! { <p class="ok" data-testid="runs-notice">{n}</p> })}
            <Show
                when=move || !state.runs.with(Vec::is_empty)
                fallback=|| view! { <p class="empty">"No runs yet: train a model, or import runs exported from another browser."</p> }
            >
                <input id="run-filter" class="filter" placeholder="filter: metrics.accuracy > 0.9 and params.max_depth = 4"
                    prop:value=move || query.get() on:input=move |ev| query.set(event_target_value(&ev)) />
                {move || filter.get().err().map(|e| view! { <p class="error" data-testid="filter-error">{e.to_string()}</p> })}
                <label class="check inline">
                    <input type="checkbox" id="show-archived" prop:checked=move || show_archived.get()
                        on:change=move |ev| show_archived.set(event_target_checked(&ev)) />
                    " show archived runs"
                </label>
                <p class="count" data-testid="run-count">{count}</p>
                {move || state.mlflow.with(Option::is_some).then(|| view! {
                    <p class="muted sync-legend">"MLflow: "
                        <span class="sync synced"></span>"synced "
                        <span class="sync pending"></span>"pending "
                        <span class="sync sync-failed"></span>"sync failed (hover a dot for why)"</p>
                })}
                <div class="runs-scroll" node_ref=scroller data-row-px=ROW_PX
                    style=format!("max-height: {}px", ROW_PX * (SCREEN_ROWS as f64 + 1.0))
                    on:scroll=move |_| if let Some(el) = scroller.get_untracked() { scroll_top.set(el.scroll_top() as f64) }>
                    <div class="spacer" style:height=move || format!("{}px", window.with(|w| w.0) as f64 * ROW_PX)></div>
                    <table class="runs" data-testid="runs">
                        <thead><tr>
                            <th title="select to compare">"Cmp"</th>
                            {header("Run", SortBy::Name, "")}{header("Started", SortBy::Started, "")}{header("Dataset", SortBy::Dataset, "")}
                            {header("Model", SortBy::Model, "")}{header("Metric", SortBy::Metric, "num")}
                            {header("Duration", SortBy::Duration, "num")}<th></th>
                        </tr></thead>
                        <tbody>
                            <For each=move || window.with(|w| w.2.clone()) key=|r| (r.id.clone(), r.name.clone(), r.tags.join(","), r.archived) let:run>
                                <RunRow run=run busy=busy on_compile=on_compile compare=compare />
                            </For>
                        </tbody>
                    </table>
                    <div class="spacer" style:height=move || format!("{}px", window.with(|w| w.1) as f64 * ROW_PX)></div>
                </div>
            </Show>
            {move || error.get().map(|e| view! { <p class="error" data-testid="runs-error">{e}</p> })}
            {move || {
                match compared.get()? {
                    Ok(runs) => (runs.len() >= 2).then(|| view! { <crate::panels::compare::CompareRuns runs=runs /> }.into_any()),
                    Err(e) => Some(view! { <p class="error" data-testid="compare-error">{format!("compare: {e}")}</p> }.into_any()),
                }
            }}
            {move || match selected.get()? {
                Ok(run) => run.map(|run| view! { <RunDetails run=run /> }.into_any()),
                Err(e) => Some(view! { <p class="error" data-testid="run-read-error">{e}</p> }.into_any()),
            }}
            {move || {
                // A failed or cancelled run has no full record: its summary says what happened.
                let id = state.selected_run.get()?;
                let s = state.runs.with(|r| r.iter().find(|s| s.id == id && !s.is_finished()).cloned())?;
                Some(view! { <StoppedRun run=s /> })
            }}
        </section>
    }
}
