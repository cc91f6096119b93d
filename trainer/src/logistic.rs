//! Multinomial logistic regression as scikit-learn's `LogisticRegression(solver="lbfgs")` fits
//! it: the mean log loss plus `alpha / (2 n) * |W|^2` (intercepts not penalized; the same
//! minimizer as the summed loss plus `alpha / 2 * |W|^2`, so `alpha` is `1 / C`), minimized by
//! L-BFGS written here, with the rules of the L-BFGS-B code scikit-learn runs through scipy:
//! - memory of 10 correction pairs; the first direction is the negative gradient, tried at the
//!   step `1 / |g|`, later ones the two-loop recursion's (initial Hessian `s·y / y·y`) at step 1;
//!   a pair with `s·y <= eps * (-s·g)` is skipped;
//! - the More-Thuente line search (MINPACK-2's `dcsrch`/`dcstep`, ported below) with L-BFGS-B's
//!   constants (sufficient decrease 1e-3, curvature 0.9, interval width 0.1) and scikit-learn's
//!   `maxls` of 50 evaluations; if it fails the memory is dropped and the iteration retried
//!   along the negative gradient, and a failure with empty memory ends the fit;
//! - it stops when the gradient's largest component is at most [`TOLERANCE`] (scipy's `gtol`,
//!   scikit-learn's `tol`), when an iteration lowers the objective by at most `64 eps` relative
//!   (scikit-learn's `ftol`), or after `max_iterations` iterations (`max_iter`).
//!
//! Why not argmin (what this used before) or linfa-logistic: argmin's L-BFGS stops on the L2
//! norm of the gradient (stricter than scikit-learn's by up to the square root of the number of
//! parameters: 23 iterations where scikit-learn takes 16 on the benchmark's data), starts its
//! first line search at step 1 along the raw gradient, evaluates the gradient at the accepted
//! point twice, and allocates a vector per vector operation.
//!
//! Each evaluation of the loss and gradient is one pass over the training rows (logits,
//! softmax, loss and the gradient's row terms together), each sum in a fixed order (features
//! left to right, rows top to bottom), no fused multiply-adds, `exp` this module's (plain
//! arithmetic, see [`exp`]) and `log` `libm`'s, once per evaluation: the tab (wasm32) and the
//! CLI (native) train the same bits. The curve (training log loss and
//! held-out accuracy) is recorded at every iteration of the one fit.

use ndarray::{Array1, Array2, ArrayView2};

/// Largest gradient component at which the fit has converged (scikit-learn's default `tol`,
/// on the gradient of the mean loss plus the penalty).
pub const TOLERANCE: f64 = 1e-4;
/// Relative decrease of the objective at which the fit has converged (scikit-learn's `ftol`).
const FTOL: f64 = 64.0 * f64::EPSILON;
/// Correction pairs kept (scipy's default `maxcor`).
const MEMORY: usize = 10;
/// Evaluations allowed per line search (scikit-learn's `maxls`).
const MAX_LINE_SEARCH: usize = 50;

/// A fitted model over the classes present in training, and its step curves.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// `d x k` over the dataset's `k` classes; a class absent from training has zeros.
    pub weights: Array2<f64>,
    /// A class absent from training gets `-1e300`: its logit never wins.
    pub intercepts: Array1<f64>,
    /// (iteration, mean training log loss without the penalty).
    pub train_log_loss: Vec<(u64, f64)>,
    /// (iteration, held-out accuracy).
    pub accuracy: Vec<(u64, f64)>,
    /// Loss and gradient evaluations (scipy's `nfev`).
    pub evaluations: u64,
}

/// The training rows and targets, and the penalty. Parameters are `(d + 1) x c` row-major,
/// the intercepts last.
struct Problem<'a> {
    /// `n x d` row-major.
    x: &'a [f64],
    /// Class index among the `c` present, per row.
    y: Vec<usize>,
    n: usize,
    d: usize,
    c: usize,
    alpha: f64,
}

/// One evaluation: the objective and the mean log loss without the penalty.
#[derive(Clone, Copy)]
struct Value {
    objective: f64,
    log_loss: f64,
}

impl Problem<'_> {
    /// The objective at `p`, its gradient written to `grad`. Class counts up to 8 run a copy of
    /// the loop specialized for them (the same arithmetic, in the same order).
    fn evaluate(&self, p: &[f64], grad: &mut [f64]) -> Value {
        if self.d == 0 {
            return self.evaluate_any(p, grad);
        }
        match self.c {
            2 => self.evaluate_c::<2>(p, grad),
            3 => self.evaluate_c::<3>(p, grad),
            4 => self.evaluate_c::<4>(p, grad),
            5 => self.evaluate_c::<5>(p, grad),
            6 => self.evaluate_c::<6>(p, grad),
            7 => self.evaluate_c::<7>(p, grad),
            8 => self.evaluate_c::<8>(p, grad),
            _ => self.evaluate_any(p, grad),
        }
    }

    /// [`Problem::evaluate`] for `C` classes and at least one feature: the logits and each
    /// row's gradient terms in arrays the compiler keeps in registers.
    fn evaluate_c<const C: usize>(&self, p: &[f64], grad: &mut [f64]) -> Value {
        let d = self.d;
        let (w, b) = p.split_at(d * C);
        let w: Vec<[f64; C]> = w
            .chunks_exact(C)
            .map(|r| r.try_into().expect("C values"))
            .collect();
        let b: &[f64; C] = b.try_into().expect("C intercepts");
        // Four rows at a time ([`four_rows`]), the rows left over one at a time.
        let done = self.n / 4 * 4;
        let (mut gw, mut gb, mut loss, mut sums) =
            four_rows::<C>(&self.x[..done * d], &self.y[..done], &w, b);
        for (row, y) in self.x[done * d..].chunks_exact(d).zip(&self.y[done..]) {
            (gb, loss, sums) = one_row(&w, b, row, *y, &mut gw, gb, loss, sums);
        }
        let (gw_out, gb_out) = grad.split_at_mut(d * C);
        for (out, g) in gw_out.chunks_exact_mut(C).zip(&gw) {
            out.copy_from_slice(g);
        }
        gb_out.copy_from_slice(&gb);
        self.finish(p, grad, loss + sums.log())
    }

    /// [`Problem::evaluate`] for any number of classes and features.
    fn evaluate_any(&self, p: &[f64], grad: &mut [f64]) -> Value {
        let (d, c) = (self.d, self.c);
        let (mut z, mut e) = (vec![0.0; c], vec![0.0; c]);
        let (w, b) = p.split_at(d * c);
        grad.fill(0.0);
        let (gw, gb) = grad.split_at_mut(d * c);
        let mut loss = 0.0;
        let mut sums = LogProduct::new();
        for (i, y) in self.y.iter().enumerate() {
            let row = &self.x[i * d..(i + 1) * d];
            z.fill(0.0);
            for (v, wrow) in row.iter().zip(w.chunks_exact(c)) {
                for (acc, wv) in z.iter_mut().zip(wrow) {
                    *acc += v * wv;
                }
            }
            let (margin, sum) = row_softmax(&mut z, b, &mut e, *y);
            loss += margin;
            sums.push(sum);
            for (v, grow) in row.iter().zip(gw.chunks_exact_mut(c)) {
                for (acc, ev) in grow.iter_mut().zip(e.iter()) {
                    *acc += v * ev;
                }
            }
            for (acc, ev) in gb.iter_mut().zip(e.iter()) {
                *acc += ev;
            }
        }
        self.finish(p, grad, loss + sums.log())
    }

    /// From the summed loss and the summed gradient terms in `grad` to the objective (the mean
    /// plus the penalty) and its gradient.
    fn finish(&self, p: &[f64], grad: &mut [f64], loss: f64) -> Value {
        let dc = self.d * self.c;
        let scale = 1.0 / self.n.max(1) as f64;
        let l2 = self.alpha * scale;
        let mut square = 0.0;
        let (gw, gb) = grad.split_at_mut(dc);
        for (g, wv) in gw.iter_mut().zip(&p[..dc]) {
            *g = *g * scale + l2 * wv;
            square += wv * wv;
        }
        for g in gb.iter_mut() {
            *g *= scale;
        }
        let log_loss = loss * scale;
        Value {
            objective: log_loss + 0.5 * l2 * square,
            log_loss,
        }
    }
}

/// Four rows at a time of [`Problem::evaluate_c`] over `x` (a multiple of four rows): four
/// times the independent sums in flight (each row's logits are a chain of dependent adds),
/// the same operations in the same order as one row at a time (`the_gradient_is_the_losss`
/// compares the bits). Its own function, written with iterators and locals: in wasm (V8),
/// indexing the rows (bounds checks), keeping the sums in a struct, or the same loop inlined
/// next to the one-row code each made it slower than one row at a time.
#[inline(never)]
fn four_rows<const C: usize>(
    x: &[f64],
    y: &[usize],
    w: &[[f64; C]],
    b: &[f64; C],
) -> (Vec<[f64; C]>, [f64; C], f64, LogProduct) {
    let d = w.len();
    let mut gw = vec![[0.0; C]; d];
    let mut gb = [0.0; C];
    let mut e = [0.0; C];
    let mut loss = 0.0;
    let mut sums = LogProduct::new();
    if d == 0 {
        return (gw, gb, loss, sums);
    }
    let quads = x.chunks_exact(4 * d).zip(y.chunks_exact(4));
    let mut e1 = [0.0; C];
    let mut e2 = [0.0; C];
    let mut e3 = [0.0; C];
    for (quad, ys) in quads {
        let (r01, r23) = quad.split_at(2 * d);
        let (r0, r1) = r01.split_at(d);
        let (r2, r3) = r23.split_at(d);
        let (mut z0, mut z1, mut z2, mut z3) = ([0.0; C], [0.0; C], [0.0; C], [0.0; C]);
        for ((((v0, v1), v2), v3), wr) in r0.iter().zip(r1).zip(r2).zip(r3).zip(w) {
            for k in 0..C {
                z0[k] += v0 * wr[k];
                z1[k] += v1 * wr[k];
                z2[k] += v2 * wr[k];
                z3[k] += v3 * wr[k];
            }
        }
        let (m0, s0) = row_softmax(&mut z0, b, &mut e, ys[0]);
        let (m1, s1) = row_softmax(&mut z1, b, &mut e1, ys[1]);
        let (m2, s2) = row_softmax(&mut z2, b, &mut e2, ys[2]);
        let (m3, s3) = row_softmax(&mut z3, b, &mut e3, ys[3]);
        loss += m0;
        loss += m1;
        loss += m2;
        loss += m3;
        sums.push(s0);
        sums.push(s1);
        sums.push(s2);
        sums.push(s3);
        for ((((v0, v1), v2), v3), gr) in r0.iter().zip(r1).zip(r2).zip(r3).zip(gw.iter_mut()) {
            for k in 0..C {
                gr[k] += v0 * e[k];
                gr[k] += v1 * e1[k];
                gr[k] += v2 * e2[k];
                gr[k] += v3 * e3[k];
            }
        }
        for k in 0..C {
            gb[k] += e[k];
            gb[k] += e1[k];
            gb[k] += e2[k];
            gb[k] += e3[k];
        }
    }
    (gw, gb, loss, sums)
}

/// One row's terms of [`Problem::evaluate_c`] (the rows after the last four): its loss added
/// to `loss` and its gradient terms to `gw` and `gb`. Not inlined, and the sums passed by
/// value: a second copy of the row's arithmetic in `evaluate_c`, or a reference to its local
/// sums (which puts them in memory in wasm), made V8's code for the four-row loop a third
/// slower.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn one_row<const C: usize>(
    w: &[[f64; C]],
    b: &[f64; C],
    row: &[f64],
    y: usize,
    gw: &mut [[f64; C]],
    mut gb: [f64; C],
    mut loss: f64,
    mut sums: LogProduct,
) -> ([f64; C], f64, LogProduct) {
    let mut z = [0.0; C];
    for (v, wr) in row.iter().zip(w) {
        for k in 0..C {
            z[k] += v * wr[k];
        }
    }
    let mut e = [0.0; C];
    let (margin, sum) = row_softmax(&mut z, b, &mut e, y);
    loss += margin;
    sums.push(sum);
    for (v, gr) in row.iter().zip(gw.iter_mut()) {
        for k in 0..C {
            gr[k] += v * e[k];
        }
    }
    for k in 0..C {
        gb[k] += e[k];
    }
    (gb, loss, sums)
}

/// Adds the intercepts to the logits `z`, writes `softmax(z) - onehot(y)` to `e`, and returns
/// the row's loss as `max(z) - z[y]` and the sum of `exp(z - max(z))`, whose log completes it
/// (`-log softmax(z)[y] = max - z[y] + log(sum)`; the caller takes one log for many rows).
/// [`exp`] is this module's, not the platform's: the same bits in the tab (wasm32) and
/// natively (the CLI). The largest logit's `exp(0)` is 1 and is not computed.
#[inline(always)]
fn row_softmax(z: &mut [f64], b: &[f64], e: &mut [f64], y: usize) -> (f64, f64) {
    let mut max = f64::NEG_INFINITY;
    let mut top = 0;
    for (i, (zv, bv)) in z.iter_mut().zip(b).enumerate() {
        *zv += bv;
        if *zv > max {
            max = *zv;
            top = i;
        }
    }
    let mut sum = 0.0;
    for (i, (ev, zv)) in e.iter_mut().zip(z.iter()).enumerate() {
        *ev = if i == top { 1.0 } else { exp(zv - max) };
        sum += *ev;
    }
    for ev in e.iter_mut() {
        *ev /= sum;
    }
    e[y] -= 1.0;
    (max - z[y], sum)
}

/// `2^(j/32)` for `j` in `0..32`, each correctly rounded (computed to 60 digits).
const EXP2_32: [u64; 32] = [
    0x3ff0000000000000,
    0x3ff059b0d3158574,
    0x3ff0b5586cf9890f,
    0x3ff11301d0125b51,
    0x3ff172b83c7d517b,
    0x3ff1d4873168b9aa,
    0x3ff2387a6e756238,
    0x3ff29e9df51fdee1,
    0x3ff306fe0a31b715,
    0x3ff371a7373aa9cb,
    0x3ff3dea64c123422,
    0x3ff44e086061892d,
    0x3ff4bfdad5362a27,
    0x3ff5342b569d4f82,
    0x3ff5ab07dd485429,
    0x3ff6247eb03a5585,
    0x3ff6a09e667f3bcd,
    0x3ff71f75e8ec5f74,
    0x3ff7a11473eb0187,
    0x3ff82589994cce13,
    0x3ff8ace5422aa0db,
    0x3ff93737b0cdc5e5,
    0x3ff9c49182a3f090,
    0x3ffa5503b23e255d,
    0x3ffae89f995ad3ad,
    0x3ffb7f76f2fb5e47,
    0x3ffc199bdd85529c,
    0x3ffcb720dcef9069,
    0x3ffd5818dcfba487,
    0x3ffdfc97337b9b5f,
    0x3ffea4afa2a490da,
    0x3fff50765b6e4540,
];

/// `e^x` for `x <= 0` (the softmax's `exp(z - max)`), within 2 ulp of the exact value (the
/// test holds it to `libm::exp`): `x = (32 m + j) ln2/32 + r` with `|r| <= ln2/64`, then
/// `2^m 2^(j/32) e^r`, `e^r` by its degree-6 Taylor polynomial (error below 1e-17). Plain
/// `f64` adds and multiplies, no division, no fused multiply-add: the same bits on every
/// target, and about twice as fast as `libm::exp` in this loop. Below `-745` it is 0 (as
/// `e^x` rounds), NaN stays NaN; above 0 it defers to `libm::exp`.
#[inline(always)]
fn exp(x: f64) -> f64 {
    // 32 / ln 2; ln 2 / 32 split so that `k * LN2_32_HI` is exact for any `|k| < 2^24`.
    const INV_LN2_32: f64 = f64::from_bits(0x40471547652b82fe);
    const LN2_32_HI: f64 = f64::from_bits(0x3f962e42fe000000);
    const LN2_32_LO: f64 = f64::from_bits(0x3dcf473de6af278f);
    // 1.5 * 2^52: adding it rounds to an integer (to nearest, ties to even).
    const SHIFT: f64 = 6755399441055744.0;
    if x.is_nan() {
        return x;
    }
    if x <= -745.0 {
        return 0.0;
    }
    if x > 0.0 {
        return libm::exp(x);
    }
    let shifted = x * INV_LN2_32 + SHIFT;
    let k = (shifted.to_bits() & ((1 << 52) - 1)) as i64 - (1 << 51);
    let kf = shifted - SHIFT;
    let r = (x - kf * LN2_32_HI) - kf * LN2_32_LO;
    let q = r + r
        * r
        * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0)))));
    let t = f64::from_bits(EXP2_32[(k & 31) as usize]);
    let y = t + t * q;
    let m = k >> 5;
    if m >= -1022 {
        y * f64::from_bits(((m + 1023) as u64) << 52)
    } else {
        // Into the subnormals in two exact-then-rounded steps.
        y * f64::from_bits(((m + 1023 + 64) as u64) << 52) * f64::from_bits((1023 - 64) << 52)
    }
}

/// `sum of log(s)` over the rows' softmax sums `s` (each in `[1, c]`), as the log of their
/// product: the product is kept below `2^600` by exact powers of two, so one `log` serves all
/// rows instead of one per row. Boosting's multiclass loss uses it too.
pub(crate) struct LogProduct {
    product: f64,
    twos: u64,
}

impl LogProduct {
    const SCALE: u64 = 600;
    pub(crate) fn new() -> Self {
        LogProduct {
            product: 1.0,
            twos: 0,
        }
    }
    #[inline(always)]
    pub(crate) fn push(&mut self, s: f64) {
        self.product *= s;
        if self.product > f64::from_bits((1023 + Self::SCALE) << 52) {
            self.product *= f64::from_bits((1023 - Self::SCALE) << 52);
            self.twos += Self::SCALE;
        }
    }
    pub(crate) fn log(&self) -> f64 {
        libm::log(self.product) + self.twos as f64 * std::f64::consts::LN_2
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// The L-BFGS memory: up to [`MEMORY`] pairs `(s, y, 1 / s·y)`, oldest first.
#[derive(Default)]
struct Memory {
    pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)>,
}

impl Memory {
    /// `-H g` by the two-loop recursion, `H0 = s·y / y·y` of the newest pair.
    fn direction(&self, g: &[f64], out: &mut [f64]) {
        out.copy_from_slice(g);
        let mut alphas = [0.0; MEMORY];
        for (i, (s, y, rho)) in self.pairs.iter().enumerate().rev() {
            let a = rho * dot(s, out);
            alphas[i] = a;
            for (q, yv) in out.iter_mut().zip(y) {
                *q -= a * yv;
            }
        }
        if let Some((s, y, _)) = self.pairs.back() {
            let gamma = dot(s, y) / dot(y, y);
            for q in out.iter_mut() {
                *q *= gamma;
            }
        }
        for (i, (s, y, rho)) in self.pairs.iter().enumerate() {
            let beta = rho * dot(y, out);
            let a = alphas[i];
            for (r, sv) in out.iter_mut().zip(s) {
                *r += (a - beta) * sv;
            }
        }
        for r in out.iter_mut() {
            *r = -*r;
        }
    }
}

/// Fits `k`-class logistic regression on `x` (rows) and class indices `y`; the curve's
/// accuracy is measured on `test_x`/`test_y` (as the fit sees them: after scaling).
pub fn fit(
    x: ArrayView2<'_, f64>,
    y: &[usize],
    k: usize,
    alpha: f64,
    max_iterations: u64,
    test_x: ArrayView2<'_, f64>,
    test_y: &[usize],
) -> Result<Fit, String> {
    let (n, d) = x.dim();
    // Only the classes present are fitted (as linfa does); `present[j]` is a dataset class.
    let mut present: Vec<usize> = y.to_vec();
    present.sort_unstable();
    present.dedup();
    let c = present.len();
    if c < 2 {
        return Err(format!(
            "logistic regression needs at least 2 classes in the training split, found {c}"
        ));
    }
    let compact = |label: usize| present.binary_search(&label).unwrap_or(usize::MAX);
    let x = x.as_standard_layout();
    let test_x = test_x.as_standard_layout();
    let problem = Problem {
        x: x.as_slice().expect("standard layout"),
        y: y.iter().map(|l| compact(*l)).collect(),
        n,
        d,
        c,
        alpha,
    };
    let test = Held {
        x: test_x.as_slice().expect("standard layout"),
        y: test_y.iter().map(|l| compact(*l)).collect(),
        d,
        c,
    };
    let solved = minimize(&problem, max_iterations, |iteration, p, value| {
        (iteration, value.log_loss, test.accuracy(p))
    });
    let (w, b) = solved.param.split_at(d * c);
    let mut weights = Array2::zeros((d, k));
    let mut intercepts = Array1::from_elem(k, -1e300);
    for (j, label) in present.iter().enumerate() {
        for i in 0..d {
            weights[[i, *label]] = w[i * c + j];
        }
        intercepts[*label] = b[j];
    }
    Ok(Fit {
        weights,
        intercepts,
        train_log_loss: solved.curve.iter().map(|p| (p.0, p.1)).collect(),
        accuracy: solved.curve.iter().map(|p| (p.0, p.2)).collect(),
        evaluations: solved.evaluations,
    })
}

/// The held-out rows, for the accuracy curve.
struct Held<'a> {
    x: &'a [f64],
    y: Vec<usize>,
    d: usize,
    c: usize,
}

impl Held<'_> {
    fn accuracy(&self, p: &[f64]) -> f64 {
        let hits = match self.c {
            _ if self.d == 0 => self.hits_any(p),
            2 => self.hits_c::<2>(p),
            3 => self.hits_c::<3>(p),
            4 => self.hits_c::<4>(p),
            5 => self.hits_c::<5>(p),
            6 => self.hits_c::<6>(p),
            7 => self.hits_c::<7>(p),
            8 => self.hits_c::<8>(p),
            _ => self.hits_any(p),
        };
        hits as f64 / self.y.len().max(1) as f64
    }

    /// Four rows at a time as in [`four_rows`] (the same sums), the rest one at a time.
    fn hits_c<const C: usize>(&self, p: &[f64]) -> usize {
        let d = self.d;
        let (w, b) = p.split_at(d * C);
        let w: Vec<[f64; C]> = w
            .chunks_exact(C)
            .map(|r| r.try_into().expect("C values"))
            .collect();
        let b: &[f64; C] = b.try_into().expect("C intercepts");
        let done = self.y.len() / 4 * 4;
        let mut hits = four_hits(&self.x[..done * d], &self.y[..done], &w, b);
        for (row, y) in self.x[done * d..].chunks_exact(d).zip(&self.y[done..]) {
            let mut z = [0.0; C];
            for (v, wr) in row.iter().zip(&w) {
                for k in 0..C {
                    z[k] += v * wr[k];
                }
            }
            for k in 0..C {
                z[k] += b[k];
            }
            hits += usize::from(argmax(&z) == *y);
        }
        hits
    }

    fn hits_any(&self, p: &[f64]) -> usize {
        let (d, c) = (self.d, self.c);
        let (w, b) = p.split_at(d * c);
        let mut z = vec![0.0; c];
        let mut hits = 0;
        for (i, y) in self.y.iter().enumerate() {
            z.fill(0.0);
            let row = &self.x[i * d..(i + 1) * d];
            for (v, wrow) in row.iter().zip(w.chunks_exact(c)) {
                for (acc, wv) in z.iter_mut().zip(wrow) {
                    *acc += v * wv;
                }
            }
            for (zv, bv) in z.iter_mut().zip(b) {
                *zv += bv;
            }
            if argmax(&z) == *y {
                hits += 1;
            }
        }
        hits
    }
}

/// Held-out rows classified right, four rows at a time (see [`four_rows`]).
#[inline(never)]
fn four_hits<const C: usize>(x: &[f64], y: &[usize], w: &[[f64; C]], b: &[f64; C]) -> usize {
    let d = w.len();
    let mut hits = 0;
    if d == 0 {
        return hits;
    }
    for (quad, ys) in x.chunks_exact(4 * d).zip(y.chunks_exact(4)) {
        let (r01, r23) = quad.split_at(2 * d);
        let (r0, r1) = r01.split_at(d);
        let (r2, r3) = r23.split_at(d);
        let (mut z0, mut z1, mut z2, mut z3) = ([0.0; C], [0.0; C], [0.0; C], [0.0; C]);
        for ((((v0, v1), v2), v3), wr) in r0.iter().zip(r1).zip(r2).zip(r3).zip(w) {
            for k in 0..C {
                z0[k] += v0 * wr[k];
                z1[k] += v1 * wr[k];
                z2[k] += v2 * wr[k];
                z3[k] += v3 * wr[k];
            }
        }
        for k in 0..C {
            z0[k] += b[k];
            z1[k] += b[k];
            z2[k] += b[k];
            z3[k] += b[k];
        }
        hits += usize::from(argmax(&z0) == ys[0])
            + usize::from(argmax(&z1) == ys[1])
            + usize::from(argmax(&z2) == ys[2])
            + usize::from(argmax(&z3) == ys[3]);
    }
    hits
}

/// Index of the largest value (the first of ties).
fn argmax(values: &[f64]) -> usize {
    let mut best = (usize::MAX, f64::NEG_INFINITY);
    for (i, v) in values.iter().enumerate() {
        if *v > best.1 {
            best = (i, *v);
        }
    }
    best.0
}

struct Solved<T> {
    param: Vec<f64>,
    /// What `observe` returned after each iteration.
    curve: Vec<T>,
    evaluations: u64,
}

/// L-BFGS from zero (see the module docs for its rules); `observe` sees each iteration's
/// parameters and value.
fn minimize<T>(
    problem: &Problem<'_>,
    max_iterations: u64,
    mut observe: impl FnMut(u64, &[f64], Value) -> T,
) -> Solved<T> {
    let m = (problem.d + 1) * problem.c;
    let mut x = vec![0.0; m];
    let mut g = vec![0.0; m];
    let mut value = problem.evaluate(&x, &mut g);
    let mut evaluations = 1;
    let mut curve = Vec::new();
    let mut memory = Memory::default();
    let (mut dir, mut x_new, mut g_new) = (vec![0.0; m], vec![0.0; m], vec![0.0; m]);
    let mut iteration = 0u64;
    let mut first = true;
    if max_abs(&g) <= TOLERANCE {
        return Solved {
            param: x,
            curve,
            evaluations,
        };
    }
    while iteration < max_iterations {
        memory.direction(&g, &mut dir);
        let mut gd = dot(&g, &dir);
        if gd >= 0.0 || !gd.is_finite() {
            if memory.pairs.is_empty() {
                break;
            }
            memory.pairs.clear();
            continue;
        }
        let step = if first {
            (1.0 / dot(&dir, &dir).sqrt()).min(BIG)
        } else {
            1.0
        };
        let mut search = LineSearch::start(value.objective, gd, step, BIG);
        let mut accepted = None;
        for _ in 0..MAX_LINE_SEARCH {
            let stp = search.stp;
            for ((xn, xv), dv) in x_new.iter_mut().zip(&x).zip(&dir) {
                *xn = xv + stp * dv;
            }
            let v = problem.evaluate(&x_new, &mut g_new);
            evaluations += 1;
            let gd_new = dot(&g_new, &dir);
            match search.next(v.objective, gd_new) {
                Search::Evaluate => {}
                Search::Done => {
                    accepted = Some((v, gd_new, stp));
                    break;
                }
                Search::Failed => break,
            }
        }
        first = false;
        let Some((v, gd_new, stp)) = accepted else {
            // scipy: restore the point, drop the memory and retry along the gradient; with no
            // memory to drop, stop at the last point.
            if memory.pairs.is_empty() {
                break;
            }
            memory.pairs.clear();
            continue;
        };
        iteration += 1;
        let old = value.objective;
        // s = stp * d and y = g_new - g, as L-BFGS-B forms them.
        let s: Vec<f64> = dir.iter().map(|dv| stp * dv).collect();
        let yv: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        value = v;
        curve.push(observe(iteration, &x, value));
        if max_abs(&g) <= TOLERANCE {
            break;
        }
        if old - value.objective <= FTOL * old.abs().max(value.objective.abs()).max(1.0) {
            break;
        }
        let sy = (gd_new - gd) * stp;
        gd *= stp;
        if sy <= f64::EPSILON * -gd {
            continue;
        }
        if memory.pairs.len() == MEMORY {
            memory.pairs.pop_front();
        }
        memory.pairs.push_back((s, yv, 1.0 / sy));
    }
    Solved {
        param: x,
        curve,
        evaluations,
    }
}

/// L-BFGS-B's largest step (`big`).
const BIG: f64 = 1e10;

enum Search {
    /// Evaluate at the new `stp`.
    Evaluate,
    /// `stp` is accepted (converged, or a warning MINPACK-2 accepts the step on).
    Done,
    Failed,
}

/// MINPACK-2's `dcsrch` (More and Thuente's line search), as L-BFGS-B calls it: sufficient
/// decrease `FTOL_LS`, curvature `GTOL_LS`, relative width `XTOL_LS`, steps in `[0, stpmax]`.
struct LineSearch {
    stp: f64,
    stpmax: f64,
    brackt: bool,
    stage: u8,
    finit: f64,
    ginit: f64,
    gtest: f64,
    width: f64,
    width1: f64,
    stx: f64,
    fx: f64,
    gx: f64,
    sty: f64,
    fy: f64,
    gy: f64,
    stmin: f64,
    stmax: f64,
}

const FTOL_LS: f64 = 1e-3;
const GTOL_LS: f64 = 0.9;
const XTOL_LS: f64 = 0.1;
const STPMIN: f64 = 0.0;

impl LineSearch {
    /// `dcsrch` with task `START`: `f` and `g` (the directional derivative, negative) at 0.
    fn start(f: f64, g: f64, stp: f64, stpmax: f64) -> Self {
        let width = stpmax - STPMIN;
        LineSearch {
            stp,
            stpmax,
            brackt: false,
            stage: 1,
            finit: f,
            ginit: g,
            gtest: FTOL_LS * g,
            width,
            width1: width / 0.5,
            stx: 0.0,
            fx: f,
            gx: g,
            sty: 0.0,
            fy: f,
            gy: g,
            stmin: 0.0,
            stmax: stp + 4.0 * stp,
        }
    }

    /// `dcsrch` with `f` and `g` at `self.stp`.
    fn next(&mut self, f: f64, g: f64) -> Search {
        if !f.is_finite() || !g.is_finite() {
            return Search::Failed;
        }
        let ftest = self.finit + self.stp * self.gtest;
        if self.stage == 1 && f <= ftest && g >= 0.0 {
            self.stage = 2;
        }
        // Warnings end the search with the current step, as L-BFGS-B takes them.
        if self.brackt && (self.stp <= self.stmin || self.stp >= self.stmax) {
            return Search::Done;
        }
        if self.brackt && self.stmax - self.stmin <= XTOL_LS * self.stmax {
            return Search::Done;
        }
        if self.stp == self.stpmax && f <= ftest && g <= self.gtest {
            return Search::Done;
        }
        if self.stp == STPMIN && (f > ftest || g >= self.gtest) {
            return Search::Done;
        }
        if f <= ftest && g.abs() <= GTOL_LS * -self.ginit {
            return Search::Done;
        }
        let mut step = Step {
            stx: self.stx,
            fx: self.fx,
            dx: self.gx,
            sty: self.sty,
            fy: self.fy,
            dy: self.gy,
            stp: self.stp,
            brackt: self.brackt,
        };
        if self.stage == 1 && f <= self.fx && f > ftest {
            // The modified function.
            let gtest = self.gtest;
            step.fx = self.fx - self.stx * gtest;
            step.fy = self.fy - self.sty * gtest;
            step.dx = self.gx - gtest;
            step.dy = self.gy - gtest;
            step.step(f - self.stp * gtest, g - gtest, self.stmin, self.stmax);
            step.fx += step.stx * gtest;
            step.fy += step.sty * gtest;
            step.dx += gtest;
            step.dy += gtest;
        } else {
            step.step(f, g, self.stmin, self.stmax);
        }
        let Step {
            stx,
            fx,
            dx,
            sty,
            fy,
            dy,
            mut stp,
            brackt,
        } = step;
        (self.stx, self.fx, self.gx) = (stx, fx, dx);
        (self.sty, self.fy, self.gy) = (sty, fy, dy);
        self.brackt = brackt;
        if brackt {
            if (sty - stx).abs() >= 0.66 * self.width1 {
                stp = stx + 0.5 * (sty - stx);
            }
            self.width1 = self.width;
            self.width = (sty - stx).abs();
            self.stmin = stx.min(sty);
            self.stmax = stx.max(sty);
        } else {
            self.stmin = stp + 1.1 * (stp - stx);
            self.stmax = stp + 4.0 * (stp - stx);
        }
        stp = stp.max(STPMIN).min(self.stpmax);
        if brackt
            && (stp <= self.stmin
                || stp >= self.stmax
                || self.stmax - self.stmin <= XTOL_LS * self.stmax)
        {
            stp = stx;
        }
        self.stp = stp;
        Search::Evaluate
    }
}

/// MINPACK-2's `dcstep`: the safeguarded step and the updated interval of uncertainty.
struct Step {
    stx: f64,
    fx: f64,
    dx: f64,
    sty: f64,
    fy: f64,
    dy: f64,
    stp: f64,
    brackt: bool,
}

impl Step {
    fn step(&mut self, fp: f64, dp: f64, stpmin: f64, stpmax: f64) {
        let Step {
            stx,
            fx,
            dx,
            sty,
            fy,
            dy,
            stp,
            ..
        } = *self;
        let sgnd = dp * (dx / dx.abs());
        let stpf;
        if fp > fx {
            // A higher function value: the minimum is bracketed.
            let theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
            let s = theta.abs().max(dx.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s) * (theta / s) - (dx / s) * (dp / s)).sqrt();
            if stp < stx {
                gamma = -gamma;
            }
            let p = (gamma - dx) + theta;
            let q = ((gamma - dx) + gamma) + dp;
            let r = p / q;
            let stpc = stx + r * (stp - stx);
            let stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx);
            stpf = if (stpc - stx).abs() < (stpq - stx).abs() {
                stpc
            } else {
                stpc + (stpq - stpc) / 2.0
            };
            self.brackt = true;
        } else if sgnd < 0.0 {
            // Derivatives of opposite sign: bracketed.
            let theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
            let s = theta.abs().max(dx.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s) * (theta / s) - (dx / s) * (dp / s)).sqrt();
            if stp > stx {
                gamma = -gamma;
            }
            let p = (gamma - dp) + theta;
            let q = ((gamma - dp) + gamma) + dx;
            let r = p / q;
            let stpc = stp + r * (stx - stp);
            let stpq = stp + (dp / (dp - dx)) * (stx - stp);
            stpf = if (stpc - stp).abs() > (stpq - stp).abs() {
                stpc
            } else {
                stpq
            };
            self.brackt = true;
        } else if dp.abs() < dx.abs() {
            // Same sign, the derivative's magnitude decreasing.
            let theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
            let s = theta.abs().max(dx.abs()).max(dp.abs());
            let mut gamma = s
                * (0.0f64)
                    .max((theta / s) * (theta / s) - (dx / s) * (dp / s))
                    .sqrt();
            if stp > stx {
                gamma = -gamma;
            }
            let p = (gamma - dp) + theta;
            let q = (gamma + (dx - dp)) + gamma;
            let r = p / q;
            let stpc = if r < 0.0 && gamma != 0.0 {
                stp + r * (stx - stp)
            } else if stp > stx {
                stpmax
            } else {
                stpmin
            };
            let stpq = stp + (dp / (dp - dx)) * (stx - stp);
            if self.brackt {
                let mut f = if (stpc - stp).abs() < (stpq - stp).abs() {
                    stpc
                } else {
                    stpq
                };
                f = if stp > stx {
                    f.min(stp + 0.66 * (sty - stp))
                } else {
                    f.max(stp + 0.66 * (sty - stp))
                };
                stpf = f;
            } else {
                let f = if (stpc - stp).abs() > (stpq - stp).abs() {
                    stpc
                } else {
                    stpq
                };
                stpf = f.min(stpmax).max(stpmin);
            }
        } else if self.brackt {
            // Same sign, the derivative's magnitude not decreasing, bracketed.
            let theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp;
            let s = theta.abs().max(dy.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s) * (theta / s) - (dy / s) * (dp / s)).sqrt();
            if stp > sty {
                gamma = -gamma;
            }
            let p = (gamma - dp) + theta;
            let q = ((gamma - dp) + gamma) + dy;
            let r = p / q;
            stpf = stp + r * (sty - stp);
        } else if stp > stx {
            stpf = stpmax;
        } else {
            stpf = stpmin;
        }
        if fp > fx {
            self.sty = stp;
            self.fy = fp;
            self.dy = dp;
        } else {
            if sgnd < 0.0 {
                self.sty = stx;
                self.fy = fx;
                self.dy = dx;
            }
            self.stx = stp;
            self.fx = fp;
            self.dx = dp;
        }
        self.stp = stpf;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line search finds a step satisfying the strong Wolfe conditions on a quadratic and
    /// on a function whose first trial step is far too long.
    #[test]
    fn the_line_search_meets_the_wolfe_conditions() {
        // phi(t) = f(x + t d) for f = (t - 3)^2 and f = exp-like steep growth.
        type Phi<'a> = &'a dyn Fn(f64) -> (f64, f64);
        let cases: [(Phi, f64); 3] = [
            (&|t: f64| ((t - 3.0) * (t - 3.0), 2.0 * (t - 3.0)), 1.0),
            (&|t: f64| ((t - 3.0) * (t - 3.0), 2.0 * (t - 3.0)), 1000.0),
            (
                &|t: f64| (libm::exp(t) - 10.0 * t, libm::exp(t) - 10.0),
                50.0,
            ),
        ];
        for (phi, stp) in cases {
            let (f0, g0) = phi(0.0);
            let mut s = LineSearch::start(f0, g0, stp, BIG);
            let mut done = None;
            for _ in 0..MAX_LINE_SEARCH {
                let (f, g) = phi(s.stp);
                let at = s.stp;
                match s.next(f, g) {
                    Search::Evaluate => {}
                    Search::Done => {
                        done = Some((at, f, g));
                        break;
                    }
                    Search::Failed => break,
                }
            }
            let (t, f, g) = done.expect("the search ends");
            assert!(f <= f0 + FTOL_LS * t * g0, "sufficient decrease at {t}");
            assert!(g.abs() <= GTOL_LS * -g0, "curvature at {t}: {g}");
        }
    }

    /// The module's `exp` is within 2 ulp of `libm::exp` over the whole range it serves
    /// (`x <= 0`), exact at 0, 0 below -745.
    #[test]
    fn exp_is_libms_within_two_ulp() {
        assert_eq!(exp(0.0).to_bits(), 1.0f64.to_bits());
        assert_eq!(exp(-0.0).to_bits(), 1.0f64.to_bits());
        assert_eq!(exp(-800.0), 0.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert!(exp(f64::NAN).is_nan());
        let mut state = 5u64;
        let mut worst = 0.0f64;
        for i in 0..400_000u64 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            // Mostly where softmax lives, then the whole range down to the subnormals.
            let x = match i % 4 {
                0 => -u * 745.0,
                1 => -u * 40.0,
                2 => -u,
                _ => -u * 1e-6,
            };
            let (got, want) = (exp(x), libm::exp(x));
            if want < f64::MIN_POSITIVE {
                assert!(
                    (got - want).abs() <= 2.0 * f64::from_bits(1),
                    "{x}: {got} vs {want}"
                );
                continue;
            }
            let ulp = (got - want).abs() / (f64::from_bits(want.to_bits() + 1) - want);
            worst = worst.max(ulp);
            assert!(ulp <= 2.0, "{x}: {got} vs {want} ({ulp} ulp)");
        }
        assert!(worst > 0.0, "compared something");
    }

    /// The gradient is the loss's: central differences agree with it.
    #[test]
    fn the_gradient_is_the_losss() {
        // 11 rows: pairs and the odd one out.
        let x: Vec<f64> = (0..44).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0).collect();
        let problem = Problem {
            x: &x,
            y: (0..11).map(|i| i % 3).collect(),
            n: 11,
            d: 4,
            c: 3,
            alpha: 0.7,
        };
        let p: Vec<f64> = (0..15).map(|i| ((i * 5 % 7) as f64 - 3.0) / 10.0).collect();
        let mut g = vec![0.0; 15];
        problem.evaluate(&p, &mut g);
        let mut scratch = vec![0.0; 15];
        for i in 0..15 {
            let h = 1e-6;
            let (mut a, mut b) = (p.clone(), p.clone());
            a[i] += h;
            b[i] -= h;
            let fa = problem.evaluate(&a, &mut scratch).objective;
            let fb = problem.evaluate(&b, &mut scratch).objective;
            let numeric = (fa - fb) / (2.0 * h);
            assert!((numeric - g[i]).abs() < 1e-6, "{i}: {numeric} vs {}", g[i]);
        }
        // The held-out accuracy, four rows at a time and one at a time.
        let held = Held {
            x: &x,
            y: problem.y.clone(),
            d: 4,
            c: 3,
        };
        assert_eq!(held.hits_c::<3>(&p), held.hits_any(&p));
        // The specialized loop and the general one give the same bits.
        let mut general = vec![0.0; 15];
        let v = problem.evaluate_any(&p, &mut general);
        assert_eq!(
            v.objective.to_bits(),
            problem.evaluate(&p, &mut scratch).objective.to_bits()
        );
        assert_eq!(
            general.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            g.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
