//! Data panel: import a CSV file (picker or drag and drop). Bad rows are listed with line and
//! column; the user imports the good rows (the count of skipped rows is shown and recorded) or
//! cancels. Imported datasets are content-addressed and stored in IndexedDB.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen_futures::JsFuture;
use wasmops_shared::digest::short;
use wasmops_trainer::catalog::Task;
use wasmops_trainer::csv_import::{self, CsvTable, Prepared};

use crate::logic::dataset_choice::DatasetChoice;
use crate::logic::datasets;
use crate::state::use_app_state;
use crate::storage::{Storage, StoredDataset};

/// Bad rows listed in full before the list is cut short.
const SHOWN_PROBLEMS: usize = 20;

#[component]
pub fn DataPanel() -> impl IntoView {
    let state = use_app_state();
    let table = RwSignal::new(None::<CsvTable>);
    let target = RwSignal::new(String::new());
    // The task the user chose; `None` follows the guess from the target column.
    let task = RwSignal::new(None::<Task>);
    // Columns left out of the features: text columns from the start (a name, a note), and
    // any the user unticks.
    let ignored = RwSignal::new(Vec::<String>::new());
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);

    // Re-splitting on every target change is cheap for the files a tab can hold.
    let prepared = Memo::new(move |_| -> Option<Result<Prepared, String>> {
        let t = table.get()?;
        Some(
            t.prepare_as(&target.get(), task.get(), &ignored.get())
                .map_err(|e| e.to_string()),
        )
    });

    // The task shown: the user's choice, else the guess for the target.
    let shown_task = Memo::new(move |_| {
        task.get()
            .or_else(|| table.with(|t| t.as_ref().and_then(|t| t.guess_task(&target.get()))))
    });

    let load = move |file: web_sys::File| {
        error.set(None);
        notice.set(None);
        spawn_local(async move {
            let name = file.name();
            let text = match JsFuture::from(file.text()).await {
                Ok(v) => v.as_string().unwrap_or_default(),
                Err(_) => {
                    crate::logs::error("data", format!("could not read {name}"));
                    return error.set(Some(format!("could not read {name}")));
                }
            };
            match csv_import::read(&name, &text) {
                Ok(t) => {
                    task.set(None);
                    let default_target = t.default_target().unwrap_or_default().to_string();
                    ignored.set(
                        t.text_columns(&default_target)
                            .into_iter()
                            .map(|c| c.0)
                            .collect(),
                    );
                    target.set(default_target);
                    table.set(Some(t));
                }
                Err(e) => {
                    crate::logs::error("data", format!("import failed: {e}"));
                    error.set(Some(e.to_string()))
                }
            }
        });
    };
    let on_pick = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        if let Some(file) = input.files().and_then(|f| f.get(0)) {
            load(file);
        }
        input.set_value("");
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        if let Some(file) = ev
            .data_transfer()
            .and_then(|d| d.files())
            .and_then(|f| f.get(0))
        {
            load(file);
        }
    };
    let import = move |_| {
        let p = match prepared.get_untracked() {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                return crate::logs::error("data", format!("import failed: {e}"));
            }
            None => return,
        };
        let existing = state.datasets.get_untracked();
        let stored = match StoredDataset::new(&p, js_sys::Date::now(), &existing) {
            Ok(s) => s,
            Err(same) => {
                table.set(None);
                return notice.set(Some(format!(
                    "{} v{} @{} already holds exactly these rows: nothing new to import",
                    same.dataset.name,
                    same.version,
                    short(&same.hash)
                )));
            }
        };
        spawn_local(async move {
            match async { Storage::open().await?.put_dataset(&stored).await }.await {
                Ok(()) => {
                    crate::tabs::post(&crate::tabs::TabMessage::Datasets);
                    crate::logs::info(
                        "data",
                        format!(
                            "imported {} v{} @{}: {} rows, {} bad rows skipped",
                            stored.dataset.name,
                            stored.version,
                            short(&stored.hash),
                            stored.dataset.n_rows(),
                            stored.skipped_rows
                        ),
                    );
                    notice.set(Some(format!(
                        "imported {} v{} @{}: {} rows{}{}",
                        stored.dataset.name,
                        stored.version,
                        short(&stored.hash),
                        stored.dataset.n_rows(),
                        if stored.skipped_rows > 0 {
                            format!(", {} bad rows skipped", stored.skipped_rows)
                        } else {
                            String::new()
                        },
                        stored
                            .parent
                            .as_deref()
                            .map(|p| format!("; parent @{}", short(p)))
                            .unwrap_or_default()
                    )));
                    // What was just imported is what the user means to train on next.
                    state
                        .train_dataset
                        .set(DatasetChoice::imported(&stored.hash));
                    state.datasets.update(|d| {
                        d.retain(|x| x.hash != stored.hash);
                        d.insert(0, stored);
                    });
                    table.set(None);
                }
                Err(e) => {
                    crate::logs::error(
                        "storage",
                        format!("dataset {} not saved: {e}", stored.dataset.name),
                    );
                    error.set(Some(format!("the dataset could not be saved: {e}")))
                }
            }
        });
    };

    view! {
        <section class="panel" id="data-panel">
            <h2>"Data"</h2>
            <label class="drop" on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default() on:drop=on_drop>
                "Import a CSV file: choose one or drop it here"
                <input type="file" id="csv-file" accept=".csv,text/csv" on:change=on_pick />
            </label>
            {move || table.get().map(|t| {
                let columns = t.columns.clone();
                view! {
                    <div class="import" data-testid="csv-preview">
                        <p>{format!("{}: {} rows, {} columns{}", t.name, t.records.len() + t.ragged.len(), t.columns.len(),
                            if t.has_header { ", header detected" } else { ", no header" })}</p>
                        <label>"Target column"
                            <select id="csv-target" prop:value=move || target.get() on:change=move |ev| {
                                let t = event_target_value(&ev);
                                task.set(None);
                                ignored.update(|i| i.retain(|c| *c != t));
                                target.set(t)
                            }>
                                {columns.into_iter().map(|c| view! { <option value=c.name.clone()>{c.name.clone()}</option> }).collect_view()}
                            </select>
                        </label>
                        <label>"Task"
                            <select id="csv-task" on:change=move |ev| task.set(Task::parse(&event_target_value(&ev)))>
                                {[Task::Classification, Task::Regression].into_iter().map(|t| view! {
                                    <option value=t.as_str() prop:selected=move || shown_task.get() == Some(t)>{t.as_str()}</option>
                                }).collect_view()}
                            </select>
                        </label>
                        {
                            let text_columns = move || table.with(|t| t.as_ref().map(|t| t.text_columns(&target.get())).unwrap_or_default());
                            let left_out = move || {
                                let text = text_columns();
                                ignored.get().into_iter().map(|c| match text.iter().find(|t| t.0 == c) {
                                    Some((_, example, line)) => format!("{c} (text, e.g. `{example}` on line {line})"),
                                    None => c,
                                }).collect::<Vec<_>>()
                            };
                            view! {
                                <Show when=move || !ignored.with(Vec::is_empty)>
                                    <p class="muted" data-testid="csv-left-out">{move || format!("left out of the features: {}", left_out().join(", "))}</p>
                                </Show>
                                <details class="columns">
                                    <summary>{move || format!("Columns: {} of {} used as features (untick to leave one out)",
                                        table.with(|t| t.as_ref().map_or(0, |t| t.columns.len())).saturating_sub(1 + ignored.with(Vec::len)),
                                        table.with(|t| t.as_ref().map_or(0, |t| t.columns.len())))}</summary>
                                    {move || table.with(|t| t.as_ref().map(|t| t.columns.clone()).unwrap_or_default()).into_iter().filter(|c| c.name != target.get()).map(|c| {
                                        let (name, name2) = (c.name.clone(), c.name.clone());
                                        view! {
                                            <label class="check column">
                                                <input type="checkbox" class="use-column" data-column=c.name.clone()
                                                    prop:checked=move || ignored.with(|i| !i.contains(&name))
                                                    on:change=move |ev| {
                                                        let on = event_target_checked(&ev);
                                                        ignored.update(|i| { i.retain(|x| *x != name2); if !on { i.push(name2.clone()); } });
                                                    } />
                                                {format!(" {}{}", c.name, if c.numeric { "" } else { " (text)" })}
                                            </label>
                                        }
                                    }).collect_view()}
                                </details>
                            }
                        }
                        {move || match prepared.get() {
                            Some(Ok(p)) => {
                                let n_bad = p.problems.len();
                                let more = n_bad.saturating_sub(SHOWN_PROBLEMS);
                                view! {
                                    <p>{format!("{}: {} usable rows, {} features", p.task, p.dataset.n_rows(), p.dataset.n_features())}</p>
                                    <Show when=move || { n_bad > 0 }>
                                        <p class="error">{format!("{n_bad} bad rows:")}</p>
                                    </Show>
                                    <ul class="problems" data-testid="csv-problems">
                                        {p.problems.iter().take(SHOWN_PROBLEMS).map(|pr| view! { <li>{pr.to_string()}</li> }).collect_view()}
                                        {(more > 0).then(|| view! { <li>{format!("... and {more} more")}</li> })}
                                    </ul>
                                    <div class="actions">
                                        <button id="csv-import" on:click=import>
                                            {if n_bad > 0 { format!("Import, skipping {n_bad} bad rows") } else { "Import".to_string() }}
                                        </button>
                                        <button id="csv-cancel" class="secondary" on:click=move |_| table.set(None)>"Cancel"</button>
                                    </div>
                                }.into_any()
                            }
                            Some(Err(e)) => view! {
                                <p class="error" data-testid="csv-error">{e}</p>
                                <button id="csv-cancel" class="secondary" on:click=move |_| table.set(None)>"Cancel"</button>
                            }.into_any(),
                            None => ().into_any(),
                        }}
                    </div>
                }
            })}
            {move || notice.get().map(|n| view! { <p class="ok" data-testid="csv-notice">{n}</p> })}
            {move || error.get().map(|e| view! { <p class="error" data-testid="csv-error">{e}</p> })}
            <DatasetVersions />
        </section>
    }
}

/// The imported dataset versions with their lineage; one chosen shows its column statistics
/// and histograms.
#[component]
fn DatasetVersions() -> impl IntoView {
    let state = use_app_state();
    let chosen = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    // The version whose name is being edited, and the name as typed.
    let renaming = RwSignal::new(None::<String>);
    let new_name = RwSignal::new(String::new());
    // Renames every version of a name (its lineage stays one).
    let rename = move |old: String| {
        renaming.set(None);
        let new = new_name.get_untracked().trim().to_string();
        let renamed = match state
            .datasets
            .with_untracked(|all| datasets::renamed(all, &old, &new))
        {
            Ok(Some(renamed)) => renamed,
            Ok(None) => return,
            Err(e) => return error.set(Some(e)),
        };
        error.set(None);
        spawn_local(async move {
            match async { Storage::open().await?.put_datasets(&renamed).await }.await {
                Ok(()) => {
                    crate::tabs::post(&crate::tabs::TabMessage::Datasets);
                    crate::logs::info("data", format!("renamed dataset {old} to {new}"));
                    state.datasets.update(|all| {
                        for d in all.iter_mut().filter(|d| d.dataset.name == old) {
                            d.dataset.name = new.clone();
                        }
                    });
                }
                Err(e) => error.set(Some(format!("rename not saved: {e}"))),
            }
        });
    };
    // Deletes one version after saying what was made from it.
    let delete = move |hash: String| {
        let Some(d) = state
            .datasets
            .with_untracked(|all| all.iter().find(|d| d.hash == hash).cloned())
        else {
            return;
        };
        let question = state.runs.with_untracked(|runs| {
            state.versions.with_untracked(|versions| {
                state
                    .datasets
                    .with_untracked(|all| datasets::delete_question(&d, runs, versions, all))
            })
        });
        let confirmed = web_sys::window()
            .and_then(|w| w.confirm_with_message(&question).ok())
            .unwrap_or(false);
        if !confirmed {
            return;
        }
        spawn_local(async move {
            match async { Storage::open().await?.delete_dataset(&hash).await }.await {
                Ok(()) => {
                    crate::tabs::post(&crate::tabs::TabMessage::Datasets);
                    crate::logs::info(
                        "data",
                        format!("deleted dataset {} v{}", d.dataset.name, d.version),
                    );
                    if state.train_dataset.get_untracked() == DatasetChoice::imported(&hash) {
                        state.train_dataset.set(DatasetChoice::default());
                    }
                    if chosen.get_untracked().as_deref() == Some(hash.as_str()) {
                        chosen.set(None);
                    }
                    state.datasets.update(|all| all.retain(|x| x.hash != hash));
                }
                Err(e) => error.set(Some(format!("delete failed: {e}"))),
            }
        });
    };
    view! {
        <Show when=move || !state.datasets.with(Vec::is_empty)>
            <h3>"Imported datasets"</h3>
            <ul class="datasets" data-testid="datasets">
                // Keyed by name too: a renamed version is drawn again.
                <For each=move || state.datasets.get() key=|d| (d.hash.clone(), d.dataset.name.clone()) let:d>
                    {
                        let hash = d.hash.clone();
                        let (name, delete_hash) = (d.dataset.name.clone(), d.hash.clone());
                        let parent = d.parent.as_deref().map(|p| format!(" · parent @{}", short(p))).unwrap_or_default();
                        view! {
                            <li data-dataset=d.hash.clone()>
                                <a href="#" class="dataset-link" on:click=move |ev| { ev.prevent_default(); chosen.set(Some(hash.clone())); }>
                                    {format!("{} v{}", d.dataset.name, d.version)}
                                </a>
                                <span class="mono">{format!(" @{}", short(&d.hash))}</span>
                                <span class="muted">{format!(" · {} rows × {} features · {}{parent}", d.dataset.n_rows(), d.dataset.n_features(), d.task)}</span>
                                " "
                                {
                                    let (editing, open_hash, open_name) = (d.hash.clone(), d.hash.clone(), name.clone());
                                    move || if renaming.get().as_deref() == Some(editing.as_str()) {
                                        let name = name.clone();
                                        view! {
                                            <input class="dataset-name" prop:value=move || new_name.get() on:input=move |ev| new_name.set(event_target_value(&ev)) />
                                            <button class="small dataset-rename-save" on:click=move |_| rename(name.clone())>"Save name"</button>
                                        }.into_any()
                                    } else {
                                        let (open_hash, open_name) = (open_hash.clone(), open_name.clone());
                                        view! {
                                            <button class="secondary small dataset-rename" on:click=move |_| { new_name.set(open_name.clone()); renaming.set(Some(open_hash.clone())); }>"Rename"</button>
                                        }.into_any()
                                    }
                                }
                                <button class="secondary small dataset-delete" on:click=move |_| delete(delete_hash.clone())>"Delete"</button>
                            </li>
                        }
                    }
                </For>
            </ul>
        </Show>
        {move || error.get().map(|e| view! { <p class="error" data-testid="dataset-error">{e}</p> })}
        {move || {
            let hash = chosen.get()?;
            let d = state.datasets.with(|all| all.iter().find(|d| d.hash == hash).cloned())?;
            Some(view! { <DatasetProfile d=d /> })
        }}
    }
}

#[component]
fn DatasetProfile(d: crate::storage::StoredDataset) -> impl IntoView {
    let ds = &d.dataset;
    let n = ds.n_rows().max(1) as f64;
    let stats: Vec<(String, f64, f64, f64, f64)> = (0..ds.n_features())
        .map(|j| {
            let col: Vec<f64> = (0..ds.n_rows()).map(|i| ds.row(i)[j]).collect();
            let mean = col.iter().sum::<f64>() / n;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let min = col.iter().copied().fold(f64::INFINITY, f64::min);
            let max = col.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (ds.feature_names[j].clone(), min, max, mean, var.sqrt())
        })
        .collect();
    let profile = wasmops_shared::profile::Profile::from_rows(&ds.feature_names, &ds.x);
    let classes: Vec<(String, usize)> = ds
        .class_names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            (
                name.clone(),
                ds.y.iter().filter(|y| **y == c as f64).count(),
            )
        })
        .collect();
    view! {
        <div class="dataset-profile" data-testid="dataset-profile">
            <h4>{format!("{} v{} @{}: {} rows, {} bad rows skipped at import", ds.name, d.version, short(&d.hash), ds.n_rows(), d.skipped_rows)}</h4>
            <table class="runs compact" data-testid="dataset-stats">
                <thead><tr><th>"column"</th><th class="num">"min"</th><th class="num">"max"</th><th class="num">"mean"</th><th class="num">"std"</th></tr></thead>
                <tbody>
                    {stats.into_iter().map(|(name, min, max, mean, std)| view! {
                        <tr><td>{name}</td>
                            <td class="num">{format!("{min:.4}")}</td><td class="num">{format!("{max:.4}")}</td>
                            <td class="num">{format!("{mean:.4}")}</td><td class="num">{format!("{std:.4}")}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
            {(!classes.is_empty()).then(|| view! {
                <p class="muted" data-testid="dataset-classes">{format!("target {}: {}", ds.target_name,
                    classes.iter().map(|(c, k)| format!("{c} {k}")).collect::<Vec<_>>().join(", "))}</p>
            })}
            <div class="charts">
                {profile.features.iter().map(|f| match crate::charts::profile_histogram(f, 260, 170) {
                    Ok(svg) => view! { <div class="chart" inner_html=svg></div> }.into_any(),
                    Err(e) => view! { <p class="error">{format!("chart of {}: {e}", f.name)}</p> }.into_any(),
                }).collect_view()}
            </div>
        </div>
    }
}
