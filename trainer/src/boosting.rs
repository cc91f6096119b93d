//! Histogram gradient boosting, as scikit-learn's `HistGradientBoostingClassifier` and
//! `HistGradientBoostingRegressor` (issue 14): the same parameters, defaults and rules.
//!
//! - **Losses.** Regression: half squared error (gradient `raw - y`, hessian 1). Two classes:
//!   binomial log loss on one raw score (`p = 1 / (1 + e^-raw)`, gradient `p - y`, hessian
//!   `p (1 - p)`); more: multinomial log loss, one raw score and one tree per class and
//!   iteration, all of an iteration's trees fitted to the gradients at its start. The baseline
//!   (the raw score before any tree) is the mean target, the log-odds of the positive class,
//!   or the class log-priors minus their mean.
//! - **Trees.** The training rows are binned once ([`crate::tree::Binned`]: at most 255 bins
//!   per feature, each distinct value its own bin when they fit). A node's histogram holds,
//!   per feature and bin, the sums of gradients and hessians and the row count; the smaller
//!   child's is built from its rows and the larger one's is its parent's minus it (the
//!   subtraction trick). Trees grow leaf-wise: the leaf whose best split gains most is split
//!   next (the earlier one on a tie) until `max_leaf_nodes` leaves; a node is not split below
//!   `2 * min_samples_leaf` rows, at `max_depth`, or when no split gains (scikit-learn's
//!   gain `G_L²/(H_L+λ) + G_R²/(H_R+λ) - G²/(H+λ)`, each side at least `min_samples_leaf`
//!   rows and a hessian sum of 1e-3). Leaves hold `-G / (H + λ) * learning_rate`. Thresholds
//!   are midpoints between real training values, `x < threshold` going left, as in modules.
//! - **Early stopping** as scikit-learn's with `scoring='loss'`: `validation_fraction` of the
//!   training rows (stratified for classifiers, seeded) are held out; the fit stops when none
//!   of the last `n_iter_no_change` iterations lowered the validation loss by more than `tol`
//!   below the loss `n_iter_no_change + 1` iterations back, and keeps every iteration fitted.
//!   `auto` (the default) turns it on above 10,000 training rows, as scikit-learn does.
//! - **Curves**: the loss of the training rows, the validation rows (with early stopping) and
//!   the run's held-out rows after every iteration (step 0: the baseline alone).
//!
//! Every sum runs in row order with plain IEEE operations and exp/log come from `libm`, so
//! the same data and seed give the same trees on wasm32 and natively. Raw scores are summed
//! tree by tree in iteration order, exactly as the module and `reference.rs` sum them.

use std::cell::RefCell;
use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};
use wasmops_shared::pipeline::{Tree, TreeNode};

use crate::logistic::LogProduct;
use crate::tree::Binned;

/// scikit-learn's `min_hessian_to_split`.
const MIN_HESSIAN_TO_SPLIT: f64 = 1e-3;
/// Above this many training rows `early_stopping: auto` turns early stopping on.
pub const AUTO_EARLY_STOPPING_ROWS: usize = 10_000;

/// The hyperparameters, named and defaulted as scikit-learn's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Shrinkage applied to every leaf value.
    pub learning_rate: f64,
    /// Boosting iterations (trees per class for more than two classes).
    pub max_iter: usize,
    /// Leaves per tree (`None`: unlimited).
    pub max_leaf_nodes: Option<usize>,
    /// Splits from the root to the deepest leaf (`None`: unlimited).
    pub max_depth: Option<usize>,
    pub min_samples_leaf: usize,
    /// L2 penalty on leaf values (`λ`).
    pub l2_regularization: f64,
    pub early_stopping: EarlyStopping,
    pub validation_fraction: f64,
    pub n_iter_no_change: usize,
    pub tol: f64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            learning_rate: 0.1,
            max_iter: 100,
            max_leaf_nodes: Some(31),
            max_depth: None,
            min_samples_leaf: 20,
            l2_regularization: 0.0,
            early_stopping: EarlyStopping::Auto,
            validation_fraction: 0.1,
            n_iter_no_change: 10,
            tol: 1e-7,
        }
    }
}

impl Params {
    /// Checks every field, naming it.
    pub fn validate(&self) -> Result<(), String> {
        let finite = |v: f64| v.is_finite();
        if !(finite(self.learning_rate) && self.learning_rate > 0.0) {
            return Err(format!(
                "learning_rate: must be a number > 0, got {}",
                self.learning_rate
            ));
        }
        if self.max_iter == 0 || self.max_iter > 10_000 {
            return Err(format!(
                "max_iter: must be between 1 and 10000, got {}",
                self.max_iter
            ));
        }
        if let Some(m) = self.max_leaf_nodes {
            if m < 2 {
                return Err(format!(
                    "max_leaf_nodes: must be at least 2 (or none: unlimited), got {m}"
                ));
            }
        }
        if self.max_depth == Some(0) {
            return Err("max_depth: must be at least 1 (or none: unlimited)".into());
        }
        if self.min_samples_leaf == 0 {
            return Err("min_samples_leaf: must be at least 1".into());
        }
        if !(finite(self.l2_regularization) && self.l2_regularization >= 0.0) {
            return Err(format!(
                "l2_regularization: must be a number >= 0, got {}",
                self.l2_regularization
            ));
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return Err(format!(
                "validation_fraction: must be in (0, 1), got {}",
                self.validation_fraction
            ));
        }
        if self.n_iter_no_change == 0 {
            return Err("n_iter_no_change: must be at least 1".into());
        }
        if !(finite(self.tol) && self.tol >= 0.0) {
            return Err(format!("tol: must be a number >= 0, got {}", self.tol));
        }
        Ok(())
    }
}

/// scikit-learn's `early_stopping`: `"auto"`, `true` or `false` (the same JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopping {
    /// On above [`AUTO_EARLY_STOPPING_ROWS`] training rows.
    Auto,
    On,
    Off,
}

impl Serialize for EarlyStopping {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EarlyStopping::Auto => s.serialize_str("auto"),
            EarlyStopping::On => s.serialize_bool(true),
            EarlyStopping::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for EarlyStopping {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(EarlyStopping::On),
            Raw::Flag(false) => Ok(EarlyStopping::Off),
            Raw::Word(w) => match w.as_str() {
                "auto" => Ok(EarlyStopping::Auto),
                "true" => Ok(EarlyStopping::On),
                "false" => Ok(EarlyStopping::Off),
                _ => Err(serde::de::Error::custom(format!(
                    "early_stopping: `{w}` is not auto, true or false"
                ))),
            },
        }
    }
}

/// What is being fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Regression: half squared error.
    Squared,
    /// Classification into `k >= 2` classes: log loss.
    LogLoss(usize),
}

impl Loss {
    /// Raw scores per row: one, or one per class above two classes.
    pub fn n_scores(self) -> usize {
        match self {
            Loss::LogLoss(k) if k > 2 => k,
            _ => 1,
        }
    }

    /// The curves' name for the loss (log loss, or the mean squared error it halves).
    fn name(self) -> &'static str {
        match self {
            Loss::Squared => "mse",
            Loss::LogLoss(_) => "log_loss",
        }
    }
}

/// A fitted ensemble.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub baseline: Vec<f64>,
    /// Iteration by iteration, [`Loss::n_scores`] trees each.
    pub trees: Vec<Tree>,
    /// Raw scores of the evaluation rows given to [`fit`], summed as modules sum them.
    pub eval_raw: Vec<f64>,
    /// `train_<loss>`, `test_<loss>` and with early stopping `validation_<loss>`, per
    /// iteration (step 0: the baseline).
    pub curves: BTreeMap<String, Vec<(u64, f64)>>,
    /// Iterations fitted.
    pub n_iter: usize,
    /// Whether early stopping was on (and so what `validation_fraction` held out).
    pub early_stopping: bool,
}

/// Fits `params` to the `n x d` row-major `x` with targets `y` (class indices for
/// [`Loss::LogLoss`]); `eval_x`/`eval_y` (the run's held-out rows) are scored after every
/// iteration for the curves and their raw scores returned. `seed` draws the validation split.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    x: &[f64],
    n: usize,
    d: usize,
    y: &[f64],
    loss: Loss,
    params: &Params,
    seed: u64,
    eval_x: &[f64],
    eval_y: &[f64],
) -> Result<Fit, String> {
    params.validate()?;
    let early_stopping = match params.early_stopping {
        EarlyStopping::Auto => n > AUTO_EARLY_STOPPING_ROWS,
        EarlyStopping::On => true,
        EarlyStopping::Off => false,
    };
    let (train_rows, val_rows) = if early_stopping {
        validation_split(y, loss, params.validation_fraction, seed)
    } else {
        ((0..n).collect(), Vec::new())
    };
    if train_rows.is_empty() || (early_stopping && val_rows.is_empty()) {
        return Err(format!(
            "early stopping: {n} training rows are too few to hold out a validation fraction \
             of {}",
            params.validation_fraction
        ));
    }
    let gather = |rows: &[usize]| -> (Vec<f64>, Vec<f64>) {
        let mut xs = Vec::with_capacity(rows.len() * d);
        let mut ys = Vec::with_capacity(rows.len());
        for &i in rows {
            xs.extend_from_slice(&x[i * d..(i + 1) * d]);
            ys.push(y[i]);
        }
        (xs, ys)
    };
    let (tx, ty) = gather(&train_rows);
    let (vx, vy) = gather(&val_rows);
    let nt = ty.len();
    let binned = Binned::new(&tx, nt, d);
    let s = loss.n_scores();
    let baseline = baseline(&ty, loss);

    let init = |rows: usize| -> Vec<f64> {
        let mut raw = Vec::with_capacity(rows * s);
        for _ in 0..rows {
            raw.extend_from_slice(&baseline);
        }
        raw
    };
    let mut raw = init(nt);
    let mut val_raw = init(vy.len());
    let n_eval = eval_y.len();
    let mut eval_raw = init(n_eval);

    let name = loss.name();
    let mut train_curve = Vec::new();
    let mut val_curve = Vec::new();
    let mut eval_curve = Vec::new();
    // The training loss of each step is pushed where the gradients are computed (the next
    // iteration shares the multiclass softmax with it), and after the last iteration.
    let mut record = |step: u64, val_raw: &[f64], eval_raw: &[f64]| -> Option<f64> {
        if n_eval > 0 {
            eval_curve.push((step, report(loss, mean_loss(loss, eval_raw, eval_y))));
        }
        early_stopping.then(|| {
            let l = mean_loss(loss, val_raw, &vy);
            val_curve.push((step, report(loss, l)));
            l
        })
    };
    let mut val_scores: Vec<f64> = Vec::new();
    if let Some(l) = record(0, &val_raw, &eval_raw) {
        val_scores.push(-l);
    }

    let grower = Grower::new(&binned, params);
    let mut g = vec![0.0f32; nt * s];
    let mut h = vec![0.0f32; nt * s];
    let mut trees = Vec::with_capacity(params.max_iter * s);
    let mut n_iter = 0;
    for iteration in 1..=params.max_iter {
        let before = gradients(loss, &raw, &ty, &mut g, &mut h)
            .unwrap_or_else(|| mean_loss(loss, &raw, &ty));
        train_curve.push((iteration as u64 - 1, report(loss, before)));
        for score in 0..s {
            let (tree, leaves) = grower.grow(
                &g[score * nt..(score + 1) * nt],
                &h[score * nt..(score + 1) * nt],
            );
            add_leaves(&leaves, &mut raw, s, score);
            let flat = Flat::of(&tree);
            flat.add_to(&vx, d, &mut val_raw, s, score);
            flat.add_to(eval_x, d, &mut eval_raw, s, score);
            trees.push(tree);
        }
        n_iter = iteration;
        if let Some(l) = record(iteration as u64, &val_raw, &eval_raw) {
            val_scores.push(-l);
            if should_stop(&val_scores, params.n_iter_no_change, params.tol) {
                break;
            }
        }
    }
    train_curve.push((n_iter as u64, report(loss, mean_loss(loss, &raw, &ty))));
    let mut curves = BTreeMap::new();
    curves.insert(format!("train_{name}"), train_curve);
    if early_stopping {
        curves.insert(format!("validation_{name}"), val_curve);
    }
    if n_eval > 0 {
        curves.insert(format!("test_{name}"), eval_curve);
    }
    Ok(Fit {
        baseline,
        trees,
        eval_raw,
        curves,
        n_iter,
        early_stopping,
    })
}

/// What a curve shows: the log loss, or the mean squared error (twice the half squared
/// error the fit minimizes).
fn report(loss: Loss, mean: f64) -> f64 {
    match loss {
        Loss::Squared => 2.0 * mean,
        Loss::LogLoss(_) => mean,
    }
}

/// scikit-learn's `_should_stop`: scores (negative losses, the baseline's first) did not
/// improve by more than `tol` on the score `n_iter_no_change + 1` back in any of the last
/// `n_iter_no_change` iterations.
fn should_stop(scores: &[f64], n_iter_no_change: usize, tol: f64) -> bool {
    let reference = n_iter_no_change + 1;
    if scores.len() < reference {
        return false;
    }
    let reference_score = scores[scores.len() - reference] + tol;
    !scores[scores.len() - reference + 1..]
        .iter()
        .any(|s| *s > reference_score)
}

/// The rows kept for training and those held out for early stopping: `ceil(fraction * n)`
/// rows at random (seeded); for classifiers, that fraction of each class (stratified).
fn validation_split(y: &[f64], loss: Loss, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n = y.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Xoshiro256Plus::seed_from_u64(seed ^ 0xb005_7ed);
    order.shuffle(&mut rng);
    let mut held = vec![false; n];
    match loss {
        Loss::Squared => {
            let m = ((fraction * n as f64).ceil() as usize).min(n);
            for &i in &order[..m] {
                held[i] = true;
            }
        }
        Loss::LogLoss(k) => {
            // Within each class (in shuffled order), the r-th row is held out when
            // floor((r + 1) f) > floor(r f): that fraction of every class, spread evenly.
            let mut seen = vec![0usize; k];
            for &i in &order {
                let c = (y[i] as usize).min(k - 1);
                let r = seen[c] as f64;
                if ((r + 1.0) * fraction).floor() > (r * fraction).floor() {
                    held[i] = true;
                }
                seen[c] += 1;
            }
        }
    }
    let train = (0..n).filter(|i| !held[*i]).collect();
    let val = (0..n).filter(|i| held[*i]).collect();
    (train, val)
}

/// The raw scores before any tree (scikit-learn's `fit_intercept_only`).
fn baseline(y: &[f64], loss: Loss) -> Vec<f64> {
    let n = y.len().max(1) as f64;
    match loss {
        Loss::Squared => {
            let mut sum = 0.0;
            for v in y {
                sum = sum + v;
            }
            vec![sum / n]
        }
        Loss::LogLoss(k) => {
            let mut counts = vec![0usize; k];
            for v in y {
                counts[(*v as usize).min(k - 1)] += 1;
            }
            let eps = f64::EPSILON;
            let p: Vec<f64> = counts
                .iter()
                .map(|c| (*c as f64 / n).clamp(eps, 1.0 - eps))
                .collect();
            if k == 2 {
                vec![libm::log(p[1] / (1.0 - p[1]))]
            } else {
                let logs: Vec<f64> = p.iter().map(|v| libm::log(*v)).collect();
                let mut sum = 0.0;
                for l in &logs {
                    sum = sum + l;
                }
                let mean = sum / k as f64;
                logs.iter().map(|l| l - mean).collect()
            }
        }
    }
}

/// Gradients and hessians of every row, score-major (`g[s * n + i]`), computed in f64 and kept
/// in f32 as scikit-learn keeps them (`G_H_DTYPE`; its near-equal splits then go the same way:
/// the multiclass quality gap halved), summed in f64. With more than two
/// classes also the mean log loss of `raw` (the softmax's sums are the loss's: the same bits
/// as [`mean_loss`]), computed here once instead of twice per iteration.
#[inline(never)]
fn gradients(loss: Loss, raw: &[f64], y: &[f64], g: &mut [f32], h: &mut [f32]) -> Option<f64> {
    let n = y.len();
    match loss {
        Loss::Squared => {
            for i in 0..n {
                g[i] = (raw[i] - y[i]) as f32;
                h[i] = 1.0;
            }
        }
        Loss::LogLoss(2) => {
            for i in 0..n {
                let p = sigmoid(raw[i]);
                g[i] = (p - y[i]) as f32;
                h[i] = (p * (1.0 - p)) as f32;
            }
        }
        Loss::LogLoss(k) => {
            let mut p = vec![0.0; k];
            let mut sum = 0.0;
            let mut sums = LogProduct::new();
            for i in 0..n {
                let z = &raw[i * k..(i + 1) * k];
                let (m, e) = softmax(z, &mut p);
                let yi = y[i] as usize;
                sum = sum + (m - z[yi.min(k - 1)]);
                sums.push(e);
                for c in 0..k {
                    let target = if c == yi { 1.0 } else { 0.0 };
                    g[c * n + i] = (p[c] - target) as f32;
                    h[c * n + i] = (p[c] * (1.0 - p[c])) as f32;
                }
            }
            return (n > 0).then(|| (sum + sums.log()) / n as f64);
        }
    }
    None
}

fn sigmoid(raw: f64) -> f64 {
    1.0 / (1.0 + libm::exp(-raw))
}

/// Softmax with the maximum subtracted first; returns the maximum and the sum of the
/// exponentials.
fn softmax(z: &[f64], out: &mut [f64]) -> (f64, f64) {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (o, v) in out.iter_mut().zip(z) {
        *o = libm::exp(v - m);
        sum = sum + *o;
    }
    for o in out.iter_mut() {
        *o = *o / sum;
    }
    (m, sum)
}

/// The mean loss of raw scores (half squared error, or log loss), summed in row order.
#[inline(never)]
fn mean_loss(loss: Loss, raw: &[f64], y: &[f64]) -> f64 {
    let n = y.len();
    if n == 0 {
        return f64::NAN;
    }
    let mut sum = 0.0;
    match loss {
        Loss::Squared => {
            for i in 0..n {
                let e = raw[i] - y[i];
                sum = sum + 0.5 * e * e;
            }
        }
        Loss::LogLoss(2) => {
            for i in 0..n {
                let r = raw[i];
                // log(1 + e^r) - y r, without overflow.
                let softplus = if r > 0.0 {
                    r + libm::log1p(libm::exp(-r))
                } else {
                    libm::log1p(libm::exp(r))
                };
                sum = sum + (softplus - y[i] * r);
            }
        }
        Loss::LogLoss(k) => {
            // `log(sum of exp(z - max))` of every row at once, as the log of their product
            // (each sum is in `[1, k]`): one `log` per call instead of one per row.
            let mut sums = LogProduct::new();
            for i in 0..n {
                let z = &raw[i * k..(i + 1) * k];
                let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut e = 0.0;
                for v in z {
                    e = e + libm::exp(v - m);
                }
                sums.push(e);
                sum = sum + (m - z[(y[i] as usize).min(k - 1)]);
            }
            sum = sum + sums.log();
        }
    }
    sum / n as f64
}

/// Adds each leaf's value to its training rows' raw score `score` (of `s` per row).
///
/// This and the fit's other loops ([`gradients`], [`mean_loss`], [`Grower::grow`],
/// [`Flat::add_to`]) are functions of their own, called once per tree or iteration: V8 runs a
/// wasm function in its baseline tier until it is hot and switches at its next call, so a
/// loop inlined into [`fit`] (called once per job) ran at baseline speed for the whole fit.
#[inline(never)]
fn add_leaves(leaves: &[(Vec<u32>, f64)], raw: &mut [f64], s: usize, score: usize) {
    for (rows, value) in leaves {
        for &i in rows {
            let at = i as usize * s + score;
            raw[at] = raw[at] + value;
        }
    }
}

/// A grown tree laid out for predicting many rows during the fit: per node its threshold,
/// feature, first child (a split's children are next to each other, as [`Grower::grow`]
/// makes them) and whether it splits; a leaf is its own child. The step down is
/// `left + (x >= t)` (nothing at a leaf) without a branch, so four rows walk the tree side by
/// side for as many steps as its deepest leaf is deep. It answers what [`Tree::value_for`]
/// answers, bit for bit.
struct Flat {
    nodes: Vec<FlatNode>,
    /// Each node's value (a leaf's; 0 for a split).
    values: Vec<f64>,
    /// Steps from the root to the deepest leaf.
    depth: usize,
}

#[derive(Clone, Copy)]
struct FlatNode {
    threshold: f64,
    feature: u32,
    left: u32,
    /// 1 for a split, 0 for a leaf (which stays where it is).
    splits: u32,
}

impl Flat {
    fn of(tree: &Tree) -> Flat {
        let n = tree.nodes.len();
        let (mut nodes, mut values, mut depths) =
            (Vec::with_capacity(n), vec![0.0; n], vec![0usize; n]);
        for (at, node) in tree.nodes.iter().enumerate() {
            match node {
                TreeNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    debug_assert_eq!(*right, left + 1);
                    depths[*left] = depths[at] + 1;
                    depths[*right] = depths[at] + 1;
                    nodes.push(FlatNode {
                        threshold: *threshold,
                        feature: *feature as u32,
                        left: *left as u32,
                        splits: 1,
                    });
                }
                TreeNode::Leaf { probabilities, .. } => {
                    values[at] = probabilities[0];
                    nodes.push(FlatNode {
                        threshold: 0.0,
                        feature: 0,
                        left: at as u32,
                        splits: 0,
                    });
                }
            }
        }
        Flat {
            nodes,
            values,
            depth: depths.into_iter().max().unwrap_or(0),
        }
    }

    #[inline(always)]
    fn step(&self, x: &[f64], at: u32) -> u32 {
        let node = self.nodes[at as usize];
        let right = !(x[node.feature as usize] < node.threshold) as u32;
        node.left + (right & node.splits)
    }

    /// Adds the tree's value for each row of `x` (`d` values each) to its raw score `score`
    /// (of `s` per row), four rows at a time.
    #[inline(never)]
    fn add_to(&self, x: &[f64], d: usize, raw: &mut [f64], s: usize, score: usize) {
        if d == 0 {
            return;
        }
        let quads = x.chunks_exact(4 * d);
        let rest = quads.remainder();
        let mut i = 0;
        for quad in quads {
            let (r0, r1, r2, r3) = (
                &quad[..d],
                &quad[d..2 * d],
                &quad[2 * d..3 * d],
                &quad[3 * d..],
            );
            let (mut a0, mut a1, mut a2, mut a3) = (0, 0, 0, 0);
            for _ in 0..self.depth {
                a0 = self.step(r0, a0);
                a1 = self.step(r1, a1);
                a2 = self.step(r2, a2);
                a3 = self.step(r3, a3);
            }
            for (r, a) in [a0, a1, a2, a3].into_iter().enumerate() {
                let at = (i + r) * s + score;
                raw[at] = raw[at] + self.values[a as usize];
            }
            i += 4;
        }
        for row in rest.chunks_exact(d) {
            let at = i * s + score;
            raw[at] = raw[at] + self.value_for(row);
            i += 1;
        }
    }

    fn value_for(&self, x: &[f64]) -> f64 {
        let mut at = 0;
        for _ in 0..self.depth {
            at = self.step(x, at);
        }
        self.values[at as usize]
    }
}

/// Per bin: the sums of gradients and hessians of its rows, and their count.
#[derive(Debug, Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

/// The best split of a node.
#[derive(Debug, Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    /// Rows in bins up to this one go left.
    bin: usize,
    threshold: f64,
    left_g: f64,
    left_h: f64,
}

/// A leaf that may still be split.
struct Node {
    /// Its place among the tree's nodes.
    at: usize,
    /// Its rows: `rows[start..end]`.
    start: usize,
    end: usize,
    depth: usize,
    sum_g: f64,
    sum_h: f64,
    /// All features' bins, feature after feature.
    hist: Vec<Bin>,
    split: Option<Split>,
}

/// Grows the trees of one fit: the binned training rows and the rules.
struct Grower<'a> {
    binned: &'a Binned,
    params: &'a Params,
    /// Where each feature's bins start in a histogram, and the total.
    offsets: Vec<usize>,
    total_bins: usize,
    /// Histograms of nodes that are done, for the next nodes to fill (a histogram is a few
    /// hundred kilobytes: fresh ones cost page faults).
    spare: RefCell<Vec<Vec<Bin>>>,
}

impl<'a> Grower<'a> {
    fn new(binned: &'a Binned, params: &'a Params) -> Grower<'a> {
        let d = binned.lo.len();
        let mut offsets = Vec::with_capacity(d);
        let mut total_bins = 0;
        for f in 0..d {
            offsets.push(total_bins);
            total_bins += binned.n_bins(f);
        }
        Grower {
            binned,
            params,
            offsets,
            total_bins,
            spare: RefCell::new(Vec::new()),
        }
    }

    fn leaf_value(&self, sum_g: f64, sum_h: f64) -> f64 {
        node_value(sum_g, sum_h, self.params.l2_regularization) * self.params.learning_rate
    }

    /// Grows one tree on gradients `g` and hessians `h` (one per training row); returns it
    /// and, per leaf, its training rows and value.
    #[inline(never)]
    fn grow(&self, g: &[f32], h: &[f32]) -> (Tree, Vec<(Vec<u32>, f64)>) {
        let n = self.binned.n;
        let mut rows: Vec<u32> = (0..n as u32).collect();
        let mut scratch: Vec<u32> = Vec::with_capacity(n);
        let mut nodes: Vec<TreeNode> = vec![leaf(0.0)];
        let mut leaves: Vec<(Vec<u32>, f64)> = Vec::new();
        let (mut sum_g, mut sum_h) = (0.0, 0.0);
        for i in 0..n {
            sum_g = sum_g + f64::from(g[i]);
            sum_h = sum_h + f64::from(h[i]);
        }
        let mut root = Node {
            at: 0,
            start: 0,
            end: n,
            depth: 0,
            sum_g,
            sum_h,
            hist: Vec::new(),
            split: None,
        };
        // Leaves that can still split, in the order they were made.
        let mut pending: Vec<Node> = Vec::new();
        let mut finalize = |node: Node, nodes: &mut Vec<TreeNode>, rows: &[u32]| {
            let value = self.leaf_value(node.sum_g, node.sum_h);
            nodes[node.at] = leaf(value);
            leaves.push((rows[node.start..node.end].to_vec(), value));
            self.recycle(node.hist);
        };
        if self.can_split(&root) {
            root.hist = self.build(&rows[..], g, h);
            root.split = self.best_split(&root);
        }
        if root.split.is_some() {
            pending.push(root);
        } else {
            finalize(root, &mut nodes, &rows);
        }
        let mut n_leaves = 1;
        while !pending.is_empty() {
            // The largest gain, the earliest on a tie.
            let mut best = 0;
            for (i, node) in pending.iter().enumerate() {
                if gain(node) > gain(&pending[best]) {
                    best = i;
                }
            }
            let node = pending.remove(best);
            let split = node.split.expect("pending nodes have a split");
            // Partition the node's rows, keeping their order.
            let col = &self.binned.bins[split.feature * n..(split.feature + 1) * n];
            // Without a branch per row (which side a row goes is a coin toss for the
            // branch predictor): each row is written to both sides' next slot, and only its
            // side's count moves on.
            let len = node.end - node.start;
            scratch.clear();
            scratch.resize(len, 0);
            let (mut l, mut r) = (node.start, 0);
            for p in node.start..node.end {
                let i = rows[p];
                let left = (col[i as usize] as usize <= split.bin) as usize;
                rows[l] = i;
                scratch[r] = i;
                l += left;
                r += 1 - left;
            }
            rows[l..node.end].copy_from_slice(&scratch[..r]);
            let at = nodes.len();
            nodes.push(leaf(0.0));
            nodes.push(leaf(0.0));
            nodes[node.at] = TreeNode::Split {
                feature: split.feature,
                threshold: split.threshold,
                left: at,
                right: at + 1,
            };
            n_leaves += 1;
            let child = |at, start, end, sum_g, sum_h| Node {
                at,
                start,
                end,
                depth: node.depth + 1,
                sum_g,
                sum_h,
                hist: Vec::new(),
                split: None,
            };
            let mut left = child(at, node.start, l, split.left_g, split.left_h);
            let mut right = child(
                at + 1,
                l,
                node.end,
                node.sum_g - split.left_g,
                node.sum_h - split.left_h,
            );
            if self.params.max_leaf_nodes == Some(n_leaves) {
                self.recycle(node.hist);
                finalize(left, &mut nodes, &rows);
                finalize(right, &mut nodes, &rows);
                for p in pending.drain(..) {
                    finalize(p, &mut nodes, &rows);
                }
                break;
            }
            let (split_left, split_right) = (self.can_split(&left), self.can_split(&right));
            if split_left || split_right {
                // The smaller child's histogram from its rows, the other's by subtraction.
                let (small, large) = if left.end - left.start < right.end - right.start {
                    (&mut left, &mut right)
                } else {
                    (&mut right, &mut left)
                };
                small.hist = self.build(&rows[small.start..small.end], g, h);
                // In the parent's place.
                let mut hist = node.hist;
                for (p, s) in hist.iter_mut().zip(&small.hist) {
                    p.g = p.g - s.g;
                    p.h = p.h - s.h;
                    p.n -= s.n;
                }
                large.hist = hist;
            } else {
                self.recycle(node.hist);
            }
            for (child, splits) in [(left, split_left), (right, split_right)] {
                let mut child = child;
                if splits {
                    child.split = self.best_split(&child);
                }
                if child.split.is_some() {
                    pending.push(child);
                } else {
                    finalize(child, &mut nodes, &rows);
                }
            }
        }
        (Tree { nodes }, leaves)
    }

    fn recycle(&self, hist: Vec<Bin>) {
        if hist.capacity() > 0 {
            self.spare.borrow_mut().push(hist);
        }
    }

    /// Whether a node may be split at all (its rows, depth and hessians allow it).
    fn can_split(&self, node: &Node) -> bool {
        let rows = node.end - node.start;
        rows >= 2 * self.params.min_samples_leaf
            && self.params.max_depth.is_none_or(|m| node.depth < m)
            && node.sum_h >= 2.0 * MIN_HESSIAN_TO_SPLIT
    }

    /// The histogram of `rows`: every feature, every bin, in row order.
    ///
    /// Four features per pass over the rows: a row's gradient and hessian are read once for
    /// four bins. Each bin still adds its rows in row order, so the sums are the bits a
    /// feature-by-feature pass gives.
    #[inline(never)]
    fn build(&self, rows: &[u32], g: &[f32], h: &[f32]) -> Vec<Bin> {
        let n = self.binned.n;
        // The rows' gradients side by side.
        let gs: Vec<f64> = rows.iter().map(|i| f64::from(g[*i as usize])).collect();
        let hs: Vec<f64> = rows.iter().map(|i| f64::from(h[*i as usize])).collect();
        let mut hist = self.spare.borrow_mut().pop().unwrap_or_default();
        hist.clear();
        hist.resize(self.total_bins, Bin::default());
        let col = |f: usize| &self.binned.bins[f * n..(f + 1) * n];
        let add = |b: &mut Bin, g: f64, h: f64| {
            b.g = b.g + g;
            b.h = b.h + h;
            b.n += 1;
        };
        let d = self.offsets.len();
        let mut f = 0;
        while f + 4 <= d {
            let (c0, c1, c2, c3) = (col(f), col(f + 1), col(f + 2), col(f + 3));
            let o = &self.offsets[f..f + 4];
            for (p, i) in rows.iter().enumerate() {
                let i = *i as usize;
                let (gp, hp) = (gs[p], hs[p]);
                add(&mut hist[o[0] + c0[i] as usize], gp, hp);
                add(&mut hist[o[1] + c1[i] as usize], gp, hp);
                add(&mut hist[o[2] + c2[i] as usize], gp, hp);
                add(&mut hist[o[3] + c3[i] as usize], gp, hp);
            }
            f += 4;
        }
        for f in f..d {
            let (c, o) = (col(f), self.offsets[f]);
            for (p, i) in rows.iter().enumerate() {
                add(&mut hist[o + c[*i as usize] as usize], gs[p], hs[p]);
            }
        }
        hist
    }

    /// The split with the largest positive gain, the first feature and bin on a tie.
    #[inline(never)]
    fn best_split(&self, node: &Node) -> Option<Split> {
        let l2 = self.params.l2_regularization;
        let min_leaf = self.params.min_samples_leaf as u32;
        let n = (node.end - node.start) as u32;
        let current = loss_of(node.sum_g, node.sum_h, l2);
        let mut best: Option<Split> = None;
        for (f, off) in self.offsets.iter().enumerate() {
            let nb = self.binned.n_bins(f);
            if nb < 2 {
                continue;
            }
            let hist = &node.hist[*off..*off + nb];
            let (mut gl, mut hl, mut nl) = (0.0, 0.0, 0u32);
            for b in 0..nb - 1 {
                gl = gl + hist[b].g;
                hl = hl + hist[b].h;
                nl += hist[b].n;
                if nl < min_leaf {
                    continue;
                }
                if n - nl < min_leaf {
                    break;
                }
                let hr = node.sum_h - hl;
                if hl < MIN_HESSIAN_TO_SPLIT {
                    continue;
                }
                if hr < MIN_HESSIAN_TO_SPLIT {
                    break;
                }
                let gr = node.sum_g - gl;
                let gain = current - loss_of(gl, hl, l2) - loss_of(gr, hr, l2);
                if gain > 0.0 && best.is_none_or(|s| gain > s.gain) {
                    let (below, above) = (self.binned.hi[f][b], self.binned.lo[f][b + 1]);
                    let mut threshold = below + (above - below) / 2.0;
                    if threshold <= below {
                        threshold = above;
                    }
                    best = Some(Split {
                        gain,
                        feature: f,
                        bin: b,
                        threshold,
                        left_g: gl,
                        left_h: hl,
                    });
                }
            }
        }
        best
    }
}

fn gain(node: &Node) -> f64 {
    node.split.map_or(f64::NEG_INFINITY, |s| s.gain)
}

/// scikit-learn's `compute_node_value`: the Newton step `-G / (H + λ)`.
fn node_value(sum_g: f64, sum_h: f64, l2: f64) -> f64 {
    -sum_g / (sum_h + l2 + 1e-15)
}

/// scikit-learn's `_loss_from_value(value, G)` at the node's own value: `-G² / (H + λ)`.
fn loss_of(sum_g: f64, sum_h: f64, l2: f64) -> f64 {
    sum_g * node_value(sum_g, sum_h, l2)
}

fn leaf(value: f64) -> TreeNode {
    TreeNode::Leaf {
        class: 0,
        probabilities: vec![value],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic pseudo-random stream.
    fn stream(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn params(max_iter: usize) -> Params {
        Params {
            max_iter,
            early_stopping: EarlyStopping::Off,
            ..Params::default()
        }
    }

    #[test]
    fn early_stopping_serializes_as_scikit_learn_spells_it() {
        for (v, json) in [
            (EarlyStopping::Auto, "\"auto\""),
            (EarlyStopping::On, "true"),
            (EarlyStopping::Off, "false"),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), json);
            assert_eq!(serde_json::from_str::<EarlyStopping>(json).unwrap(), v);
        }
        let err = serde_json::from_str::<EarlyStopping>("\"sometimes\"").unwrap_err();
        assert!(err.to_string().contains("`sometimes` is not auto"), "{err}");
    }

    #[test]
    fn should_stop_follows_scikit_learn() {
        // Improving by more than tol every iteration: never.
        let scores: Vec<f64> = (0..20).map(|i| -10.0 + i as f64).collect();
        assert!(!should_stop(&scores, 3, 1e-7));
        // Too few scores: never.
        assert!(!should_stop(&[-1.0, -1.0, -1.0], 3, 1e-7));
        // Flat for n_iter_no_change iterations after the reference: stop.
        assert!(should_stop(&[-5.0, -1.0, -1.0, -1.0, -1.0], 3, 1e-7));
        // One of them better than the reference by more than tol: go on.
        assert!(!should_stop(&[-5.0, -1.0, -1.0, -0.5, -1.0], 3, 1e-7));
    }

    /// Each leaf's value is `-G / (H + λ) * learning_rate` over the rows that reach it, every
    /// leaf has at least `min_samples_leaf` rows, and there are at most `max_leaf_nodes`.
    /// The multiclass loss the gradients pass gives is the one `mean_loss` gives, to the bit
    /// (the training curve's points come from either).
    #[test]
    fn the_gradients_loss_is_mean_loss() {
        let mut r = stream(3);
        let (n, k) = (500, 4);
        let raw: Vec<f64> = (0..n * k).map(|_| 20.0 * r() - 10.0).collect();
        let y: Vec<f64> = (0..n).map(|_| (r() * k as f64).floor()).collect();
        let (mut g, mut h) = (vec![0.0f32; n * k], vec![0.0f32; n * k]);
        let shared = gradients(Loss::LogLoss(k), &raw, &y, &mut g, &mut h).unwrap();
        assert_eq!(
            shared.to_bits(),
            mean_loss(Loss::LogLoss(k), &raw, &y).to_bits()
        );
        assert_eq!(
            gradients(Loss::LogLoss(2), &raw[..n], &y, &mut g, &mut h),
            None
        );
    }

    /// Four features per pass over the rows give the bins a pass per feature gives.
    #[test]
    fn the_histogram_is_the_per_feature_one() {
        let mut r = stream(5);
        let (n, d) = (3000, 11);
        let x: Vec<f64> = (0..n * d).map(|_| (r() * 40.0).floor()).collect();
        let binned = Binned::new(&x, n, d);
        let p = params(1);
        let grower = Grower::new(&binned, &p);
        let g: Vec<f32> = (0..n).map(|_| (r() - 0.5) as f32).collect();
        let h: Vec<f32> = (0..n).map(|_| r() as f32).collect();
        let rows: Vec<u32> = (0..n as u32).filter(|i| i % 3 != 1).collect();
        let hist = grower.build(&rows, &g, &h);
        for f in 0..d {
            let col = &binned.bins[f * n..(f + 1) * n];
            let mut expected = vec![Bin::default(); binned.n_bins(f)];
            for i in &rows {
                let b = &mut expected[col[*i as usize] as usize];
                b.g = b.g + f64::from(g[*i as usize]);
                b.h = b.h + f64::from(h[*i as usize]);
                b.n += 1;
            }
            let got = &hist[grower.offsets[f]..grower.offsets[f] + binned.n_bins(f)];
            for (a, b) in got.iter().zip(&expected) {
                assert_eq!(
                    (a.g.to_bits(), a.h.to_bits(), a.n),
                    (b.g.to_bits(), b.h.to_bits(), b.n)
                );
            }
        }
    }

    #[test]
    fn leaves_hold_the_newton_step_of_their_rows() {
        let (n, d) = (500, 3);
        let mut next = stream(7);
        let x: Vec<f64> = (0..n * d).map(|_| next()).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| 3.0 * x[i * d] - 2.0 * x[i * d + 1] + next() * 0.1)
            .collect();
        let p = Params {
            max_leaf_nodes: Some(7),
            min_samples_leaf: 15,
            l2_regularization: 0.5,
            ..params(1)
        };
        let fit = fit(&x, n, d, &y, Loss::Squared, &p, 1, &[], &[]).unwrap();
        let tree = &fit.trees[0];
        let mean = y.iter().sum::<f64>() / n as f64;
        let mut per_leaf: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
        for i in 0..n {
            let e = per_leaf
                .entry(tree.leaf_for(&x[i * d..(i + 1) * d]))
                .or_default();
            // The gradient as the fit keeps it: rounded to f32, as scikit-learn's.
            e.0 += f64::from((fit.baseline[0] - y[i]) as f32);
            e.1 += 1.0;
        }
        assert!((fit.baseline[0] - mean).abs() < 1e-12);
        assert_eq!(per_leaf.len(), 7, "max_leaf_nodes leaves");
        for (at, (g, count)) in per_leaf {
            assert!(count >= 15.0, "leaf {at} has {count} rows");
            let want = -g / (count + 0.5) * 0.1;
            let got = match &tree.nodes[at] {
                TreeNode::Leaf { probabilities, .. } => probabilities[0],
                _ => unreachable!(),
            };
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{got} {want}"
            );
        }
    }

    #[test]
    fn max_depth_limits_every_path() {
        let (n, d) = (400, 2);
        let mut next = stream(3);
        let x: Vec<f64> = (0..n * d).map(|_| next()).collect();
        let y: Vec<f64> = (0..n).map(|i| (x[i * d] * 10.0).sin()).collect();
        let p = Params {
            max_leaf_nodes: None,
            max_depth: Some(2),
            min_samples_leaf: 1,
            ..params(3)
        };
        let fit = fit(&x, n, d, &y, Loss::Squared, &p, 1, &[], &[]).unwrap();
        for tree in &fit.trees {
            // Depth 2: at most 4 leaves, and (with rows everywhere) exactly 7 nodes.
            assert_eq!(tree.nodes.len(), 7);
        }
    }

    /// The training loss falls every iteration, the raw scores of the evaluation rows are the
    /// baseline plus every tree's value, and the same seed gives the same trees.
    #[test]
    fn the_flat_tree_answers_as_the_tree() {
        let (n, d) = (600, 3);
        let mut next = stream(4);
        let x: Vec<f64> = (0..n * d).map(|_| (next() * 40.0).round() / 4.0).collect();
        let y: Vec<f64> = (0..n).map(|i| x[i * d] - x[i * d + 2] + next()).collect();
        let fit = fit(&x, n, d, &y, Loss::Squared, &params(5), 1, &[], &[]).unwrap();
        let mut checked = 0;
        for tree in &fit.trees {
            let flat = Flat::of(tree);
            // Every training row, and each threshold itself and the values next to it.
            let mut rows: Vec<Vec<f64>> = x.chunks(d).map(<[f64]>::to_vec).collect();
            for node in &tree.nodes {
                if let TreeNode::Split {
                    feature, threshold, ..
                } = node
                {
                    for v in [threshold.next_down(), *threshold, threshold.next_up()] {
                        let mut row = vec![0.0; d];
                        row[*feature] = v;
                        rows.push(row);
                    }
                }
            }
            for row in &rows {
                assert_eq!(flat.value_for(row).to_bits(), tree.value_for(row).to_bits());
                checked += 1;
            }
            // Four rows at a time, and the rows after the last four.
            let flat_rows: Vec<f64> = rows.concat();
            let mut raw = vec![0.5; rows.len() * 2];
            flat.add_to(&flat_rows, d, &mut raw, 2, 1);
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(raw[i * 2], 0.5);
                assert_eq!(
                    raw[i * 2 + 1].to_bits(),
                    (0.5 + tree.value_for(row)).to_bits()
                );
            }
        }
        assert!(checked > 5 * n, "{checked}");
    }

    #[test]
    fn boosting_lowers_the_loss_and_is_reproducible() {
        let (n, d, k) = (900, 4, 3);
        let mut next = stream(11);
        let x: Vec<f64> = (0..n * d).map(|_| next()).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| (((x[i * d] + x[i * d + 1] * 0.5 + next() * 0.3) * 2.0) as usize % k) as f64)
            .collect();
        let eval = &x[..50 * d];
        let p = Params {
            early_stopping: EarlyStopping::On,
            ..params(30)
        };
        let a = fit(&x, n, d, &y, Loss::LogLoss(k), &p, 5, eval, &y[..50]).unwrap();
        assert_eq!(a.trees.len(), a.n_iter * k);
        let train = &a.curves["train_log_loss"];
        for w in train.windows(2) {
            assert!(w[1].1 < w[0].1, "{train:?}");
        }
        assert!(a.curves.contains_key("validation_log_loss"));
        assert_eq!(a.curves["test_log_loss"].len(), a.n_iter + 1);
        for (i, row) in eval.chunks(d).enumerate() {
            for s in 0..k {
                let mut z = a.baseline[s];
                for t in (s..a.trees.len()).step_by(k) {
                    z = z + a.trees[t].value_for(row);
                }
                assert_eq!(z.to_bits(), a.eval_raw[i * k + s].to_bits());
            }
        }
        let b = fit(&x, n, d, &y, Loss::LogLoss(k), &p, 5, eval, &y[..50]).unwrap();
        assert_eq!(a, b);
        // The validation split holds a tenth of each class.
        let (train_rows, val_rows) = validation_split(&y, Loss::LogLoss(k), 0.1, 5);
        assert_eq!(train_rows.len() + val_rows.len(), n);
        for c in 0..k {
            let all = y.iter().filter(|v| **v as usize == c).count();
            let held = val_rows.iter().filter(|i| y[**i] as usize == c).count();
            assert!(held.abs_diff(all / 10) <= 1, "class {c}: {held} of {all}");
        }
    }

    #[test]
    fn bad_params_are_named() {
        for (p, field) in [
            (
                Params {
                    learning_rate: 0.0,
                    ..Params::default()
                },
                "learning_rate",
            ),
            (
                Params {
                    max_leaf_nodes: Some(1),
                    ..Params::default()
                },
                "max_leaf_nodes",
            ),
            (
                Params {
                    validation_fraction: 1.0,
                    ..Params::default()
                },
                "validation_fraction",
            ),
            (
                Params {
                    min_samples_leaf: 0,
                    ..Params::default()
                },
                "min_samples_leaf",
            ),
        ] {
            let err = p.validate().unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
