//! HTTP benchmark of the real `wasmops-edge` binary on loopback, telemetry on (every answer
//! waits for its SQLite commit): time to first answer, idle memory, single-row latency
//! (p50/p99, one connection), requests/s with 16 connections, and batch rows/s.
//!
//! `cargo bench -p wasmops-edge --bench http` (or `cargo xtask bench`); `WASMOPS_BENCH_DAEMON`
//! points it at another daemon binary, `WASMOPS_BENCH_BASELINE=0` skips mlflow. The client runs in this
//! process on the same machine, so on 2 cores it competes with the daemon for CPU: figures are
//! a lower bound for the daemon alone.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmops_shared::compiler::{compile, CompileInput};
use wasmops_shared::module::{DatasetRef, ModelCard};
use wasmops_shared::pipeline::{Model, Pipeline};
use wasmops_shared::profile::Profile;
use wasmops_shared::wire;

const TOKEN: &str = "bench-token";

fn iris_module() -> Vec<u8> {
    let p = Pipeline {
        n_features: 4,
        scaler: None,
        model: Model::LogisticRegression {
            weights: vec![
                vec![0.41, 1.46, -2.26, -1.03],
                vec![0.42, -1.57, 0.58, -1.38],
                vec![-0.83, 0.11, 1.68, 2.41],
            ],
            intercepts: vec![0.26, 1.09, -1.35],
        },
    };
    let feature_names: Vec<String> = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        .map(String::from)
        .to_vec();
    let card = ModelCard {
        abi_version: wasmops_shared::abi::ABI_VERSION,
        kind: p.model.kind().into(),
        feature_names: feature_names.clone(),
        target_name: "species".into(),
        classes: vec!["setosa".into(), "versicolor".into(), "virginica".into()],
        outputs: vec![
            "class".into(),
            "p(setosa)".into(),
            "p(versicolor)".into(),
            "p(virginica)".into(),
        ],
        dataset: DatasetRef {
            name: "bench".into(),
            hash: "0".repeat(64),
            n_rows: 150,
        },
        params: Default::default(),
        metrics: Default::default(),
        code_version: "bench".into(),
    };
    let rows: Vec<f64> = (0..600)
        .map(|i| 1.0 + (i * 37 % 61) as f64 / 10.0)
        .collect();
    let profile = Profile::from_rows(&feature_names, &rows);
    compile(&CompileInput {
        pipeline: &p,
        card: &card,
        profile: &profile,
        conformance_rows: &rows[..8],
    })
    .expect("compiles")
}

/// Varied rows, so nothing is answered from a warm branch predictor alone.
fn row(i: usize) -> Vec<f64> {
    let f = |k: usize| 0.5 + ((i * 7919 + k * 104_729) % 1000) as f64 / 140.0;
    vec![f(0), f(1), f(2), f(3)]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Latency (one connection) and throughput (16 connections) of single-row requests.
struct Figures {
    p50: Duration,
    p99: Duration,
    rps: f64,
}

/// `make(client, i)` builds the i-th single-row request.
async fn measure<F>(make: F, sequential: usize, per_conn: usize) -> Figures
where
    F: Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync + Clone + 'static,
{
    let http = reqwest::Client::new();
    for i in 0..sequential / 10 {
        make(&http, i).send().await.unwrap().bytes().await.unwrap();
    }
    let mut lat = Vec::with_capacity(sequential);
    for i in 0..sequential {
        let t = Instant::now();
        let r = make(&http, i).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        r.bytes().await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort_unstable();
    const CONNS: usize = 16;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNS {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            // One client per task, so one keep-alive connection each.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            for i in 0..per_conn {
                let r = make(&http, c * per_conn + i).send().await.unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Figures {
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        rps: (CONNS * per_conn) as f64 / t.elapsed().as_secs_f64(),
    }
}

const MLFLOW_MODEL: &str = r#"
import sys
import numpy as np
import mlflow.sklearn
from sklearn.linear_model import LogisticRegression
m = LogisticRegression().fit(np.random.RandomState(0).rand(30, 4), np.arange(30) % 3)
m.coef_ = np.array([[0.41, 1.46, -2.26, -1.03], [0.42, -1.57, 0.58, -1.38], [-0.83, 0.11, 1.68, 2.41]])
m.intercept_ = np.array([0.26, 1.09, -1.35])
mlflow.sklearn.save_model(m, sys.argv[1])
"#;

/// The same model served by `mlflow models serve` (scikit-learn) in a venv this benchmark
/// makes once under the target dir. `None` (with the reason) if that cannot be set up.
async fn mlflow_baseline(dir: &std::path::Path) -> Result<Figures, String> {
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mlflow-venv");
    let bin = venv.join("bin");
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    if !bin.join("mlflow").exists() {
        eprintln!(
            "bench: installing scikit-learn and mlflow into {} (once)",
            venv.display()
        );
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(bin.join("pip")).args(["install", "-q", "scikit-learn", "mlflow"]))?;
    }
    let model = dir.join("mlflow-model");
    run(Command::new(bin.join("python"))
        .arg("-c")
        .arg(MLFLOW_MODEL)
        .arg(&model))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(bin.join("mlflow"))
        .args([
            "models",
            "serve",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
        ])
        .arg(port.to_string())
        .arg("-m")
        .arg(&model)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("mlflow models serve: {e}"))?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    // Bounded wait for the server: 600 x 100 ms.
    for _ in 0..600 {
        if http
            .get(format!("{base}/ping"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let figures = if up {
        let url = format!("{base}/invocations");
        Ok(measure(
            move |http, i| {
                http.post(&url)
                    .json(&serde_json::json!({ "inputs": [row(i)] }))
            },
            2_000,
            150,
        )
        .await)
    } else {
        Err("mlflow models serve did not answer /ping within 60 s".to_string())
    };
    let _ = server.kill();
    let _ = server.wait();
    figures
}

/// The telemetry store alone: sequential commits (each a transaction, as for a lone client)
/// and 16 concurrent committers (group commit), in this process.
fn store_commit_figures(dir: &std::path::Path) -> String {
    use wasmops_edge::telemetry::{NewRecord, TelemetryConfig, TelemetryStore};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(TelemetryStore::open(dir, TelemetryConfig::default()).unwrap());
        let record = |first_id: u64| NewRecord {
            ts_ms: wasmops_edge::telemetry::now_ms(),
            model: Some("0".repeat(64)),
            latency_us: 50,
            rows: 1,
            status: wasmops_edge::telemetry::Status::Ok,
            first_id: Some(first_id),
            predictions: vec![1.0],
            bins: vec![5, 6, 7, 8],
            n_features: 4,
            purpose: Default::default(),
        };
        let mut lat = Vec::with_capacity(5_000);
        for i in 0..5_000 {
            let t = Instant::now();
            store.commit(record(i)).await.unwrap();
            lat.push(t.elapsed());
        }
        lat.sort_unstable();
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..16u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..2_000 {
                    store.commit(record(10_000 + c * 2_000 + i)).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let per_s = 32_000.0 / t.elapsed().as_secs_f64();
        format!(
            "store commit p50         {:>8} us (sequential, one transaction each)\n\
             store commit p99         {:>8} us\n\
             store, 16 committers     {:>8.0} records/s (group commit)\n",
            percentile(&lat, 0.5).as_micros(),
            percentile(&lat, 0.99).as_micros(),
            per_s
        )
    })
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let dir = std::env::temp_dir().join(format!("wasmops-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    // WASMOPS_BENCH_DAEMON=path measures another build of the daemon with this same client
    // (e.g. the binary from before a change, to compare in one session).
    let daemon = std::env::var_os("WASMOPS_BENCH_DAEMON")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_wasmops-edge").into());
    eprintln!("bench: daemon {}", std::path::Path::new(&daemon).display());
    let mut child = Command::new(&daemon)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--data-dir",
        ])
        .arg(&dir)
        .env("WASMOPS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("wasmops-edge listening on ")
        .unwrap()
        .to_string();
    let pid = child.id();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        let http = reqwest::Client::new();
        let health = format!("{base}/v1/health");
        while http.get(&health).send().await.is_err() {}
        let listening = started.elapsed();
        let module = iris_module();
        let up: wire::UploadResponse = http
            .post(format!("{base}/v1/modules"))
            .bearer_auth(TOKEN)
            .body(module)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        http.post(format!("{base}{}", wire::paths::activate(&up.hash)))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let predict = format!("{base}/v1/predict");
        let one = |i: usize| {
            http.post(&predict)
                .bearer_auth(TOKEN)
                .json(&wire::PredictRequest { rows: vec![row(i)] })
        };
        let r = one(0).send().await.unwrap();
        assert!(r.status().is_success());
        let first_answer = started.elapsed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle_rss = rss_kib(pid);

        // 0. The floor: the same client and HTTP stack, no model, no telemetry.
        let url = health.clone();
        let floor = measure(move |http, _| http.get(&url), 5_000, 1_000).await;

        // 1 + 2. Single-row latency on one connection, throughput with 16.
        let url = predict.clone();
        let ours = measure(
            move |http, i| {
                http.post(&url)
                    .bearer_auth(TOKEN)
                    .json(&wire::PredictRequest { rows: vec![row(i)] })
            },
            10_000,
            2_000,
        )
        .await;

        // 3. Batches of 1,000 rows.
        let batch: Vec<Vec<f64>> = (0..1_000).map(row).collect();
        let body = serde_json::to_vec(&wire::PredictRequest { rows: batch }).unwrap();
        let t = Instant::now();
        for _ in 0..100 {
            let r = http
                .post(&predict)
                .bearer_auth(TOKEN)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap();
        }
        let rows_per_s = 100_000.0 / t.elapsed().as_secs_f64();
        let busy_rss = rss_kib(pid);
        let baseline = if std::env::var("WASMOPS_BENCH_BASELINE").as_deref() == Ok("0") {
            Err("skipped (WASMOPS_BENCH_BASELINE=0)".to_string())
        } else {
            mlflow_baseline(&dir).await
        };
        let t: wire::Telemetry = http
            .get(format!("{base}/v1/telemetry"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        format!(
            "listening after          {:>8.1} ms\n\
             first answer after       {:>8.1} ms (start, upload + conformance, activate, predict)\n\
             idle RSS                 {:>8} KiB\n\
             RSS after load           {:>8} KiB\n\
             GET /v1/health p50       {:>8} us (HTTP + client floor; {:.0} requests/s with 16 connections)\n\
             single row p50           {:>8} us (1 connection, 10,000 requests)\n\
             single row p99           {:>8} us\n\
             16 connections           {:>8.0} requests/s ({} requests)\n\
             1,000-row batches        {:>8.0} rows/s\n\
             telemetry records        {:>8} (every request committed before its answer)\n",
            listening.as_secs_f64() * 1e3,
            first_answer.as_secs_f64() * 1e3,
            idle_rss,
            busy_rss,
            floor.p50.as_micros(),
            floor.rps,
            ours.p50.as_micros(),
            ours.p99.as_micros(),
            ours.rps,
            16 * 2_000,
            rows_per_s,
            t.requests,
        ) + &match baseline {
            Ok(b) => format!(
                "mlflow models serve (same model, scikit-learn, same client):\n\
                 single row p50           {:>8} us   -> wasmops-edge {:.1}x lower\n\
                 single row p99           {:>8} us   -> wasmops-edge {:.1}x lower\n\
                 16 connections           {:>8.0} requests/s -> wasmops-edge {:.1}x more\n",
                b.p50.as_micros(),
                b.p50.as_secs_f64() / ours.p50.as_secs_f64(),
                b.p99.as_micros(),
                b.p99.as_secs_f64() / ours.p99.as_secs_f64(),
                b.rps,
                ours.rps / b.rps,
            ),
            Err(why) => format!("mlflow baseline not measured: {why}\n"),
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    let store_dir = dir.join("store-only");
    std::fs::create_dir_all(&store_dir).unwrap();
    let store = store_commit_figures(&store_dir);
    let _ = std::fs::remove_dir_all(&dir);
    print!("{report}{store}");
}
