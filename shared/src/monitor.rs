//! What the dashboard concludes from a device's telemetry windows: the alert rules.
//!
//! Defaults follow `PRODUCT.md`: a feature drifts in a window when the device rated it `alert`
//! (PSI >= 0.25 against the training profile); live accuracy fails a window when it is more
//! than [`ACCURACY_DROP`] below the version's held-out accuracy. An alert is raised only when
//! the same condition fails in [`MIN_FAILING`] of the last [`LAST_WINDOWS`] windows that count,
//! so one noisy window never pages anyone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::wire::Window;

pub const LAST_WINDOWS: usize = 3;
pub const MIN_FAILING: usize = 2;
/// Rows a window needs before its drift counts: with 12 bins, PSI of a sample of `n` rows from
/// the training distribution itself is about `11 / n`, so smaller windows would raise false
/// alerts.
pub const MIN_ROWS_FOR_DRIFT: u64 = 100;
/// Labels a window needs before its accuracy counts.
pub const MIN_LABELED: u64 = 10;
/// Live accuracy this far below the held-out accuracy fails a window.
pub const ACCURACY_DROP: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Drift,
    Accuracy,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Drift => "drift",
            AlertKind::Accuracy => "accuracy",
        }
    }
}

/// A condition that holds now for one model on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub model: String,
    pub kind: AlertKind,
    /// Drifting features (drift), empty for accuracy.
    pub features: Vec<String>,
    /// Start of each failing window among the last ones (oldest first).
    pub windows: Vec<u64>,
    /// For a person: the values that failed and the threshold.
    pub detail: String,
}

/// Evaluates the alert rules over one device's windows (any order, any models).
/// `held_out_accuracy` gives a model's accuracy on its held-out split (none: no accuracy rule).
pub fn findings(
    windows: &[Window],
    held_out_accuracy: &dyn Fn(&str) -> Option<f64>,
) -> Vec<Finding> {
    let mut by_model: BTreeMap<&str, Vec<&Window>> = BTreeMap::new();
    for w in windows {
        if let Some(m) = w.model.as_deref() {
            by_model.entry(m).or_default().push(w);
        }
    }
    let mut out = Vec::new();
    for (model, mut ws) in by_model {
        ws.sort_by_key(|w| w.start_ms);
        if let Some(f) = drift_finding(model, &ws) {
            out.push(f);
        }
        if let Some(floor) = held_out_accuracy(model).map(|a| a - ACCURACY_DROP) {
            if let Some(f) = accuracy_finding(model, &ws, floor) {
                out.push(f);
            }
        }
    }
    out
}

fn last_counting<'a>(ws: &[&'a Window], counts: impl Fn(&Window) -> bool) -> Vec<&'a Window> {
    let mut last: Vec<&Window> = ws
        .iter()
        .rev()
        .filter(|w| counts(w))
        .take(LAST_WINDOWS)
        .copied()
        .collect();
    last.reverse();
    last
}

fn drift_finding(model: &str, ws: &[&Window]) -> Option<Finding> {
    let last = last_counting(ws, |w| w.rows >= MIN_ROWS_FOR_DRIFT && !w.drift.is_empty());
    let mut failing: BTreeMap<&str, Vec<(u64, f64)>> = BTreeMap::new();
    for w in &last {
        for f in w
            .drift
            .iter()
            .filter(|f| f.level == crate::wire::DriftLevel::Alert)
        {
            failing
                .entry(&f.feature)
                .or_default()
                .push((w.start_ms, f.psi));
        }
    }
    failing.retain(|_, v| v.len() >= MIN_FAILING);
    if failing.is_empty() {
        return None;
    }
    let mut windows: Vec<u64> = failing.values().flatten().map(|(s, _)| *s).collect();
    windows.sort_unstable();
    windows.dedup();
    // Worst first (highest peak PSI, then by name): a summary can name the first few.
    let peak = |v: &[(u64, f64)]| v.iter().map(|(_, p)| *p).fold(f64::NEG_INFINITY, f64::max);
    let mut failing: Vec<(&str, Vec<(u64, f64)>)> = failing.into_iter().collect();
    failing.sort_by(|a, b| peak(&b.1).total_cmp(&peak(&a.1)).then(a.0.cmp(b.0)));
    let detail = failing
        .iter()
        .map(|(f, v)| {
            let psi: Vec<String> = v.iter().map(|(_, p)| format!("{p:.2}")).collect();
            format!("{f} PSI {}", psi.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(Finding {
        model: model.to_string(),
        kind: AlertKind::Drift,
        features: failing.iter().map(|(f, _)| f.to_string()).collect(),
        windows,
        detail: format!(
            "{detail} (alert at PSI >= 0.25 in {MIN_FAILING} of the last {} windows)",
            last.len()
        ),
    })
}

fn accuracy_finding(model: &str, ws: &[&Window], floor: f64) -> Option<Finding> {
    let last = last_counting(ws, |w| w.labeled >= MIN_LABELED);
    let failing: Vec<(u64, f64)> = last
        .iter()
        .filter_map(|w| Some((w.start_ms, w.accuracy?)))
        .filter(|(_, a)| *a < floor)
        .collect();
    if failing.len() < MIN_FAILING {
        return None;
    }
    let values: Vec<String> = failing.iter().map(|(_, a)| format!("{a:.3}")).collect();
    Some(Finding {
        model: model.to_string(),
        kind: AlertKind::Accuracy,
        features: Vec::new(),
        windows: failing.iter().map(|(s, _)| *s).collect(),
        detail: format!(
            "live accuracy {} below {floor:.3} (held-out accuracy - {ACCURACY_DROP}) in {} of the last {} labeled windows",
            values.join(", "),
            failing.len(),
            last.len()
        ),
    })
}

/// An alert as the dashboard keeps it: raised by a [`Finding`], updated while the condition
/// holds, and closed by a person acknowledging it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub device: String,
    pub device_name: String,
    pub model: String,
    /// The model version's name when the alert was raised (or its short hash).
    pub version: String,
    pub kind: AlertKind,
    pub features: Vec<String>,
    pub windows: Vec<u64>,
    pub detail: String,
    pub raised_ms: f64,
    pub updated_ms: f64,
    pub acknowledged_ms: Option<f64>,
}

/// The alerts to write after evaluating one device: a finding updates the open alert of the
/// same device, model and kind, or raises a new one unless every window it rests on was
/// already acknowledged.
pub fn merge_alerts(
    existing: &[Alert],
    device: (&str, &str),
    findings: &[Finding],
    version_label: &dyn Fn(&str) -> String,
    now_ms: f64,
) -> Vec<Alert> {
    let (url, name) = device;
    let mut out = Vec::new();
    for f in findings {
        let same = |a: &&Alert| a.device == url && a.model == f.model && a.kind == f.kind;
        let last_window = f.windows.iter().copied().max().unwrap_or(0);
        if let Some(open) = existing
            .iter()
            .filter(same)
            .find(|a| a.acknowledged_ms.is_none())
        {
            if open.features != f.features || open.windows != f.windows || open.detail != f.detail {
                out.push(Alert {
                    features: f.features.clone(),
                    windows: f.windows.clone(),
                    detail: f.detail.clone(),
                    updated_ms: now_ms,
                    ..open.clone()
                });
            }
            continue;
        }
        let acknowledged_up_to = existing
            .iter()
            .filter(same)
            .flat_map(|a| a.windows.iter().copied())
            .max();
        if acknowledged_up_to.is_some_and(|w| last_window <= w) {
            continue;
        }
        out.push(Alert {
            id: format!("{url}|{}|{}|{last_window:015}", f.model, f.kind.as_str()),
            device: url.to_string(),
            device_name: name.to_string(),
            model: f.model.clone(),
            version: version_label(&f.model),
            kind: f.kind,
            features: f.features.clone(),
            windows: f.windows.clone(),
            detail: f.detail.clone(),
            raised_ms: now_ms,
            updated_ms: now_ms,
            acknowledged_ms: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FeatureDrift;

    fn window(
        start: u64,
        rows: u64,
        levels: &[(&str, &str, f64)],
        labeled: u64,
        correct: u64,
    ) -> Window {
        Window {
            start_ms: start,
            end_ms: start + 1000,
            model: Some("m".into()),
            requests: rows,
            rows,
            errors: Default::default(),
            latency_us_buckets: vec![],
            latency_us_counts: vec![],
            latency_p50_us: 0,
            latency_p95_us: 0,
            latency_p99_us: 0,
            predictions: Default::default(),
            drift: levels
                .iter()
                .map(|(f, level, psi)| FeatureDrift {
                    feature: f.to_string(),
                    counts: vec![0; 12],
                    psi: *psi,
                    js: 0.0,
                    level: match *level {
                        "alert" => crate::wire::DriftLevel::Alert,
                        "warn" => crate::wire::DriftLevel::Warn,
                        _ => crate::wire::DriftLevel::Ok,
                    },
                })
                .collect(),
            dataset_drift: false,
            labeled,
            correct,
            accuracy: (labeled > 0).then(|| correct as f64 / labeled as f64),
        }
    }

    fn no_accuracy(_: &str) -> Option<f64> {
        None
    }

    #[test]
    fn two_of_the_last_three_windows_raise_a_drift_alert_naming_the_features() {
        let ws = vec![
            window(0, 500, &[("a", "ok", 0.01), ("b", "ok", 0.02)], 0, 0),
            window(1000, 500, &[("a", "alert", 0.9), ("b", "ok", 0.02)], 0, 0),
            window(2000, 500, &[("a", "ok", 0.05), ("b", "warn", 0.12)], 0, 0),
            window(3000, 500, &[("a", "alert", 1.5), ("b", "ok", 0.02)], 0, 0),
        ];
        let f = findings(&ws, &no_accuracy);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, AlertKind::Drift);
        assert_eq!(f[0].features, vec!["a".to_string()]);
        assert_eq!(f[0].windows, vec![1000, 3000]);
        assert!(f[0].detail.contains("a PSI 0.90, 1.50"), "{}", f[0].detail);
    }

    #[test]
    fn drift_alerts_name_the_worst_features_first() {
        let ws: Vec<Window> = (0..3)
            .map(|i| {
                window(
                    i * 1000,
                    500,
                    &[
                        ("a", "alert", 0.5),
                        ("b", "alert", 7.0),
                        ("c", "alert", 2.0),
                    ],
                    0,
                    0,
                )
            })
            .collect();
        let f = findings(&ws, &no_accuracy);
        assert_eq!(f[0].features, ["b", "c", "a"]);
        assert!(f[0].detail.starts_with("b PSI 7.00"), "{}", f[0].detail);
    }

    #[test]
    fn one_failing_window_or_small_windows_raise_nothing() {
        let ws = vec![
            window(0, 500, &[("a", "ok", 0.01)], 0, 0),
            window(1000, 500, &[("a", "alert", 0.9)], 0, 0),
            window(2000, 500, &[("a", "ok", 0.05)], 0, 0),
            window(3000, 500, &[("a", "ok", 0.05)], 0, 0),
            // Too few rows to vote, however drifted.
            window(4000, 20, &[("a", "alert", 3.0)], 0, 0),
        ];
        assert!(findings(&ws, &no_accuracy).is_empty());
        // The old failing window fell out of the last three.
        let ws = vec![
            window(0, 500, &[("a", "alert", 0.9)], 0, 0),
            window(1000, 500, &[("a", "alert", 0.9)], 0, 0),
            window(2000, 500, &[("a", "ok", 0.05)], 0, 0),
            window(3000, 500, &[("a", "ok", 0.05)], 0, 0),
            window(4000, 500, &[("a", "alert", 0.9)], 0, 0),
        ];
        assert!(findings(&ws, &no_accuracy).is_empty());
    }

    #[test]
    fn accuracy_alert_needs_labels_and_a_drop_below_held_out() {
        let held_out = |_: &str| Some(0.95);
        let ws = vec![
            window(0, 500, &[], 50, 48),
            window(1000, 500, &[], 50, 30),
            window(2000, 500, &[], 5, 0), // too few labels: does not vote
            window(3000, 500, &[], 40, 20),
        ];
        let f = findings(&ws, &held_out);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, AlertKind::Accuracy);
        assert_eq!(f[0].windows, vec![1000, 3000]);
        assert!(
            f[0].detail.contains("0.600, 0.500 below 0.850"),
            "{}",
            f[0].detail
        );
        // At 0.86 and 0.9 accuracy nothing fails.
        let ws = vec![window(0, 500, &[], 50, 43), window(1000, 500, &[], 50, 45)];
        assert!(findings(&ws, &held_out).is_empty());
    }

    fn finding(windows: &[u64]) -> Finding {
        Finding {
            model: "m".into(),
            kind: AlertKind::Drift,
            features: vec!["a".into()],
            windows: windows.to_vec(),
            detail: "a PSI 1.0".into(),
        }
    }

    #[test]
    fn alerts_are_raised_once_updated_while_open_and_new_only_after_new_windows() {
        let label = |_: &str| "iris v1".to_string();
        let dev = ("http://d", "d");
        let raised = merge_alerts(&[], dev, &[finding(&[1000, 2000])], &label, 5.0);
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].version, "iris v1");
        assert_eq!(raised[0].device_name, "d");
        // The same condition again: nothing to write.
        assert!(merge_alerts(&raised, dev, &[finding(&[1000, 2000])], &label, 6.0).is_empty());
        // It spreads to a new window: the open alert is updated, not duplicated.
        let updated = merge_alerts(&raised, dev, &[finding(&[2000, 3000])], &label, 7.0);
        assert_eq!(updated.len(), 1);
        assert_eq!(updated[0].id, raised[0].id);
        assert_eq!(updated[0].windows, vec![2000, 3000]);
        assert_eq!(updated[0].raised_ms, 5.0);
        // Acknowledged: the windows it covered raise nothing; a later window raises a new one.
        let mut acked = updated[0].clone();
        acked.acknowledged_ms = Some(8.0);
        let acked = vec![acked];
        assert!(merge_alerts(&acked, dev, &[finding(&[2000, 3000])], &label, 9.0).is_empty());
        let again = merge_alerts(&acked, dev, &[finding(&[3000, 4000])], &label, 10.0);
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].id, acked[0].id);
        assert_eq!(again[0].acknowledged_ms, None);
        // Another device's alert is its own.
        let other = merge_alerts(
            &acked,
            ("http://e", "e"),
            &[finding(&[2000, 3000])],
            &label,
            9.0,
        );
        assert_eq!(other.len(), 1);
    }
}
