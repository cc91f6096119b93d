//! Evaluation metrics computed from module outputs, shared by training (on the reference
//! outputs) and the dashboard (on outputs of the module running in the browser), so "the module
//! reproduces the run's metrics" is a comparison of equal computations.

use std::collections::BTreeMap;

use crate::pipeline::{Model, Pipeline};

/// The metric a run is judged by, per model kind.
pub fn primary(pipeline: &Pipeline) -> &'static str {
    match &pipeline.model {
        Model::Linear { .. } => "r2",
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
    let first: Vec<f64> = outputs.chunks(o).map(|r| r[0]).collect();
    let n = first.len().max(1) as f64;
    let mut m = BTreeMap::new();
    match &pipeline.model {
        Model::Linear { .. } => {
            let err: Vec<f64> = first.iter().zip(targets).map(|(p, y)| p - y).collect();
            let mse = err.iter().map(|e| e * e).sum::<f64>() / n;
            let mean = targets.iter().sum::<f64>() / n;
            let var = targets.iter().map(|y| (y - mean) * (y - mean)).sum::<f64>() / n;
            m.insert("rmse".into(), mse.sqrt());
            m.insert("mae".into(), err.iter().map(|e| e.abs()).sum::<f64>() / n);
            m.insert("r2".into(), 1.0 - mse / var);
        }
        Model::KMeans { centroids } => {
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
            m.insert("inertia".into(), inertia);
        }
        _ => {
            let hits = first.iter().zip(targets).filter(|(p, y)| p == y).count();
            m.insert("accuracy".into(), hits as f64 / n);
        }
    }
    m
}
