//! A failed or cancelled run opened: what stopped it.

use leptos::prelude::*;

use super::actions::confirm_and_delete;
use crate::run::RunSummary;
use crate::state::use_app_state;

/// A run that did not finish: its params, how long it ran and what stopped it; it can be
/// deleted like any run.
#[component]
pub fn StoppedRun(run: RunSummary) -> impl IntoView {
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
                    Some(e) if e != run.status.as_str() => format!("{} after {:.1} s: {e}", run.status, run.duration_ms / 1000.0),
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
