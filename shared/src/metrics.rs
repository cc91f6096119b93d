//! Evaluation metrics computed from module outputs, shared by training (on the reference
//! outputs) and the dashboard (on outputs of the module running in the browser), so "the module
//! reproduces the run's metrics" is a comparison of equal computations.

use std::collections::BTreeMap;

use crate::module::ModelCard;
use crate::pipeline::{Model, Pipeline};

/// The metric a run is judged by, per model kind.
pub fn primary(pipeline: &Pipeline) -> &'static str {
    match &pipeline.model {
        Model::Linear { .. }
        | Model::GradientBoosting {
            n_classes: None, ..
        } => "r2",
        Model::KMeans { .. } => "inertia",
        _ => "accuracy",
    }
}

/// Metrics of `outputs` (module outputs for `rows`) against `targets`.
pub fn evaluate(
    pipeline: &Pipeline,
    rows: &[f64],
    outputs: &[f64],
    targets: &[f64],
) -> BTreeMap<String, f64> {
    let o = pipeline.n_outputs();
    match &pipeline.model {
        Model::Linear { .. }
        | Model::GradientBoosting {
            n_classes: None, ..
        } => regression(outputs, targets, o),
        Model::KMeans { centroids } => {
            let first = first_outputs(outputs, o);
            let d = pipeline.n_features;
            let inertia: f64 = rows
                .chunks(d)
                .zip(&first)
                .map(|(row, c)| {
                    let centroid = &centroids[*c as usize];
                    (0..d)
                        .map(|j| {
                            let x = match &pipeline.scaler {
                                Some(s) => (row[j] - s.mean[j]) / s.scale[j],
                                None => row[j],
                            };
                            (x - centroid[j]) * (x - centroid[j])
                        })
                        .sum::<f64>()
                })
                .sum();
            BTreeMap::from([("inertia".to_string(), inertia)])
        }
        model => classification(outputs, targets, o, model.n_classes().unwrap_or(0)),
    }
}

/// [`evaluate`] when only a module's card is at hand (a module carries no pipeline): the same
/// computation for classifiers and regressions, from the card's classes and outputs. `None`
/// for k-means, whose inertia needs the centroids.
pub fn evaluate_card(
    card: &ModelCard,
    outputs: &[f64],
    targets: &[f64],
) -> Option<BTreeMap<String, f64>> {
    let o = card.outputs.len().max(1);
    match card.kind.as_str() {
        "kmeans" => None,
        "linear_regression" => Some(regression(outputs, targets, o)),
        // Boosting regresses or classifies: a regression's card has no classes.
        "gradient_boosting" if card.classes.is_empty() => Some(regression(outputs, targets, o)),
        _ => Some(classification(outputs, targets, o, card.classes.len())),
    }
}

fn first_outputs(outputs: &[f64], o: usize) -> Vec<f64> {
    outputs.chunks(o).map(|r| r[0]).collect()
}

fn regression(outputs: &[f64], targets: &[f64], o: usize) -> BTreeMap<String, f64> {
    let first = first_outputs(outputs, o);
    let n = first.len().max(1) as f64;
    let err: Vec<f64> = first.iter().zip(targets).map(|(p, y)| p - y).collect();
    let mse = err.iter().map(|e| e * e).sum::<f64>() / n;
    let mean = targets.iter().sum::<f64>() / n;
    let var = targets.iter().map(|y| (y - mean) * (y - mean)).sum::<f64>() / n;
    BTreeMap::from([
        ("rmse".to_string(), mse.sqrt()),
        (
            "mae".to_string(),
            err.iter().map(|e| e.abs()).sum::<f64>() / n,
        ),
        ("r2".to_string(), 1.0 - mse / var),
    ])
}

fn classification(outputs: &[f64], targets: &[f64], o: usize, k: usize) -> BTreeMap<String, f64> {
    let first = first_outputs(outputs, o);
    let n = first.len().max(1) as f64;
    let mut m = BTreeMap::new();
    let hits = first.iter().zip(targets).filter(|(p, y)| p == y).count();
    m.insert("accuracy".into(), hits as f64 / n);
    let cm = confusion_matrix(&first, targets, k);
    let (precision, recall, f1) = macro_scores(&cm);
    m.insert("precision_macro".into(), precision);
    m.insert("recall_macro".into(), recall);
    m.insert("f1_macro".into(), f1);
    if k == 2 && o == 3 {
        let scores: Vec<f64> = outputs.chunks(o).map(|r| r[2]).collect();
        if let Some(auc) = roc_auc(&scores, targets) {
            m.insert("roc_auc".into(), auc);
        }
    }
    m
}

/// `cm[actual][predicted]` counts; labels outside `0..k` are ignored.
pub fn confusion_matrix(predicted: &[f64], actual: &[f64], k: usize) -> Vec<Vec<u64>> {
    let mut cm = vec![vec![0u64; k]; k];
    for (p, a) in predicted.iter().zip(actual) {
        let (p, a) = (*p as usize, *a as usize);
        if p < k && a < k {
            cm[a][p] += 1;
        }
    }
    cm
}

/// Macro-averaged precision, recall and F1 (a class with no predictions or no rows scores 0).
pub fn macro_scores(cm: &[Vec<u64>]) -> (f64, f64, f64) {
    let k = cm.len().max(1) as f64;
    let (mut p_sum, mut r_sum, mut f_sum) = (0.0, 0.0, 0.0);
    for c in 0..cm.len() {
        let tp = cm[c][c] as f64;
        let predicted: u64 = cm.iter().map(|row| row[c]).sum();
        let actual: u64 = cm[c].iter().sum();
        let p = if predicted > 0 {
            tp / predicted as f64
        } else {
            0.0
        };
        let r = if actual > 0 { tp / actual as f64 } else { 0.0 };
        p_sum += p;
        r_sum += r;
        f_sum += if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
    }
    (p_sum / k, r_sum / k, f_sum / k)
}

/// Area under the ROC curve for binary labels (1 = positive) by the rank statistic, ties
/// counted half; `None` when one class is absent.
pub fn roc_auc(scores: &[f64], labels: &[f64]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores
        .iter()
        .zip(labels)
        .map(|(s, l)| (*s, *l == 1.0))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n_pos = pairs.iter().filter(|p| p.1).count() as f64;
    let n_neg = pairs.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    // Average ranks (1-based) over ties, then the Mann-Whitney U of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * pairs[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_and_macro_scores() {
        let cm = confusion_matrix(
            &[0.0, 1.0, 1.0, 2.0, 2.0, 0.0],
            &[0.0, 1.0, 2.0, 2.0, 2.0, 1.0],
            3,
        );
        assert_eq!(cm, vec![vec![1, 0, 0], vec![1, 1, 0], vec![0, 1, 2]]);
        let (p, r, f) = macro_scores(&cm);
        assert!((p - (0.5 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        assert!((r - (1.0 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!(f > 0.0 && f < 1.0);
    }

    #[test]
    fn roc_auc_by_ranks() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]),
            Some(0.75)
        );
        assert_eq!(
            roc_auc(&[0.5, 0.5], &[0.0, 1.0]),
            Some(0.5),
            "ties count half"
        );
        assert_eq!(roc_auc(&[0.2, 0.3], &[1.0, 1.0]), None);
    }
}
