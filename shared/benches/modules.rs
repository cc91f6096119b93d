//! Module predict throughput in wasmtime against native Rust for the same model.
//!
//! `cargo xtask bench` (or `cargo bench -p wasmops-shared --bench modules`). For every model
//! kind: 10,000 varied rows (fresh random rows, not one row replayed: a branch predictor learns
//! a replayed tree), the median of several batch calls, in three settings:
//! - native: `wasmops_shared::reference::predict`, the plain-Rust computation every module must
//!   equal bit for bit (release build, scratch buffers reused across rows);
//! - wasm: the compiled module in wasmtime (cranelift), plain;
//! - wasm+fuel: the same with fuel metering on, as the device runs it.
//!
//! Prints a markdown table; figures are ratios against native measured in the same run.

use std::time::{Duration, Instant};

use wasmops_shared::pipeline::{Model, Pipeline, StandardScaler, Tree, TreeNode};
use wasmops_shared::reference;

const ROWS: usize = 10_000;
const REPEATS: usize = 15;

/// xorshift64*: deterministic, varied benchmark data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

fn random_tree(rng: &mut Rng, d: usize, k: usize, depth: u32) -> Tree {
    let n_splits = (1usize << depth) - 1;
    let mut nodes = Vec::new();
    for i in 0..(2 * n_splits + 1) {
        nodes.push(if i < n_splits {
            let feature = ((rng.next() + 1.0) * 0.5 * d as f64) as usize % d;
            TreeNode::Split {
                feature,
                threshold: rng.next() * 2.0,
                left: 2 * i + 1,
                right: 2 * i + 2,
            }
        } else {
            let class = ((rng.next() + 1.0) * 0.5 * k as f64) as usize % k;
            let mut probabilities = vec![0.0; k];
            probabilities[class] = 1.0;
            TreeNode::Leaf {
                class,
                probabilities,
            }
        });
    }
    Tree { nodes }
}

fn models(rng: &mut Rng) -> Vec<(&'static str, Pipeline)> {
    let d = 20;
    let scaler = Some(StandardScaler {
        mean: rng.vec(d, 1.0),
        scale: vec![1.5; d],
    });
    let m = |model: Model, scaled: bool| Pipeline {
        n_features: d,
        scaler: if scaled { scaler.clone() } else { None },
        model,
    };
    let mut r = Rng(7);
    vec![
        (
            "linear (20 features, scaled)",
            m(
                Model::Linear {
                    weights: r.vec(d, 3.0),
                    intercept: 0.5,
                },
                true,
            ),
        ),
        (
            "logistic (20 features, 3 classes, scaled)",
            m(
                Model::LogisticRegression {
                    weights: (0..3).map(|_| r.vec(d, 2.0)).collect(),
                    intercepts: r.vec(3, 1.0),
                },
                true,
            ),
        ),
        (
            "gaussian NB (20 features, 3 classes)",
            m(
                Model::GaussianNb {
                    means: (0..3).map(|_| r.vec(d, 1.0)).collect(),
                    neg_half_inv_var: (0..3).map(|_| vec![-0.7; d]).collect(),
                    log_prior_norm: vec![-1.0, -1.2, -0.9],
                },
                false,
            ),
        ),
        (
            "k-means (20 features, k = 8)",
            m(
                Model::KMeans {
                    centroids: (0..8).map(|_| r.vec(d, 1.0)).collect(),
                },
                false,
            ),
        ),
        (
            "decision tree (depth 8)",
            m(
                Model::DecisionTree {
                    n_classes: 3,
                    tree: random_tree(&mut r, d, 3, 8),
                },
                false,
            ),
        ),
        (
            "random forest (50 trees, depth 8)",
            m(
                Model::RandomForest {
                    n_classes: 3,
                    trees: (0..50).map(|_| random_tree(&mut r, d, 3, 8)).collect(),
                },
                false,
            ),
        ),
    ]
}

#[path = "../tests/support/wasm.rs"]
mod support;
use support::{code_size, Batch};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median time of one predict call over all rows, in wasmtime; checks the outputs.
fn time_wasm(bytes: &[u8], rows: &[f64], d: usize, fuel: bool, expect: &[f64]) -> Duration {
    let mut batch = Batch::new(bytes, rows, d, fuel).expect("module instantiates");
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let t = Instant::now();
        batch.call().expect("predict");
        times.push(t.elapsed());
    }
    let got = batch.outputs();
    assert!(
        got.iter()
            .zip(expect)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "module disagrees with native"
    );
    median(times)
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    println!("| model | module size (code / total) | native rows/s | wasm rows/s | wasm / native time | wasm+fuel / native time |");
    println!("|---|---|---|---|---|---|");
    for (name, p) in models(&mut rng) {
        let d = p.n_features;
        let rows = rng.vec(ROWS * d, 2.5);
        let bytes = support::build_with(&p, &vec![0.5; d * 4]);
        let code = code_size(&bytes);
        let mut native = Vec::new();
        let mut expect = Vec::new();
        for _ in 0..REPEATS {
            let t = Instant::now();
            expect = std::hint::black_box(reference::predict(&p, std::hint::black_box(&rows)));
            native.push(t.elapsed());
        }
        let native = median(native);
        let wasm = time_wasm(&bytes, &rows, d, false, &expect);
        let fuel = time_wasm(&bytes, &rows, d, true, &expect);
        let rps = |t: Duration| ROWS as f64 / t.as_secs_f64();
        println!(
            "| {name} | {:.1} KB / {:.1} KB | {:.2e} | {:.2e} | {:.2} | {:.2} |",
            code as f64 / 1024.0,
            bytes.len() as f64 / 1024.0,
            rps(native),
            rps(wasm),
            wasm.as_secs_f64() / native.as_secs_f64(),
            fuel.as_secs_f64() / native.as_secs_f64()
        );
    }
}
