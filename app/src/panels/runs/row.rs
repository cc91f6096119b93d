//! One row of the runs table.

use leptos::prelude::*;

use crate::run::RunSummary;
use crate::state::use_app_state;

#[component]
pub fn RunRow(
    run: RunSummary,
    busy: Memo<bool>,
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
    let finished = status == crate::run::Status::Finished;
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
                view! { <td class="num error" title=error.unwrap_or_default() data-testid="run-status">{status.as_str()}</td> }.into_any()
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
