//! Data panel: import a CSV file (picker or drag and drop). Bad rows are listed with line and
//! column; the user imports the good rows (the count of skipped rows is shown and recorded) or
//! cancels. Imported datasets are content-addressed and stored in IndexedDB.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen_futures::JsFuture;
use wasmops_shared::digest::short;
use wasmops_trainer::csv_import::{self, CsvTable, Prepared};

use crate::state::use_app_state;
use crate::storage::{Storage, StoredDataset};

/// Bad rows listed in full before the list is cut short.
const SHOWN_PROBLEMS: usize = 20;

#[component]
pub fn DataPanel() -> impl IntoView {
    let state = use_app_state();
    let table = RwSignal::new(None::<CsvTable>);
    let target = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);

    // Re-splitting on every target change is cheap for the files a tab can hold.
    let prepared = Memo::new(move |_| -> Option<Result<Prepared, String>> {
        let t = table.get()?;
        Some(t.prepare(&target.get()).map_err(|e| e.to_string()))
    });

    let load = move |file: web_sys::File| {
        error.set(None);
        notice.set(None);
        spawn_local(async move {
            let name = file.name();
            let text = match JsFuture::from(file.text()).await {
                Ok(v) => v.as_string().unwrap_or_default(),
                Err(_) => return error.set(Some(format!("could not read {name}"))),
            };
            match csv_import::read(&name, &text) {
                Ok(t) => {
                    target.set(t.default_target().unwrap_or_default().to_string());
                    table.set(Some(t));
                }
                Err(e) => error.set(Some(e.to_string())),
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
        let Some(Ok(p)) = prepared.get_untracked() else {
            return;
        };
        let stored = StoredDataset::new(&p, js_sys::Date::now());
        spawn_local(async move {
            match async { Storage::open().await?.put_dataset(&stored).await }.await {
                Ok(()) => {
                    crate::logs::info(
                        "data",
                        format!(
                            "imported {} @{}: {} rows, {} bad rows skipped",
                            stored.dataset.name,
                            short(&stored.hash),
                            stored.dataset.n_rows(),
                            stored.skipped_rows
                        ),
                    );
                    notice.set(Some(format!(
                        "imported {} @{}: {} rows{}",
                        stored.dataset.name,
                        short(&stored.hash),
                        stored.dataset.n_rows(),
                        if stored.skipped_rows > 0 {
                            format!(", {} bad rows skipped", stored.skipped_rows)
                        } else {
                            String::new()
                        }
                    )));
                    state.datasets.update(|d| {
                        d.retain(|x| x.hash != stored.hash);
                        d.insert(0, stored);
                    });
                    table.set(None);
                }
                Err(e) => {
                    crate::logs::error("storage", format!("dataset not saved: {e}"));
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
                            <select id="csv-target" prop:value=move || target.get() on:change=move |ev| target.set(event_target_value(&ev))>
                                {columns.into_iter().map(|c| view! { <option value=c.name.clone()>{c.name.clone()}</option> }).collect_view()}
                            </select>
                        </label>
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
        </section>
    }
}
