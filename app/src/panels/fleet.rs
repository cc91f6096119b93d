//! Fleet page: the whole fleet as Prometheus sees it (devices scraped, or pushing by
//! remote-write), for fleets too large or too far for the Devices page's polling: devices per
//! version, request and error rates, p95 latency, drift and live accuracy by version, and the
//! devices behind their alias. The queries and summaries are `wasmops_shared::prometheus`'s.

use std::time::Duration;

use gloo_net::http::Request;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::{Deserialize, Serialize};
use wasmops_shared::prometheus::{self as prom, Fleet, Sample};

use crate::panels::registry::clock;
use crate::state::{use_app_state, Page};
use crate::storage::Storage;

/// The Prometheus the Fleet page reads, kept in the `settings` store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrometheusSettings {
    pub key: String,
    pub url: String,
}

pub const SETTINGS_KEY: &str = "prometheus";
/// How often the page asks again while it is shown.
const REFRESH: Duration = Duration::from_secs(15);

async fn query(base: &str, promql: &str) -> Result<Vec<Sample>, String> {
    let url = prom::query_url(base, promql);
    let response = Request::get(&url).send().await.map_err(|e| {
        format!("Prometheus at {base} is unreachable ({e}); is it running with --web.cors.origin allowing this page?")
    })?;
    let body = response.text().await.map_err(|e| e.to_string())?;
    prom::parse_vector(promql, &body).map_err(|e| e.to_string())
}

async fn read_fleet(base: &str) -> Result<Fleet, String> {
    let mut answers: [Vec<Sample>; 8] = Default::default();
    for (slot, (_, q)) in answers.iter_mut().zip(prom::queries()) {
        *slot = query(base, &q).await?;
    }
    Ok(Fleet::build(&answers))
}

fn rate(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.2}/s")).unwrap_or_else(|| "–".into())
}

fn percent(v: Option<f64>) -> String {
    v.map(|r| format!("{:.1} %", r * 100.0))
        .unwrap_or_else(|| "–".into())
}

fn millis(v: Option<f64>) -> String {
    v.map(|s| format!("{:.2} ms", s * 1000.0))
        .unwrap_or_else(|| "–".into())
}

fn psi(v: Option<f64>) -> String {
    v.map(|p| {
        let level = if p >= 0.25 {
            " (alert)"
        } else if p >= 0.1 {
            " (warn)"
        } else {
            ""
        };
        format!("{p:.3}{level}")
    })
    .unwrap_or_else(|| "–".into())
}

/// Rows shown in the device table; the rest are counted.
const MAX_ROWS: usize = 200;

#[component]
pub fn FleetPage() -> impl IntoView {
    let state = use_app_state();
    let url = RwSignal::new(String::new());
    let saved = RwSignal::new(None::<String>);
    let fleet = RwSignal::new(None::<Result<Fleet, String>>);
    let at = RwSignal::new(None::<f64>);
    // One read at a time: a refresh while one is pending is skipped.
    let read = Action::new_local(move |base: &String| {
        let base = base.clone();
        async move {
            let result = read_fleet(&base).await;
            fleet.set(Some(result));
            at.set(Some(js_sys::Date::now()));
        }
    });
    let busy = read.pending();
    let refresh = move || {
        let Some(base) = saved.get_untracked() else {
            return;
        };
        if busy.get_untracked() {
            return;
        }
        read.dispatch_local(base);
    };
    spawn_local(async move {
        if let Ok(Some(s)) = async { Storage::open().await?.prometheus_settings().await }.await {
            url.set(s.url.clone());
            saved.set(Some(s.url));
        }
    });
    // Read when the page is shown, then every REFRESH while it stays shown.
    Effect::new(move |_| {
        if state.page.get() == Page::Fleet && saved.get().is_some() {
            refresh();
        }
    });
    let _ = set_interval_with_handle(
        move || {
            if state.page.get_untracked() == Page::Fleet {
                refresh();
            }
        },
        REFRESH,
    );
    let save = move |_| {
        let u = url.get_untracked().trim().trim_end_matches('/').to_string();
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            fleet.set(Some(Err(format!(
                "`{u}` is not an http(s) URL of a Prometheus server (e.g. http://127.0.0.1:9090)"
            ))));
            return;
        }
        spawn_local(async move {
            let s = PrometheusSettings {
                key: SETTINGS_KEY.into(),
                url: u.clone(),
            };
            match async { Storage::open().await?.put_prometheus_settings(&s).await }.await {
                Ok(()) => {
                    saved.set(Some(u));
                    refresh();
                }
                Err(e) => fleet.set(Some(Err(e.to_string()))),
            }
        });
    };
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default();
    view! {
        <section class="panel" id="fleet-panel">
            <h2>"Fleet"</h2>
            <p class="muted">
                "Every device, as the team's Prometheus sees it: scraped where it can reach them (see deploy/prometheus.yml), pushed by remote-write where it cannot. Prometheus must let this page read it:"
            </p>
            <pre class="mono">{format!("prometheus --config.file=prometheus.yml --web.enable-remote-write-receiver --web.cors.origin='{}'", origin.replace('.', "\\."))}</pre>
            <div class="form settings-form">
                <label>"Prometheus URL"
                    <input id="prometheus-url" placeholder="http://127.0.0.1:9090" prop:value=move || url.get() on:input=move |ev| url.set(event_target_value(&ev)) />
                </label>
            </div>
            <div class="actions">
                <button id="prometheus-save" on:click=save>"Save and read"</button>
                <button id="fleet-refresh" class="secondary" on:click=move |_| refresh() disabled=move || saved.with(Option::is_none) || busy.get()>"Refresh"</button>
                <span class="muted" data-testid="fleet-at">{move || at.get().map(|t| format!("read {}; again every {} s while shown", clock(t), REFRESH.as_secs()))}</span>
            </div>
            {move || match fleet.get() {
                None => view! { <p class="muted">"Not read yet."</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" data-testid="fleet-error">{e}</p> }.into_any(),
                Some(Ok(f)) => fleet_view(f).into_any(),
            }}
        </section>
    }
}

fn fleet_view(f: Fleet) -> impl IntoView {
    let behind: Vec<_> = f.behind().cloned().collect();
    let total = f.devices.len();
    let hidden = total.saturating_sub(MAX_ROWS);
    let most = f
        .versions
        .iter()
        .map(|v| v.devices)
        .max()
        .unwrap_or(0)
        .max(1);
    view! {
        <p data-testid="fleet-summary">{format!(
            "{total} devices reporting, {} {}; {} behind their alias",
            f.versions.len(),
            if f.versions.len() == 1 { "version" } else { "versions" },
            behind.len()
        )}</p>
        <h3>"By version"</h3>
        <table class="runs compact" data-testid="fleet-versions">
            <thead><tr><th>"Version"</th><th>"Devices"</th><th>"Requests"</th><th>"Errors"</th><th>"p95 latency"</th><th>"Live accuracy"</th><th>"Max drift (PSI)"</th></tr></thead>
            <tbody>
                {f.versions.into_iter().map(|v| {
                    let width = format!("width: {}px", 4 + 96 * v.devices / most);
                    let errors = (v.requests_per_s > 0.0).then(|| v.errors_per_s / v.requests_per_s);
                    view! {
                        <tr data-version=v.version.clone()>
                            <td class="mono">{v.version.clone()}</td>
                            <td data-testid="fleet-version-devices"><span class="bar" style=width></span>" "{v.devices}</td>
                            <td>{rate(Some(v.requests_per_s))}</td>
                            <td>{percent(errors)}</td>
                            <td>{millis(v.p95_s)}</td>
                            <td>{percent(v.accuracy)}</td>
                            <td>{psi(v.max_psi)}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        {(!behind.is_empty()).then(|| view! {
            <h3>"Behind their alias"</h3>
            <ul data-testid="fleet-behind">
                {behind.into_iter().map(|d| view! {
                    <li>{format!("{}: runs {} where {} names {}", d.instance, d.version.clone().unwrap_or_else(|| "nothing".into()), d.follows.clone().unwrap_or_default(), d.desired.clone().unwrap_or_default())}</li>
                }).collect_view()}
            </ul>
        })}
        <h3>"Devices"</h3>
        <table class="runs compact" data-testid="fleet-devices">
            <thead><tr><th>"Device"</th><th>"Labels"</th><th>"Version"</th><th>"Follows"</th><th>"Requests"</th><th>"Errors"</th><th>"p95 latency"</th><th>"Live accuracy"</th><th>"Max drift (PSI)"</th></tr></thead>
            <tbody>
                {f.devices.into_iter().take(MAX_ROWS).map(|d| {
                    let labels = d.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
                    let follows = match (&d.follows, d.behind) {
                        (Some(f), true) => format!("{f} (behind: wants {})", d.desired.clone().unwrap_or_default()),
                        (Some(f), false) => f.clone(),
                        (None, _) => "–".into(),
                    };
                    view! {
                        <tr data-instance=d.instance.clone()>
                            <td class="mono">{d.instance.clone()}</td>
                            <td>{labels}</td>
                            <td class="mono" data-testid="fleet-device-version">{d.version.clone().unwrap_or_else(|| "–".into())}</td>
                            <td>{follows}</td>
                            <td data-testid="fleet-device-rate">{rate(d.requests_per_s)}</td>
                            <td>{percent(d.error_rate())}</td>
                            <td>{millis(d.p95_s)}</td>
                            <td>{percent(d.accuracy)}</td>
                            <td>{psi(d.max_psi)}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        {(hidden > 0).then(|| view! { <p class="muted">{format!("and {hidden} more devices (the first {MAX_ROWS} by name are shown)")}</p> })}
    }
}
