//! A run's actions: rename, tags and notes, archive, rerun, delete.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::logic::dataset_choice::DatasetChoice;
use crate::logic::run_edit;
use crate::run::{Run, RunSummary};
use crate::state::use_app_state;
use crate::storage::Storage;

/// Asks to confirm, then deletes a run (record and summary) and takes it out of the table.
pub fn confirm_and_delete(
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
/// Rename, tag, annotate, archive or delete (after confirmation) a run; each change is written
/// to IndexedDB before the table changes, and failures are shown.
#[component]
pub fn RunActions(run: Run) -> impl IntoView {
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
        match run_edit::run_name(&name.get_untracked()) {
            Ok(n) => run.name = n,
            Err(e) => return error.set(Some(e)),
        }
        save(run, "name");
    };
    let save_meta = move |_| {
        let mut run = stored.get_value();
        match run_edit::tags(&tags.get_untracked()) {
            Ok(list) => run.tags = list,
            Err(e) => return error.set(Some(e)),
        }
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
        let choice = match state
            .datasets
            .with_untracked(|d| DatasetChoice::for_rerun(&run.dataset, d))
        {
            Ok(c) => c,
            Err(e) => return error.set(Some(e)),
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
