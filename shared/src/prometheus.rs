//! Reading a fleet from Prometheus: the PromQL the Fleet page (and the rollout checks) ask, the
//! HTTP API's instant-vector answers parsed, and the per-device and per-version summaries built
//! from them. Metric names are the device's (`docs/device-api.md`, "Metrics"). The HTTP itself is
//! each side's (`fetch` in the dashboard).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::quote::bounded;

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// What Prometheus answered instead of a vector, in words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromError {
    #[error("Prometheus refused the query {query}: {error_type}: {error}")]
    Refused {
        query: String,
        error_type: String,
        error: String,
    },
    #[error("Prometheus answered the query {query} with something unreadable: {reason}")]
    Unreadable { query: String, reason: String },
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Parses `GET /api/v1/query`'s answer (an instant vector; Prometheus writes values as strings,
/// `NaN` and `+Inf` included).
pub fn parse_vector(query: &str, body: &str) -> Result<Vec<Sample>, PromError> {
    let unreadable = |reason: String| PromError::Unreadable {
        query: bounded(query),
        reason,
    };
    let answer: Answer = serde_json::from_str(body)
        .map_err(|e| unreadable(format!("not the HTTP API's JSON ({e})")))?;
    if answer.status != "success" {
        return Err(PromError::Refused {
            query: bounded(query),
            error_type: answer.error_type.unwrap_or_default(),
            error: answer.error.unwrap_or_default(),
        });
    }
    let data = answer.data.ok_or_else(|| unreadable("no data".into()))?;
    if data.result_type != "vector" {
        return Err(unreadable(format!(
            "a {} where an instant vector was asked",
            bounded(&data.result_type)
        )));
    }
    data.result
        .into_iter()
        .map(|s| {
            let value = match s.value.1.as_str() {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .map_err(|_| unreadable(format!("value {} is not a number", bounded(v))))?,
            };
            Ok(Sample {
                labels: s.metric,
                value,
            })
        })
        .collect()
}

/// The queries behind a fleet summary, in the order [`Fleet::build`] takes their answers.
/// `WINDOW` is the rate window: long enough for four scrapes at the default 15 s.
pub const WINDOW: &str = "1m";

pub fn queries() -> [(&'static str, String); 8] {
    let w = WINDOW;
    [
        ("modules", "wasmops_active_module_info".to_string()),
        ("requests", format!("sum by (instance) (rate(wasmops_predict_requests_total[{w}]))")),
        ("errors", format!("sum by (instance) (rate(wasmops_predict_errors_total[{w}]))")),
        (
            "p95",
            format!("histogram_quantile(0.95, sum by (instance, le) (rate(wasmops_predict_latency_seconds_bucket[{w}])))"),
        ),
        ("accuracy", "wasmops_live_accuracy".to_string()),
        ("drift", "max by (instance) (wasmops_feature_drift_psi)".to_string()),
        ("follow", "wasmops_follow_info".to_string()),
        (
            "version_p95",
            format!("histogram_quantile(0.95, sum by (version, le) (rate(wasmops_predict_latency_seconds_bucket[{w}]) * on (instance, job) group_left (version) wasmops_active_module_info))"),
        ),
    ]
}

/// One device as Prometheus sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceRow {
    pub instance: String,
    /// Its active version (none: no module active, or not reporting one).
    pub version: Option<String>,
    /// Its own labels (e.g. `group`), without Prometheus's `job` and `instance`.
    pub labels: BTreeMap<String, String>,
    pub requests_per_s: Option<f64>,
    pub errors_per_s: Option<f64>,
    pub p95_s: Option<f64>,
    pub accuracy: Option<f64>,
    pub max_psi: Option<f64>,
    /// `model@alias` it follows, the version the alias names, and whether it runs another.
    pub follows: Option<String>,
    pub desired: Option<String>,
    pub behind: bool,
}

impl DeviceRow {
    /// Errors per request over the window (none without requests).
    pub fn error_rate(&self) -> Option<f64> {
        match (self.errors_per_s, self.requests_per_s) {
            (e, Some(r)) if r > 0.0 => Some(e.unwrap_or(0.0) / r),
            _ => None,
        }
    }
}

/// One version across the fleet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VersionRow {
    pub version: String,
    pub devices: usize,
    pub requests_per_s: f64,
    pub errors_per_s: f64,
    pub p95_s: Option<f64>,
    /// Mean of its devices' live accuracy, over those that have one.
    pub accuracy: Option<f64>,
    pub max_psi: Option<f64>,
}

/// The fleet: per device and per version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fleet {
    pub devices: Vec<DeviceRow>,
    pub versions: Vec<VersionRow>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Fleet {
    /// Builds the summaries from the answers to [`queries`], in their order.
    pub fn build(answers: &[Vec<Sample>; 8]) -> Fleet {
        let [modules, requests, errors, p95, accuracy, drift, follow, version_p95] = answers;
        let mut devices: BTreeMap<String, DeviceRow> = BTreeMap::new();
        let row = |s: &Sample| -> Option<String> { s.label("instance").map(str::to_string) };
        for s in modules {
            let Some(instance) = row(s) else { continue };
            let d = devices.entry(instance.clone()).or_default();
            d.instance = instance;
            d.version = s.label("version").map(str::to_string);
            d.labels = s
                .labels
                .iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "__name__" | "job" | "instance" | "hash" | "kind" | "version"
                    )
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        let mut set = |samples: &Vec<Sample>, f: &mut dyn FnMut(&mut DeviceRow, &Sample)| {
            for s in samples {
                let Some(instance) = s.label("instance") else {
                    continue;
                };
                let d = devices.entry(instance.to_string()).or_default();
                d.instance = instance.to_string();
                f(d, s);
            }
        };
        set(requests, &mut |d, s| d.requests_per_s = finite(s.value));
        set(errors, &mut |d, s| d.errors_per_s = finite(s.value));
        set(p95, &mut |d, s| d.p95_s = finite(s.value));
        set(accuracy, &mut |d, s| d.accuracy = finite(s.value));
        set(drift, &mut |d, s| d.max_psi = finite(s.value));
        set(follow, &mut |d, s| {
            let model = s.label("model").unwrap_or_default();
            let alias = s.label("alias").unwrap_or_default();
            d.follows = Some(format!("{model}@{alias}"));
            d.desired = s
                .label("desired_version")
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            let running = s.label("running_version").filter(|v| !v.is_empty());
            d.behind = d.desired.is_some() && d.desired.as_deref() != running;
        });
        let devices: Vec<DeviceRow> = devices.into_values().collect();
        let mut versions: BTreeMap<String, VersionRow> = BTreeMap::new();
        let mut accuracy_sum: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for d in &devices {
            let Some(v) = &d.version else { continue };
            let r = versions.entry(v.clone()).or_insert_with(|| VersionRow {
                version: v.clone(),
                ..VersionRow::default()
            });
            r.devices += 1;
            r.requests_per_s += d.requests_per_s.unwrap_or(0.0);
            r.errors_per_s += d.errors_per_s.unwrap_or(0.0);
            r.max_psi = max_opt(r.max_psi, d.max_psi);
            if let Some(a) = d.accuracy {
                let e = accuracy_sum.entry(v.clone()).or_default();
                e.0 += a;
                e.1 += 1;
            }
        }
        for s in version_p95 {
            if let Some(r) = s.label("version").and_then(|v| versions.get_mut(v)) {
                r.p95_s = finite(s.value);
            }
        }
        for (v, (sum, n)) in accuracy_sum {
            if let Some(r) = versions.get_mut(&v) {
                r.accuracy = Some(sum / n as f64);
            }
        }
        let mut versions: Vec<VersionRow> = versions.into_values().collect();
        versions.sort_by(|a, b| b.devices.cmp(&a.devices).then(a.version.cmp(&b.version)));
        Fleet { devices, versions }
    }

    /// The devices running another version than their alias names.
    pub fn behind(&self) -> impl Iterator<Item = &DeviceRow> {
        self.devices.iter().filter(|d| d.behind)
    }
}

/// The URL of an instant query at `base` (e.g. `http://127.0.0.1:9090`).
pub fn query_url(base: &str, promql: &str) -> String {
    format!(
        "{}/api/v1/query?query={}",
        base.trim_end_matches('/'),
        crate::mlflow::encode(promql)
    )
}

/// A PromQL string literal.
fn literal(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The queries a rollout check asks Prometheus for one step (devices behind NAT, scraped or
/// pushing by remote write, that the controller cannot poll): over the devices whose
/// `group_label` is `group` and whose active module is `module`, the counters' increase over
/// the last `range_s` seconds (the step so far), in the order [`step_observation`] takes them:
/// requests, errors, labels, correct labels, p95 latency (seconds), largest PSI now.
///
/// Counters are joined to the module info gauge by instance, so a device still on the old
/// module adds nothing; traffic the device served with the old module in the first scrape
/// interval of the step is counted (Prometheus knows no finer).
pub fn step_queries(group_label: &str, group: &str, module: &str, range_s: u64) -> [String; 6] {
    let sel = format!("{group_label}={}", literal(group));
    let info = format!(
        "wasmops_active_module_info{{{sel},hash={}}}",
        literal(module)
    );
    let r = range_s.max(1);
    let inc = |metric: &str| {
        format!("sum(increase({metric}{{{sel}}}[{r}s]) * on (instance, job) group_left () {info})")
    };
    [
        inc("wasmops_predict_requests_total"),
        inc("wasmops_predict_errors_total"),
        inc("wasmops_feedback_labels_total"),
        inc("wasmops_feedback_correct_total"),
        format!(
            "histogram_quantile(0.95, sum by (le) (increase(wasmops_predict_latency_seconds_bucket{{{sel}}}[{r}s]) * on (instance, job) group_left () {info}))"
        ),
        format!("max(wasmops_feature_drift_psi{{{sel}}} * on (instance, job) group_left () {info})"),
    ]
}

/// The observation of a step from the answers to [`step_queries`]. Counts are rounded
/// (`increase` extrapolates); an empty answer is no data (no device of the group runs the
/// module yet), which the checks report as not enough data.
pub fn step_observation(answers: &[Vec<Sample>; 6]) -> crate::automation::Observation {
    let one = |v: &Vec<Sample>| v.first().map(|s| s.value).and_then(finite);
    let [requests, errors, labels, correct, p95, psi] = answers;
    let count = |v: &Vec<Sample>| one(v).map_or(0, |x| x.max(0.0).round() as u64);
    let mut o = crate::automation::Observation {
        requests: count(requests),
        labels: count(labels),
        p95_latency_ms: one(p95).map(|s| s * 1000.0),
        max_psi: one(psi),
        ..Default::default()
    };
    if let Some(r) = one(requests).filter(|r| *r > 0.0) {
        o.error_rate = Some(one(errors).unwrap_or(0.0).max(0.0) / r);
    }
    if let Some(l) = one(labels).filter(|l| *l > 0.0) {
        o.live_accuracy = Some((one(correct).unwrap_or(0.0) / l).clamp(0.0, 1.0));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(series: &[(&[(&str, &str)], &str)]) -> String {
        let result: Vec<serde_json::Value> = series
            .iter()
            .map(|(labels, v)| {
                let m: BTreeMap<&str, &str> = labels.iter().copied().collect();
                serde_json::json!({"metric": m, "value": [1.5, v]})
            })
            .collect();
        serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}})
            .to_string()
    }

    #[test]
    fn answers_parse_with_nan_and_errors_say_what() {
        let v = parse_vector(
            "q",
            &vector(&[
                (&[("instance", "a")], "NaN"),
                (&[("instance", "b")], "0.25"),
            ]),
        )
        .unwrap();
        assert!(v[0].value.is_nan());
        assert_eq!(v[1].value, 0.25);
        let refused =
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let e = parse_vector("sum(", refused).unwrap_err();
        assert!(
            e.to_string().contains("bad_data") && e.to_string().contains("sum("),
            "{e}"
        );
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse_vector("q", matrix)
            .unwrap_err()
            .to_string()
            .contains("matrix"));
        assert!(parse_vector("q", "<html>").is_err());
    }

    #[test]
    fn fleet_summarises_devices_and_versions() {
        let p = |s: String| parse_vector("q", &s).unwrap();
        let answers = [
            p(vector(&[
                (
                    &[
                        ("instance", "a"),
                        ("version", "3"),
                        ("group", "canary"),
                        ("hash", "h"),
                    ],
                    "1",
                ),
                (&[("instance", "b"), ("version", "2")], "1"),
                (&[("instance", "c"), ("version", "2")], "1"),
            ])),
            p(vector(&[
                (&[("instance", "a")], "2"),
                (&[("instance", "b")], "4"),
                (&[("instance", "c")], "NaN"),
            ])),
            p(vector(&[(&[("instance", "b")], "1")])),
            p(vector(&[(&[("instance", "a")], "0.002")])),
            p(vector(&[
                (&[("instance", "b")], "0.5"),
                (&[("instance", "c")], "1"),
            ])),
            p(vector(&[(&[("instance", "b")], "0.3")])),
            p(vector(&[
                (
                    &[
                        ("instance", "b"),
                        ("model", "m"),
                        ("alias", "champion"),
                        ("desired_version", "3"),
                        ("running_version", "2"),
                    ],
                    "1",
                ),
                (
                    &[
                        ("instance", "a"),
                        ("model", "m"),
                        ("alias", "canary"),
                        ("desired_version", "3"),
                        ("running_version", "3"),
                    ],
                    "1",
                ),
            ])),
            p(vector(&[(&[("version", "2")], "0.004")])),
        ];
        let f = Fleet::build(&answers);
        assert_eq!(f.devices.len(), 3);
        let a = &f.devices[0];
        assert_eq!(a.labels.get("group").map(String::as_str), Some("canary"));
        assert!(!a.labels.contains_key("hash"));
        assert_eq!(f.devices[1].error_rate(), Some(0.25));
        assert_eq!(f.devices[2].requests_per_s, None, "NaN rates are no rate");
        let behind: Vec<&str> = f.behind().map(|d| d.instance.as_str()).collect();
        assert_eq!(behind, ["b"]);
        assert_eq!(f.versions[0].version, "2");
        assert_eq!(f.versions[0].devices, 2);
        assert_eq!(f.versions[0].accuracy, Some(0.75));
        assert_eq!(f.versions[0].p95_s, Some(0.004));
        assert_eq!(f.versions[0].max_psi, Some(0.3));
        assert_eq!(f.versions[1].requests_per_s, 2.0);
    }

    #[test]
    fn a_step_is_observed_through_prometheus_for_its_group_and_module() {
        let q = step_queries("group", "can\"ary", "abc", 12);
        assert!(q[0].starts_with("sum(increase(wasmops_predict_requests_total{group=\"can\\\"ary\"}[12s]) * on (instance, job) group_left () wasmops_active_module_info{group=\"can\\\"ary\",hash=\"abc\"})"), "{}", q[0]);
        assert!(
            q[4].starts_with("histogram_quantile(0.95, sum by (le)"),
            "{}",
            q[4]
        );
        let p = |v: &str| parse_vector("q", &vector(&[(&[], v)])).unwrap();
        let o = step_observation(&[p("200.4"), p("2"), p("40"), p("30"), p("0.004"), p("0.1")]);
        assert_eq!((o.requests, o.labels), (200, 40));
        assert!((o.error_rate.unwrap() - 2.0 / 200.4).abs() < 1e-12);
        assert_eq!(o.live_accuracy, Some(0.75));
        assert_eq!(o.p95_latency_ms, Some(4.0));
        assert_eq!(o.max_psi, Some(0.1));
        let none = step_observation(&Default::default());
        assert_eq!(none, crate::automation::Observation::default());
        // Judged like device windows: too few samples is not enough data.
        let check = crate::automation::Check::parse("live_accuracy >= 0.8 min 30").unwrap();
        assert!(matches!(
            check.judge(&o),
            crate::automation::Verdict::Fail { .. }
        ));
        assert!(matches!(
            check.judge(&none),
            crate::automation::Verdict::NotEnoughData { .. }
        ));
    }
}
