//! Training profiles: the reference distribution of every feature, frozen into a module so a
//! device can measure input drift without any training data.
//!
//! Per feature: 11 edges (min, the nine deciles, max) and 12 counts: an underflow bin
//! `(-inf, min)`, ten bins `[e_i, e_i+1)` (the last one closed at max) and an overflow bin
//! `(max, +inf)`. Training data fills only the middle ten; live data can land anywhere.

use serde::{Deserialize, Serialize};

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
    pub fn bin(&self, value: f64) -> usize {
        let e = &self.edges;
        let (first, last) = (e[0], e[e.len() - 1]);
        if value < first {
            return 0;
        }
        if value > last || value.is_nan() {
            return e.len();
        }
        // Index of the first interior edge greater than value; `value == last` lands in the
        // last regular bin.
        let inner = &e[1..e.len() - 1];
        1 + inner.partition_point(|edge| *edge <= value)
    }
}

impl Profile {
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
