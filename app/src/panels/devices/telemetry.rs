//! The telemetry charts of one model version on one device.

use std::collections::BTreeMap;

use leptos::prelude::*;
use wasmops_shared::wire::Window;

use crate::charts::{self, Series, Threshold, ALERT, PALETTE, WARN};
use crate::logic::drift::{capped_series, top_drift_features, DRIFT_LINES, PSI_CAP};
use crate::logic::prediction_chart::{live_predictions, prediction_shares, KnownModel};
use crate::panels::registry::clock;
use crate::registry::ModelVersion;

/// Rows of the latest window's drift table shown before "Show all".
const DRIFT_ROWS: usize = 10;
/// The charts of one model version on one device, from its stored windows.
#[component]
pub fn TelemetryCharts(
    ws: Vec<Window>,
    window_s: u64,
    version: Option<ModelVersion>,
) -> impl IntoView {
    const SIZE: (u32, u32) = (470, 250);
    let per_s = |n: u64| n as f64 / window_s.max(1) as f64;
    let t = |w: &Window| w.start_ms as f64;
    let mut charts: Vec<(&'static str, Result<String, String>)> = Vec::new();

    charts.push((
        "chart-rate",
        charts::time_series(
            "Requests and errors per second",
            "per second",
            &[
                Series {
                    name: "requests/s".into(),
                    points: ws.iter().map(|w| (t(w), per_s(w.requests))).collect(),
                    color: PALETTE[0],
                },
                Series {
                    name: "errors/s".into(),
                    points: ws
                        .iter()
                        .map(|w| (t(w), per_s(w.errors.values().sum())))
                        .collect(),
                    color: PALETTE[4],
                },
            ],
            &[],
            SIZE,
        ),
    ));
    charts.push((
        "chart-latency",
        charts::time_series(
            "Latency per window",
            "microseconds",
            &[
                Series {
                    name: "p50".into(),
                    points: ws.iter().map(|w| (t(w), w.latency_p50_us as f64)).collect(),
                    color: PALETTE[0],
                },
                Series {
                    name: "p95".into(),
                    points: ws.iter().map(|w| (t(w), w.latency_p95_us as f64)).collect(),
                    color: PALETTE[1],
                },
                Series {
                    name: "p99".into(),
                    points: ws.iter().map(|w| (t(w), w.latency_p99_us as f64)).collect(),
                    color: PALETTE[4],
                },
            ],
            &[],
            SIZE,
        ),
    ));
    // Drift per feature (only windows where rows were predicted carry drift). One line per
    // feature is unreadable with dozens: the charts draw the features with the highest PSI
    // (the table below lists every feature), and clip values far above the alert threshold
    // so the thresholds stay visible; a clipped line says its peak in the legend.
    let all_features = ws
        .iter()
        .find(|w| !w.drift.is_empty())
        .map_or(0, |w| w.drift.len());
    let features = top_drift_features(&ws, DRIFT_LINES);
    let drift_series =
        |pick: fn(&wasmops_shared::wire::FeatureDrift) -> f64, cap: f64| -> Vec<Series> {
            capped_series(&ws, &features, pick, cap)
                .into_iter()
                .enumerate()
                .map(|(j, (name, points))| Series {
                    name,
                    points,
                    color: PALETTE[j % PALETTE.len()],
                })
                .collect()
        };
    let which = if all_features > features.len() {
        format!(
            " (top {} of {all_features} features by PSI)",
            features.len()
        )
    } else {
        String::new()
    };
    if !features.is_empty() {
        charts.push((
            "chart-psi",
            charts::time_series(
                &format!("Input drift: PSI vs training profile{which}"),
                "PSI",
                &drift_series(|d| d.psi, PSI_CAP),
                &[
                    Threshold {
                        label: "warn 0.1".into(),
                        y: 0.1,
                        color: WARN,
                    },
                    Threshold {
                        label: "alert 0.25".into(),
                        y: 0.25,
                        color: ALERT,
                    },
                ],
                SIZE,
            ),
        ));
        charts.push((
            "chart-js",
            charts::time_series(
                &format!("Input drift: Jensen-Shannon distance{which}"),
                "JS distance",
                &drift_series(|d| d.js, 1.0),
                &[Threshold {
                    label: "warn 0.1".into(),
                    y: 0.1,
                    color: WARN,
                }],
                SIZE,
            ),
        ));
    }
    if ws.iter().any(|w| w.labeled > 0) {
        let mut thresholds = Vec::new();
        if let Some(a) = version.as_ref().and_then(ModelVersion::held_out_accuracy) {
            thresholds.push(Threshold {
                label: format!("held-out {a:.3}"),
                y: a,
                color: PALETTE[2],
            });
            let floor = a - wasmops_shared::monitor::ACCURACY_DROP;
            thresholds.push(Threshold {
                label: format!("alert below {floor:.3}"),
                y: floor,
                color: ALERT,
            });
        }
        charts.push((
            "chart-accuracy",
            charts::time_series(
                "Live accuracy (labeled predictions)",
                "accuracy",
                &[Series {
                    name: "accuracy".into(),
                    points: ws
                        .iter()
                        .filter_map(|w| Some((t(w), w.accuracy?)))
                        .collect(),
                    color: PALETTE[0],
                }],
                &thresholds,
                SIZE,
            ),
        ));
    }
    charts.push((
        "chart-predictions",
        prediction_chart(&ws, version.as_ref(), SIZE),
    ));

    let errors: BTreeMap<String, u64> = ws.iter().fold(BTreeMap::new(), |mut acc, w| {
        for (k, v) in &w.errors {
            *acc.entry(k.clone()).or_default() += v;
        }
        acc
    });
    // The latest window's drift, worst feature first.
    let latest = ws
        .iter()
        .rev()
        .find(|w| !w.drift.is_empty())
        .cloned()
        .map(|mut w| {
            w.drift.sort_by(|a, b| b.psi.total_cmp(&a.psi));
            w
        });
    let requests: u64 = ws.iter().map(|w| w.requests).sum();
    let show_all_drift = RwSignal::new(false);
    view! {
        <p class="telemetry" data-testid="model-telemetry">{format!(
            "{} windows · {requests} requests · {} rows · {} labeled",
            ws.len(), ws.iter().map(|w| w.rows).sum::<u64>(), ws.iter().map(|w| w.labeled).sum::<u64>()
        )}</p>
        <div class="charts telemetry-charts" data-testid="telemetry-charts">
            {charts.into_iter().map(|(id, svg)| match svg {
                Ok(svg) => view! { <div class="chart" data-chart=id inner_html=svg></div> }.into_any(),
                Err(e) => view! { <p class="error">{format!("{id}: {e}")}</p> }.into_any(),
            }).collect_view()}
        </div>
        {latest.map(|w| {
            // The worst features first; beyond a screenful, the rest on demand.
            let n = w.drift.len();
            let rows = move || {
                let shown = if show_all_drift.get() { n } else { n.min(DRIFT_ROWS) };
                w.drift[..shown].iter().map(|f| view! {
                    <tr class=format!("level-{}", f.level)>
                        <td>{f.feature.clone()}</td>
                        <td class="num">{format!("{:.3}", f.psi)}</td>
                        <td class="num">{format!("{:.3}", f.js)}</td>
                        <td>{f.level.as_str()}</td>
                    </tr>
                }).collect_view()
            };
            view! {
                <table class="runs compact" data-testid="drift-table">
                    <caption>{format!("Drift in the latest window ({}, {} rows), worst first", clock(w.start_ms as f64), w.rows)}</caption>
                    <thead><tr><th>"Feature"</th><th class="num">"PSI"</th><th class="num">"JS"</th><th>"Level"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
                {(n > DRIFT_ROWS).then(|| view! {
                    <button class="secondary small" id="drift-all" on:click=move |_| show_all_drift.update(|s| *s = !*s)>
                        {move || if show_all_drift.get() { format!("Show the worst {DRIFT_ROWS}") } else { format!("Show all {n} features") }}
                    </button>
                })}
            }
        })}
        <table class="runs compact" data-testid="errors-by-kind">
            <caption>"Errors by kind"</caption>
            <tbody>
                {if errors.is_empty() {
                    view! { <tr><td class="muted">"none"</td></tr> }.into_any()
                } else {
                    errors.into_iter().map(|(k, v)| view! { <tr><td>{k}</td><td class="num">{v}</td></tr> }).collect_view().into_any()
                }}
            </tbody>
        </table>
    }
}

/// Live prediction shares against the module's predictions on its held-out split (see
/// [`crate::logic::prediction_chart`]).
fn prediction_chart(
    ws: &[Window],
    version: Option<&ModelVersion>,
    size: (u32, u32),
) -> Result<String, String> {
    let shares = prediction_shares(&live_predictions(ws), version.map(KnownModel::of).as_ref());
    charts::share_bars(
        "Prediction distribution",
        &shares.categories,
        &shares.groups,
        size,
    )
}
