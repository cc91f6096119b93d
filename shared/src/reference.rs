//! The reference implementation of a compiled pipeline, in plain Rust.
//!
//! A module's outputs must equal these bit for bit. Operation order mirrors `compiler.rs`
//! exactly (see the note in `math.rs`).

// `acc = acc + x` spells out the operation order the emitter mirrors; keep it explicit.
#![allow(clippy::assign_op_pattern)]

use crate::math::{canonicalize, exp};
use crate::pipeline::{Model, Pipeline, TreeNode};

/// Predicts a row-major batch; returns `n_rows * pipeline.n_outputs()` values.
///
/// Panics if `rows.len()` is not a multiple of the feature count or the pipeline is invalid:
/// callers hold validated data.
pub fn predict(pipeline: &Pipeline, rows: &[f64]) -> Vec<f64> {
    let d = pipeline.n_features;
    assert_eq!(
        rows.len() % d,
        0,
        "row-major batch length must be a multiple of {d}"
    );
    let mut out = Vec::with_capacity(rows.len() / d * pipeline.n_outputs());
    let mut x = vec![0.0; d];
    // Scratch reused across rows, so this is also a fair native baseline for benchmarks.
    let mut z = Vec::new();
    for row in rows.chunks_exact(d) {
        for (j, v) in row.iter().enumerate() {
            x[j] = match &pipeline.scaler {
                Some(s) => (v - s.mean[j]) / s.scale[j],
                None => *v,
            };
        }
        predict_row(&pipeline.model, &x, &mut z, &mut out);
    }
    out
}

fn predict_row(model: &Model, x: &[f64], z: &mut Vec<f64>, out: &mut Vec<f64>) {
    match model {
        Model::Linear { weights, intercept } => {
            out.push(canonicalize(dot(*intercept, weights, x)));
        }
        Model::LogisticRegression {
            weights,
            intercepts,
        } => {
            z.clear();
            z.extend(weights.iter().zip(intercepts).map(|(w, b)| dot(*b, w, x)));
            softmax_outputs(z, out);
        }
        Model::GaussianNb {
            means,
            neg_half_inv_var,
            log_prior_norm,
        } => {
            z.clear();
            z.extend((0..log_prior_norm.len()).map(|c| {
                let mut acc = log_prior_norm[c];
                for j in 0..x.len() {
                    let t = x[j] - means[c][j];
                    acc = acc + t * t * neg_half_inv_var[c][j];
                }
                acc
            }));
            softmax_outputs(z, out);
        }
        Model::KMeans { centroids } => {
            let mut best = 0;
            let mut min = 0.0;
            for (c, centroid) in centroids.iter().enumerate() {
                let mut dist = 0.0;
                for j in 0..x.len() {
                    let t = x[j] - centroid[j];
                    dist = dist + t * t;
                }
                if c == 0 || dist < min {
                    min = dist;
                    best = c;
                }
            }
            out.push(best as f64);
        }
        Model::DecisionTree { tree, .. } => {
            let TreeNode::Leaf {
                class,
                probabilities,
            } = &tree.nodes[tree.leaf_for(x)]
            else {
                unreachable!("leaf_for returns a leaf")
            };
            out.push(*class as f64);
            out.extend(probabilities.iter().copied());
        }
        Model::RandomForest { n_classes, trees } => {
            z.clear();
            z.resize(*n_classes, 0.0);
            for tree in trees {
                if let TreeNode::Leaf { class, .. } = &tree.nodes[tree.leaf_for(x)] {
                    z[*class] = z[*class] + 1.0;
                }
            }
            let (best, _) = argmax(z);
            out.push(best as f64);
            let n = trees.len() as f64;
            out.extend(z.iter().map(|v| v / n));
        }
        Model::GradientBoosting {
            n_classes,
            baseline,
            trees,
        } => {
            z.clear();
            z.extend(baseline.iter().copied());
            let scores = baseline.len();
            for (t, tree) in trees.iter().enumerate() {
                let s = t % scores;
                z[s] = z[s] + tree.value_for(x);
            }
            boosted_outputs(*n_classes, z, out);
        }
    }
}

/// A boosted model's outputs from a row's raw scores (its baseline plus the trees' values,
/// tree after tree): the prediction for regression, else `[argmax, probabilities...]`.
fn boosted_outputs(n_classes: Option<usize>, z: &mut Vec<f64>, out: &mut Vec<f64>) {
    match n_classes {
        None => out.push(canonicalize(z[0])),
        Some(_) => {
            // A binary model's logits are [0, z_0].
            if n_classes == Some(2) {
                z.insert(0, 0.0);
            }
            softmax_outputs(z, out)
        }
    }
}

/// [`predict`] for a boosted model without a scaler, from raw scores already summed in its
/// order (`rows x scores`, row-major; the trainer keeps them for its held-out rows while
/// fitting): the same outputs, without walking every tree again. Other models: `None`.
pub fn predict_from_scores(pipeline: &Pipeline, scores: &[f64]) -> Option<Vec<f64>> {
    let Model::GradientBoosting {
        n_classes,
        baseline,
        ..
    } = &pipeline.model
    else {
        return None;
    };
    if pipeline.scaler.is_some()
        || baseline.is_empty()
        || !scores.len().is_multiple_of(baseline.len())
    {
        return None;
    }
    let mut out = Vec::with_capacity(scores.len() / baseline.len() * pipeline.n_outputs());
    let mut z = Vec::with_capacity(baseline.len() + 1);
    for row in scores.chunks_exact(baseline.len()) {
        z.clear();
        z.extend_from_slice(row);
        boosted_outputs(*n_classes, &mut z, &mut out);
    }
    Some(out)
}

/// `b + sum_j w_j * x_j`, left to right.
fn dot(b: f64, w: &[f64], x: &[f64]) -> f64 {
    let mut acc = b;
    for j in 0..x.len() {
        acc = acc + w[j] * x[j];
    }
    acc
}

/// `[argmax, softmax(z)...]` with the max subtracted first; NaN outputs canonicalized.
fn softmax_outputs(z: &mut [f64], out: &mut Vec<f64>) {
    let (best, m) = argmax(z);
    for zc in z.iter_mut() {
        *zc = exp(*zc - m);
    }
    let mut s = 0.0;
    for ec in z.iter() {
        s = s + ec;
    }
    out.push(best as f64);
    out.extend(z.iter().map(|ec| canonicalize(ec / s)));
}

/// First index of the largest value by strict `>` from index 0 (NaN never wins a comparison).
fn argmax(z: &[f64]) -> (usize, f64) {
    let mut best = 0;
    let mut m = z[0];
    for (c, v) in z.iter().enumerate().skip(1) {
        if *v > m {
            m = *v;
            best = c;
        }
    }
    (best, m)
}
