//! Benchmark (issue 5): the trainer natively on the dashboard benchmark's dataset (synthetic
//! 100,000 x 20, 3 classes, seed 42; `tests/benches/training.rs` trains the same in Chromium),
//! each stage of `train` timed from its progress reports: split, fit, evaluation, step curves,
//! importances; then, apart, the training split's profile (`Profile::from_rows`, which a run
//! computes after `train`; not in the total). Against the browser's figures this separates
//! what the fit costs from what wasm and the worker add.
//!
//! `cargo bench -p wasmops-trainer --bench fit` (part of `cargo xtask bench`). One thread, as
//! the worker and scikit-learn. `WASMOPS_BENCH_ROWS=20000` for a quicker look,
//! `WASMOPS_BENCH_ONLY=k_means,random_forest` for some algorithms only.
//!
//! In the same run, scikit-learn fits the same dataset with the same hyperparameters (one
//! thread; its own 20% held out, as in the browser benchmark) when a Python with scikit-learn
//! is found: `WASMOPS_BENCH_PYTHON`, else the browser benchmark's venv
//! (`target/tmp/sklearn-venv`); `WASMOPS_BENCH_BASELINE=0` skips it. The ratio column is the
//! trainer's whole `train` (split, fit, evaluation, curves, importances) over scikit-learn's
//! `fit` alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use wasmops_trainer::{datasets, train, Algorithm, TrainSpec};

fn main() {
    rayon_one_thread();
    let rows: usize = std::env::var("WASMOPS_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let data = datasets::synthetic(rows, 20, 42);
    let only = std::env::var("WASMOPS_BENCH_ONLY").ok();
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
        // scikit-learn's defaults on both sides (80,000 training rows: early stopping on).
        Algorithm::GradientBoostingClassifier(Default::default()),
    ];
    let name = |a: &Algorithm| {
        serde_json::to_value(a).expect("json")["algorithm"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    };
    let algorithms: Vec<Algorithm> = algorithms
        .into_iter()
        .filter(|a| {
            only.as_ref()
                .is_none_or(|o| o.split(',').any(|n| n == name(a)))
        })
        .collect();
    let baseline = sklearn(&data, &algorithms.iter().map(name).collect::<Vec<_>>());
    println!("\n## Trainer, native, {rows} x 20 (ms per stage)\n");
    println!("| algorithm | split | fit | evaluate | curves | importances | total | profile | held-out | curve steps | scikit-learn fit | held-out | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|---:|");
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
        // Which model: a change that must not change the model shows the same hash.
        eprintln!(
            "{}: model {}",
            name(&algorithm),
            wasmops_shared::digest::content_hash(
                serde_json::to_string(&trained.pipeline)
                    .expect("json")
                    .as_bytes()
            )
        );
        // The training split's profile, which a run in the tab computes after `train`.
        let profiled = Instant::now();
        std::hint::black_box(wasmops_shared::profile::Profile::from_rows(
            &data.feature_names,
            &trained.train_x,
        ));
        let profile = profiled.elapsed().as_secs_f64() * 1000.0;
        let at = |stage: &str| {
            marks
                .iter()
                .find(|(s, _)| s == stage)
                .map(|m| m.1)
                .unwrap_or(f64::NAN)
        };
        let metric = wasmops_shared::metrics::primary(&trained.pipeline);
        let sk = baseline
            .as_ref()
            .and_then(|b| b.get(name(&algorithm)))
            .map(|b| {
                let ms = b["ms"].as_f64().unwrap_or(f64::NAN);
                format!(
                    "{ms:.0} | {} {:.4} | {:.2}",
                    b["metric"].as_str().unwrap_or("?"),
                    b["value"].as_f64().unwrap_or(f64::NAN),
                    total / ms
                )
            })
            .unwrap_or_else(|| "- | - | -".into());
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {total:.0} | {profile:.0} | {metric} {:.4} | {} | {sk} |",
            name(&algorithm),
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

/// The scikit-learn estimator the browser benchmark (`tests/benches/training.rs`) compares
/// each algorithm with.
fn estimator(name: &str) -> &'static str {
    match name {
        "logistic_regression" => "LogisticRegression(C=1.0, max_iter=100)",
        "gaussian_nb" => "GaussianNB()",
        "decision_tree" => "DecisionTreeClassifier(max_depth=8, random_state=0)",
        "k_means" => "KMeans(n_clusters=8, n_init=10, max_iter=100, random_state=0)",
        "random_forest" => "RandomForestClassifier(n_estimators=20, max_depth=8, max_features=0.7, n_jobs=1, random_state=0)",
        "gradient_boosting_classifier" => "HistGradientBoostingClassifier(random_state=0)",
        _ => "None",
    }
}

const SKLEARN: &str = r#"
import json, sys, time
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier, HistGradientBoostingClassifier
data = np.loadtxt(sys.argv[1], delimiter=",")
X, y = data[:, :-1], data[:, -1].astype(int)
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=42)
out = {}
for name, make in json.loads(sys.argv[2]).items():
    m = eval(make)
    t = time.perf_counter()
    m.fit(Xtr) if name == "k_means" else m.fit(Xtr, ytr)
    ms = (time.perf_counter() - t) * 1000
    if name == "k_means":
        quality = ("inertia", float(-m.score(Xte)))
    else:
        quality = ("accuracy", float((m.predict(Xte) == yte).mean()))
    out[name] = {"ms": ms, "metric": quality[0], "value": quality[1]}
print(json.dumps(out))
"#;

/// scikit-learn's fit times and held-out quality by algorithm name, if a Python with
/// scikit-learn is at hand (nothing is installed here: see the module docs).
fn sklearn(data: &wasmops_shared::dataset::Dataset, names: &[String]) -> Option<serde_json::Value> {
    if std::env::var("WASMOPS_BENCH_BASELINE").as_deref() == Ok("0") {
        return None;
    }
    let python = std::env::var_os("WASMOPS_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("sklearn-venv/bin/python"));
    if !python.exists() {
        eprintln!(
            "bench: no scikit-learn baseline ({} not found; set WASMOPS_BENCH_PYTHON)",
            python.display()
        );
        return None;
    }
    let csv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fit-bench.csv");
    let mut text = String::with_capacity(data.n_rows() * data.n_features() * 20);
    for i in 0..data.n_rows() {
        for v in data.row(i) {
            text.push_str(&format!("{v},"));
        }
        text.push_str(&format!("{}\n", data.y[i]));
    }
    std::fs::write(&csv, text).expect("write the benchmark CSV");
    let estimators: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| (n.clone(), serde_json::json!(estimator(n))))
        .collect();
    let out = Command::new(&python)
        .arg("-c")
        .arg(SKLEARN)
        .arg(&csv)
        .arg(serde_json::Value::Object(estimators).to_string())
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "bench: scikit-learn baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// ndarray is built with rayon (through linfa); nothing here should use more than one thread,
/// and this makes sure of it.
fn rayon_one_thread() {
    // SAFETY: called first thing in `main`, before any other thread exists.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
}
