//! Benchmark (issue 5): the runs table with 10,000 runs of 100 metric points each in IndexedDB.
//!
//! One real run is trained in the tab (iris, logistic regression) and exported; the bundle is
//! copied into 10,000 runs (distinct ids, names, start times, params, metrics, tags and a
//! 100-point step curve each) and imported through the dashboard's own "Import runs", in files
//! of 1,000. Then, in the same browser profile:
//! - reload: navigation start to the first screen of rows in the DOM, and to the whole list read
//!   (sortable and filterable);
//! - filter: from the input event to the table showing the answer (count and rows in the DOM,
//!   after layout), for several queries; sort: from the click on a header to the sorted rows.
//!
//! Baseline, measured the same way in the same run: the same profile holding the one trained run.
//!
//! `cargo xtask bench` runs it (it builds dist/ and sets WASMOPS_DIST, CHROMEDRIVER, CHROMIUM).

use std::time::{Duration, Instant};

use wasmops_e2e::{median, temp_dir, Browser, StaticSite};
use wasmops_shared::run_filter::{Filter, Value};

const RUNS: usize = 10_000;
const PER_FILE: usize = 1_000;
const STEPS: usize = 100;
const ROUNDS: usize = 5;

fn main() {
    wasmops_e2e::run_bench(run());
}

/// Reloads and times navigation start -> first row in the DOM, and -> every run read (the
/// count no longer says it is reading).
const LOAD: &str = r#"
const done = arguments[arguments.length - 1];
let first = null;
(function check() {
    const row = document.querySelector('[data-testid=runs] tbody tr');
    const count = document.querySelector('[data-testid=run-count]');
    if (row && first === null) first = performance.now();
    if (row && count && !count.textContent.includes('reading')) {
        done({ first, all: performance.now(), rows: document.querySelectorAll('[data-testid=runs] tbody tr').length, count: count.textContent });
    } else {
        requestAnimationFrame(check);
    }
})();
"#;

/// Types a query into the filter (one input event) and times until the table shows the answer:
/// the dashboard answers in microtasks (leptos effects), so the next task sees the final DOM,
/// which is then laid out.
const FILTER: &str = r#"
const [query, done] = [arguments[0], arguments[arguments.length - 1]];
const input = document.querySelector('#run-filter');
const t0 = performance.now();
input.value = query;
input.dispatchEvent(new Event('input', { bubbles: true }));
setTimeout(() => {
    document.querySelector('[data-testid=runs]').getBoundingClientRect(); // layout
    done({
        ms: performance.now() - t0,
        count: document.querySelector('[data-testid=run-count]').textContent,
        rows: document.querySelectorAll('[data-testid=runs] tbody tr').length,
    });
}, 0);
"#;

/// Clicks a column header (ascending first) and times until the sorted rows are laid out.
const SORT: &str = r#"
const [nth, done] = [arguments[0], arguments[arguments.length - 1]];
const t0 = performance.now();
document.querySelector(`[data-testid=runs] thead th:nth-child(${nth})`).click();
setTimeout(() => {
    document.querySelector('[data-testid=runs]').getBoundingClientRect();
    const first = document.querySelector('[data-testid=runs] tbody tr');
    done({ ms: performance.now() - t0, first: first && first.dataset.runId });
}, 0);
"#;

/// The exported run copied into run `i` of the sweep: its own id, name, start, params, metrics,
/// tags and a `STEPS`-point curve.
fn sweep_run(template: &serde_json::Value, i: usize, start_ms: f64) -> serde_json::Value {
    let mut run = template.clone();
    // A fixed pseudo-random sequence, so every run of the benchmark sees the same data.
    let noise = |k: u64| {
        let mut x =
            (i as u64 + 1).wrapping_mul(6364136223846793005) ^ k.wrapping_mul(1442695040888963407);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51afd7ed558ccd);
        x ^= x >> 33;
        (x % 1_000_000) as f64 / 1_000_000.0
    };
    run["id"] = format!("sweep-{i:05}").into();
    run["name"] = format!("sweep #{i}").into();
    run["started_at_ms"] = (start_ms + i as f64 * 1000.0).into();
    run["duration_ms"] = (50.0 + 400.0 * noise(1)).round().into();
    let params = run["params"].as_object_mut().expect("params");
    params.insert("c".into(), [0.01, 0.1, 1.0, 10.0][i % 4].into());
    params.insert("max_iterations".into(), [50, 100, 200][i % 3].into());
    let accuracy = 0.6 + 0.4 * noise(2);
    let metrics = run["metrics"].as_object_mut().expect("metrics");
    for (k, v) in metrics.iter_mut() {
        *v = (v.as_f64().unwrap_or(0.0) * (0.8 + 0.2 * noise(3))).into();
        if k == "accuracy" {
            *v = accuracy.into();
        }
    }
    let curve: Vec<(u64, f64)> = (0..STEPS as u64)
        .map(|s| {
            (
                s + 1,
                1.1 * (-(s as f64) / 20.0).exp() + 0.05 * noise(10 + s),
            )
        })
        .collect();
    run["metric_steps"] = serde_json::json!({ "train_log_loss": curve });
    let mut tags = vec![if i.is_multiple_of(10) {
        "baseline"
    } else {
        "sweep"
    }];
    if i.is_multiple_of(7) {
        tags.push("scaled");
    }
    run["tags"] = serde_json::json!(tags);
    run
}

async fn wait_for(browser: &Browser, css: &str, what: &str, pred: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(text) = browser.current_text(css).await {
            if pred(&text) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Figures {
    first: f64,
    all: f64,
    filters: Vec<(String, f64, String)>,
    sort: f64,
    sorted_first: String,
}

const QUERIES: &[&str] = &[
    "metrics.accuracy > 0.9 and params.max_iterations = 100",
    "tags = baseline",
    "name ~ 'sweep #99'",
    "",
];

/// What the filter language sees of an exported run (as the dashboard's runs table does).
fn field(run: &serde_json::Value, name: &str) -> Option<Value> {
    let json = |v: &serde_json::Value| match v {
        serde_json::Value::Number(n) => n.as_f64().map(Value::Num),
        serde_json::Value::String(s) => Some(Value::Text(s.clone())),
        other => Some(Value::Text(other.to_string())),
    };
    match name {
        "name" => json(&run["name"]),
        "tags" => Some(Value::List(
            run["tags"]
                .as_array()?
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
        )),
        _ => {
            if let Some(m) = name.strip_prefix("metrics.") {
                return json(run["metrics"].get(m)?);
            }
            json(run["params"].get(name.strip_prefix("params.")?)?)
        }
    }
}

/// The count line the table should show for `query` over `runs`.
fn expected_count(runs: &[serde_json::Value], query: &str) -> String {
    let shown = match Filter::parse(query).expect("benchmark queries parse") {
        Some(f) => runs.iter().filter(|r| f.matches(&|k| field(r, k))).count(),
        None => runs.len(),
    };
    format!("{shown} of {} runs", runs.len())
}

async fn measure(browser: &Browser, origin: &str, expect_runs: usize) -> Figures {
    let (mut first, mut all) = (Vec::new(), Vec::new());
    let mut filters: Vec<(String, Vec<f64>, String)> = QUERIES
        .iter()
        .map(|q| (q.to_string(), Vec::new(), String::new()))
        .collect();
    let (mut sort, mut sorted_first) = (Vec::new(), String::new());
    for _ in 0..ROUNDS {
        browser.open(origin).await;
        let v = browser
            .client
            .execute_async(LOAD, vec![])
            .await
            .expect("load");
        let count = v["count"].as_str().unwrap_or_default();
        assert!(
            count.ends_with(&format!(" of {expect_runs} runs")),
            "the table should hold {expect_runs} runs: {count}"
        );
        first.push(v["first"].as_f64().expect("first"));
        all.push(v["all"].as_f64().expect("all"));
        for (q, times, answer) in filters.iter_mut() {
            let v = browser
                .client
                .execute_async(FILTER, vec![serde_json::json!(q)])
                .await
                .expect("filter");
            times.push(v["ms"].as_f64().expect("ms"));
            *answer = v["count"].as_str().unwrap_or_default().to_string();
            let rows = v["rows"].as_u64().unwrap_or(0);
            assert!(
                rows <= 40,
                "the table draws only a screen of rows, not {rows}"
            );
        }
        // Sort by the metric's value (6th column), lowest first.
        let v = browser
            .client
            .execute_async(SORT, vec![serde_json::json!(6)])
            .await
            .expect("sort");
        sort.push(v["ms"].as_f64().unwrap_or(f64::NAN));
        sorted_first = v["first"].as_str().unwrap_or_default().to_string();
    }
    Figures {
        first: median(first),
        all: median(all),
        filters: filters
            .into_iter()
            .map(|(q, t, a)| (q, median(t), a))
            .collect(),
        sort: median(sort),
        sorted_first,
    }
}

async fn run() {
    let site = StaticSite::dashboard();
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    browser.train_and_wait().await;
    // The same profile with one run: the baseline.
    let base = measure(&browser, &site.origin, 1).await;

    let bundle = browser.export_runs().await;
    let template = bundle["runs"][0].clone();
    let start_ms = template["started_at_ms"].as_f64().expect("start") - 1e9;

    let dir = temp_dir("runs-bench");
    let started = Instant::now();
    let mut bytes = 0;
    let mut stored = vec![template.clone()];
    for file in 0..RUNS / PER_FILE {
        let runs: Vec<serde_json::Value> = (file * PER_FILE..(file + 1) * PER_FILE)
            .map(|i| sweep_run(&template, i, start_ms))
            .collect();
        stored.extend(runs.iter().cloned());
        let name = format!("sweep-{file:02}.json");
        let path = dir.join(&name);
        let body = serde_json::to_vec(&serde_json::json!({
            "format": bundle["format"], "version": bundle["version"], "runs": runs,
        }))
        .unwrap();
        bytes += body.len();
        std::fs::write(&path, body).unwrap();
        browser.upload("#runs-import", &path).await;
        wait_for(&browser, "[data-testid=runs-notice]", &name, |t| {
            t.contains(&format!("imported {PER_FILE} runs from {name}"))
        })
        .await;
    }
    let import_s = started.elapsed().as_secs_f64();
    let usage = browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             navigator.storage.estimate().then(e => done(e.usage), () => done(null));",
        )
        .await;

    let big = measure(&browser, &site.origin, RUNS + 1).await;
    // The answers are the right ones, not just fast.
    for (q, _, answer) in &big.filters {
        assert_eq!(answer, &expected_count(&stored, q), "filter `{q}`");
    }
    let lowest = stored
        .iter()
        .filter(|r| !r["archived"].as_bool().unwrap_or(false))
        .min_by(|a, b| {
            let v = |r: &serde_json::Value| {
                r["metrics"]["accuracy"]
                    .as_f64()
                    .unwrap_or(f64::NEG_INFINITY)
            };
            v(a).total_cmp(&v(b))
        })
        .expect("runs");
    assert_eq!(
        big.sorted_first,
        lowest["id"].as_str().unwrap_or_default(),
        "sorted by accuracy, lowest first"
    );
    browser.screenshot("runs-10k").await;
    browser.close().await;

    println!("\n## Runs table with {RUNS} runs (issue 5)\n");
    println!(
        "Imported {RUNS} runs ({STEPS} metric points each; {:.0} MB of bundles, {:.0} MB in IndexedDB) through \"Import runs\" in {:.0} s.\n",
        bytes as f64 / 1e6,
        usage.as_f64().unwrap_or(f64::NAN) / 1e6,
        import_s
    );
    println!(
        "| median of {ROUNDS} | 1 run (ms) | {RUNS} runs (ms) | ratio | goal |\n|---|---:|---:|---:|---|"
    );
    println!(
        "| reload: navigation to the first screen of rows | {:.0} | {:.0} | {:.2} | <= 300 ms |",
        base.first,
        big.first,
        big.first / base.first
    );
    println!(
        "| reload: navigation to every run read (sort and filter over all) | {:.0} | {:.0} | {:.2} | |",
        base.all,
        big.all,
        big.all / base.all
    );
    for ((q, b, _), (_, t, answer)) in base.filters.iter().zip(&big.filters) {
        let q = if q.is_empty() {
            "(clear the filter)".to_string()
        } else {
            format!("`{q}`")
        };
        println!(
            "| filter {q} -> \"{answer}\" | {b:.1} | {t:.1} | {:.1} | <= 100 ms |",
            t / b
        );
    }
    println!(
        "| sort by metric value (click to rows) | {:.1} | {:.1} | {:.1} | |",
        base.sort,
        big.sort,
        big.sort / base.sort
    );
}
