//! Benchmark (issue 11): syncing 1,000 runs (100-step curve, 10 params each) from the dashboard
//! to a real `mlflow server`, against MLflow's own Python client logging the same runs to the
//! same server in the same bench run.
//!
//! One real run is trained in the tab and exported; it is copied into 1,000 runs (distinct ids,
//! names, start times, params, a 100-point loss curve) and imported through "Import runs".
//! Then:
//! - dashboard: from the click on "Save and sync" to the Settings page reading every run
//!   synced (every part confirmed by the server: params, metrics, tags, dataset input, card and
//!   profile artifacts, status and end time); requests and bytes as the dashboard counts them;
//! - baseline: `MlflowClient` (same MLflow, same server, another experiment) logging the same
//!   records the way a script would: `create_run`, `log_batch`, `log_inputs`, `log_dict` twice,
//!   `set_terminated`; requests and bytes counted at its HTTP adapter.
//!
//! The server (`--workers 1`, SQLite) is the limit for both; the goal is <= 1.0x the client's
//! time. `cargo xtask bench` runs it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasmops_e2e::pages::Page;
use wasmops_e2e::{temp_dir, Browser, MlflowServer, StaticSite};

const RUNS: usize = 1_000;
const STEPS: usize = 100;
const PARAMS: usize = 10;

fn main() {
    wasmops_e2e::run_bench(run());
}

fn copy(template: &Value, i: usize, start_ms: f64) -> Value {
    let mut run = template.clone();
    run["id"] = format!("bench-{i:05}").into();
    run["name"] = format!("bench #{i}").into();
    run["started_at_ms"] = (start_ms + i as f64 * 1000.0).into();
    let params = run["params"].as_object_mut().expect("params");
    params.insert("c".into(), [0.01, 0.1, 1.0, 10.0][i % 4].into());
    let mut k = 0;
    while params.len() < PARAMS {
        params.insert(format!("bench_{k}"), json!(i % (k + 2)));
        k += 1;
    }
    let curve: Vec<(u64, f64)> = (0..STEPS as u64)
        .map(|s| {
            (
                s + 1,
                1.1 * (-(s as f64) / 20.0).exp() + (i % 17) as f64 * 1e-3,
            )
        })
        .collect();
    run["metric_steps"] = json!({ "train_log_loss": curve });
    run["tags"] = json!(["bench"]);
    run
}

/// The same records for the Python client: what the dashboard sends for each run.
fn record(run: &Value) -> Value {
    let start = run["started_at_ms"].as_f64().unwrap() as i64;
    let end =
        (run["started_at_ms"].as_f64().unwrap() + run["duration_ms"].as_f64().unwrap()) as i64;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => format!("{}", n.as_f64().unwrap()),
        other => other.to_string(),
    };
    let mut metrics = Vec::new();
    for (key, curve) in run["metric_steps"].as_object().unwrap() {
        for p in curve.as_array().unwrap() {
            metrics.push(json!([key, p[1], start, p[0]]));
        }
    }
    for (key, v) in run["metrics"].as_object().unwrap() {
        metrics.push(json!([key, v, end, 0]));
    }
    json!({
        "name": run["name"], "start": start, "end": end,
        "params": run["params"].as_object().unwrap().iter().map(|(k, v)| json!([k, text(v)])).collect::<Vec<_>>(),
        "metrics": metrics,
        "tags": {"wasmops.client_id": run["id"], "mlflow.source.git.commit": run["code_version"],
                 "mlflow.source.name": "wasmops dashboard", "wasmops.status": "finished",
                 "wasmops.labels": "bench", "bench": "true"},
        "dataset": {"name": run["dataset"]["name"], "digest": &run["dataset"]["hash"].as_str().unwrap()[..36],
                    "source": json!({"content_hash": run["dataset"]["hash"]}).to_string()},
        "card": {"feature_names": run["feature_names"], "target_name": run["target_name"]},
        "profile": run["profile"],
    })
}

const CLIENT: &str = r#"
import json, os, sys, time
import requests.adapters
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, Dataset, DatasetInput, InputTag

counted = {"requests": 0, "bytes_sent": 0}
send = requests.adapters.HTTPAdapter.send
def counting(self, request, *a, **k):
    counted["requests"] += 1
    body = request.body
    if isinstance(body, (bytes, str)):
        counted["bytes_sent"] += len(body)
    elif hasattr(body, "fileno"):  # artifacts are streamed from a file
        counted["bytes_sent"] += os.fstat(body.fileno()).st_size
    return send(self, request, *a, **k)
requests.adapters.HTTPAdapter.send = counting

runs = json.load(open(sys.argv[1]))
client = MlflowClient()
t0 = time.perf_counter()
exp = client.create_experiment("bench-python-client")
for r in runs:
    run = client.create_run(exp, start_time=r["start"], tags=r["tags"], run_name=r["name"])
    rid = run.info.run_id
    client.log_batch(rid, metrics=[Metric(k, v, t, s) for k, v, t, s in r["metrics"]],
                     params=[Param(k, v) for k, v in r["params"]])
    d = r["dataset"]
    client.log_inputs(rid, [DatasetInput(Dataset(d["name"], d["digest"], "wasmops", d["source"]),
                                         [InputTag("mlflow.data.context", "training")])])
    client.log_dict(rid, r["card"], "model/card.json")
    client.log_dict(rid, r["profile"], "model/profile.json")
    client.set_terminated(rid, "FINISHED", end_time=r["end"])
print(json.dumps({"seconds": time.perf_counter() - t0, **counted}))
"#;

async fn run() {
    let site = StaticSite::dashboard();
    let dir = temp_dir("mlflow-bench");
    let server = MlflowServer::start(&dir);
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    browser.train_and_wait().await;
    let bundle = browser.export_runs().await;
    let template = bundle["runs"][0].clone();
    let start_ms = template["started_at_ms"].as_f64().expect("start") - 1e9;
    let runs: Vec<Value> = (0..RUNS).map(|i| copy(&template, i, start_ms)).collect();
    let path = dir.join("bench-runs.json");
    std::fs::write(
        &path,
        serde_json::to_vec(
            &json!({"format": bundle["format"], "version": bundle["version"], "runs": runs}),
        )
        .unwrap(),
    )
    .unwrap();
    browser.upload("#runs-import", &path).await;
    browser
        .wait_text("[data-testid=run-count]", "the imported runs", |t| {
            t == format!("{} of {} runs", RUNS + 1, RUNS + 1)
        })
        .await;
    // Only the copies: the trained run (the newest, first row) is deleted.
    browser.runs().open(1).await;
    browser.click("#run-delete").await;
    browser.accept_dialog().await;
    browser
        .wait_text("[data-testid=run-count]", "the copies only", |t| {
            t == format!("{RUNS} of {RUNS} runs")
        })
        .await;
    server.ready().await;

    // The dashboard.
    browser.go(Page::Settings).await;
    browser.fill("#mlflow-uri", &server.url).await;
    browser.fill("#mlflow-experiment", "bench-dashboard").await;
    let started = Instant::now();
    browser.click("#mlflow-save").await;
    let want = format!("{RUNS} runs synced, 0 pending, 0 failed");
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let counts = browser.current_text("[data-testid=mlflow-counts]").await;
        if counts.as_deref() == Some(want.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sync never finished: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dashboard_s = started.elapsed().as_secs_f64();
    let status = browser.element("[data-testid=mlflow-status]").await;
    let attr = |name: &'static str| {
        let status = status.clone();
        async move {
            status
                .attr(name)
                .await
                .ok()
                .flatten()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        }
    };
    let (requests, sent) = (
        attr("data-session-requests").await,
        attr("data-session-bytes-sent").await,
    );
    let log_lines = || {
        std::fs::read_to_string(dir.join("server.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" /api/") && !l.contains("/health"))
            .count()
    };
    let dashboard_http = log_lines();
    let exp = server.experiment_id("bench-dashboard").await;
    let mut on_server = 0;
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"experiment_ids": [exp], "max_results": 1000});
        if let Some(t) = &token {
            body["page_token"] = json!(t);
        }
        let page = server.post("runs/search", body).await;
        on_server += page["runs"].as_array().map(Vec::len).unwrap_or(0);
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    assert_eq!(on_server, RUNS, "one MLflow run per dashboard run");

    // MLflow's Python client, same records, same server.
    let records: Vec<Value> = runs.iter().map(record).collect();
    let records_path = dir.join("records.json");
    std::fs::write(&records_path, serde_json::to_vec(&records).unwrap()).unwrap();
    let script = dir.join("client.py");
    std::fs::write(&script, CLIENT).unwrap();
    let mlflow = std::path::PathBuf::from(wasmops_e2e::required_env("WASMOPS_MLFLOW"));
    let python = mlflow.with_file_name("python");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&records_path)
        .env("MLFLOW_TRACKING_URI", &server.url)
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap(),
    )
    .expect("client figures");
    let python_s = python["seconds"].as_f64().unwrap();
    let python_http = log_lines() - dashboard_http;
    println!(
        "\nSync of {RUNS} runs ({STEPS}-step curve, {PARAMS} params, card and profile artifacts each) to mlflow server (SQLite, 1 worker):\n\
         | client | time | runs/s | requests (client's count) | HTTP requests in the server's log (CORS preflights too) | body bytes sent |\n|---|---:|---:|---:|---:|---:|\n\
         | dashboard (Chromium, fetch) | {dashboard_s:.1} s | {:.1} | {requests} | {dashboard_http} | {:.0} KB |\n\
         | MLflow Python client | {python_s:.1} s | {:.1} | {} | {python_http} | {:.0} KB |\n\
         ratio dashboard / Python client: {:.2}x (goal <= 1.0)\n",
        RUNS as f64 / dashboard_s,
        sent / 1024.0,
        RUNS as f64 / python_s,
        python["requests"],
        python["bytes_sent"].as_f64().unwrap() / 1024.0,
        dashboard_s / python_s
    );
    browser.close().await;
}
