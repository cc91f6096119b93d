//! A run's MLflow state in its details.

use leptos::prelude::*;

use crate::run::RunSummary;
use crate::state::use_app_state;

/// Where the run stands with the MLflow server, when one is connected: a link to it there, or
/// why it is not there yet.
#[component]
pub fn RunSyncLine(run: RunSummary) -> impl IntoView {
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
