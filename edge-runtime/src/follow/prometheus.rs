//! The follower's and the device's own lines in `/metrics`, kept apart from
//! `telemetry/prometheus.rs` (request and model metrics): labels, whether signatures are
//! required, what the device follows and what it refused.

use std::fmt::Write;

use crate::device::Device;

use super::RefusalReason;

/// Appended to the telemetry metrics. Nothing when the device has no labels, no trusted keys
/// and follows nothing, except the signature gauge.
pub fn render(device: &Device) -> String {
    let mut out = String::with_capacity(1024);
    let labels: Vec<(String, String)> = device
        .labels()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut metric =
        |name: &str, kind: &str, help: &str, lines: &[(Vec<(String, String)>, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (l, value) in lines {
                let _ = writeln!(out, "{name}{} {value}", label_set(l));
            }
        };
    metric(
        "wasmops_signatures_required",
        "gauge",
        "1 when the device runs only modules signed by a trusted key (--trusted-keys), else 0.",
        &[(
            labels.clone(),
            u8::from(!device.trusted_keys().is_empty()).to_string(),
        )],
    );
    if !labels.is_empty() {
        metric(
            "wasmops_device_labels",
            "gauge",
            "The device's --label pairs as labels (value 1).",
            &[(labels.clone(), "1".into())],
        );
    }
    let Some(f) = device.follower() else {
        return out;
    };
    let status = f.status();
    let with = |extra: &[(&str, &str)]| {
        let mut l: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.extend(labels.iter().cloned());
        l
    };
    let desired = status.desired_version.clone().unwrap_or_default();
    let running = status.running_version.clone().unwrap_or_default();
    metric(
        "wasmops_follow_info",
        "gauge",
        "The alias this device follows, the version it points at and the version running (value 1).",
        &[(
            with(&[
                ("model", &status.model),
                ("alias", &status.alias),
                ("desired_version", &desired),
                ("running_version", &running),
                ("state", status.state.as_str()),
            ]),
            "1".into(),
        )],
    );
    metric(
        "wasmops_follow_behind",
        "gauge",
        "1 while the device does not run the version its alias points at.",
        &[(
            with(&[("model", &status.model), ("alias", &status.alias)]),
            u8::from(status.desired_version.is_none() || desired != running).to_string(),
        )],
    );
    let (checks, errors) = f.checks();
    metric(
        "wasmops_follow_checks_total",
        "counter",
        "Polls of the alias since the daemon started.",
        &[(with(&[]), checks.to_string())],
    );
    metric(
        "wasmops_follow_errors_total",
        "counter",
        "Polls that failed (MLflow unreachable, refused credentials, no such alias...).",
        &[(with(&[]), errors.to_string())],
    );
    let refused = f.refused();
    let lines: Vec<_> = RefusalReason::ALL
        .iter()
        .map(|r| {
            (
                with(&[("reason", r.as_str())]),
                refused.get(r).copied().unwrap_or(0).to_string(),
            )
        })
        .collect();
    metric(
        "wasmops_follow_refused_total",
        "counter",
        "Versions the alias pointed at that the device refused, by reason.",
        &lines,
    );
    if let Some(ms) = status.last_check {
        metric(
            "wasmops_follow_last_check_timestamp_seconds",
            "gauge",
            "When the device last asked MLflow for its alias.",
            &[(with(&[]), format!("{}", ms as f64 / 1000.0))],
        );
    }
    out
}

fn label_set(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
