//! The device's metrics, collected once as [`Family`]s and written two ways: `/metrics` in the
//! Prometheus text exposition format (version 0.0.4, a few `writeln!`s) and remote write
//! ([`super::remote_write`]). Counter values come from the durable counters, so a restart
//! does not reset them.
//!
//! Cardinality is bounded by construction: `feature` takes at most [`MAX_FEATURE_SERIES`]
//! values, `kind` the closed set of error kinds, the active module is one series, and the
//! constant labels are fixed at start.

use std::fmt::Write;

use wasmops_shared::wire::FeatureDrift;

use super::{Counters, LATENCY_BUCKETS_US};

/// Most `feature` values the drift gauges take (the module's first features).
pub const MAX_FEATURE_SERIES: usize = 64;
/// Most constant labels a device carries.
pub const MAX_CONST_LABELS: usize = 16;
/// The trailing window the drift and live-accuracy gauges cover.
pub const DRIFT_WINDOW_S: u64 = 300;

/// Label names the device's own series use (or Prometheus gives a meaning), which a constant
/// label may not take.
const RESERVED: [&str; 8] = [
    "le", "quantile", "kind", "hash", "version", "feature", "job", "instance",
];

/// One sample of a family: the name's suffix (`_bucket`, `_sum`, ... or empty), its own
/// labels, the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub suffix: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// One metric family: `# HELP`, `# TYPE` and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
    pub samples: Vec<Sample>,
}

/// Labels every series of the device carries (e.g. `group="canary"`), checked once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConstLabels(Vec<(String, String)>);

impl ConstLabels {
    /// Checks names (`[a-zA-Z_][a-zA-Z0-9_]*`, not `__`-prefixed, not one the device's series
    /// use), uniqueness and count; values may be any text up to 128 bytes.
    pub fn new(pairs: Vec<(String, String)>) -> Result<ConstLabels, String> {
        if pairs.len() > MAX_CONST_LABELS {
            return Err(format!(
                "at most {MAX_CONST_LABELS} labels, got {}",
                pairs.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in &pairs {
            let mut chars = name.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || name.starts_with("__") {
                return Err(format!(
                    "label name {} must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __",
                    wasmops_shared::quote::bounded(name)
                ));
            }
            if RESERVED.contains(&name.as_str()) {
                return Err(format!(
                    "label name {name:?} is taken by the device's own series ({})",
                    RESERVED.join(", ")
                ));
            }
            if value.len() > 128 {
                return Err(format!("the value of label {name:?} exceeds 128 bytes"));
            }
            if !seen.insert(name.as_str()) {
                return Err(format!("label {name:?} given twice"));
            }
        }
        Ok(ConstLabels(pairs))
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// The active module as the info gauge shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveModule {
    pub hash: String,
    pub kind: String,
    /// See [`module_version`].
    pub version: String,
}

/// The version label of a module: the registry's version when the device knows it (e.g. an
/// MLflow model version it followed), otherwise the hash's first 12 hex digits. The one place
/// the label is decided.
pub fn module_version(hash: &str, registry_version: Option<&str>) -> String {
    match registry_version {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => hash.chars().take(12).collect(),
    }
}

/// Drift and accuracy of the active module over the trailing [`DRIFT_WINDOW_S`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveQuality {
    /// Rows of the active module in the window.
    pub rows: u64,
    /// Per feature, in the module's order (the first [`MAX_FEATURE_SERIES`] are shown).
    pub drift: Vec<FeatureDrift>,
    /// Labelled predictions of the active module made in the window, and how many were right.
    pub labeled: u64,
    pub correct: u64,
}

/// Everything the metrics are made of.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub counters: Counters,
    pub active: Option<ActiveModule>,
    pub live: Option<LiveQuality>,
    pub uptime_s: u64,
    /// Requests refused for a missing or wrong token since the start (memory only).
    pub unauthorized: u64,
}

/// The device's metric families, in a fixed order.
pub fn collect(i: &Inputs) -> Vec<Family> {
    let c = &i.counters;
    let plain = |value: f64| {
        vec![Sample {
            suffix: "",
            labels: Vec::new(),
            value,
        }]
    };
    let mut out = Vec::with_capacity(16);
    let mut family = |name, kind, help, samples| {
        out.push(Family {
            name,
            kind,
            help,
            samples,
        })
    };
    family(
        "wasmops_predict_requests_total",
        "counter",
        "Predict requests answered (stored in the telemetry database).",
        plain(c.requests as f64),
    );
    family(
        "wasmops_predictions_total",
        "counter",
        "Rows predicted.",
        plain(c.predictions as f64),
    );
    let mut errors: Vec<Sample> = c
        .errors_by_kind
        .iter()
        .map(|(k, v)| Sample {
            suffix: "",
            labels: vec![("kind", k.clone())],
            value: *v as f64,
        })
        .collect();
    if errors.is_empty() {
        errors.push(Sample {
            suffix: "",
            labels: vec![("kind", "bad_request".into())],
            value: 0.0,
        });
    }
    family(
        "wasmops_predict_errors_total",
        "counter",
        "Predict requests answered with an error, by error kind.",
        errors,
    );
    let mut hist = Vec::with_capacity(LATENCY_BUCKETS_US.len() + 3);
    let mut cumulative = 0;
    for (n, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
        cumulative += c.latency_counts.get(n).copied().unwrap_or(0);
        hist.push(Sample {
            suffix: "_bucket",
            labels: vec![("le", format!("{}", *bound as f64 / 1e6))],
            value: cumulative as f64,
        });
    }
    cumulative += c.latency_counts.last().copied().unwrap_or(0);
    hist.push(Sample {
        suffix: "_bucket",
        labels: vec![("le", "+Inf".into())],
        value: cumulative as f64,
    });
    hist.push(Sample {
        suffix: "_sum",
        labels: Vec::new(),
        value: c.latency_sum_us as f64 / 1e6,
    });
    hist.push(Sample {
        suffix: "_count",
        labels: Vec::new(),
        value: cumulative as f64,
    });
    family(
        "wasmops_predict_latency_seconds",
        "histogram",
        "Time from request to answer, excluding the telemetry commit.",
        hist,
    );
    family(
        "wasmops_feedback_labels_total",
        "counter",
        "Ground-truth labels received.",
        plain(c.labels as f64),
    );
    family(
        "wasmops_feedback_correct_total",
        "counter",
        "Labels that matched the prediction.",
        plain(c.labels_correct as f64),
    );
    family(
        "wasmops_active_module_info",
        "gauge",
        "The active module (value 1): its sha256, model kind and version.",
        i.active
            .iter()
            .map(|a| Sample {
                suffix: "",
                labels: vec![
                    ("hash", a.hash.clone()),
                    ("kind", a.kind.clone()),
                    ("version", a.version.clone()),
                ],
                value: 1.0,
            })
            .collect(),
    );
    let live = i.live.clone().unwrap_or_default();
    let per_feature = |value: fn(&FeatureDrift) -> f64| -> Vec<Sample> {
        live.drift
            .iter()
            .take(MAX_FEATURE_SERIES)
            .map(|f| Sample {
                suffix: "",
                labels: vec![("feature", f.feature.clone())],
                value: value(f),
            })
            .collect()
    };
    family(
        "wasmops_feature_drift_psi",
        "gauge",
        "PSI of each input feature over the drift window against the active module's training profile.",
        per_feature(|f| f.psi),
    );
    family(
        "wasmops_feature_drift_js",
        "gauge",
        "Jensen-Shannon distance (base 2) of each input feature over the drift window against the training profile.",
        per_feature(|f| f.js),
    );
    family(
        "wasmops_drift_window_rows",
        "gauge",
        "Rows of the active module in the drift window.",
        plain(live.rows as f64),
    );
    family(
        "wasmops_drift_window_seconds",
        "gauge",
        "Length of the trailing window the drift and live accuracy gauges cover.",
        plain(DRIFT_WINDOW_S as f64),
    );
    family(
        "wasmops_live_accuracy",
        "gauge",
        "Share of the labelled predictions of the active module in the drift window that were right.",
        if live.labeled > 0 {
            plain(live.correct as f64 / live.labeled as f64)
        } else {
            Vec::new()
        },
    );
    family(
        "wasmops_live_labeled",
        "gauge",
        "Labelled predictions of the active module in the drift window.",
        plain(live.labeled as f64),
    );
    family(
        "wasmops_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        plain(i.uptime_s as f64),
    );
    family(
        "wasmops_unauthorized_requests_total",
        "counter",
        "Requests refused for a missing or wrong access token since the daemon started.",
        plain(i.unauthorized as f64),
    );
    out
}

/// The families in the text exposition format, every series with the constant labels first.
pub fn render(families: &[Family], constant: &ConstLabels) -> String {
    let mut out = String::with_capacity(4096);
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for s in &f.samples {
            let _ = write!(out, "{}{}", f.name, s.suffix);
            let labels = constant
                .pairs()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(s.labels.iter().map(|(k, v)| (*k, v.as_str())));
            let mut first = true;
            for (k, v) in labels {
                out.push(if first { '{' } else { ',' });
                first = false;
                let _ = write!(out, "{k}=\"{}\"", escape(v));
            }
            if !first {
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(s.value));
        }
    }
    out
}

/// A value as the text format writes it (`NaN`, `+Inf`, `-Inf` spelled out).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        String::from(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        format!("{v}")
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmops_shared::wire::DriftLevel;

    fn inputs() -> Inputs {
        let mut c = Counters {
            requests: 3,
            predictions: 7,
            latency_counts: vec![0; LATENCY_BUCKETS_US.len() + 1],
            latency_sum_us: 1_500,
            ..Counters::default()
        };
        c.latency_counts[0] = 2;
        c.latency_counts[LATENCY_BUCKETS_US.len()] = 1;
        c.errors_by_kind.insert("bad_request".into(), 1);
        let drift = (0..100)
            .map(|j| FeatureDrift {
                feature: format!("f\"{j}"),
                counts: vec![0; 12],
                psi: 0.5,
                js: 0.25,
                level: DriftLevel::Alert,
            })
            .collect();
        Inputs {
            counters: c,
            active: Some(ActiveModule {
                hash: "ab".repeat(32),
                kind: "logistic_regression".into(),
                version: module_version(&"ab".repeat(32), None),
            }),
            live: Some(LiveQuality {
                rows: 40,
                drift,
                labeled: 4,
                correct: 3,
            }),
            uptime_s: 9,
            unauthorized: 2,
        }
    }

    #[test]
    fn text_has_every_family_with_constant_labels_and_bounded_features() {
        let constant = ConstLabels::new(vec![("group".into(), "canary".into())]).unwrap();
        let text = render(&collect(&inputs()), &constant);
        for line in [
            "wasmops_predict_requests_total{group=\"canary\"} 3",
            "wasmops_predict_errors_total{group=\"canary\",kind=\"bad_request\"} 1",
            "wasmops_predict_latency_seconds_bucket{group=\"canary\",le=\"0.000025\"} 2",
            "wasmops_predict_latency_seconds_bucket{group=\"canary\",le=\"1\"} 2",
            "wasmops_predict_latency_seconds_bucket{group=\"canary\",le=\"+Inf\"} 3",
            "wasmops_predict_latency_seconds_sum{group=\"canary\"} 0.0015",
            "wasmops_active_module_info{group=\"canary\",hash=\"abababababababababababababababababababababababababababababababab\",kind=\"logistic_regression\",version=\"abababababab\"} 1",
            "wasmops_feature_drift_psi{group=\"canary\",feature=\"f\\\"0\"} 0.5",
            "wasmops_live_accuracy{group=\"canary\"} 0.75",
            "wasmops_live_labeled{group=\"canary\"} 4",
            "wasmops_drift_window_rows{group=\"canary\"} 40",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        let psi = text
            .lines()
            .filter(|l| l.starts_with("wasmops_feature_drift_psi{"))
            .count();
        assert_eq!(psi, MAX_FEATURE_SERIES);
        // Without constant labels, a plain series has no braces at all.
        let text = render(&collect(&Inputs::default()), &ConstLabels::default());
        assert!(text
            .lines()
            .any(|l| l == "wasmops_predict_requests_total 0"));
        assert!(!text.contains("wasmops_active_module_info{"));
        assert!(!text.lines().any(|l| l.starts_with("wasmops_live_accuracy")));
    }

    #[test]
    fn constant_labels_are_checked() {
        let one = |k: &str, v: &str| ConstLabels::new(vec![(k.into(), v.into())]);
        assert!(one("group", "canary").is_ok());
        assert!(one("site_2", "").is_ok());
        for bad in [
            "", "2x", "a-b", "__name__", "version", "instance", "job", "le",
        ] {
            assert!(one(bad, "x").is_err(), "{bad:?} accepted");
        }
        assert!(one("group", &"x".repeat(129)).is_err());
        assert!(
            ConstLabels::new(vec![("a".into(), "1".into()), ("a".into(), "2".into())]).is_err()
        );
    }

    #[test]
    fn the_version_is_the_registry_version_or_the_short_hash() {
        let hash = "0123456789abcdef".repeat(4);
        assert_eq!(module_version(&hash, None), "0123456789ab");
        assert_eq!(module_version(&hash, Some("")), "0123456789ab");
        assert_eq!(module_version(&hash, Some("7")), "7");
    }
}
