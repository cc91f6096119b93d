//! k-means as scikit-learn's `KMeans(algorithm="lloyd")` fits it, in the trainer instead of
//! linfa-clustering (issue 14: linfa's k-means computed one 20-element distance per row,
//! centroid and iteration through ndarray-stats, 29x scikit-learn's time in the tab).
//!
//! - Initialization: greedy k-means++ (scikit-learn's `_kmeans_plusplus`): the first centre is
//!   a row drawn uniformly, each further one the best of `2 + floor(ln k)` rows drawn with
//!   probability proportional to their squared distance to the nearest centre so far.
//! - Lloyd iterations. The first assignment computes distances for a block of rows at once
//!   through a matrix product, `||x||² - 2 x·c + ||c||²` (`x·c` by ndarray's `dot`), then the
//!   argmin per row. Later ones keep Hamerly's bounds (per row, an upper bound on the
//!   distance to its centre and a lower bound on the distance to every other one): a row
//!   whose upper bound is below its lower bound, or below half the gap from its centre to the
//!   nearest other centre, cannot change centre and costs no distance; only the others
//!   compute distances. Each step assigns every row the centre a full Lloyd step would (up to
//!   exact ties). New centres are the means of their rows: each cluster's sum is kept, a row
//!   that changes centre moves its values from one sum to the other (in row order); the
//!   inertia comes from those sums (`sum ||x||² - 2 c·sum x + n ||c||²`). An empty cluster is
//!   moved to the row farthest from its centre, as scikit-learn does.
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
    let runs: Vec<usize> = (0..n_init.max(1)).collect();
    best(fit_runs(x, k, max_iterations, &runs, seed)?, runs.len())
}

/// Runs `runs` (each an index below `n_init`) of [`fit`], each on its own: run `r` draws from
/// the seeded generator jumped `r` times (2^128 draws apart), so runs can be spread over
/// several workers and [`best`] picks the same winner whatever the spread.
pub fn fit_runs(
    x: ArrayView2<f64>,
    k: usize,
    max_iterations: u64,
    runs: &[usize],
    seed: u64,
) -> Result<Vec<(usize, KMeansFit)>, String> {
    let (n, d) = x.dim();
    if n < k {
        return Err(format!(
            "k-means: {k} clusters need at least {k} rows, got {n}"
        ));
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
    let x = x.as_standard_layout();
    let x = x.view();
    let mut scratch = Scratch::new(n, k, d);
    let mut out = Vec::with_capacity(runs.len());
    for &run in runs {
        let mut rng = Xoshiro256Plus::seed_from_u64(seed);
        for _ in 0..run {
            rng.jump();
        }
        let init = plus_plus(x, &x_sq, k, &mut rng);
        out.push((
            run,
            lloyd(x, &x_sq, init, max_iterations, tol, &mut scratch),
        ));
    }
    Ok(out)
}

/// The winner of `n_init` runs gathered from [`fit_runs`] in any order and grouping: the least
/// inertia, the lowest run on a tie. Every run `0..n_init` must be there, once.
pub fn best(mut runs: Vec<(usize, KMeansFit)>, n_init: usize) -> Result<KMeansFit, String> {
    runs.sort_by_key(|(run, _)| *run);
    if runs.len() != n_init || runs.iter().enumerate().any(|(i, (run, _))| i != *run) {
        return Err(format!(
            "k-means: expected runs 0 to {} once each, got {:?}",
            n_init.saturating_sub(1),
            runs.iter().map(|(run, _)| *run).collect::<Vec<_>>()
        ));
    }
    let mut best: Option<KMeansFit> = None;
    for (_, run) in runs {
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.ok_or_else(|| "k-means: no run".to_string())
}

/// Runs `0..n_init` in `workers` contiguous groups as even as possible (no empty group; fewer
/// groups when there are fewer runs than workers).
pub fn shards(n_init: usize, workers: usize) -> Vec<Vec<usize>> {
    let groups = workers.clamp(1, n_init.max(1));
    (0..groups)
        .map(|g| (g * n_init / groups..(g + 1) * n_init / groups).collect())
        .collect()
}

impl KMeansFit {
    /// A fit from its centres as rows (as the dashboard's workers send it), checked for shape.
    pub fn from_rows(
        centroids: Vec<Vec<f64>>,
        inertia: f64,
        curve: Vec<(u64, f64)>,
    ) -> Result<KMeansFit, String> {
        let (k, d) = (centroids.len(), centroids.first().map_or(0, Vec::len));
        if k == 0 || centroids.iter().any(|c| c.len() != d) {
            return Err("centres of unequal lengths, or none".into());
        }
        let centroids =
            Array2::from_shape_vec((k, d), centroids.concat()).map_err(|e| e.to_string())?;
        Ok(KMeansFit {
            centroids,
            inertia,
            curve,
        })
    }
}

/// Buffers reused by every iteration.
struct Scratch {
    labels: Vec<usize>,
    min_dist: Vec<f64>,
    /// Per row: a lower bound on the distance (not squared) to every centre but its own, and
    /// an upper bound on the distance to its own.
    lower: Vec<f64>,
    upper: Vec<f64>,
    /// Per cluster: the sum of its rows' squared norms (for the inertia).
    sum_sq: Vec<f64>,
    block: Array2<f64>,
    /// Per cluster: the sum of its rows (`k * d`, row-major) and their number.
    sums: Vec<f64>,
    counts: Vec<usize>,
}

impl Scratch {
    fn new(n: usize, k: usize, d: usize) -> Self {
        Scratch {
            labels: vec![0; n],
            min_dist: vec![0.0; n],
            lower: vec![0.0; n],
            upper: vec![0.0; n],
            sum_sq: vec![0.0; k],
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
    let n = x.nrows();
    let rows_flat = x.as_slice().expect("standard layout");
    let c_sq: Vec<f64> = centroids.rows().into_iter().map(|c| c.dot(&c)).collect();
    let ct = centroids.t();
    s.sums.fill(0.0);
    s.sum_sq.fill(0.0);
    s.counts.fill(0);
    let mut inertia = 0.0;
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let rows = end - start;
        let mut block = std::mem::take(&mut s.block);
        let mut out = block.slice_mut(s![..rows, ..]);
        ndarray::linalg::general_mat_mul(1.0, &x.slice(s![start..end, ..]), &ct, 0.0, &mut out);
        inertia = assign_rows(
            inertia,
            start,
            out.view(),
            rows_flat,
            x_sq,
            &c_sq,
            labels,
            s,
        );
        s.block = block;
        start = end;
    }
    inertia
}

/// The rows of [`assign`] from `start`, given their products with every centre: each row's
/// label, squared distance and bounds, its cluster's sums, and `inertia` plus its distances
/// in row order. A function of its own (see [`distances_to_row`]).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn assign_rows(
    mut inertia: f64,
    start: usize,
    products: ArrayView2<f64>,
    rows_flat: &[f64],
    x_sq: &[f64],
    c_sq: &[f64],
    labels: &mut [usize],
    s: &mut Scratch,
) -> f64 {
    let d = s.sums.len() / c_sq.len().max(1);
    for (r, products) in products.rows().into_iter().enumerate() {
        let i = start + r;
        let (best, best_d, second_d) =
            nearest_two(products.iter().zip(c_sq).map(|(p, c)| c - 2.0 * p));
        let dist = (best_d + x_sq[i]).max(0.0);
        labels[i] = best;
        s.min_dist[i] = dist;
        // Shaved a little: the expanded form rounds, and a bound must not overshoot.
        s.lower[i] = (second_d + x_sq[i]).max(0.0).sqrt() * (1.0 - 1e-9);
        s.upper[i] = dist.sqrt() * (1.0 + 1e-9);
        inertia += dist;
        let sum = &mut s.sums[best * d..(best + 1) * d];
        for (a, v) in sum.iter_mut().zip(&rows_flat[i * d..(i + 1) * d]) {
            *a += v;
        }
        s.counts[best] += 1;
        s.sum_sq[best] += x_sq[i];
    }
    inertia
}

/// The nearest of `distances` (lowest index on a tie), its distance and the second-smallest
/// distance (infinite with fewer than two).
#[inline(always)]
fn nearest_two(distances: impl Iterator<Item = f64>) -> (usize, f64, f64) {
    let (mut best, mut best_d, mut second_d) = (0, f64::INFINITY, f64::INFINITY);
    for (c, dist) in distances.enumerate() {
        if dist < best_d {
            second_d = best_d;
            best_d = dist;
            best = c;
        } else if dist < second_d {
            second_d = dist;
        }
    }
    (best, best_d, second_d)
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
    let mut inertia = assign(x, x_sq, &centroids, &mut labels, s);
    let mut curve = Vec::new();
    for iteration in 1..=max_iterations {
        // Empty clusters take the rows farthest from their centres (scikit-learn's
        // relocation), the farthest first, lowest index on a tie.
        let empty: Vec<usize> = (0..k).filter(|c| s.counts[*c] == 0).collect();
        if !empty.is_empty() {
            // Each row's squared distance to its centre (the passes keep only bounds).
            for (i, row) in rows_flat.chunks_exact(d).enumerate() {
                s.min_dist[i] = squared_distance(
                    row,
                    centroids
                        .row(labels[i])
                        .as_slice()
                        .expect("standard layout"),
                );
            }
            let mut far: Vec<usize> = (0..n).collect();
            far.sort_by(|a, b| s.min_dist[*b].total_cmp(&s.min_dist[*a]).then(a.cmp(b)));
            // Rows that are their cluster's last are left where they are.
            let mut candidates = far.into_iter();
            for &c in &empty {
                let Some(i) = candidates.find(|i| s.counts[labels[*i]] > 1) else {
                    break;
                };
                let row = &rows_flat[i * d..(i + 1) * d];
                let from = labels[i];
                for (a, v) in s.sums[from * d..(from + 1) * d].iter_mut().zip(row) {
                    *a -= v;
                }
                s.sum_sq[from] -= x_sq[i];
                s.counts[from] -= 1;
                s.sums[c * d..(c + 1) * d].copy_from_slice(row);
                s.sum_sq[c] = x_sq[i];
                s.counts[c] = 1;
                labels[i] = c;
                // Its bounds were for `from`: recompute its distances next pass.
                s.lower[i] = 0.0;
                s.upper[i] = f64::INFINITY;
            }
        }
        // Update: each centre moves to the mean of its rows; `moved[c]` is how far.
        let mut shift = 0.0;
        let mut moved = vec![0.0f64; k];
        for c in 0..k {
            let inv = 1.0 / s.counts[c].max(1) as f64;
            let mut m = 0.0;
            for j in 0..d {
                let new = s.sums[c * d + j] * inv;
                let delta = new - centroids[(c, j)];
                m += delta * delta;
                centroids[(c, j)] = new;
            }
            shift += m;
            moved[c] = m.sqrt();
        }
        let changed = reassign(rows_flat, x_sq, &centroids, &moved, &mut labels, s);
        // sum over clusters of sum_i ||x_i||² - 2 c·sum_i x_i + n_c ||c||².
        inertia = 0.0;
        for c in 0..k {
            let centre = centroids.row(c);
            let sums = &s.sums[c * d..(c + 1) * d];
            let (mut cross, mut norm) = (0.0, 0.0);
            for (v, t) in centre.iter().zip(sums) {
                cross += v * t;
                norm += v * v;
            }
            inertia += s.sum_sq[c] - 2.0 * cross + s.counts[c] as f64 * norm;
        }
        inertia = inertia.max(0.0);
        curve.push((iteration, inertia / n as f64));
        if changed == 0 || shift <= tol {
            break;
        }
    }
    s.labels = labels;
    KMeansFit {
        centroids,
        inertia: inertia / n as f64,
        curve,
    }
}

/// `||a - b||²` in four running sums (feature `j` into sum `j % 4`), added as
/// `(s0 + s1) + (s2 + s3)`, then the last `d % 4` features left to right: four independent
/// chains instead of one (the fit's distances are 2-3x faster, natively and in wasm, where
/// the adds can also pair up in SIMD). The order is fixed, so every target gets the same bits.
/// Only the fit uses it; [`predict`] keeps the modules' left-to-right sum.
fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let (a_rest, b_rest) = (a4.remainder(), b4.remainder());
    for (u, v) in a4.zip(b4) {
        for l in 0..4 {
            let t = u[l] - v[l];
            acc[l] += t * t;
        }
    }
    let mut sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (u, v) in a_rest.iter().zip(b_rest) {
        let t = u - v;
        sum += t * t;
    }
    sum
}

/// The assignment step of a Lloyd iteration with Hamerly's bounds (2010): after the centres
/// moved by `moved`, each row's upper bound on the distance to its centre grows by how far
/// that centre moved, and its lower bound on the distance to every other centre shrinks by the
/// most any other centre moved. A row whose upper bound is at most the larger of its lower
/// bound and half the distance from its centre to the nearest other centre cannot change
/// centre and costs no distance. Otherwise its distance to its centre is computed; if that
/// still exceeds the bound, all its distances are (lowest index on a tie), which gives the row
/// the same centre as a full Lloyd step would. A row that changes centre moves its values
/// from one cluster's sums (and squared norms) to the other's; returns how many rows changed.
#[inline(never)]
fn reassign(
    x: &[f64],
    x_sq: &[f64],
    centroids: &Array2<f64>,
    moved: &[f64],
    labels: &mut [usize],
    s: &mut Scratch,
) -> usize {
    let (k, d) = centroids.dim();
    let c = centroids.as_slice().expect("standard layout");
    let centre = |j: usize| &c[j * d..(j + 1) * d];
    // The largest and second-largest move, to lower each row's bound by the most any centre
    // but its own moved.
    let (mut top, mut top_at, mut runner_up) = (0.0f64, 0usize, 0.0f64);
    for (j, m) in moved.iter().enumerate() {
        if *m > top {
            runner_up = top;
            top = *m;
            top_at = j;
        } else if *m > runner_up {
            runner_up = *m;
        }
    }
    let half_gap: Vec<f64> = (0..k)
        .map(|a| {
            (0..k)
                .filter(|b| *b != a)
                .map(|b| squared_distance(centre(a), centre(b)))
                .fold(f64::INFINITY, f64::min)
                .sqrt()
                * 0.5
        })
        .collect();
    let mut changed = 0;
    for (i, row) in x.chunks_exact(d).enumerate() {
        let a = labels[i];
        s.lower[i] -= if a == top_at { runner_up } else { top };
        s.upper[i] += moved[a];
        let bound = s.lower[i].max(half_gap[a]);
        if s.upper[i] > bound {
            s.upper[i] = squared_distance(row, centre(a)).sqrt();
            if s.upper[i] > bound {
                let (best, best_d, second_d) =
                    nearest_two((0..k).map(|j| squared_distance(row, centre(j))));
                s.lower[i] = second_d.sqrt();
                s.upper[i] = best_d.sqrt();
                if best != a {
                    // The row moves: out of its old cluster's sums, into the new one's.
                    for (t, v) in s.sums[a * d..(a + 1) * d].iter_mut().zip(row) {
                        *t -= v;
                    }
                    for (t, v) in s.sums[best * d..(best + 1) * d].iter_mut().zip(row) {
                        *t += v;
                    }
                    s.sum_sq[a] -= x_sq[i];
                    s.sum_sq[best] += x_sq[i];
                    s.counts[a] -= 1;
                    s.counts[best] += 1;
                    changed += 1;
                    labels[i] = best;
                }
            }
        }
    }
    changed
}

/// Greedy k-means++ (scikit-learn's): `2 + floor(ln k)` candidates per centre, the one that
/// lowers the total squared distance most is kept.
/// Each row's squared distance to row `i`, written to `out`. A function of its own, like the
/// other loops of a run ([`nearer`], [`assign_rows`], [`reassign`]): V8 runs a wasm function
/// in its baseline tier until it is hot and switches at the next call, so a loop inlined into
/// a function called once per run (`fit_runs`) ran its whole first run at baseline speed
/// (3x slower).
#[inline(never)]
fn distances_to_row(x: ArrayView2<f64>, x_sq: &[f64], i: usize, out: &mut Vec<f64>) {
    let c = x.row(i);
    let products = x.dot(&c);
    out.clear();
    out.extend(
        products
            .iter()
            .zip(x_sq)
            .map(|(p, xs)| (xs - 2.0 * p + x_sq[i]).max(0.0)),
    );
}

/// Lowers each of `candidate`'s distances to `closest`'s where that is nearer; returns their
/// sum, in row order.
#[inline(never)]
fn nearer(candidate: &mut [f64], closest: &[f64]) -> f64 {
    let mut total = 0.0;
    for (cand, old) in candidate.iter_mut().zip(closest) {
        *cand = cand.min(*old);
        total += *cand;
    }
    total
}

fn plus_plus(x: ArrayView2<f64>, x_sq: &[f64], k: usize, rng: &mut Xoshiro256Plus) -> Array2<f64> {
    let (n, d) = x.dim();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centroids = Array2::<f64>::zeros((k, d));
    let first = rng.gen_range(0..n);
    centroids.row_mut(0).assign(&x.row(first));
    let distances_to = |i: usize, out: &mut Vec<f64>| distances_to_row(x, x_sq, i, out);
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
            let total = nearer(&mut candidate, &closest);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept sums (moved row by row, and by the relocation of empty clusters) give the
    /// same inertia as distances computed from scratch.
    /// The same winner, bit for bit, whatever the number of workers the runs are spread over
    /// and the order their results come back in.
    #[test]
    fn the_four_sum_distance_is_the_squared_distance() {
        // Every length up to 11 (the last `d % 4` features after the four sums), exact
        // where every partial sum is exact (small integers), within rounding elsewhere.
        for d in 0..12 {
            let a: Vec<f64> = (0..d).map(|j| j as f64).collect();
            let b: Vec<f64> = (0..d).map(|j| (j * j % 5) as f64).collect();
            let plain: f64 = a.iter().zip(&b).map(|(u, v)| (u - v) * (u - v)).sum();
            assert_eq!(squared_distance(&a, &b), plain, "d = {d}");
            assert_eq!(squared_distance(&a, &a), 0.0);
            let c: Vec<f64> = a.iter().map(|v| v * 0.1 + 1e-3).collect();
            let plain: f64 = c.iter().zip(&b).map(|(u, v)| (u - v) * (u - v)).sum();
            let four = squared_distance(&c, &b);
            assert!(
                (four - plain).abs() <= 4.0 * f64::EPSILON * plain,
                "d = {d}"
            );
        }
    }

    #[test]
    fn runs_spread_over_workers_give_the_same_fit() {
        let data = crate::datasets::synthetic(3000, 5, 9);
        let x = Array2::from_shape_vec((data.n_rows(), 5), data.x.clone()).unwrap();
        let whole = fit(x.view(), 4, 100, 10, 3).unwrap();
        for workers in 1..=12 {
            let groups = shards(10, workers);
            assert_eq!(groups.len(), workers.min(10));
            let mut all: Vec<usize> = groups.concat();
            all.sort();
            assert_eq!(all, (0..10).collect::<Vec<_>>(), "{workers} workers");
            // Results arrive in reverse order.
            let mut runs = Vec::new();
            for g in groups.iter().rev() {
                runs.extend(fit_runs(x.view(), 4, 100, g, 3).unwrap());
            }
            let merged = best(runs, 10).unwrap();
            assert_eq!(merged, whole, "{workers} workers");
        }
        // The runs differ (else the test shows nothing), and a missing or repeated run is an
        // error, not a different model.
        let runs = fit_runs(x.view(), 4, 100, &[0, 1, 2], 3).unwrap();
        assert!(
            runs[0].1.centroids != runs[1].1.centroids
                || runs[1].1.centroids != runs[2].1.centroids
        );
        assert!(best(runs.clone(), 10).is_err());
        let mut twice = runs.clone();
        twice.push(runs[0].clone());
        assert!(best(twice, 4).is_err());
    }

    #[test]
    fn inertia_from_the_kept_sums_is_the_true_inertia() {
        // Repeated rows make k-means++ draw the same row twice (every distance is 0), so a
        // cluster starts empty and is relocated.
        let mut rows = vec![0.0, 0.0, 0.0, 0.0, 10.0, 10.0, 3.0, 3.5];
        let mut state = 7u64;
        for _ in 0..200 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            rows.push((state >> 11) as f64 / (1u64 << 53) as f64 * 20.0);
        }
        let x = Array2::from_shape_vec((rows.len() / 2, 2), rows).unwrap();
        for seed in 0..30 {
            let fit = fit(x.view(), 4, 50, 2, seed).unwrap();
            let labels = predict(&fit.centroids, x.view());
            let truth: f64 = x
                .rows()
                .into_iter()
                .zip(&labels)
                .map(|(r, c)| {
                    let centre = fit.centroids.row(*c);
                    r.iter()
                        .zip(centre)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                })
                .sum::<f64>()
                / x.nrows() as f64;
            assert!(
                (fit.inertia - truth).abs() <= 1e-9 * truth.max(1.0),
                "seed {seed}: {} against {truth}",
                fit.inertia
            );
            assert_eq!(fit.curve.last().unwrap().1, fit.inertia);
        }
        // Only identical rows: no distance anywhere, still a fit.
        let same = Array2::from_elem((6, 3), 1.5);
        let fit = fit(same.view(), 2, 10, 1, 3).unwrap();
        assert_eq!(fit.inertia, 0.0);
    }
}
