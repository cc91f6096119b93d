//! Training profiles: the reference distribution of every feature, frozen into a module so a
//! device can measure input drift without any training data.
//!
//! Per feature: 11 edges (min, the nine deciles, max) and 12 counts: an underflow bin
//! `(-inf, min)`, ten bins `[e_i, e_i+1)` (the last one closed at max) and an overflow bin
//! `(max, +inf)`. Training data fills only the middle ten; live data can land anywhere.

use serde::{Deserialize, Serialize};

/// Edges per feature: min, the nine deciles, max.
pub const N_EDGES: usize = 11;
/// Bins per feature: underflow, ten regular bins, overflow.
pub const N_BINS: usize = N_EDGES + 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub n_rows: usize,
    pub features: Vec<FeatureProfile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    pub name: String,
    pub mean: f64,
    pub std: f64,
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

impl FeatureProfile {
    /// Which of the 12 bins `value` falls in (NaN counts as overflow).
    ///
    /// Total for any edges (a profile the loader checked has [`N_EDGES`] of them): without
    /// edges every value is in bin 0, and the result is never above `edges.len()`.
    pub fn bin(&self, value: f64) -> usize {
        let e = &self.edges;
        let (Some(first), Some(last)) = (e.first(), e.last()) else {
            return 0;
        };
        if value < *first {
            return 0;
        }
        if value > *last || value.is_nan() {
            return e.len();
        }
        // Index of the first interior edge greater than value; `value == last` lands in the
        // last regular bin.
        let inner = e.get(1..e.len() - 1).unwrap_or(&[]);
        1 + inner.partition_point(|edge| *edge <= value)
    }

    /// The shape every consumer relies on: [`N_EDGES`] finite edges, [`N_BINS`] counts whose
    /// sum fits a `u64`, a finite mean and standard deviation.
    fn check(&self) -> Result<(), String> {
        if self.edges.len() != N_EDGES {
            return Err(format!(
                "has {} edges; a profile has {N_EDGES} per feature (min, nine deciles, max)",
                self.edges.len()
            ));
        }
        if self.counts.len() != N_BINS {
            return Err(format!(
                "has {} bin counts; a profile has {N_BINS} per feature",
                self.counts.len()
            ));
        }
        if let Some(i) = self.edges.iter().position(|e| !e.is_finite()) {
            return Err(format!(
                "edge {i} is {}, not a finite number",
                self.edges[i]
            ));
        }
        if !self.mean.is_finite() || !self.std.is_finite() || self.std < 0.0 {
            return Err(format!(
                "mean {} and standard deviation {} must be finite (and the deviation >= 0)",
                self.mean, self.std
            ));
        }
        if self
            .counts
            .iter()
            .try_fold(0u64, |sum, c| sum.checked_add(*c))
            .is_none()
        {
            return Err("bin counts sum to more than 2^64".into());
        }
        Ok(())
    }
}

impl Profile {
    /// Checks the profile against the model's features, in order: one feature profile per
    /// feature, each named as the feature and of the shape [`FeatureProfile::bin`] and the
    /// drift statistics rely on. The error names the feature and what is wrong.
    pub fn check(&self, feature_names: &[String]) -> Result<(), String> {
        if self.features.len() != feature_names.len() {
            return Err(format!(
                "the profile covers {} features; the card lists {}",
                self.features.len(),
                feature_names.len()
            ));
        }
        for (j, (f, name)) in self.features.iter().zip(feature_names).enumerate() {
            if f.name != *name {
                return Err(format!(
                    "profile feature {j} is named {}; the card's feature {j} is {}",
                    crate::quote::bounded(&f.name),
                    crate::quote::bounded(name)
                ));
            }
            f.check()
                .map_err(|e| format!("feature {j} ({}) {e}", crate::quote::bounded(name)))?;
        }
        Ok(())
    }

    /// Profiles a row-major matrix of finite values.
    pub fn from_rows(feature_names: &[String], rows: &[f64]) -> Profile {
        let d = feature_names.len();
        let n = rows.len().checked_div(d).unwrap_or(0);
        let features = feature_names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let mut col: Vec<f64> = rows.iter().skip(j).step_by(d).copied().collect();
                col.sort_by(f64::total_cmp);
                let mean = col.iter().sum::<f64>() / n.max(1) as f64;
                let var =
                    col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n.max(1) as f64;
                let edges: Vec<f64> = (0..=10).map(|q| quantile(&col, q as f64 / 10.0)).collect();
                let mut fp = FeatureProfile {
                    name: name.clone(),
                    mean,
                    std: var.sqrt(),
                    edges,
                    counts: vec![0; 12],
                };
                for v in &col {
                    let b = fp.bin(*v);
                    fp.counts[b] += 1;
                }
                fp
            })
            .collect();
        Profile {
            n_rows: n,
            features,
        }
    }
}

/// Linear-interpolated quantile of sorted data (0 for empty data).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_training_data_and_catch_outliers() {
        let names = vec!["x".to_string()];
        let rows: Vec<f64> = (0..100).map(f64::from).collect();
        let p = Profile::from_rows(&names, &rows);
        let f = &p.features[0];
        assert_eq!(f.edges.len(), 11);
        assert_eq!(f.counts.iter().sum::<u64>(), 100);
        assert_eq!(f.counts[0], 0);
        assert_eq!(f.counts[11], 0);
        assert!(f.counts[1..11].iter().all(|c| *c == 10), "{:?}", f.counts);
        assert_eq!(f.bin(-5.0), 0);
        assert_eq!(f.bin(99.0), 10);
        assert_eq!(f.bin(1e9), 11);
        assert_eq!(f.bin(f64::NAN), 11);
        assert!((f.mean - 49.5).abs() < 1e-12);
    }
}
