//! Benchmark (issue 5): training time in Chromium (the dashboard's worker, wasm) against
//! scikit-learn on the same 100,000 x 20 synthetic dataset, one thread each, with the quality
//! each reaches on its held-out 20%.
//!
//! The dataset is a CSV (3 classes, 10 informative and 10 noise features) imported through the
//! dashboard's data panel like any user's file; each algorithm is trained through the train
//! panel with the same hyperparameters scikit-learn gets. The dashboard's figure is the run's
//! recorded duration: the worker's whole job (dataset to the worker as JSON, split, fit, step
//! curves, importances, evaluation), so it is an upper bound on linfa's fit time; scikit-learn's
//! is `fit` alone (`OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`, `n_jobs=1`).
//! `WASMOPS_BENCH_BASELINE=0` skips scikit-learn (its venv is made once under the target dir).
//!
//! `cargo xtask bench` runs it (it builds dist/ and sets WASMOPS_DIST, CHROMEDRIVER, CHROMIUM).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use wasmops_e2e::{temp_dir, Browser, StaticSite};

const ROWS: usize = 100_000;
const FEATURES: usize = 20;

/// A dashboard algorithm, the values its form gets, and the scikit-learn estimator.
type Algorithm = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

const ALGORITHMS: &[Algorithm] = &[
    (
        "logistic_regression",
        &[("alpha", "1"), ("max_iterations", "100")],
        "LogisticRegression(C=1.0, max_iter=100)",
    ),
    ("gaussian_nb", &[], "GaussianNB()"),
    ("decision_tree", &[("max_depth", "8")], "DecisionTreeClassifier(max_depth=8, random_state=0)"),
    (
        "kmeans",
        &[("k", "8"), ("max_iterations", "100")],
        "KMeans(n_clusters=8, n_init=10, max_iter=100, random_state=0)",
    ),
    (
        "random_forest",
        &[("n_trees", "20"), ("max_depth", "8"), ("feature_proportion", "0.7")],
        "RandomForestClassifier(n_estimators=20, max_depth=8, max_features=0.7, n_jobs=1, random_state=0)",
    ),
];

/// The benchmark dataset as a CSV (`wasmops_trainer::datasets::synthetic`, seed 42).
fn write_dataset(path: &Path) {
    let data = wasmops_trainer::datasets::synthetic(ROWS, FEATURES, 42);
    let mut csv = String::with_capacity(ROWS * FEATURES * 10);
    csv.push_str(&data.feature_names.join(","));
    csv.push_str(",label\n");
    for i in 0..data.n_rows() {
        for v in data.row(i) {
            csv.push_str(&format!("{v:.5},"));
        }
        csv.push_str(&data.class_names[data.y[i] as usize]);
        csv.push('\n');
    }
    std::fs::write(path, csv).expect("write dataset");
}

const SKLEARN: &str = r#"
import csv, json, sys, time
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier
rows = list(csv.reader(open(sys.argv[1])))[1:]
X = np.array([[float(v) for v in r[:-1]] for r in rows])
y = np.array(["abc".index(r[-1]) for r in rows])
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=42)
out = {}
for name, make in json.loads(sys.argv[2]).items():
    m = eval(make)
    t = time.perf_counter()
    m.fit(Xtr) if name == "kmeans" else m.fit(Xtr, ytr)
    ms = (time.perf_counter() - t) * 1000
    if name == "kmeans":
        quality = ("inertia", float(-m.score(Xte)))
    else:
        quality = ("accuracy", float((m.predict(Xte) == yte).mean()))
    out[name] = {"ms": ms, "metric": quality[0], "value": quality[1]}
print(json.dumps(out))
"#;

fn sklearn(dataset: &Path) -> Result<serde_json::Value, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sklearn-venv");
    let python = venv.join("bin").join("python");
    let run = |cmd: &mut Command| -> Result<Vec<u8>, String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    if !python.exists() {
        eprintln!(
            "bench: installing scikit-learn into {} (once)",
            venv.display()
        );
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    if run(Command::new(&python).args(["-c", "import sklearn"])).is_err() {
        run(Command::new(venv.join("bin").join("pip")).args(["install", "-q", "scikit-learn"]))?;
    }
    let estimators: serde_json::Map<String, serde_json::Value> = ALGORITHMS
        .iter()
        .map(|(name, _, est)| (name.to_string(), serde_json::json!(est)))
        .collect();
    let out = run(Command::new(&python)
        .arg("-c")
        .arg(SKLEARN)
        .arg(dataset)
        .arg(serde_json::Value::Object(estimators).to_string())
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1"))?;
    serde_json::from_slice(&out).map_err(|e| e.to_string())
}

fn main() {
    wasmops_e2e::run_bench(run());
}

async fn rows_in_table(browser: &Browser) -> usize {
    browser
        .client
        .find_all(fantoccini::Locator::Css(
            "table.runs[data-testid=runs] tbody tr",
        ))
        .await
        .map(|r| r.len())
        .unwrap_or(0)
}

async fn run() {
    let dir = temp_dir("bench-training");
    let dataset = dir.join("synthetic.csv");
    write_dataset(&dataset);
    let baseline = if std::env::var("WASMOPS_BENCH_BASELINE").as_deref() == Ok("0") {
        None
    } else {
        match sklearn(&dataset) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("bench: scikit-learn baseline unavailable: {e}");
                None
            }
        }
    };

    let site = StaticSite::dashboard();
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    let t = Instant::now();
    browser.data().choose(&dataset).await;
    browser.data().import().await;
    browser
        .data()
        .notice("the import", |t| t.contains("imported"))
        .await;
    let import_ms = t.elapsed().as_secs_f64() * 1000.0;
    let value = browser
        .element("#dataset option:last-child")
        .await
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    browser.select("#dataset", &value).await;

    let mut results = Vec::new();
    let mut logs = Vec::new();
    for (name, params, _) in ALGORITHMS {
        browser.select("#algorithm", name).await;
        for (p, v) in *params {
            browser.fill(&format!("#param-{p}"), v).await;
        }
        let before = rows_in_table(&browser).await;
        browser.train().start().await;
        let deadline = Instant::now() + Duration::from_secs(1800);
        while rows_in_table(&browser).await == before {
            assert!(Instant::now() < deadline, "{name} did not finish in 30 min");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let first = "[data-testid=runs] tbody tr:nth-child(1)";
        let row = browser
            .wait_text(first, "the run", |t| t.contains(" ms"))
            .await;
        let browser = &browser;
        let text =
            |css: String| async move { browser.current_text(&css).await.unwrap_or_default() };
        let metric = text(format!("{first} .metric-name")).await;
        let value: f64 = text(format!("{first} [data-testid=run-metric]"))
            .await
            .parse()
            .unwrap_or(f64::NAN);
        // Cells: compare, name, started, dataset, model, metric, duration.
        let ms: f64 = text(format!("{first} td:nth-child(7)"))
            .await
            .trim_end_matches(" ms")
            .parse()
            .unwrap_or(f64::NAN);
        eprintln!("bench: {name}: {row}");
        // Where the time went, from the run's own log.
        browser.click(&format!("{first} a.run-name")).await;
        let log = browser
            .wait_text("[data-testid=run-log]", "the run's log", |t| {
                t.contains("done")
            })
            .await;
        logs.push(format!("{name}:\n{log}"));
        results.push((name.to_string(), ms, metric, value));
    }
    browser.close().await;

    println!("\n## Training in the tab against scikit-learn (issue 5)\n");
    println!(
        "Each run's log (start of each step since Train was clicked, how long it took, step):\n"
    );
    println!("```\n{}\n```\n", logs.join("\n"));
    println!("{ROWS} x {FEATURES} synthetic, 3 classes; CSV import into the dashboard: {import_ms:.0} ms\n");
    println!("| algorithm | dashboard (worker, whole job) ms | held-out | scikit-learn fit ms | held-out | time ratio |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, ms, metric, value) in results {
        let b = baseline.as_ref().and_then(|b| b.get(&name));
        let (bms, bval) = match b {
            Some(b) => (
                b["ms"].as_f64().unwrap_or(f64::NAN),
                b["value"].as_f64().unwrap_or(f64::NAN),
            ),
            None => (f64::NAN, f64::NAN),
        };
        println!(
            "| {name} | {ms:.0} | {metric} {value:.4} | {bms:.0} | {bval:.4} | {:.1} |",
            ms / bms
        );
    }
}
