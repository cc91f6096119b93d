//! Train panel: choose a dataset, an algorithm, its hyperparameters (a form per algorithm,
//! checked before anything starts) and a seed; train in the worker with progress and cancel;
//! store the run, finished or not. A run's "Rerun" (runs panel) comes here through
//! `AppState::rerun` and trains the same spec on the same dataset version.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::digest::short;
use wasmops_trainer::catalog::{offered, Offer, Task};
use wasmops_trainer::datasets::BUILTIN;
use wasmops_trainer::{Algorithm, TrainSpec};

use crate::logic::dataset_choice::DatasetChoice;
use crate::protocol::TrainRequest;
use crate::state::use_app_state;
use crate::storage::Storage;
use crate::worker_client::TrainJob;

/// The task and class count of a dataset choice.
fn task_of(choice: &DatasetChoice, datasets: &[crate::storage::StoredDataset]) -> (Task, usize) {
    choice.task(datasets)
}

/// The hyperparameters of an algorithm's defaults, as editable text (`none` = unlimited;
/// words such as gradient boosting's `early_stopping: auto` as they are).
fn default_params(offers: &[Offer], name: &str) -> std::collections::BTreeMap<String, String> {
    let algorithm = offers
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.algorithm.clone());
    let Some(serde_json::Value::Object(map)) = algorithm.and_then(|a| serde_json::to_value(a).ok())
    else {
        return Default::default();
    };
    map.into_iter()
        .filter(|(k, _)| k != "algorithm")
        .map(|(k, v)| {
            (
                k,
                match v {
                    serde_json::Value::Null => "none".to_string(),
                    serde_json::Value::String(s) => s,
                    v => v.to_string(),
                },
            )
        })
        .collect()
}

/// Builds an algorithm from typed hyperparameters; errors name the field.
fn parse_algorithm(
    offers: &[Offer],
    name: &str,
    params: &std::collections::BTreeMap<String, String>,
) -> Result<Algorithm, String> {
    let default = offers
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.algorithm.clone())
        .ok_or_else(|| format!("`{name}` is not offered for this dataset's task"))?;
    let mut obj = match serde_json::to_value(&default) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(format!("algorithm `{name}` has no parameters form")),
    };
    for (field, text) in params {
        let t = text.trim();
        // A field whose default is a word or true/false (boosting's `early_stopping`) takes
        // words; the algorithm's own parsing says which.
        let worded = matches!(
            obj.get(field),
            Some(serde_json::Value::String(_) | serde_json::Value::Bool(_))
        );
        let value = if worded {
            match t.to_ascii_lowercase().as_str() {
                "true" => serde_json::Value::Bool(true),
                "false" => serde_json::Value::Bool(false),
                word => serde_json::Value::String(word.to_string()),
            }
        } else if t.is_empty() || t.eq_ignore_ascii_case("none") {
            serde_json::Value::Null
        } else {
            let n: f64 = t
                .parse()
                .map_err(|_| format!("{}: `{t}` is not a number", field.replace('_', " ")))?;
            if n.fract() == 0.0 && (0.0..9e15).contains(&n) {
                serde_json::json!(n as u64)
            } else {
                serde_json::json!(n)
            }
        };
        obj.insert(field.clone(), value);
    }
    let algorithm: Algorithm = serde_json::from_value(serde_json::Value::Object(obj))
        .map_err(|e| format!("hyperparameters: {e}"))?;
    algorithm.validate().map_err(|e| e.to_string())?;
    Ok(algorithm)
}

#[component]
pub fn TrainPanel() -> impl IntoView {
    let state = use_app_state();
    // In the app state: an import chooses the dataset it imported.
    let dataset = state.train_dataset;
    // The algorithms of the chosen dataset's task, with defaults that fit it.
    let offers = Memo::new(move |_| {
        let (task, classes) = state
            .datasets
            .with(|all| dataset.with(|choice| task_of(choice, all)));
        offered(task, classes)
    });
    let algorithm = RwSignal::new("logistic_regression".to_string());
    let scale = RwSignal::new(false);
    let seed = RwSignal::new("42".to_string());
    // The selected algorithm's hyperparameters as the user typed them, reset to its defaults
    // whenever another algorithm is chosen.
    let params = RwSignal::new(default_params(
        &offered(Task::Classification, 3),
        "logistic_regression",
    ));
    // Another dataset may have another task: an algorithm it is not offered gives way to the
    // first one it is, and k-means follows its class count.
    Effect::new(move |_| {
        offers.with(|offers| {
            let name = algorithm.get_untracked();
            match offers.iter().find(|o| o.name == name) {
                None => {
                    if let Some(first) = offers.first() {
                        params.set(default_params(offers, first.name));
                        algorithm.set(first.name.to_string());
                    }
                }
                Some(o) => {
                    if let Algorithm::KMeans { k, .. } = o.algorithm {
                        params.update(|p| {
                            p.insert("k".into(), k.to_string());
                        });
                    }
                }
            }
        })
    });
    let progress = RwSignal::new(None::<(String, f64)>);
    let error = RwSignal::new(None::<String>);
    // The running job holds a web_sys::Worker, which is not Send: keep it in local storage.
    let job = StoredValue::new_local(None::<TrainJob>);
    // A worker loaded before the first Train click (kept between jobs).
    crate::worker_client::warm();

    let spec = move || -> Result<TrainSpec, String> {
        let name = algorithm.get_untracked();
        let algorithm =
            offers.with_untracked(|o| parse_algorithm(o, &name, &params.get_untracked()))?;
        let seed = seed
            .get_untracked()
            .trim()
            .parse()
            .map_err(|_| format!("seed: `{}` is not a whole number", seed.get_untracked()))?;
        Ok(TrainSpec {
            algorithm,
            scale: scale.get_untracked(),
            test_fraction: 0.2,
            seed,
        })
    };

    // Trains `spec` on the dataset `choice`.
    let start_with = move |choice: DatasetChoice, spec: TrainSpec, name: Option<String>| {
        error.set(None);
        if progress.get_untracked().is_some() {
            return error.set(Some(
                "a training is running: wait for it or cancel it".into(),
            ));
        }
        let now = js_sys::Date::now();
        // One more than the highest number in use: a deleted run's number is never reused
        // while a later one exists, and no two runs share a name.
        let n = state.runs.with_untracked(|runs| {
            crate::run::next_run_number(runs.iter().map(|r| r.name.as_str()))
        });
        let data = state
            .datasets
            .with_untracked(|d| choice.stored(d).map(|x| x.dataset.clone()));
        if choice.imported_hash().is_some() && data.is_none() {
            return error.set(Some(format!(
                "dataset {choice}: this version is not stored in this browser"
            )));
        }
        let req = TrainRequest {
            run_id: format!("run-{}-{}", now as u64, n),
            run_name: name
                .unwrap_or_else(|| format!("{} #{n}", algorithm.get_untracked().replace('_', " "))),
            dataset: choice.to_string(),
            data,
            spec,
            started_at_ms: now,
            kmeans_runs: None,
            kmeans_done: Vec::new(),
            log: Vec::new(),
        };
        // Readable in the Logs page: the dataset by name and version, params as `key value`.
        let dataset_label = req.data.as_ref().map_or(req.dataset.clone(), |d| {
            let version = state.datasets.with_untracked(|all| {
                all.iter()
                    .find(|x| Some(x.hash.as_str()) == req.dataset.strip_prefix("csv:"))
                    .map(|x| format!(" v{} @{}", x.version, short(&x.hash)))
                    .unwrap_or_default()
            });
            format!("{}{version}", d.name)
        });
        let params_text = crate::training::params_of(&req.spec)
            .into_iter()
            .filter(|(k, _)| k != "algorithm")
            .map(|(k, v)| {
                format!(
                    "{} {}",
                    k.replace('_', " "),
                    crate::panels::compare::param_text(&v)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        crate::logs::info(
            "train",
            format!(
                "{} on {dataset_label} started ({params_text})",
                req.run_name
            ),
        );
        // What is tracked if the run fails or is cancelled (it then has no full record).
        let attempt = crate::run::RunSummary {
            id: req.run_id.clone(),
            name: req.run_name.clone(),
            started_at_ms: req.started_at_ms,
            duration_ms: 0.0,
            code_version: crate::run::CODE_VERSION.to_string(),
            dataset: wasmops_shared::module::DatasetRef {
                name: req
                    .data
                    .as_ref()
                    .map_or(req.dataset.clone(), |d| d.name.clone()),
                hash: req
                    .dataset
                    .strip_prefix("csv:")
                    .unwrap_or_default()
                    .to_string(),
                n_rows: req.data.as_ref().map_or(0, |d| d.n_rows()),
            },
            model: serde_json::to_value(&req.spec.algorithm)
                .ok()
                .and_then(|v| v["algorithm"].as_str().map(str::to_string))
                .unwrap_or_default(),
            metric: String::new(),
            params: crate::training::params_of(&req.spec),
            metrics: Default::default(),
            tags: Vec::new(),
            notes: String::new(),
            archived: false,
            status: crate::run::Status::Failed,
            error: None,
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
                    let (metric, value) = run.primary_metric();
                    crate::logs::info(
                        "train",
                        format!(
                            "{} finished in {:.0} ms: {metric} {}",
                            run.name,
                            run.duration_ms,
                            value
                                .map(|v| format!("{v:.4}"))
                                .unwrap_or_else(|| "-".into())
                        ),
                    );
                    let saved = async { Storage::open().await?.put_run(&run).await }.await;
                    if let Err(e) = saved {
                        crate::logs::error("storage", format!("run {} not saved: {e}", run.name));
                        error.set(Some(format!(
                            "the run finished but could not be saved: {e}"
                        )));
                    }
                    state.selected_run.set(Some(run.id.clone()));
                    state
                        .runs
                        .update(|runs| runs.insert(0, crate::run::RunSummary::of(&run)));
                    crate::mlflow::request_sync(state);
                }
                Err(e) => {
                    let mut attempt = attempt;
                    attempt.duration_ms = js_sys::Date::now() - attempt.started_at_ms;
                    if e == "cancelled" {
                        attempt.status = crate::run::Status::Cancelled;
                        crate::logs::warn("train", format!("{} cancelled", attempt.name));
                    } else {
                        crate::logs::error("train", format!("{} failed: {e}", attempt.name));
                        error.set(Some(e.clone()));
                    }
                    attempt.error = Some(e);
                    // Tracked too: a failed or cancelled run keeps its params and what stopped it.
                    if let Err(e) =
                        async { Storage::open().await?.put_run_summary(&attempt).await }.await
                    {
                        crate::logs::error(
                            "storage",
                            format!("run {} not saved: {e}", attempt.name),
                        );
                    }
                    state.runs.update(|runs| runs.insert(0, attempt));
                    crate::mlflow::request_sync(state);
                }
            }
        });
    };
    let start = move |_| match spec() {
        Ok(spec) => start_with(dataset.get_untracked(), spec, None),
        Err(e) => error.set(Some(e)),
    };
    // A rerun asked for from a run's details.
    Effect::new(move |_| {
        // Taking the request notifies this effect again; it then finds nothing (no loop).
        if state.rerun.with(Option::is_some) {
            if let Some((choice, spec, name)) = state.rerun.try_update(Option::take).flatten() {
                start_with(choice, spec, Some(name));
            }
        }
    });
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
                    // Each option says whether it is the chosen one. The select's own value is
                    // not enough: when the imported datasets re-render, the select keeps its
                    // index, which then points at another dataset than the signal's.
                    <select id="dataset" prop:value=move || dataset.get().to_string() on:change=move |ev| dataset.set(DatasetChoice::parse(&event_target_value(&ev)))>
                        {BUILTIN.iter().map(|&(name, label)| view! {
                            <option value=name prop:selected=move || dataset.with(|d| d.is_builtin(name))>{label}</option>
                        }).collect_view()}
                        {move || state.datasets.get().into_iter().map(|d| {
                            let label = format!("{} v{} @{}: {} rows, {}", d.dataset.name, d.version, short(&d.hash), d.dataset.n_rows(), d.task);
                            let chosen = DatasetChoice::imported(&d.hash);
                            let value = chosen.to_string();
                            view! { <option value=value prop:selected=move || dataset.with(|d| *d == chosen)>{label}</option> }
                        }).collect_view()}
                    </select>
                    <span class="muted" data-testid="train-task">{move || {
                        let (task, classes) = state.datasets.with(|all| dataset.with(|c| task_of(c, all)));
                        match task {
                            Task::Classification => format!("classification, {classes} classes"),
                            Task::Regression => "regression".to_string(),
                        }
                    }}</span>
                </label>
                <label>"Algorithm"
                    <select id="algorithm" prop:value=move || algorithm.get() on:change=move |ev| {
                        let name = event_target_value(&ev);
                        params.set(offers.with_untracked(|o| default_params(o, &name)));
                        algorithm.set(name);
                    }>
                        {move || offers.get().into_iter().map(|o| {
                            let name = o.name;
                            view! { <option value=name prop:selected=move || algorithm.with(|a| a == name)>{o.label}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <label class="check"><input type="checkbox" id="scale" prop:checked=move || scale.get() on:change=move |ev| scale.set(event_target_checked(&ev)) /> "Standard-scale features"</label>
                {move || params.get().into_iter().map(|(name, value)| {
                    let field = name.clone();
                    view! {
                        <label>{name.replace('_', " ")}
                            <input id=format!("param-{name}") prop:value=value
                                on:change=move |ev| params.update(|p| { p.insert(field.clone(), event_target_value(&ev)); }) />
                        </label>
                    }
                }).collect_view()}
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
