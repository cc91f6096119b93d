//! Which drift the charts show.

use std::collections::BTreeMap;

use wasmops_shared::wire::{FeatureDrift, Window};

/// Feature lines a drift chart draws at most (the palette has six colours).
pub const DRIFT_LINES: usize = 5;
/// PSI values above this are drawn at it: 4x the alert threshold, so 0.1 and 0.25 stay legible.
pub const PSI_CAP: f64 = 1.0;

/// The `k` features with the highest PSI in any of `ws`, worst first (ties by name).
pub fn top_drift_features(ws: &[Window], k: usize) -> Vec<String> {
    let mut peak: BTreeMap<&str, f64> = BTreeMap::new();
    for w in ws {
        for d in &w.drift {
            let p = peak.entry(&d.feature).or_insert(f64::NEG_INFINITY);
            *p = p.max(d.psi);
        }
    }
    let mut ranked: Vec<(&str, f64)> = peak.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(k)
        .map(|(f, _)| f.to_string())
        .collect()
}

/// One line per feature in `features` over the windows (x: window start, y: `pick` of the
/// feature's drift), with values above `cap` drawn at `cap`; a clipped line says its peak in its
/// name, so the thresholds below stay legible without hiding how far it went.
pub fn capped_series(
    ws: &[Window],
    features: &[String],
    pick: fn(&FeatureDrift) -> f64,
    cap: f64,
) -> Vec<(String, Vec<(f64, f64)>)> {
    features
        .iter()
        .map(|f| {
            let points: Vec<(f64, f64)> = ws
                .iter()
                .filter_map(|w| {
                    w.drift
                        .iter()
                        .find(|d| &d.feature == f)
                        .map(|d| (w.start_ms as f64, pick(d)))
                })
                .collect();
            let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
            let name = if peak > cap {
                format!("{f} (peak {peak:.1}, drawn at {cap})")
            } else {
                f.clone()
            };
            (
                name,
                points.into_iter().map(|(x, y)| (x, y.min(cap))).collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmops_shared::wire::DriftLevel;

    fn window(psi: &[(&str, f64)]) -> Window {
        let mut w = crate::logic::tests::window(0);
        w.drift = psi
            .iter()
            .map(|(f, p)| FeatureDrift {
                feature: f.to_string(),
                counts: vec![],
                psi: *p,
                js: 0.0,
                level: DriftLevel::Ok,
            })
            .collect();
        w
    }

    #[test]
    fn top_features_rank_by_peak_psi_over_all_windows() {
        let ws = [
            window(&[("a", 0.1), ("b", 0.5), ("c", 0.2)]),
            window(&[("a", 0.9), ("b", 0.1), ("c", 0.2)]),
            window(&[]),
        ];
        assert_eq!(top_drift_features(&ws, 2), ["a", "b"]);
        assert_eq!(top_drift_features(&ws, 10), ["a", "b", "c"]);
        assert!(top_drift_features(&[], 3).is_empty());
    }

    #[test]
    fn lines_above_the_cap_are_clipped_and_say_their_peak() {
        let mut a = window(&[("a", 0.2), ("b", 3.0)]);
        a.start_ms = 1_000;
        let mut b = window(&[("a", 0.3)]);
        b.start_ms = 2_000;
        let lines = capped_series(&[a, b], &["b".into(), "a".into()], |d| d.psi, PSI_CAP);
        assert_eq!(
            lines[0],
            ("b (peak 3.0, drawn at 1)".to_string(), vec![(1_000.0, 1.0)])
        );
        assert_eq!(
            lines[1],
            ("a".to_string(), vec![(1_000.0, 0.2), (2_000.0, 0.3)])
        );
    }

    #[test]
    fn ties_rank_by_name() {
        let ws = [window(&[("z", 0.3), ("m", 0.3), ("a", 0.3)])];
        assert_eq!(top_drift_features(&ws, 2), ["a", "m"]);
    }
}
