//! Train panel: choose a dataset and hyperparameters, train in the worker with progress and
//! cancel, store the finished run.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::protocol::{LogisticParams, TrainRequest};
use crate::state::use_app_state;
use crate::storage::Storage;
use crate::worker_client::TrainJob;

#[component]
pub fn TrainPanel() -> impl IntoView {
    let state = use_app_state();
    let dataset = RwSignal::new("iris".to_string());
    let alpha = RwSignal::new(LogisticParams::default().alpha.to_string());
    let max_iterations = RwSignal::new(LogisticParams::default().max_iterations.to_string());
    let seed = RwSignal::new(LogisticParams::default().seed.to_string());
    let progress = RwSignal::new(None::<(String, f64)>);
    let error = RwSignal::new(None::<String>);
    // The running job holds a web_sys::Worker, which is not Send: keep it in local storage.
    let job = StoredValue::new_local(None::<TrainJob>);

    let params = move || -> Result<LogisticParams, String> {
        let p = LogisticParams {
            alpha: alpha
                .get()
                .trim()
                .parse()
                .map_err(|_| format!("alpha: `{}` is not a number", alpha.get()))?,
            max_iterations: max_iterations.get().trim().parse().map_err(|_| {
                format!(
                    "max iterations: `{}` is not a whole number",
                    max_iterations.get()
                )
            })?,
            test_fraction: 0.2,
            seed: seed
                .get()
                .trim()
                .parse()
                .map_err(|_| format!("seed: `{}` is not a whole number", seed.get()))?,
        };
        p.validate()?;
        Ok(p)
    };

    let start = move |_| {
        error.set(None);
        let params = match params() {
            Ok(p) => p,
            Err(e) => return error.set(Some(e)),
        };
        let now = js_sys::Date::now();
        let n = state.runs.with_untracked(Vec::len) + 1;
        let req = TrainRequest {
            run_id: format!("run-{}-{}", now as u64, n),
            run_name: format!("logreg #{n}"),
            dataset: dataset.get_untracked(),
            params,
            started_at_ms: now,
        };
        progress.set(Some(("starting worker".into(), 0.0)));
        let (handle, done) =
            match TrainJob::start(req, move |stage, f| progress.set(Some((stage, f)))) {
                Ok(x) => x,
                Err(e) => {
                    progress.set(None);
                    return error.set(Some(e));
                }
            };
        job.set_value(Some(handle));
        spawn_local(async move {
            let outcome = done
                .await
                .unwrap_or_else(|_| Err("the training worker went away".into()));
            job.set_value(None);
            progress.set(None);
            match outcome {
                Ok(run) => {
                    let saved = async { Storage::open().await?.put_run(&run).await }.await;
                    if let Err(e) = saved {
                        error.set(Some(format!(
                            "the run finished but could not be saved: {e}"
                        )));
                    }
                    state.selected_run.set(Some(run.id.clone()));
                    state.runs.update(|runs| runs.insert(0, run));
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let cancel = move |_| {
        job.with_value(|j| {
            if let Some(j) = j {
                j.cancel()
            }
        })
    };

    view! {
        <section class="panel" id="train-panel">
            <h2>"Train"</h2>
            <div class="form">
                <label>"Dataset"
                    <select id="dataset" prop:value=move || dataset.get() on:change=move |ev| dataset.set(event_target_value(&ev))>
                        <option value="iris">"iris (built-in, 150 rows, 3 classes)"</option>
                    </select>
                </label>
                <label>"Model" <select id="model"><option value="logistic_regression">"logistic regression (multinomial)"</option></select></label>
                <label>"L2 penalty (alpha)" <input id="alpha" prop:value=move || alpha.get() on:input=move |ev| alpha.set(event_target_value(&ev)) /></label>
                <label>"Max iterations" <input id="max-iterations" prop:value=move || max_iterations.get() on:input=move |ev| max_iterations.set(event_target_value(&ev)) /></label>
                <label>"Split seed" <input id="seed" prop:value=move || seed.get() on:input=move |ev| seed.set(event_target_value(&ev)) /></label>
            </div>
            <div class="actions">
                <button id="train" disabled=move || progress.get().is_some() on:click=start>"Train"</button>
                <button id="cancel" disabled=move || progress.get().is_none() on:click=cancel>"Cancel"</button>
            </div>
            {move || progress.get().map(|(stage, f)| view! {
                <div class="progress" data-testid="progress">
                    <progress max="1" value=f.to_string()></progress>
                    <span>{stage}</span>
                </div>
            })}
            {move || error.get().map(|e| view! { <p class="error" data-testid="train-error">{e}</p> })}
        </section>
    }
}
