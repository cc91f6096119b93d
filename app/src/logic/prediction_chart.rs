//! The Devices page's prediction distribution: live prediction shares next to the module's
//! own predictions on its held-out split (the reference a registered version carries).
//! Classes (and clusters) are categories; regression outputs are binned over the reference
//! range, with a bin below and one above it.

use std::collections::BTreeMap;

use wasmops_shared::wire::Window;

use crate::registry::ModelVersion;

/// Class indices at or above this are not drawn as categories.
pub const MAX_CATEGORIES: f64 = 64.0;
/// Bins over the reference range for numeric outputs (plus one below, one above).
pub const BINS: usize = 8;

/// What this browser knows of the model that made the predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownModel {
    /// Class names, in index order (empty for regression and clustering).
    pub classes: Vec<String>,
    /// Whether its outputs are categories (a classifier or a clustering).
    pub categorical: bool,
    /// Its first output on each held-out row.
    pub reference: Vec<f64>,
}

impl KnownModel {
    pub fn of(v: &ModelVersion) -> KnownModel {
        KnownModel {
            classes: v.card.classes.clone(),
            categorical: !v.card.classes.is_empty() || v.card.kind == "kmeans",
            reference: v.reference_predictions(),
        }
    }
}

/// The chart's categories and its groups of shares (each sums to 1, or is all 0 when empty):
/// the reference first when there is one, then live.
#[derive(Debug, Clone, PartialEq)]
pub struct Shares {
    pub categories: Vec<String>,
    pub groups: Vec<(String, Vec<f64>)>,
}

/// Live prediction counts by value (as the device reports them: text) over the windows.
pub fn live_predictions(ws: &[Window]) -> BTreeMap<String, u64> {
    let mut live: BTreeMap<String, u64> = BTreeMap::new();
    for w in ws {
        for (k, v) in &w.predictions {
            *live.entry(k.clone()).or_default() += v;
        }
    }
    live
}

/// Bins live predictions and the reference alike. For a model this browser does not know,
/// predictions are categories only when every one is a small class index.
pub fn prediction_shares(live: &BTreeMap<String, u64>, model: Option<&KnownModel>) -> Shares {
    let live_values: Vec<(f64, u64)> = live
        .iter()
        .filter_map(|(k, v)| Some((k.parse::<f64>().ok()?, *v)))
        .filter(|(x, _)| x.is_finite())
        .collect();
    let reference: Vec<f64> = model.map(|m| m.reference.clone()).unwrap_or_default();
    let is_category = |x: f64| (0.0..MAX_CATEGORIES).contains(&x);
    let categorical = match model {
        Some(m) => m.categorical,
        None => live_values
            .iter()
            .all(|(x, _)| is_category(*x) && x.fract() == 0.0),
    };
    let live_values: Vec<(f64, u64)> = if categorical {
        live_values
            .into_iter()
            .filter(|(x, _)| is_category(*x))
            .collect()
    } else {
        live_values
    };
    let (categories, live_counts, ref_counts): (Vec<String>, Vec<f64>, Vec<f64>) = if categorical {
        let names: Vec<String> = model.map(|m| m.classes.clone()).unwrap_or_default();
        let reference: Vec<f64> = reference
            .iter()
            .copied()
            .filter(|x| is_category(*x))
            .collect();
        let n = live_values
            .iter()
            .map(|(x, _)| *x as usize + 1)
            .chain(reference.iter().map(|x| *x as usize + 1))
            .max()
            .unwrap_or(0)
            .max(names.len());
        let mut l = vec![0.0; n];
        let mut r = vec![0.0; n];
        for (x, c) in &live_values {
            l[*x as usize] += *c as f64;
        }
        for x in &reference {
            r[*x as usize] += 1.0;
        }
        let cats = (0..n)
            .map(|i| names.get(i).cloned().unwrap_or_else(|| i.to_string()))
            .collect();
        (cats, l, r)
    } else {
        // Without a reference, the bins span the live values.
        let span_of: Vec<f64> = if reference.is_empty() {
            live_values.iter().map(|(x, _)| *x).collect()
        } else {
            reference.clone()
        };
        let lo = span_of.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = span_of.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let span = if hi > lo {
            (hi - lo) / BINS as f64
        } else {
            1.0
        };
        let bin = |x: f64| {
            if x < lo {
                0
            } else if x >= hi + 1e-12 {
                BINS + 1
            } else {
                1 + (((x - lo) / span) as usize).min(BINS - 1)
            }
        };
        let mut l = vec![0.0; BINS + 2];
        let mut r = vec![0.0; BINS + 2];
        for (x, c) in &live_values {
            l[bin(*x)] += *c as f64;
        }
        for x in &reference {
            r[bin(*x)] += 1.0;
        }
        let mut cats = vec![format!("<{lo:.3}")];
        cats.extend((0..BINS).map(|i| format!("{:.3}", lo + span * (i as f64 + 0.5))));
        cats.push(format!(">{hi:.3}"));
        (cats, l, r)
    };
    let share = |v: Vec<f64>| {
        let total: f64 = v.iter().sum();
        v.into_iter()
            .map(|x| if total > 0.0 { x / total } else { 0.0 })
            .collect::<Vec<_>>()
    };
    let mut groups = vec![(
        format!("live ({} predictions)", live_counts.iter().sum::<f64>()),
        share(live_counts),
    )];
    if !reference.is_empty() {
        groups.insert(
            0,
            (
                format!("held-out at training ({} rows)", reference.len()),
                share(ref_counts),
            ),
        );
    }
    Shares { categories, groups }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn window(predictions: &[(&str, u64)]) -> Window {
        let mut w = crate::logic::tests::window(0);
        w.predictions = live(predictions);
        w
    }

    #[test]
    fn live_counts_add_up_over_windows() {
        let ws = [window(&[("0", 2), ("1", 1)]), window(&[("1", 4)])];
        assert_eq!(live_predictions(&ws), live(&[("0", 2), ("1", 5)]));
    }

    #[test]
    fn a_classifier_shows_its_class_names_with_reference_first() {
        let model = KnownModel {
            classes: vec!["setosa".into(), "versicolor".into(), "virginica".into()],
            categorical: true,
            reference: vec![0.0, 0.0, 1.0, 2.0],
        };
        let s = prediction_shares(&live(&[("0", 1), ("2", 3)]), Some(&model));
        assert_eq!(s.categories, ["setosa", "versicolor", "virginica"]);
        assert_eq!(s.groups[0].0, "held-out at training (4 rows)");
        assert_eq!(s.groups[0].1, [0.5, 0.25, 0.25]);
        assert_eq!(s.groups[1].0, "live (4 predictions)");
        assert_eq!(s.groups[1].1, [0.25, 0.0, 0.75]);
    }

    #[test]
    fn unknown_small_integers_are_categories_named_by_index() {
        let s = prediction_shares(&live(&[("0", 1), ("3", 1)]), None);
        assert_eq!(s.categories, ["0", "1", "2", "3"]);
        assert_eq!(s.groups.len(), 1, "no reference without a known model");
        assert_eq!(s.groups[0].1, [0.5, 0.0, 0.0, 0.5]);
    }

    #[test]
    fn regression_outputs_are_binned_over_the_reference_range() {
        let model = KnownModel {
            classes: vec![],
            categorical: false,
            reference: (0..=8).map(f64::from).collect(),
        };
        // Below the range, inside it (first and last bin) and above it.
        let s = prediction_shares(
            &live(&[("-5", 1), ("0.5", 1), ("8", 1), ("100", 1)]),
            Some(&model),
        );
        assert_eq!(s.categories.len(), BINS + 2);
        assert_eq!(s.categories[0], "<0.000");
        assert_eq!(s.categories[1], "0.500");
        assert_eq!(s.categories[BINS + 1], ">8.000");
        let l = &s.groups[1].1;
        assert_eq!(l[0], 0.25);
        assert_eq!(l[1], 0.25);
        assert_eq!(l[BINS], 0.25, "the top of the range is in the last bin");
        assert_eq!(l[BINS + 1], 0.25);
        // The reference fills the range, nothing outside it.
        let r = &s.groups[0].1;
        assert_eq!((r[0], r[BINS + 1]), (0.0, 0.0));
        assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn non_numeric_and_non_finite_predictions_are_left_out() {
        let s = prediction_shares(&live(&[("cat", 5), ("NaN", 5), ("1", 2)]), None);
        assert_eq!(s.categories, ["0", "1"]);
        assert_eq!(s.groups[0].0, "live (2 predictions)");
    }

    #[test]
    fn no_predictions_give_zero_shares_not_nan() {
        let s = prediction_shares(&BTreeMap::new(), None);
        assert!(s.groups.iter().all(|(_, v)| v.iter().all(|x| *x == 0.0)));
    }
}
