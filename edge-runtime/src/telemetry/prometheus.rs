//! `/metrics` in the Prometheus text exposition format (version 0.0.4), written by hand: the
//! format is a few lines of text, and the values come from the durable counters, so a
//! restart does not reset them.

use std::fmt::Write;

use super::{Counters, LATENCY_BUCKETS_US};

/// Renders the device's metrics; `active` is the active module's hash, if any;
/// `unauthorized` counts requests refused for a missing or wrong token since the start (kept in
/// memory only: such requests never reach the database).
pub fn render(c: &Counters, active: Option<&str>, uptime_s: u64, unauthorized: u64) -> String {
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in lines {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "wasmops_predict_requests_total",
        "counter",
        "Predict requests answered (stored in the telemetry database).",
        &[(String::new(), c.requests.to_string())],
    );
    metric(
        "wasmops_predictions_total",
        "counter",
        "Rows predicted.",
        &[(String::new(), c.predictions.to_string())],
    );
    let mut errors: Vec<(String, String)> = c
        .errors_by_kind
        .iter()
        .map(|(k, v)| (format!("{{kind=\"{}\"}}", escape(k)), v.to_string()))
        .collect();
    if errors.is_empty() {
        errors.push(("{kind=\"bad_request\"}".into(), "0".into()));
    }
    metric(
        "wasmops_predict_errors_total",
        "counter",
        "Predict requests answered with an error, by error kind.",
        &errors,
    );
    let mut hist = Vec::new();
    let mut cumulative = 0;
    for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
        cumulative += c.latency_counts.get(i).copied().unwrap_or(0);
        hist.push((
            format!("_bucket{{le=\"{}\"}}", *bound as f64 / 1e6),
            cumulative.to_string(),
        ));
    }
    cumulative += c.latency_counts.last().copied().unwrap_or(0);
    hist.push(("_bucket{le=\"+Inf\"}".into(), cumulative.to_string()));
    hist.push(("_sum".into(), format!("{}", c.latency_sum_us as f64 / 1e6)));
    hist.push(("_count".into(), cumulative.to_string()));
    metric(
        "wasmops_predict_latency_seconds",
        "histogram",
        "Time from request to answer, excluding the telemetry commit.",
        &hist,
    );
    metric(
        "wasmops_feedback_labels_total",
        "counter",
        "Ground-truth labels received.",
        &[(String::new(), c.labels.to_string())],
    );
    metric(
        "wasmops_feedback_correct_total",
        "counter",
        "Labels that matched the prediction.",
        &[(String::new(), c.labels_correct.to_string())],
    );
    metric(
        "wasmops_active_model_info",
        "gauge",
        "The active module (value 1; the hash is a label).",
        &active
            .map(|h| vec![(format!("{{hash=\"{}\"}}", escape(h)), "1".to_string())])
            .unwrap_or_default(),
    );
    metric(
        "wasmops_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        &[(String::new(), uptime_s.to_string())],
    );
    metric(
        "wasmops_unauthorized_requests_total",
        "counter",
        "Requests refused for a missing or wrong access token since the daemon started.",
        &[(String::new(), unauthorized.to_string())],
    );
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
