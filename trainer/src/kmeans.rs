//! k-means as scikit-learn's `KMeans(algorithm="lloyd")` fits it, in the trainer instead of
//! linfa-clustering (issue 14: linfa's k-means computed one 20-element distance per row,
//! centroid and iteration through ndarray-stats, 29x scikit-learn's time in the tab).
//!
//! - Initialization: greedy k-means++ (scikit-learn's `_kmeans_plusplus`): the first centre is
//!   a row drawn uniformly, each further one the best of `2 + floor(ln k)` rows drawn with
//!   probability proportional to their squared distance to the nearest centre so far.
//! - Lloyd iterations: distances for a block of rows at once through a matrix product,
//!   `||x||² - 2 x·c + ||c||²` (`x·c` by ndarray's `dot`), then the argmin per row; new
//!   centres are the means of their rows (summed in row order). An empty cluster is moved to
//!   the row farthest from its centre, as scikit-learn does.
//! - Stopping: when no label changes, or when the centres moved by at most `tol` in total
//!   squared distance, with scikit-learn's `tol = 1e-4 * mean(variance of each feature)`
//!   (linfa stopped at an absolute 1e-4, which on unscaled data kept every run going to the
//!   iteration limit).
//! - `n_init` runs from one seeded generator; the run with the least inertia wins (the first
//!   on a tie). Everything is sequential in a fixed order, so the same data and seed give the
//!   same centres, bit for bit.
//!
//! The fit records its own curve: the inertia (per training row, as linfa reported it) after
//! every iteration of the winning run, so the last step is the fitted model.

use ndarray::{s, Array2, ArrayView2, Axis};
use rand::Rng;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

/// Rows per block of the distance computation.
const BLOCK: usize = 1024;

/// A fitted k-means model.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansFit {
    /// `k` rows of `d` values.
    pub centroids: Array2<f64>,
    /// Sum of squared distances of the training rows to their centres, divided by the number
    /// of rows.
    pub inertia: f64,
    /// `(iteration, inertia per row)` after each Lloyd iteration of the winning run.
    pub curve: Vec<(u64, f64)>,
}

/// Fits `k` clusters to the rows of `x`: `n_init` seeded runs of at most `max_iterations`
/// Lloyd iterations each. Needs at least `k` rows.
pub fn fit(
    x: ArrayView2<f64>,
    k: usize,
    max_iterations: u64,
    n_init: usize,
    seed: u64,
) -> Result<KMeansFit, String> {
    let (n, d) = x.dim();
    if n < k {
        return Err(format!("k-means: {k} clusters need at least {k} rows, got {n}"));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err("k-means: the data holds a value that is not a finite number".into());
    }
    let x_sq: Vec<f64> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
    // scikit-learn's tolerance: relative to the data's mean per-feature variance.
    let tol = 1e-4 * {
        let mean = x.sum_axis(Axis(0)) / n as f64;
        let var: f64 = x
            .rows()
            .into_iter()
            .map(|r| {
                r.iter()
                    .zip(&mean)
                    .map(|(v, m)| (v - m) * (v - m))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / n as f64;
        var / d.max(1) as f64
    };
    let mut rng = Xoshiro256Plus::seed_from_u64(seed);
    let x = x.as_standard_layout();
    let x = x.view();
    let mut scratch = Scratch::new(n, k, d);
    let mut best: Option<KMeansFit> = None;
    for _ in 0..n_init.max(1) {
        let init = plus_plus(x, &x_sq, k, &mut rng);
        let run = lloyd(x, &x_sq, init, max_iterations, tol, &mut scratch);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    Ok(best.expect("at least one run"))
}

/// Buffers reused by every iteration.
struct Scratch {
    labels: Vec<usize>,
    new_labels: Vec<usize>,
    min_dist: Vec<f64>,
    block: Array2<f64>,
    /// Per cluster: the sum of its rows (`k * d`, row-major) and their number.
    sums: Vec<f64>,
    counts: Vec<usize>,
}

impl Scratch {
    fn new(n: usize, k: usize, d: usize) -> Self {
        Scratch {
            labels: vec![0; n],
            new_labels: vec![0; n],
            min_dist: vec![0.0; n],
            block: Array2::zeros((BLOCK.min(n), k)),
            sums: vec![0.0; k * d],
            counts: vec![0; k],
        }
    }
}

/// One pass over the rows: assigns every row to its nearest centre (lowest index on a tie),
/// writing its label and squared distance (clamped at 0: the expanded form can round below
/// it), and sums each cluster's rows (in row order) for the next centres. Returns the inertia.
fn assign(
    x: ArrayView2<f64>,
    x_sq: &[f64],
    centroids: &Array2<f64>,
    labels: &mut [usize],
    s: &mut Scratch,
) -> f64 {
    let (n, d) = x.dim();
    let rows_flat = x.as_slice().expect("standard layout");
    let c_sq: Vec<f64> = centroids.rows().into_iter().map(|c| c.dot(&c)).collect();
    let ct = centroids.t();
    s.sums.fill(0.0);
    s.counts.fill(0);
    let mut inertia = 0.0;
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let rows = end - start;
        let mut out = s.block.slice_mut(s![..rows, ..]);
        ndarray::linalg::general_mat_mul(1.0, &x.slice(s![start..end, ..]), &ct, 0.0, &mut out);
        for (r, products) in out.rows().into_iter().enumerate() {
            let i = start + r;
            let (mut best, mut best_d) = (0, f64::INFINITY);
            for (c, p) in products.iter().enumerate() {
                let dist = c_sq[c] - 2.0 * p;
                if dist < best_d {
                    best_d = dist;
                    best = c;
                }
            }
            let dist = (best_d + x_sq[i]).max(0.0);
            labels[i] = best;
            s.min_dist[i] = dist;
            inertia += dist;
            let sum = &mut s.sums[best * d..(best + 1) * d];
            for (a, v) in sum.iter_mut().zip(&rows_flat[i * d..(i + 1) * d]) {
                *a += v;
            }
            s.counts[best] += 1;
        }
        start = end;
    }
    inertia
}

/// One run of Lloyd's algorithm from `centroids`.
fn lloyd(
    x: ArrayView2<f64>,
    x_sq: &[f64],
    mut centroids: Array2<f64>,
    max_iterations: u64,
    tol: f64,
    s: &mut Scratch,
) -> KMeansFit {
    let (n, d) = x.dim();
    let k = centroids.nrows();
    let rows_flat = x.as_slice().expect("standard layout");
    let mut labels = std::mem::take(&mut s.labels);
    let mut new_labels = std::mem::take(&mut s.new_labels);
    let mut inertia = assign(x, x_sq, &centroids, &mut labels, s);
    let mut curve = Vec::new();
    for iteration in 1..=max_iterations {
        // Empty clusters take the rows farthest from their centres (scikit-learn's
        // relocation), the farthest first, lowest index on a tie.
        let empty: Vec<usize> = (0..k).filter(|c| s.counts[*c] == 0).collect();
        if !empty.is_empty() {
            let mut far: Vec<usize> = (0..n).collect();
            far.sort_by(|a, b| s.min_dist[*b].total_cmp(&s.min_dist[*a]).then(a.cmp(b)));
            for (c, &i) in empty.iter().zip(&far) {
                let row = &rows_flat[i * d..(i + 1) * d];
                let from = labels[i];
                if s.counts[from] > 1 {
                    for (a, v) in s.sums[from * d..(from + 1) * d].iter_mut().zip(row) {
                        *a -= v;
                    }
                    s.counts[from] -= 1;
                }
                s.sums[c * d..(c + 1) * d].copy_from_slice(row);
                s.counts[*c] = 1;
                labels[i] = *c;
            }
        }
        // Update: each centre moves to the mean of its rows.
        let mut shift = 0.0;
        for c in 0..k {
            let inv = 1.0 / s.counts[c].max(1) as f64;
            for j in 0..d {
                let new = s.sums[c * d + j] * inv;
                let delta = new - centroids[(c, j)];
                shift += delta * delta;
                centroids[(c, j)] = new;
            }
        }
        inertia = assign(x, x_sq, &centroids, &mut new_labels, s);
        curve.push((iteration, inertia / n as f64));
        let unchanged = new_labels == labels;
        std::mem::swap(&mut labels, &mut new_labels);
        if unchanged || shift <= tol {
            break;
        }
    }
    s.labels = labels;
    s.new_labels = new_labels;
    KMeansFit {
        centroids,
        inertia: inertia / n as f64,
        curve,
    }
}

/// Greedy k-means++ (scikit-learn's): `2 + floor(ln k)` candidates per centre, the one that
/// lowers the total squared distance most is kept.
fn plus_plus(
    x: ArrayView2<f64>,
    x_sq: &[f64],
    k: usize,
    rng: &mut Xoshiro256Plus,
) -> Array2<f64> {
    let (n, d) = x.dim();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centroids = Array2::<f64>::zeros((k, d));
    let first = rng.gen_range(0..n);
    centroids.row_mut(0).assign(&x.row(first));
    let distances_to = |i: usize, out: &mut Vec<f64>| {
        let c = x.row(i);
        let products = x.dot(&c);
        out.clear();
        out.extend(
            products
                .iter()
                .zip(x_sq)
                .map(|(p, xs)| (xs - 2.0 * p + x_sq[i]).max(0.0)),
        );
    };
    let mut closest = Vec::with_capacity(n);
    distances_to(first, &mut closest);
    let mut candidate = Vec::with_capacity(n);
    let mut best_dist = Vec::with_capacity(n);
    let mut cumulative = vec![0.0; n];
    for c in 1..k {
        let mut acc = 0.0;
        for (cum, v) in cumulative.iter_mut().zip(&closest) {
            acc += v;
            *cum = acc;
        }
        let mut best: Option<(usize, f64)> = None;
        for _ in 0..trials {
            // A row drawn with probability proportional to its distance (uniform when every
            // row sits on a centre).
            let i = if acc > 0.0 {
                let r = rng.gen::<f64>() * acc;
                cumulative.partition_point(|v| *v <= r).min(n - 1)
            } else {
                rng.gen_range(0..n)
            };
            distances_to(i, &mut candidate);
            let mut total = 0.0;
            for (cand, old) in candidate.iter_mut().zip(&closest) {
                *cand = cand.min(*old);
                total += *cand;
            }
            if best.is_none_or(|(_, p)| total < p) {
                best = Some((i, total));
                std::mem::swap(&mut best_dist, &mut candidate);
            }
        }
        let (i, _) = best.expect("at least two trials");
        centroids.row_mut(c).assign(&x.row(i));
        std::mem::swap(&mut closest, &mut best_dist);
    }
    centroids
}

/// The nearest centre of each row by the plain squared distance, as modules compute it (lowest
/// index on a tie).
pub fn predict(centroids: &Array2<f64>, x: ArrayView2<f64>) -> Vec<usize> {
    x.rows()
        .into_iter()
        .map(|row| {
            let (mut best, mut min) = (0, 0.0);
            for (c, centroid) in centroids.rows().into_iter().enumerate() {
                let mut dist = 0.0;
                for j in 0..row.len() {
                    let t = row[j] - centroid[j];
                    dist += t * t;
                }
                if c == 0 || dist < min {
                    min = dist;
                    best = c;
                }
            }
            best
        })
        .collect()
}
