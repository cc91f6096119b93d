//! The reference implementation of a compiled pipeline, in plain Rust.
//!
//! A module's outputs must equal these bit for bit. Operation order mirrors `compiler.rs`
//! exactly (see the note in `math.rs`).

use crate::math::{canonicalize, exp};
use crate::pipeline::{Model, Pipeline};

/// Predicts a row-major batch; returns `n_rows * pipeline.n_outputs()` values.
///
/// Panics if `rows.len()` is not a multiple of the feature count: callers hold validated data.
pub fn predict(pipeline: &Pipeline, rows: &[f64]) -> Vec<f64> {
    let d = pipeline.n_features;
    assert_eq!(
        rows.len() % d,
        0,
        "row-major batch length must be a multiple of {d}"
    );
    let mut out = Vec::with_capacity(rows.len() / d * pipeline.n_outputs());
    let mut x = vec![0.0; d];
    for row in rows.chunks_exact(d) {
        for (j, v) in row.iter().enumerate() {
            x[j] = match &pipeline.scaler {
                Some(s) => (v - s.mean[j]) / s.scale[j],
                None => *v,
            };
        }
        match &pipeline.model {
            Model::LogisticRegression {
                weights,
                intercepts,
            } => {
                let z: Vec<f64> = weights
                    .iter()
                    .zip(intercepts)
                    .map(|(w, b)| {
                        let mut acc = *b;
                        for j in 0..d {
                            acc = acc + w[j] * x[j];
                        }
                        acc
                    })
                    .collect();
                let (best, m) = argmax(&z);
                let e: Vec<f64> = z.iter().map(|zc| exp(zc - m)).collect();
                let mut s = 0.0;
                for ec in &e {
                    s = s + ec;
                }
                out.push(best as f64);
                out.extend(e.iter().map(|ec| canonicalize(ec / s)));
            }
        }
    }
    out
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
