//! Compare view: the selected runs' params side by side (rows whose values differ are
//! highlighted), their metrics, and a parallel-coordinates chart of the numeric params that
//! vary against a chosen metric.

use std::collections::BTreeSet;

use leptos::prelude::*;

use crate::run::Run;

/// A param's value as shown (one form for a number however it was stored).
pub use crate::run::param_text;

/// A param as a parallel-coordinates value: numbers as they are, yes/no as 1/0; anything
/// else (text, a missing param) has none.
fn axis_value(v: Option<&serde_json::Value>) -> Option<f64> {
    match v? {
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        other => other.as_f64(),
    }
}

#[component]
pub fn CompareRuns(runs: Vec<Run>) -> impl IntoView {
    let keys: BTreeSet<String> = runs.iter().flat_map(|r| r.params.keys().cloned()).collect();
    let metric_keys: Vec<String> = runs
        .iter()
        .flat_map(|r| r.metrics.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rows: Vec<(String, Vec<String>)> = vec![
        (
            "dataset".into(),
            runs.iter()
                .map(|r| format!("{} ({} rows)", r.dataset.name, r.dataset.n_rows))
                .collect(),
        ),
        (
            "model".into(),
            runs.iter()
                .map(|r| crate::run::RunSummary::of(r).model_label())
                .collect(),
        ),
        (
            "code".into(),
            runs.iter().map(|r| r.code_version.clone()).collect(),
        ),
    ];
    rows.extend(keys.iter().map(|k| {
        (
            k.clone(),
            runs.iter()
                .map(|r| {
                    r.params
                        .get(k)
                        .map(param_text)
                        .unwrap_or_else(|| "-".into())
                })
                .collect(),
        )
    }));
    let default_metric = runs
        .first()
        .map(|r| r.primary_metric().0.to_string())
        .filter(|m| metric_keys.contains(m))
        .or_else(|| metric_keys.first().cloned())
        .unwrap_or_default();
    let metric = RwSignal::new(default_metric);
    let stored = StoredValue::new((runs.clone(), keys));
    let chart = move || {
        let m = metric.get();
        stored.with_value(|(runs, keys)| {
            // Numeric and yes/no params whose values differ between the runs (a run without
            // the param differs too), then the metric.
            let param_keys: Vec<&String> = keys
                .iter()
                .filter(|k| {
                    let vals: Vec<Option<f64>> =
                        runs.iter().map(|r| axis_value(r.params.get(*k))).collect();
                    vals.iter().any(Option::is_some) && vals.windows(2).any(|w| w[0] != w[1])
                })
                .collect();
            let mut axes: Vec<crate::charts::ParallelAxis> = param_keys
                .iter()
                .map(|k| crate::charts::ParallelAxis {
                    name: k.to_string(),
                    boolean: runs
                        .iter()
                        .any(|r| r.params.get(*k).is_some_and(serde_json::Value::is_boolean)),
                })
                .collect();
            axes.push(crate::charts::ParallelAxis {
                name: format!("metrics.{m}"),
                boolean: false,
            });
            let items: Vec<(String, Vec<Option<f64>>)> = runs
                .iter()
                .map(|r| {
                    let mut v: Vec<Option<f64>> = param_keys
                        .iter()
                        .map(|k| axis_value(r.params.get(*k)))
                        .collect();
                    v.push(r.metrics.get(&m).copied());
                    (r.name.clone(), v)
                })
                .collect();
            crate::charts::parallel_coordinates(
                &format!("Params vs {m}"),
                &axes,
                &items,
                (760, 300),
            )
        })
    };
    // One chart per step metric, a line per run that logged it.
    let curve_names: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.metric_steps.keys().cloned())
        .collect();
    let curves: Vec<(String, Result<String, String>)> = curve_names
        .into_iter()
        .map(|name| {
            let series: Vec<crate::charts::Series> = runs
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let points = r.metric_steps.get(&name)?;
                    Some(crate::charts::Series {
                        name: r.name.clone(),
                        points: points.iter().map(|(s, v)| (*s as f64, *v)).collect(),
                        color: crate::charts::PALETTE[i % crate::charts::PALETTE.len()],
                    })
                })
                .collect();
            // One line has no legend: the title names its run.
            let title = match series.as_slice() {
                [only] => format!("{name} by step: {}", only.name),
                _ => format!("{name} by step"),
            };
            let svg = crate::charts::step_chart(&title, &name, &series, (460, 260));
            (name, svg)
        })
        .collect();
    let names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    let names2 = names.clone();
    view! {
        <div class="details compare" data-testid="compare">
            <h3>{format!("Comparing {} runs", runs.len())}</h3>
            <table class="runs compact" data-testid="compare-params">
                <thead><tr><th>"param"</th>{names.into_iter().map(|n| view! { <th>{n}</th> }).collect_view()}</tr></thead>
                <tbody>
                    {rows.into_iter().map(|(k, vals)| {
                        let differs = vals.windows(2).any(|w| w[0] != w[1]);
                        let key = k.clone();
                        view! {
                            <tr class:differs=differs data-param=key>
                                <th>{k}</th>
                                {vals.into_iter().map(|v| view! { <td class="mono">{v}</td> }).collect_view()}
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <table class="runs compact" data-testid="compare-metrics">
                <thead><tr><th>"metric"</th>{names2.into_iter().map(|n| view! { <th>{n}</th> }).collect_view()}</tr></thead>
                <tbody>
                    {metric_keys.iter().map(|k| view! {
                        <tr><th>{k.clone()}</th>{runs.iter().map(|r| view! {
                            <td class="num">{r.metrics.get(k).map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())}</td>
                        }).collect_view()}</tr>
                    }).collect_view()}
                </tbody>
            </table>
            <label class="inline">"Metric for the chart "
                <select id="compare-metric" on:change=move |ev| metric.set(event_target_value(&ev))>
                    {metric_keys.iter().map(|k| {
                        let selected = *k == metric.get_untracked();
                        view! { <option value=k.clone() selected=selected>{k.clone()}</option> }
                    }).collect_view()}
                </select>
            </label>
            <div class="charts" data-testid="compare-curves">
                {curves.into_iter().map(|(name, svg)| match svg {
                    Ok(svg) => view! { <div class="chart" data-chart=format!("compare-{name}") inner_html=svg></div> }.into_any(),
                    Err(e) => view! { <p class="error">{format!("{name}: {e}")}</p> }.into_any(),
                }).collect_view()}
            </div>
            {move || match chart() {
                Ok(svg) => view! { <div class="chart" data-chart="parallel" inner_html=svg></div> }.into_any(),
                Err(e) => view! { <p class="error">{format!("parallel coordinates: {e}")}</p> }.into_any(),
            }}
        </div>
    }
}
