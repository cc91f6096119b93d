//! Runs panel: every tracked run; compile a run into a module and verify it in this browser.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::digest::{content_hash, short};
use wasmops_shared::module::ModuleInfo;

use crate::module_runner::BrowserModule;
use crate::run::{Bundle, Run, RunSummary};
use crate::state::{use_app_state, CompiledModule};
use crate::storage::{Storage, StoredModule};
use wasmops_shared::metrics::evaluate;
use wasmops_shared::run_filter::{Filter, Value as FilterValue};

/// Feature histograms shown unfolded in a run's details up to this many features.
const OPEN_PROFILE_FEATURES: usize = 8;
/// Height of a row in the runs table, in CSS pixels (the stylesheet fixes it: rows never wrap).
const ROW_PX: f64 = 36.0;
/// Rows the table's scroll area shows at once.
const SCREEN_ROWS: usize = 14;
/// Rows drawn above and below the screen, so scrolling does not show blanks.
const MARGIN_ROWS: usize = 8;
/// How many of the newest runs the page reads before the rest: one screen and its margin.
pub const FIRST_SCREEN: usize = SCREEN_ROWS + MARGIN_ROWS;

#[component]
pub fn RunsPanel() -> impl IntoView {
    let state = use_app_state();
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
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
            state.runs.with(|runs| {
                let mut shown: Vec<usize> = (0..runs.len())
                    .filter(|&i| {
                        let r = &runs[i];
                        (archived || !r.archived)
                            && f.is_none_or(|f| f.matches(&|k| run_field(r, k)))
                    })
                    .collect();
                shown.sort_by(|&a, &b| {
                    let o = by.compare(&runs[a], &runs[b]);
                    if ascending {
                        o
                    } else {
                        o.reverse()
                    }
                });
                shown
            })
        })
    });
    // Virtualized rendering: only the rows on screen and a margin around them are in the DOM;
    // spacers above and below keep the scroll bar true to the whole list.
    let scroll_top = RwSignal::new(0.0_f64);
    let scroller = NodeRef::<leptos::html::Div>::new();
    let window = Memo::new(move |_| {
        let first = ((scroll_top.get() / ROW_PX) as usize).saturating_sub(MARGIN_ROWS);
        visible.with(|shown| {
            let first = first.min(shown.len());
            let last = (first + SCREEN_ROWS + 2 * MARGIN_ROWS).min(shown.len());
            let rows: Vec<RunSummary> = state.runs.with(|runs| {
                shown[first..last]
                    .iter()
                    .map(|&i| runs[i].clone())
                    .collect()
            });
            (first, shown.len() - last, rows)
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

    let compile = move |id: String| {
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            let run = match async { Storage::open().await?.run(&id).await }.await {
                Ok(Some(run)) => run,
                Ok(None) => {
                    busy.set(false);
                    return error.set(Some(format!("run {id} is no longer stored")));
                }
                Err(e) => {
                    busy.set(false);
                    return error.set(Some(e.to_string()));
                }
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
            busy.set(false);
        });
    };

    // Full records are read only for what is opened: the compared runs and the selected one.
    // They are read again when a run changes (rename, tags, ...).
    let compared = RwSignal::new(Vec::<Run>::new());
    Effect::new(move |_| {
        state.runs.track();
        let ids: Vec<String> = compare.get().into_iter().collect();
        if ids.len() < 2 {
            return compared.set(Vec::new());
        }
        spawn_local(async move {
            match async { Storage::open().await?.runs(&ids).await }.await {
                // A newer choice may have been made meanwhile: only the current one is shown.
                Ok(runs) if compare.with_untracked(|c| c.iter().eq(ids.iter())) => {
                    compared.set(runs)
                }
                Ok(_) => {}
                Err(e) => error.set(Some(format!("compare: {e}"))),
            }
        });
    });
    let selected = RwSignal::new(None::<Run>);
    Effect::new(move |_| {
        state.runs.track();
        let Some(id) = state.selected_run.get() else {
            return selected.set(None);
        };
        spawn_local(async move {
            match async { Storage::open().await?.run(&id).await }.await {
                Ok(run) if state.selected_run.get_untracked().as_deref() == Some(id.as_str()) => {
                    selected.set(run)
                }
                Ok(_) => {}
                Err(e) => error.set(Some(format!("run {id}: {e}"))),
            }
        });
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
                                <RunRow run=run busy=busy on_compile=compile compare=compare />
                            </For>
                        </tbody>
                    </table>
                    <div class="spacer" style:height=move || format!("{}px", window.with(|w| w.1) as f64 * ROW_PX)></div>
                </div>
            </Show>
            {move || error.get().map(|e| view! { <p class="error" data-testid="runs-error">{e}</p> })}
            {move || {
                let runs = compared.get();
                (runs.len() >= 2).then(|| view! { <crate::panels::compare::CompareRuns runs=runs /> })
            }}
            {move || selected.get().map(|run| view! { <RunDetails run=run /> })}
            {move || {
                // A failed or cancelled run has no full record: its summary says what happened.
                let id = state.selected_run.get()?;
                let s = state.runs.with(|r| r.iter().find(|s| s.id == id && !s.is_finished()).cloned())?;
                Some(view! { <StoppedRun run=s /> })
            }}
        </section>
    }
}

/// Columns the runs table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Started,
    Name,
    Dataset,
    Model,
    Metric,
    Duration,
}

impl SortBy {
    /// Orders two runs by this column (runs without the metric sort below every value).
    fn compare(self, a: &RunSummary, b: &RunSummary) -> std::cmp::Ordering {
        let num = |x: f64, y: f64| x.total_cmp(&y);
        match self {
            SortBy::Started => num(a.started_at_ms, b.started_at_ms),
            SortBy::Name => a.name.cmp(&b.name),
            SortBy::Dataset => a.dataset.name.cmp(&b.dataset.name),
            SortBy::Model => a.model.cmp(&b.model),
            // Inertia, accuracy and R2 are not one scale: runs are grouped by their metric
            // (runs without one, failed or cancelled, form the last group) and ordered by
            // value within it.
            SortBy::Metric => {
                let key = |r: &RunSummary| (r.metric_value().is_some(), r.metric.clone());
                key(a).cmp(&key(b)).then_with(|| {
                    num(
                        a.metric_value().unwrap_or(f64::NEG_INFINITY),
                        b.metric_value().unwrap_or(f64::NEG_INFINITY),
                    )
                })
            }
            SortBy::Duration => num(a.duration_ms, b.duration_ms),
        }
    }
}

/// What the filter language sees of a run.
fn run_field(r: &RunSummary, field: &str) -> Option<FilterValue> {
    let text = |s: &str| Some(FilterValue::Text(s.to_string()));
    match field {
        "name" => text(&r.name),
        "dataset" => text(&r.dataset.name),
        "model" => text(&r.model),
        "code" => text(&r.code_version),
        "duration_ms" => Some(FilterValue::Num(r.duration_ms)),
        "tags" => Some(FilterValue::List(r.tags.clone())),
        "notes" => text(&r.notes),
        "archived" => text(if r.archived { "true" } else { "false" }),
        "status" => text(&r.status),
        "error" => r.error.as_deref().and_then(text),
        _ => {
            if let Some(m) = field.strip_prefix("metrics.") {
                return r.metrics.get(m).map(|v| FilterValue::Num(*v));
            }
            match r.params.get(field.strip_prefix("params.")?)? {
                serde_json::Value::Number(n) => n.as_f64().map(FilterValue::Num),
                serde_json::Value::String(s) => text(s),
                other => text(&other.to_string()),
            }
        }
    }
}

#[component]
fn RunRow(
    run: RunSummary,
    busy: RwSignal<bool>,
    on_compile: impl Fn(String) + Copy + 'static,
    compare: RwSignal<std::collections::BTreeSet<String>>,
) -> impl IntoView {
    let value = run
        .metric_value()
        .map(|a| format!("{a:.4}"))
        .unwrap_or_else(|| "-".into());
    let dataset = match run.dataset.hash.get(..6) {
        Some(h) => format!("{} @{h}", run.dataset.name),
        None => run.dataset.name.clone(),
    };
    let dataset_title = format!(
        "{} ({} rows), content hash {}",
        run.dataset.name, run.dataset.n_rows, run.dataset.hash
    );
    let duration = format!("{:.0} ms", run.duration_ms);
    let started = started_text(run.started_at_ms);
    let kind = run.model_label();
    let for_sync = run.clone();
    let RunSummary {
        id,
        name,
        code_version: code,
        metric,
        tags,
        archived,
        status,
        error,
        ..
    } = run;
    let finished = status == crate::run::FINISHED;
    let (select_id, cmp_id, cmp_id2, compile_id) = (id.clone(), id.clone(), id.clone(), id.clone());
    let name_title = if tags.is_empty() {
        name.clone()
    } else {
        format!("{name} (tags: {})", tags.join(", "))
    };
    let state = use_app_state();
    let sync_id = id.clone();
    let sync_badge = move || {
        let settings = state.mlflow.get()?;
        let st = state
            .run_syncs
            .with(|all| crate::mlflow::state_of(&for_sync, all.get(&sync_id), &settings));
        let title = match &st {
            crate::mlflow::SyncState::Failed(why) => format!("sync failed: {why}"),
            crate::mlflow::SyncState::Pending => "MLflow: pending (not on the server yet)".into(),
            crate::mlflow::SyncState::Synced => format!("MLflow: synced ({})", settings.uri),
        };
        // A dot before the name: the name cell truncates, and the state must stay visible.
        Some(
            view! { <span class=format!("sync {}", st.word().replace(' ', "-")) data-testid="sync-state"
            data-state=st.word() title=title.clone() aria-label=title></span> },
        )
    };
    view! {
        <tr data-run-id=id class:archived=archived>
            <td><input type="checkbox" class="compare" prop:checked=move || compare.with(|c| c.contains(&cmp_id))
                on:change=move |ev| {
                    let on = event_target_checked(&ev);
                    compare.update(|c| { if on { c.insert(cmp_id2.clone()); } else { c.remove(&cmp_id2); } });
                } /></td>
            <td class="name" title=name_title>{sync_badge}<a href="#" class="run-name" on:click=move |ev| { ev.prevent_default(); state.selected_run.set(Some(select_id.clone())); }>{name.clone()}</a>
                {tags.into_iter().map(|t| view! { <span class="tag">{t}</span> }).collect_view()}
                {archived.then(|| view! { <span class="tag muted">"archived"</span> })}
            </td>
            <td class="mono">{started}</td>
            <td class="mono" title=dataset_title>{dataset}</td>
            <td title=kind.clone()>{kind.clone()}</td>
            {if finished {
                view! { <td class="num" title=format!("{metric} on the held-out rows")><span class="metric-name">{metric.clone()}</span>" "<span data-testid="run-metric">{value}</span></td> }.into_any()
            } else {
                view! { <td class="num error" title=error.unwrap_or_default() data-testid="run-status">{status}</td> }.into_any()
            }}
            <td class="num" title=format!("code {code}")>{duration}</td>
            <td>{finished.then(|| view! {
                <button class="compile" title="compile the run into a model module and verify it in this browser"
                    disabled=move || busy.get() on:click=move |_| on_compile(compile_id.clone())>
                    "Compile"
                </button>
            })}</td>
        </tr>
    }
}

/// Where the run stands with the MLflow server, when one is connected: a link to it there, or
/// why it is not there yet.
#[component]
fn RunSyncLine(run: RunSummary) -> impl IntoView {
    let state = use_app_state();
    move || {
        let settings = state.mlflow.get()?;
        let rec = state.run_syncs.with(|all| all.get(&run.id).cloned());
        let st = crate::mlflow::state_of(&run, rec.as_ref(), &settings);
        let link = rec
            .as_ref()
            .and_then(|r| r.synced.as_ref())
            .map(|s| settings.run_url(s));
        let warnings = rec.map(|r| r.warnings).unwrap_or_default();
        Some(view! {
            <p class="sync-line" data-testid="run-sync">
                {format!("MLflow: {}", st.word())}
                {match st { crate::mlflow::SyncState::Failed(why) => Some(view! { <span class="error">{format!(": {why}")}</span> }), _ => None }}
                {link.map(|href| view! { " " <a href=href target="_blank" rel="noopener">"open in MLflow"</a> })}
                {warnings.into_iter().map(|w| view! { <span class="muted">{format!(" ({w})")}</span> }).collect_view()}
            </p>
        })
    }
}

/// A run's start as local `MM-DD HH:MM`.
fn started_text(ms: f64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms));
    format!(
        "{:02}-{:02} {:02}:{:02}",
        d.get_month() + 1,
        d.get_date(),
        d.get_hours(),
        d.get_minutes()
    )
}

/// Asks to confirm, then deletes a run (record and summary) and takes it out of the table.
fn confirm_and_delete(
    state: crate::state::AppState,
    id: String,
    name: &str,
    error: RwSignal<Option<String>>,
) {
    let question = format!("Delete run \"{name}\"? This cannot be undone.");
    let confirmed = web_sys::window()
        .and_then(|w| w.confirm_with_message(&question).ok())
        .unwrap_or(false);
    if !confirmed {
        return;
    }
    spawn_local(async move {
        match async { Storage::open().await?.delete_run(&id).await }.await {
            Ok(()) => {
                state.selected_run.set(None);
                state.runs.update(|runs| runs.retain(|r| r.id != id));
            }
            Err(e) => error.set(Some(format!("delete failed: {e}"))),
        }
    });
}

/// A run that did not finish: its params, how long it ran and what stopped it; it can be
/// deleted like any run.
#[component]
fn StoppedRun(run: RunSummary) -> impl IntoView {
    let state = use_app_state();
    let error = RwSignal::new(None::<String>);
    let (id, name) = (run.id.clone(), run.name.clone());
    let delete = move |_| confirm_and_delete(state, id.clone(), &name, error);
    let params: Vec<(String, String)> = run
        .params
        .iter()
        .map(|(k, v)| (k.clone(), crate::panels::compare::param_text(v)))
        .collect();
    view! {
        <div class="details" data-testid="run-details">
            <h3>{format!("{} on {} ({})", run.name, run.dataset.name, run.status)}</h3>
            <p class="error" data-testid="run-stopped">
                {match run.error.as_deref() {
                    Some(e) if e != run.status => format!("{} after {:.1} s: {e}", run.status, run.duration_ms / 1000.0),
                    _ => format!("{} after {:.1} s", run.status, run.duration_ms / 1000.0),
                }}
            </p>
            <div class="actions run-actions">
                <button id="run-delete" class="danger" on:click=delete>"Delete run"</button>
            </div>
            <dl>{params.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd class="mono">{v}</dd> }).collect_view()}</dl>
            {move || error.get().map(|e| view! { <p class="error">{e}</p> })}
        </div>
    }
}

/// Rename, tag, annotate, archive or delete (after confirmation) a run; each change is written
/// to IndexedDB before the table changes, and failures are shown.
#[component]
fn RunActions(run: Run) -> impl IntoView {
    let state = use_app_state();
    let name = RwSignal::new(run.name.clone());
    let tags = RwSignal::new(run.tags.join(", "));
    let notes = RwSignal::new(run.notes.clone());
    let error = RwSignal::new(None::<String>);
    let stored = StoredValue::new(run);
    // Writes the changed run, then updates the table (which redraws these details with it).
    let save = move |run: Run, what: &'static str| {
        error.set(None);
        spawn_local(async move {
            match async { Storage::open().await?.put_run(&run).await }.await {
                Ok(()) => {
                    stored.set_value(run.clone());
                    state.runs.update(|runs| {
                        if let Some(r) = runs.iter_mut().find(|r| r.id == run.id) {
                            *r = RunSummary::of(&run);
                        }
                    });
                    crate::mlflow::request_sync(state);
                }
                Err(e) => {
                    crate::logs::error("storage", format!("{}: {what} not saved: {e}", run.name));
                    error.set(Some(format!("{what} not saved: {e}")))
                }
            }
        });
    };
    let rename = move |_| {
        let mut run = stored.get_value();
        run.name = name.get_untracked().trim().to_string();
        if run.name.is_empty() {
            return error.set(Some("a run needs a name".into()));
        }
        save(run, "name");
    };
    let save_meta = move |_| {
        let mut run = stored.get_value();
        let mut list: Vec<String> = Vec::new();
        for t in tags.get_untracked().split(',') {
            let t = t.trim().to_string();
            if t.is_empty() || list.contains(&t) {
                continue;
            }
            if t.contains(char::is_whitespace) {
                return error.set(Some(format!(
                    "tag `{t}`: tags are single words (use - or _)"
                )));
            }
            list.push(t);
        }
        run.tags = list;
        run.notes = notes.get_untracked();
        save(run, "tags and notes");
    };
    let toggle_archive = move |_| {
        let mut run = stored.get_value();
        run.archived = !run.archived;
        let what = if run.archived {
            "archived"
        } else {
            "unarchived"
        };
        save(run, what);
    };
    let delete = move |_| {
        let run = stored.get_value();
        confirm_and_delete(state, run.id, &run.name, error)
    };
    let archived = move || stored.with_value(|r| r.archived);
    // Train the same spec on the same dataset version again (same seed: the same model, and
    // with the same dashboard build the same module, byte for byte).
    let rerun = move |_| {
        let run = stored.get_value();
        let spec = match run.spec() {
            Ok(s) => s,
            Err(e) => return error.set(Some(format!("cannot rerun: {e}"))),
        };
        let stored_version = state
            .datasets
            .with_untracked(|d| d.iter().any(|x| x.hash == run.dataset.hash));
        let choice = if stored_version {
            format!("csv:{}", run.dataset.hash)
        } else if wasmops_trainer::datasets::BUILTIN
            .iter()
            .any(|b| b.0 == run.dataset.name)
        {
            run.dataset.name.clone()
        } else {
            return error.set(Some(format!(
                "cannot rerun: dataset `{}` version {} is not stored in this browser",
                run.dataset.name,
                short(&run.dataset.hash)
            )));
        };
        error.set(None);
        crate::logs::info("train", format!("rerun of {}", run.name));
        state
            .rerun
            .set(Some((choice, spec, format!("{} (rerun)", run.name))));
    };
    view! {
        <div class="actions run-actions">
            <input id="run-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
            <button id="run-rename" class="secondary" on:click=rename>"Rename"</button>
            <button id="run-rerun" class="secondary" title="train the same spec on the same dataset version again" on:click=rerun>"Rerun"</button>
            <button id="run-archive" class="secondary" on:click=toggle_archive>{move || if archived() { "Unarchive" } else { "Archive" }}</button>
            <button id="run-delete" class="danger" on:click=delete>"Delete run"</button>
        </div>
        <div class="form run-meta">
            <label>"Tags (comma-separated)" <input id="run-tags" placeholder="baseline, scaled" prop:value=move || tags.get() on:input=move |ev| tags.set(event_target_value(&ev)) /></label>
            <label>"Notes" <textarea id="run-notes" rows="3" prop:value=move || notes.get() on:input=move |ev| notes.set(event_target_value(&ev))></textarea></label>
        </div>
        <div class="actions">
            <button id="run-save-meta" class="secondary" on:click=save_meta>"Save tags and notes"</button>
        </div>
        {move || error.get().map(|e| view! { <p class="error" data-testid="run-action-error">{e}</p> })}
    }
}

/// Everything about one run: params, every metric, and for classifiers the confusion matrix of
/// the held-out split (recomputed from the pipeline, which the module equals bit for bit).
#[component]
fn RunDetails(run: Run) -> impl IntoView {
    let state = use_app_state();
    let run_id = run.id.clone();
    let n_features = run.profile.features.len();
    let params: Vec<(String, String)> = run
        .params
        .iter()
        .map(|(k, v)| (k.clone(), crate::panels::compare::param_text(v)))
        .collect();
    let metrics: Vec<(String, String)> = run
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), format!("{v:.4}")))
        .collect();
    let classes = run.class_names.clone();
    let cm = (!classes.is_empty() && run.pipeline.model.kind() != "kmeans").then(|| {
        let out = wasmops_shared::reference::predict(&run.pipeline, &run.test_x);
        let predicted: Vec<f64> = out.chunks(run.pipeline.n_outputs()).map(|o| o[0]).collect();
        wasmops_shared::metrics::confusion_matrix(&predicted, &run.test_y, classes.len())
    });
    // Regression: predicted against actual on the held-out rows.
    let pva = (classes.is_empty() && run.pipeline.model.kind() != "kmeans").then(|| {
        let out = wasmops_shared::reference::predict(&run.pipeline, &run.test_x);
        let points: Vec<(f64, f64)> = out
            .chunks(run.pipeline.n_outputs())
            .zip(&run.test_y)
            .map(|(o, y)| (*y, o[0]))
            .collect();
        crate::charts::predicted_vs_actual(
            &format!("Predicted vs actual {} (held-out rows)", run.target_name),
            &points,
            (420, 320),
        )
    });
    view! {
        <div class="details" data-testid="run-details">
            <h3>{format!("{} on {} ({} rows)", run.name, run.dataset.name, run.dataset.n_rows)}</h3>
            // The run's compiled module, right under its name: Compile selects the run.
            {move || state.compiled.get().filter(|m| m.run_id == run_id).map(|m| view! { <ModuleSummary m=m /> })}
            <RunActions run=run.clone() />
            <RunSyncLine run=RunSummary::of(&run) />
            <div class="kv">
                <dl>{params.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd class="mono">{v}</dd> }).collect_view()}</dl>
                <dl data-testid="run-metrics">{metrics.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd class="num">{v}</dd> }).collect_view()}</dl>
            </div>
            {(!run.metric_steps.is_empty()).then(|| view! {
                <h4>"Training curves"</h4>
                <div class="charts" data-testid="curves">
                    {curve_groups(&run.metric_steps).into_iter().map(|(name, members)| {
                        let series: Vec<_> = members.iter().enumerate().map(|(i, (label, points))| crate::charts::Series {
                            name: label.clone(),
                            points: points.iter().map(|(s, v)| (*s as f64, *v)).collect(),
                            color: crate::charts::PALETTE[i % crate::charts::PALETTE.len()],
                        }).collect();
                        match crate::charts::step_chart(&name, &name, &series, (380, 240)) {
                            Ok(svg) => view! { <div class="chart" data-chart=format!("curve-{name}") inner_html=svg></div> }.into_any(),
                            Err(e) => view! { <p class="error">{format!("curve {name}: {e}")}</p> }.into_any(),
                        }
                    }).collect_view()}
                </div>
            })}
            {(!run.log.is_empty()).then(|| {
                // Each stage's line shows when it began and how long it took (until the next line).
                let text: Vec<String> = run.log.iter().enumerate().map(|(i, l)| {
                    let took = run.log.get(i + 1).map_or("".to_string(), |next| format!("{:.3} s", (next.t_ms - l.t_ms) / 1000.0));
                    format!("{:>9.3} s  {:>10}  {}", l.t_ms / 1000.0, took, l.message)
                }).collect();
                view! {
                    <h4>"Log (start of each step since Train was clicked, how long it took, step)"</h4>
                    <pre class="run-log" data-testid="run-log">{text.join("\n")}</pre>
                }
            })}
            {pva.map(|svg| match svg {
                Ok(svg) => view! { <div class="chart" data-chart="predicted-vs-actual" inner_html=svg></div> }.into_any(),
                Err(e) => view! { <p class="error">{format!("predicted vs actual: {e}")}</p> }.into_any(),
            })}
            {cm.map(|cm| view! {
                <table class="confusion" data-testid="confusion">
                    <caption>"Confusion matrix (held-out rows; rows: actual, columns: predicted)"</caption>
                    <thead><tr><th></th>{classes.iter().map(|c| view! { <th>{c.clone()}</th> }).collect_view()}</tr></thead>
                    <tbody>
                        {cm.into_iter().zip(classes.clone()).enumerate().map(|(i, (row, c))| view! {
                            <tr><th>{c}</th>{row.into_iter().enumerate().map(|(j, v)| view! {
                                <td class={if i == j { "num diag" } else if v > 0 { "num off" } else { "num" }}>{v}</td>
                            }).collect_view()}</tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
            {(!run.feature_importances.is_empty()).then(|| {
                let (metric, _) = run.primary_metric();
                let groups = [(format!("{metric} lost when the feature is shuffled"), run.feature_importances.clone())];
                match crate::charts::bars("Feature importance (permutation, held-out rows)", ("feature", metric), &run.feature_names, &groups, (460, 260)) {
                    Ok(svg) => view! { <div class="chart" data-chart="importances" inner_html=svg></div> }.into_any(),
                    Err(e) => view! { <p class="error">{format!("importances: {e}")}</p> }.into_any(),
                }
            })}
            // One histogram per feature is long with dozens of features: it comes last, and
            // folded when there are more than a few.
            <details class="profile" open=n_features <= OPEN_PROFILE_FEATURES>
                <summary><h4>{format!("Training data profile ({n_features} features)")}</h4></summary>
                <div class="charts" data-testid="profile-charts">
                    {run.profile.features.iter().map(|f| match crate::charts::profile_histogram(f, 300, 180) {
                        Ok(svg) => view! { <div class="chart" inner_html=svg></div> }.into_any(),
                        Err(e) => view! { <p class="error">{format!("chart of {}: {e}", f.name)}</p> }.into_any(),
                    }).collect_view()}
                </div>
            </details>
        </div>
    }
}

#[component]
fn ModuleSummary(m: CompiledModule) -> impl IntoView {
    let matches = m.module_metric == m.trained_metric;
    let state = use_app_state();
    let default_name = state
        .runs
        .with_untracked(|r| {
            r.iter().find(|x| x.id == m.run_id).map(|r| {
                // Named after the algorithm as trained: ridge is not "linear regression".
                let algorithm = r.algorithm_label().to_lowercase().replace(' ', "-");
                format!("{}-{algorithm}", r.dataset.name).replace('_', "-")
            })
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
        compiled_at_ms: js_sys::Date::now(),
        test_outputs,
        bytes,
    })
}

/// Registers a verified module as the next version of `name`, with its lineage; refuses a
/// module whose evaluation in this browser differs from the trained model.
async fn register_version(
    run: &Run,
    m: &CompiledModule,
    name: &str,
) -> Result<crate::registry::ModelVersion, String> {
    if name.is_empty() || name.contains('/') {
        return Err(format!(
            "model name must be non-empty and without `/`, got `{name}`"
        ));
    }
    if m.module_metric.to_bits() != m.trained_metric.to_bits() {
        return Err(format!(
            "not registered: the module's {} in this browser ({}) differs from the trained model's ({})",
            m.metric, m.module_metric, m.trained_metric
        ));
    }
    let storage = Storage::open().await.map_err(|e| e.to_string())?;
    let existing = storage.versions().await.map_err(|e| e.to_string())?;
    let version = existing
        .iter()
        .filter(|v| v.model == name)
        .map(|v| v.version)
        .max()
        .unwrap_or(0)
        + 1;
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

/// An object URL for a JSON text, for a download link.
fn blob_url(json: &str) -> Result<String, String> {
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(json));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("application/json");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)
        .map_err(|e| format!("{e:?}"))?;
    web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))
}

/// An object URL for bytes (e.g. a module), for a download link.
pub fn bytes_url(bytes: &[u8], mime: &str) -> Result<String, String> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
        .map_err(|e| format!("{e:?}"))?;
    web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))
}

/// A run's step curves, one chart each, except that one quantity on several row sets (gradient
/// boosting's `train_log_loss`, `validation_log_loss` and `test_log_loss`) shares a chart named
/// after the quantity, one line per set (train, validation, test). Returns
/// (chart name, [(line name, points)]); a lone curve keeps its own name for both.
#[allow(clippy::type_complexity)]
fn curve_groups(
    steps: &std::collections::BTreeMap<String, Vec<(u64, f64)>>,
) -> Vec<(String, Vec<(String, &Vec<(u64, f64)>)>)> {
    const SETS: [&str; 3] = ["train", "validation", "test"];
    // (chart, [(set index, curve name, points)])
    let mut groups: Vec<(String, Vec<(usize, &String, &Vec<(u64, f64)>)>)> = Vec::new();
    for (name, points) in steps {
        let (set, quantity) = SETS
            .iter()
            .enumerate()
            .find_map(|(i, set)| Some((i, name.strip_prefix(set)?.strip_prefix('_')?)))
            .unwrap_or((SETS.len(), name));
        match groups.iter_mut().find(|g| g.0 == quantity) {
            Some(g) => g.1.push((set, name, points)),
            None => groups.push((quantity.to_string(), vec![(set, name, points)])),
        }
    }
    groups
        .into_iter()
        .map(|(quantity, mut members)| {
            if let [(_, name, points)] = members[..] {
                return (name.clone(), vec![(name.clone(), points)]);
            }
            members.sort_by_key(|m| m.0);
            let lines = members
                .into_iter()
                .map(|(set, name, points)| {
                    (
                        SETS.get(set)
                            .map_or_else(|| name.clone(), |s| s.to_string()),
                        points,
                    )
                })
                .collect();
            (quantity, lines)
        })
        .collect()
}
