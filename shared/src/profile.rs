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
            .zip(key_columns(rows, d))
            .map(|(name, keys)| {
                let col = sort_keys(keys);
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
                // `bin` never decreases along the sorted column: count each bin's run.
                let mut at = 0;
                while at < col.len() {
                    let b = fp.bin(col[at]);
                    let run = col[at..].partition_point(|v| fp.bin(*v) == b);
                    fp.counts[b] += run as u64;
                    at += run;
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

/// The values' total-order keys: unsigned order is `f64::total_cmp`'s (negatives flipped
/// entirely, positives' sign bit set).
fn key(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// Each column's keys, in one pass over the rows (a column at a time would read the whole
/// matrix once per column).
fn key_columns(rows: &[f64], d: usize) -> Vec<Vec<u64>> {
    let n = rows.len().checked_div(d).unwrap_or(0);
    let mut columns: Vec<Vec<u64>> = (0..d).map(|_| Vec::with_capacity(n)).collect();
    if d > 0 {
        for row in rows.chunks_exact(d) {
            for (col, v) in columns.iter_mut().zip(row) {
                col.push(key(*v));
            }
        }
    }
    columns
}

/// Column `j` of a row-major matrix of `d` columns, sorted by `f64::total_cmp`.
#[cfg(test)]
fn sorted_column(rows: &[f64], j: usize, d: usize) -> Vec<f64> {
    sort_keys(rows.iter().skip(j).step_by(d).map(|v| key(*v)).collect())
}

/// The values of `keys` ([`key`]), sorted by `f64::total_cmp`: an LSD radix sort, 11 bits a
/// pass. The same order as a comparison sort (values equal under `total_cmp` have the same
/// bits), a few times faster on a large column.
fn sort_keys(mut keys: Vec<u64>) -> Vec<f64> {
    if keys.len() < 256 {
        keys.sort_unstable();
    } else {
        const BITS: u32 = 11;
        const DIGITS: usize = 64usize.div_ceil(BITS as usize);
        const MASK: u64 = (1 << BITS) - 1;
        // Every pass's digit counts in one read of the keys (counts never exceed the column's
        // length, which a u32 holds for any column a profile sees; `try_from` checks it).
        let mut counts = vec![[0u32; 1 << BITS]; DIGITS];
        if u32::try_from(keys.len()).is_err() {
            keys.sort_unstable();
        } else {
            for k in &keys {
                for (pass, c) in counts.iter_mut().enumerate() {
                    c[((k >> (pass as u32 * BITS)) & MASK) as usize] += 1;
                }
            }
            let mut other = vec![0u64; keys.len()];
            for (pass, c) in counts.iter_mut().enumerate() {
                // A digit every key shares moves nothing.
                if c.iter().any(|n| *n as usize == keys.len()) {
                    continue;
                }
                let mut total = 0u32;
                for n in c.iter_mut() {
                    let here = *n;
                    *n = total;
                    total += here;
                }
                let shift = pass as u32 * BITS;
                for k in &keys {
                    let slot = &mut c[((k >> shift) & MASK) as usize];
                    other[*slot as usize] = *k;
                    *slot += 1;
                }
                std::mem::swap(&mut keys, &mut other);
            }
        }
    }
    keys.into_iter()
        .map(|k| f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k }))
        .collect()
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

    /// The radix sort orders as `total_cmp` does, bit for bit, and the profile it gives is the
    /// one a comparison sort gives (signed zeros, negatives, repeats, extremes).
    #[test]
    fn the_radix_sorted_column_is_the_comparison_sorted_one() {
        let mut state = 11u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 11
        };
        let specials = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            -1e-300,
        ];
        for n in [0, 1, 5, 255, 256, 3000] {
            let d = 3;
            let rows: Vec<f64> = (0..n * d)
                .map(|_| match next() % 4 {
                    0 => specials[(next() % 8) as usize],
                    1 => (next() % 7) as f64 - 3.0,
                    _ => (next() as f64 / (1u64 << 53) as f64 - 0.5) * 1e6,
                })
                .collect();
            for j in 0..d {
                let mut expected: Vec<f64> = rows.iter().skip(j).step_by(d).copied().collect();
                expected.sort_by(f64::total_cmp);
                let got = sorted_column(&rows, j, d);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&expected), "n {n}, column {j}");
            }
            let names: Vec<String> = (0..d).map(|j| format!("f{j}")).collect();
            let p = Profile::from_rows(&names, &rows);
            for (j, f) in p.features.iter().enumerate() {
                let mut counts = vec![0u64; N_BINS];
                for v in rows.iter().skip(j).step_by(d) {
                    counts[f.bin(*v)] += 1;
                }
                assert_eq!(f.counts, counts, "n {n}, column {j}");
            }
        }
    }

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
