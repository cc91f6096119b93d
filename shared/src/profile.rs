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
    ///
    /// Means and deviations are summed in row order. The edges are order statistics found by
    /// selection on each column's total-order keys (the values a full sort would put at those
    /// places, at a fraction of its cost), the counts by each value's bin.
    pub fn from_rows(feature_names: &[String], rows: &[f64]) -> Profile {
        let d = feature_names.len();
        let n = rows.len().checked_div(d).unwrap_or(0);
        let rows = &rows[..n * d];
        let mut sums = vec![0.0; d];
        for block in rows.chunks(BLOCK_ROWS * d.max(1)) {
            add_rows(&mut sums, block, |v, _| v);
        }
        let means: Vec<f64> = sums.iter().map(|s| s / n.max(1) as f64).collect();
        let mut squares = vec![0.0; d];
        for block in rows.chunks(BLOCK_ROWS * d.max(1)) {
            add_rows(&mut squares, block, |v, j| (v - means[j]) * (v - means[j]));
        }
        // The places of the sorted column the eleven quantiles read.
        let places: Vec<usize> = {
            let mut p: Vec<usize> = (0..=10)
                .flat_map(|q| {
                    let (lo, hi) = quantile_places(n, q as f64 / 10.0);
                    [lo, hi]
                })
                .collect();
            p.sort_unstable();
            p.dedup();
            p
        };
        let features = feature_names
            .iter()
            .zip(key_columns(rows, d))
            .enumerate()
            .map(|(j, (name, keys))| {
                let std = (squares[j] / n.max(1) as f64).sqrt();
                column(name, means[j], std, keys, &places)
            })
            .collect();
        Profile {
            n_rows: n,
            features,
        }
    }
}

/// The two places of a sorted column of `n` values the linear-interpolated quantile `q`
/// reads.
fn quantile_places(n: usize, q: f64) -> (usize, usize) {
    let pos = q * n.saturating_sub(1) as f64;
    (pos.floor() as usize, pos.ceil() as usize)
}

/// Puts at each of `places` (ascending, offsets into `keys` plus `offset`) the key a full
/// sort would put there: the middle place by selection, then each side for its own places.
/// Rows per call of [`add_rows`].
const BLOCK_ROWS: usize = 1024;

/// Adds `term(value, feature)` of each row of `block` to its feature's sum, row after row.
///
/// This and [`column`] are functions of their own, called once per block or column: V8 runs a
/// wasm function in its baseline tier until it is hot and switches at its next call, so a loop
/// inlined into [`Profile::from_rows`] (called once per run) ran at baseline speed in every
/// worker's first run (a cold profile took twice a warm one's time).
#[inline(never)]
fn add_rows(sums: &mut [f64], block: &[f64], term: impl Fn(f64, usize) -> f64) {
    for row in block.chunks_exact(sums.len().max(1)) {
        for (j, (s, v)) in sums.iter_mut().zip(row).enumerate() {
            *s += term(*v, j);
        }
    }
}

/// One feature's profile from its values' keys (in any order): the quantiles at `places` by
/// selection, then each value's bin.
#[inline(never)]
fn column(name: &str, mean: f64, std: f64, mut keys: Vec<u64>, places: &[usize]) -> FeatureProfile {
    let n = keys.len();
    select_places(&mut keys, 0, places);
    let at = |place: usize| value_of(keys[place]);
    let edges: Vec<f64> = (0..=10)
        .map(|q| {
            let q = q as f64 / 10.0;
            if n == 0 {
                return 0.0;
            }
            let (lo, hi) = quantile_places(n, q);
            let pos = q * (n - 1) as f64;
            at(lo) + (at(hi) - at(lo)) * (pos - lo as f64)
        })
        .collect();
    let mut fp = FeatureProfile {
        name: name.to_string(),
        mean,
        std,
        edges,
        counts: vec![0; N_BINS],
    };
    // Counts. After the selection every key before a selected place is at most its key and
    // every key after it at least (in total order), so the keys from one place up to the next
    // lie between those two places' keys; bins only grow with the value, so when both of
    // those keys fall in one bin, the whole stretch does. Only stretches across an edge (or
    // bounded by a NaN) are binned key by key.
    let mut from = 0;
    for &to in places.iter().filter(|p| **p > 0 && **p < n) {
        let (a, b) = (value_of(keys[from]), value_of(keys[to]));
        let bin = fp.bin(a);
        if !a.is_nan() && !b.is_nan() && bin == fp.bin(b) {
            fp.counts[bin] += (to - from) as u64;
        } else {
            for k in &keys[from..to] {
                let b = fp.bin(value_of(*k));
                fp.counts[b] += 1;
            }
        }
        from = to;
    }
    for k in &keys[from.min(n)..] {
        let b = fp.bin(value_of(*k));
        fp.counts[b] += 1;
    }
    fp
}

fn select_places(keys: &mut [u64], offset: usize, places: &[usize]) {
    if places.is_empty() || keys.is_empty() {
        return;
    }
    let mid = places.len() / 2;
    let at = places[mid] - offset;
    keys.select_nth_unstable(at);
    let (left, right) = keys.split_at_mut(at);
    select_places(left, offset, &places[..mid]);
    select_places(&mut right[1..], offset + at + 1, &places[mid + 1..]);
}

/// The value a [`key`] was made from.
fn value_of(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
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
        for block in rows.chunks(BLOCK_ROWS * d) {
            push_keys(&mut columns, block);
        }
    }
    columns
}

/// Appends each row of `block`'s keys to their columns (a function of its own: see
/// [`add_rows`]).
#[inline(never)]
fn push_keys(columns: &mut [Vec<u64>], block: &[f64]) {
    for row in block.chunks_exact(columns.len()) {
        for (col, v) in columns.iter_mut().zip(row) {
            col.push(key(*v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The edges are the quantiles of the fully sorted column (signed zeros, negatives,
    /// repeats, extremes), bit for bit; the counts are each value's bin; the mean is the
    /// row-order mean.
    #[test]
    fn counts_are_each_values_bin_with_nan_and_ties() {
        // Stretches of equal values across edges, and NaNs (sorted to both ends by sign),
        // where a stretch cannot be counted whole.
        let mut column: Vec<f64> = (0..400).map(|i| (i % 9) as f64).collect();
        column.extend([
            f64::NAN,
            -f64::NAN,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]);
        for (i, v) in column.iter_mut().enumerate().skip(100).step_by(37) {
            *v = if i % 2 == 0 { f64::NAN } else { -f64::NAN };
        }
        let p = Profile::from_rows(&["x".to_string()], &column);
        let f = &p.features[0];
        let mut counts = vec![0u64; N_BINS];
        for v in &column {
            counts[f.bin(*v)] += 1;
        }
        assert_eq!(f.counts, counts);
        let finite: Vec<f64> = (0..400).map(|i| (i % 9) as f64).collect();
        let f = &Profile::from_rows(&["x".to_string()], &finite).features[0];
        let mut counts = vec![0u64; N_BINS];
        for v in &finite {
            counts[f.bin(*v)] += 1;
        }
        assert_eq!(f.counts, counts);
    }

    #[test]
    fn selected_edges_are_the_sorted_columns_quantiles() {
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
            f64::MAX / 4.0,
            f64::MIN / 4.0,
            f64::MIN_POSITIVE,
            -1e-300,
        ];
        for n in [0, 1, 2, 5, 11, 255, 256, 3000] {
            let d = 3;
            let rows: Vec<f64> = (0..n * d)
                .map(|_| match next() % 4 {
                    0 => specials[(next() % 8) as usize],
                    1 => (next() % 7) as f64 - 3.0,
                    _ => (next() as f64 / (1u64 << 53) as f64 - 0.5) * 1e6,
                })
                .collect();
            let names: Vec<String> = (0..d).map(|j| format!("f{j}")).collect();
            let p = Profile::from_rows(&names, &rows);
            assert_eq!(p.n_rows, n);
            for (j, f) in p.features.iter().enumerate() {
                let column: Vec<f64> = rows.iter().skip(j).step_by(d).copied().collect();
                let mut sorted = column.clone();
                sorted.sort_by(f64::total_cmp);
                let quantile = |q: f64| {
                    if sorted.is_empty() {
                        return 0.0;
                    }
                    let pos = q * (sorted.len() - 1) as f64;
                    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
                };
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let expected: Vec<f64> = (0..=10).map(|q| quantile(q as f64 / 10.0)).collect();
                assert_eq!(bits(&f.edges), bits(&expected), "n {n}, column {j}");
                let mut counts = vec![0u64; N_BINS];
                for v in &column {
                    counts[f.bin(*v)] += 1;
                }
                assert_eq!(f.counts, counts, "n {n}, column {j}");
                let mut sum = 0.0;
                for v in &column {
                    sum += v;
                }
                assert_eq!(f.mean.to_bits(), (sum / n.max(1) as f64).to_bits());
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
