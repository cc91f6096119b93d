//! A run opened: params, metrics, curves, log, confusion matrix or predicted vs actual,
//! importances and the training data profile.

use leptos::prelude::*;

use super::actions::RunActions;
use super::module_summary::ModuleSummary;
use super::sync_line::RunSyncLine;
use crate::run::{Run, RunSummary};
use crate::state::use_app_state;

/// Feature histograms shown unfolded in a run's details up to this many features.
const OPEN_PROFILE_FEATURES: usize = 8;
/// Everything about one run: params, every metric, and for classifiers the confusion matrix of
/// the held-out split (recomputed from the pipeline, which the module equals bit for bit).
#[component]
pub fn RunDetails(run: Run) -> impl IntoView {
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
