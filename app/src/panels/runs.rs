//! Runs panel: every tracked run; compile a run into a module and verify it in this browser.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::digest::{content_hash, short};
use wasmops_shared::module::ModuleInfo;

use crate::module_runner::BrowserModule;
use crate::run::{Bundle, Run};
use crate::state::{use_app_state, CompiledModule};
use crate::storage::{Storage, StoredModule};
use wasmops_shared::metrics::evaluate;
use wasmops_shared::run_filter::{Filter, Value as FilterValue};

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
    let visible = Memo::new(move |_| {
        let mut runs = state.runs.get();
        if !show_archived.get() {
            runs.retain(|r| !r.archived);
        }
        if let Ok(Some(f)) = filter.get() {
            runs.retain(|r| f.matches(&|k| run_field(r, k)));
        }
        let (by, ascending) = sort.get();
        runs.sort_by(|a, b| {
            let o = by
                .key(a)
                .partial_cmp(&by.key(b))
                .unwrap_or(std::cmp::Ordering::Equal);
            if ascending {
                o
            } else {
                o.reverse()
            }
        });
        runs
    });
    let export_url = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let export = move |_| {
        let json =
            serde_json::to_string_pretty(&Bundle::new(visible.get_untracked())).unwrap_or_default();
        match blob_url(&json) {
            Ok(url) => export_url.set(Some(url)),
            Err(e) => error.set(Some(e)),
        }
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
            let known: std::collections::BTreeSet<String> = state
                .runs
                .with_untracked(|r| r.iter().map(|x| x.id.clone()).collect());
            let new: Vec<Run> = bundle
                .runs
                .into_iter()
                .filter(|r| !known.contains(&r.id))
                .collect();
            match async { Storage::open().await?.put_runs(&new).await }.await {
                Ok(()) => {
                    notice.set(Some(format!(
                        "imported {} runs from {}",
                        new.len(),
                        file.name()
                    )));
                    state.runs.update(|r| r.extend(new));
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

    view! {
        <section class="panel" id="runs-panel">
            <h2>"Runs"</h2>
            <Show
                when=move || !state.runs.with(Vec::is_empty)
                fallback=|| view! { <p class="empty">"No runs yet: train a model."</p> }
            >
                <input id="run-filter" class="filter" placeholder="filter: metrics.accuracy > 0.9 and params.max_depth = 4"
                    prop:value=move || query.get() on:input=move |ev| query.set(event_target_value(&ev)) />
                {move || filter.get().err().map(|e| view! { <p class="error" data-testid="filter-error">{e.to_string()}</p> })}
                <div class="actions runs-io">
                    <button id="runs-export" class="secondary" on:click=export>"Export shown runs"</button>
                    {move || export_url.get().map(|url| view! { <a id="runs-download" href=url download="wasmops-runs.json">"download wasmops-runs.json"</a> })}
                    <label class="file">"Import runs" <input type="file" id="runs-import" accept=".json,application/json" on:change=import /></label>
                </div>
                {move || notice.get().map(|n| view! { <p class="ok" data-testid="runs-notice">{n}</p> })}
                <label class="check inline">
                    <input type="checkbox" id="show-archived" prop:checked=move || show_archived.get()
                        on:change=move |ev| show_archived.set(event_target_checked(&ev)) />
                    " show archived runs"
                </label>
                <p class="count" data-testid="run-count">{move || format!("{} of {} runs", visible.with(Vec::len), state.runs.with(Vec::len))}</p>
                <table class="runs" data-testid="runs">
                    <thead><tr>
                        <th title="select to compare">"Cmp"</th>
                        {header("Run", SortBy::Name, "")}{header("Dataset", SortBy::Dataset, "")}{header("Model", SortBy::Model, "")}
                        <th>"Metric"</th>{header("Value", SortBy::Metric, "num")}
                        {header("Duration", SortBy::Duration, "num")}<th>"Code"</th><th></th>
                    </tr></thead>
                    <tbody>
                        <For each=move || visible.get() key=|r| (r.id.clone(), r.name.clone(), r.tags.join(","), r.archived) let:run>
                            <RunRow run=run.clone() busy=busy on_compile=compile compare=compare />
                        </For>
                    </tbody>
                </table>
            </Show>
            {move || error.get().map(|e| view! { <p class="error" data-testid="runs-error">{e}</p> })}
            {move || {
                let ids = compare.get();
                (ids.len() >= 2).then(|| {
                    let runs: Vec<Run> = state.runs.with(|all| all.iter().filter(|r| ids.contains(&r.id)).cloned().collect());
                    view! { <crate::panels::compare::CompareRuns runs=runs /> }
                })
            }}
            {move || {
                let id = state.selected_run.get()?;
                let run = state.runs.with(|r| r.iter().find(|x| x.id == id).cloned())?;
                Some(view! { <RunDetails run=run /> })
            }}
            {move || state.compiled.get().map(|m| view! { <ModuleSummary m=m /> })}
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

#[derive(PartialEq, PartialOrd)]
enum SortKey {
    Num(f64),
    Text(String),
}

impl SortBy {
    fn key(self, r: &Run) -> SortKey {
        match self {
            SortBy::Started => SortKey::Num(r.started_at_ms),
            SortBy::Name => SortKey::Text(r.name.clone()),
            SortBy::Dataset => SortKey::Text(r.dataset.name.clone()),
            SortBy::Model => SortKey::Text(r.pipeline.model.kind().to_string()),
            SortBy::Metric => SortKey::Num(r.primary_metric().1.unwrap_or(f64::NEG_INFINITY)),
            SortBy::Duration => SortKey::Num(r.duration_ms),
        }
    }
}

/// What the filter language sees of a run.
fn run_field(r: &Run, field: &str) -> Option<FilterValue> {
    let text = |s: &str| Some(FilterValue::Text(s.to_string()));
    match field {
        "name" => text(&r.name),
        "dataset" => text(&r.dataset.name),
        "model" => text(r.pipeline.model.kind()),
        "code" => text(&r.code_version),
        "duration_ms" => Some(FilterValue::Num(r.duration_ms)),
        "tags" => Some(FilterValue::List(r.tags.clone())),
        "notes" => text(&r.notes),
        "archived" => text(if r.archived { "true" } else { "false" }),
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
    run: Run,
    busy: RwSignal<bool>,
    on_compile: impl Fn(Run) + Copy + 'static,
    compare: RwSignal<std::collections::BTreeSet<String>>,
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
    let select_id = run.id.clone();
    let (cmp_id, cmp_id2) = (run.id.clone(), run.id.clone());
    let tags = run.tags.clone();
    let archived = run.archived;
    let state = use_app_state();
    view! {
        <tr data-run-id=id class:archived=archived>
            <td><input type="checkbox" class="compare" prop:checked=move || compare.with(|c| c.contains(&cmp_id))
                on:change=move |ev| {
                    let on = event_target_checked(&ev);
                    compare.update(|c| { if on { c.insert(cmp_id2.clone()); } else { c.remove(&cmp_id2); } });
                } /></td>
            <td class="name"><a href="#" class="run-name" on:click=move |ev| { ev.prevent_default(); state.selected_run.set(Some(select_id.clone())); }>{name}</a>
                {tags.into_iter().map(|t| view! { <span class="tag">{t}</span> }).collect_view()}
                {archived.then(|| view! { <span class="tag muted">"archived"</span> })}
            </td>
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
                            *r = run.clone();
                        }
                    });
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
        let question = format!("Delete run \"{}\"? This cannot be undone.", run.name);
        let confirmed = web_sys::window()
            .and_then(|w| w.confirm_with_message(&question).ok())
            .unwrap_or(false);
        if !confirmed {
            return;
        }
        spawn_local(async move {
            match async { Storage::open().await?.delete_run(&run.id).await }.await {
                Ok(()) => {
                    state.selected_run.set(None);
                    state.runs.update(|runs| runs.retain(|r| r.id != run.id));
                }
                Err(e) => error.set(Some(format!("delete failed: {e}"))),
            }
        });
    };
    let archived = move || stored.with_value(|r| r.archived);
    view! {
        <div class="actions run-actions">
            <input id="run-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
            <button id="run-rename" class="secondary" on:click=rename>"Rename"</button>
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
    let params: Vec<(String, String)> = run
        .params
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
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
            <RunActions run=run.clone() />
            <div class="kv">
                <dl>{params.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd class="mono">{v}</dd> }).collect_view()}</dl>
                <dl data-testid="run-metrics">{metrics.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd class="num">{v}</dd> }).collect_view()}</dl>
            </div>
            <h4>"Training data profile"</h4>
            <div class="charts" data-testid="profile-charts">
                {run.profile.features.iter().map(|f| match crate::charts::profile_histogram(f, 300, 180) {
                    Ok(svg) => view! { <div class="chart" inner_html=svg></div> }.into_any(),
                    Err(e) => view! { <p class="error">{format!("chart of {}: {e}", f.name)}</p> }.into_any(),
                }).collect_view()}
            </div>
            {(!run.feature_importances.is_empty()).then(|| {
                let (metric, _) = run.primary_metric();
                let groups = [(format!("{metric} lost when the feature is shuffled"), run.feature_importances.clone())];
                match crate::charts::bars("Feature importance (permutation, held-out rows)", ("feature", metric), &run.feature_names, &groups, (460, 260)) {
                    Ok(svg) => view! { <div class="chart" data-chart="importances" inner_html=svg></div> }.into_any(),
                    Err(e) => view! { <p class="error">{format!("importances: {e}")}</p> }.into_any(),
                }
            })}
            {(!run.metric_steps.is_empty()).then(|| view! {
                <h4>"Training curves"</h4>
                <div class="charts" data-testid="curves">
                    {run.metric_steps.iter().map(|(name, points)| {
                        let series = [crate::charts::Series {
                            name: name.clone(),
                            points: points.iter().map(|(s, v)| (*s as f64, *v)).collect(),
                            color: crate::charts::PALETTE[0],
                        }];
                        match crate::charts::step_chart(name, name, &series, (380, 240)) {
                            Ok(svg) => view! { <div class="chart" data-chart=format!("curve-{name}") inner_html=svg></div> }.into_any(),
                            Err(e) => view! { <p class="error">{format!("curve {name}: {e}")}</p> }.into_any(),
                        }
                    }).collect_view()}
                </div>
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
        </div>
    }
}

#[component]
fn ModuleSummary(m: CompiledModule) -> impl IntoView {
    let matches = m.module_metric == m.trained_metric;
    let state = use_app_state();
    let run = state
        .runs
        .with_untracked(|r| r.iter().find(|x| x.id == m.run_id).cloned());
    let default_name = run
        .as_ref()
        .map(|r| format!("{}-{}", r.dataset.name, r.pipeline.model.kind()).replace('_', "-"))
        .unwrap_or_default();
    let name = RwSignal::new(default_name);
    let error = RwSignal::new(None::<String>);
    let stored = StoredValue::new((m.clone(), run));
    let register = move |_| {
        let (m, run) = stored.get_value();
        error.set(None);
        let Some(run) = run else {
            return error.set(Some("the module's run is gone".into()));
        };
        spawn_local(async move {
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
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let registered = move || {
        state.versions.with(|all| {
            all.iter()
                .find(|v| v.hash == stored.with_value(|(m, _)| m.hash.clone()))
                .map(|v| v.label())
        })
    };
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
    };
    let module = StoredModule {
        hash: m.hash.clone(),
        run_id: run.id.clone(),
        bytes: m.bytes.clone(),
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
