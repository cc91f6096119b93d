//! Benchmark (issue 5): the trainer natively on the dashboard benchmark's dataset (synthetic
//! 100,000 x 20, 3 classes, seed 42; `tests/benches/training.rs` trains the same in Chromium),
//! each stage of `train` timed from its progress reports: split, fit, evaluation, step curves,
//! importances. Against the browser's figures this separates what linfa costs from what wasm
//! and the worker add.
//!
//! `cargo bench -p wasmops-trainer --bench fit` (part of `cargo xtask bench`). One thread, as
//! the worker and scikit-learn: linfa's k-means would otherwise use rayon's pool.
//! `WASMOPS_BENCH_ROWS=20000` for a quicker look.

use std::time::Instant;

use wasmops_trainer::{datasets, train, Algorithm, TrainSpec};

fn main() {
    rayon_one_thread();
    let rows: usize = std::env::var("WASMOPS_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let data = datasets::synthetic(rows, 20, 42);
    let algorithms = [
        Algorithm::LogisticRegression {
            alpha: 1.0,
            max_iterations: 100,
        },
        Algorithm::GaussianNb,
        Algorithm::DecisionTree { max_depth: Some(8) },
        Algorithm::KMeans {
            k: 8,
            max_iterations: 100,
        },
        Algorithm::RandomForest {
            n_trees: 20,
            max_depth: Some(8),
            feature_proportion: Some(0.7),
        },
    ];
    println!("\n## Trainer, native, {rows} x 20 (ms per stage)\n");
    println!("| algorithm | split | fit | evaluate | curves | importances | total | held-out | curve steps |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|---|");
    for algorithm in algorithms {
        let spec = TrainSpec {
            algorithm: algorithm.clone(),
            scale: false,
            test_fraction: 0.2,
            seed: 42,
        };
        let start = Instant::now();
        let mut marks: Vec<(String, f64)> = Vec::new();
        let trained = train(&data, &spec, |stage, _| {
            marks.push((stage.to_string(), start.elapsed().as_secs_f64() * 1000.0))
        })
        .expect("train");
        let total = start.elapsed().as_secs_f64() * 1000.0;
        let at = |stage: &str| {
            marks
                .iter()
                .find(|(s, _)| s == stage)
                .map(|m| m.1)
                .unwrap_or(f64::NAN)
        };
        let metric = wasmops_shared::metrics::primary(&trained.pipeline);
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {total:.0} | {metric} {:.4} | {} |",
            serde_json::to_value(&algorithm).expect("json")["algorithm"]
                .as_str()
                .unwrap_or("?"),
            at("fitting") - at("splitting"),
            at("evaluating") - at("fitting"),
            at("curves") - at("evaluating"),
            at("importances") - at("curves"),
            at("done") - at("importances"),
            trained.metrics.get(metric).copied().unwrap_or(f64::NAN),
            trained
                .curves
                .values()
                .next()
                .map(|c| {
                    let steps: Vec<u64> = c.iter().map(|p| p.0).collect();
                    if steps.iter().copied().eq(1..=steps.len() as u64) {
                        format!("every iteration, 1 to {}", steps.len())
                    } else {
                        steps
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(" ")
                    }
                })
                .unwrap_or_else(|| "-".into()),
        );
    }
}

/// linfa-clustering runs its assignment step on rayon's global pool; the pool reads this
/// before its first use.
fn rayon_one_thread() {
    // SAFETY: called first thing in `main`, before any other thread exists.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
}
