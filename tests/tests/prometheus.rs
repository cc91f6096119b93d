//! Fleet telemetry through a real Prometheus: it scrapes two real devices, a third (one
//! Prometheus cannot reach, as far as it knows) pushes by remote write, and PromQL over the
//! three answers what the Fleet page shows: devices per version, request and error rates, p95
//! latency, drift, the devices behind their alias.
//!
//! Needs `WASMOPS_EDGE_BIN` and `WASMOPS_PROMETHEUS` (`cargo xtask test` passes both).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use wasmops_e2e::{sample_value, temp_dir, EdgeProcess, PrometheusServer};
use wasmops_shared::compiler::{compile, CompileInput};
use wasmops_shared::module::{DatasetRef, ModelCard};
use wasmops_shared::pipeline::{Model, Pipeline};
use wasmops_shared::profile::Profile;
use wasmops_shared::{abi, wire};

const TOKEN: &str = "prom-e2e-token";
const ORIGIN: &str = "http://127.0.0.1:1";
/// The latency histogram's bucket bounds in seconds (the device's `LATENCY_BUCKETS_US`).
const BUCKETS_S: [f64; 12] = [
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 0.1, 1.0,
];

fn module(weights: Vec<Vec<f64>>) -> Vec<u8> {
    let pipeline = Pipeline {
        n_features: 4,
        scaler: None,
        model: Model::LogisticRegression {
            intercepts: vec![0.0; weights.len()],
            weights,
        },
    };
    let classes: Vec<String> = (0..3).map(|c| format!("class{c}")).collect();
    let card = ModelCard {
        abi_version: abi::ABI_VERSION,
        kind: pipeline.model.kind().into(),
        feature_names: (0..4).map(|j| format!("f{j}")).collect(),
        target_name: "y".into(),
        outputs: pipeline.output_names(&classes),
        classes,
        dataset: DatasetRef {
            name: "synthetic".into(),
            hash: "0".repeat(64),
            n_rows: 80,
        },
        params: BTreeMap::new(),
        metrics: BTreeMap::new(),
        code_version: "e2e".into(),
    };
    let rows: Vec<f64> = (0..80).map(|i| (i % 7) as f64 - 3.0).collect();
    let profile = Profile::from_rows(&card.feature_names, &rows);
    compile(&CompileInput {
        pipeline: &pipeline,
        card: &card,
        profile: &profile,
        conformance_rows: &[],
    })
    .expect("compiles")
}

/// Uploads and activates a module; returns its hash.
async fn deploy(http: &reqwest::Client, device: &EdgeProcess, module: &[u8]) -> String {
    let up: wire::UploadResponse = http
        .post(format!("{}{}", device.url, wire::paths::MODULES))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/wasm")
        .body(module.to_vec())
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("upload")
        .json()
        .await
        .expect("upload answer");
    http.post(format!("{}{}", device.url, wire::paths::activate(&up.hash)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("activate");
    up.hash
}

fn device(dir: &Path, name: &str, extra: &[&str]) -> EdgeProcess {
    let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    EdgeProcess::start_with(&dir.join(name), TOKEN, ORIGIN, "127.0.0.1:0", name, &extra)
}

/// The nearest-rank p95 of a device's stored latencies (seconds).
async fn exact_p95(http: &reqwest::Client, device: &EdgeProcess) -> (f64, u64) {
    let page: wire::TelemetryPage = http
        .get(format!(
            "{}{}?after=0&limit=10000",
            device.url,
            wire::paths::TELEMETRY_RECORDS
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("records")
        .json()
        .await
        .expect("records answer");
    let mut lat: Vec<u64> = page.records.iter().map(|r| r.latency_us).collect();
    lat.sort_unstable();
    let rank = ((0.95 * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
    (lat[rank - 1] as f64 / 1e6, lat.len() as u64)
}

/// The histogram bucket `(lower, upper]` holding `v` (seconds), as `histogram_quantile` sees it.
fn bucket_of(v: f64) -> (f64, f64) {
    let i = BUCKETS_S.partition_point(|b| *b < v);
    let lower = if i == 0 { 0.0 } else { BUCKETS_S[i - 1] };
    (lower, BUCKETS_S.get(i).copied().unwrap_or(f64::INFINITY))
}

fn by_label(result: &serde_json::Value, label: &str) -> BTreeMap<String, f64> {
    result
        .as_array()
        .expect("a vector")
        .iter()
        .map(|s| {
            (
                s["metric"][label].as_str().unwrap_or("").to_string(),
                sample_value(s),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_two_devices_and_one_pushes_by_remote_write() {
    let started = Instant::now();
    let dir = temp_dir("prometheus");
    let a = device(&dir, "edge-a", &[]);
    let b = device(&dir, "edge-b", &[]);
    let target = |d: &EdgeProcess| d.url.trim_start_matches("http://").to_string();
    let prom = PrometheusServer::start(&dir.join("prom"), &[target(&a), target(&b)], TOKEN);
    prom.ready().await;
    let c = device(
        &dir,
        "edge-c",
        &[
            "--remote-write",
            &prom.remote_write_url(),
            "--remote-write-interval",
            "1",
        ],
    );

    let http = wasmops_e2e::client();
    let v1 = module(vec![
        vec![0.41, 1.46, -2.26, -1.03],
        vec![0.42, -1.57, 0.58, -1.38],
        vec![-0.83, 0.11, 1.68, 2.41],
    ]);
    let v2 = module(vec![
        vec![1.0, 0.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.0, 0.0],
        vec![0.0, 0.0, 1.0, 0.0],
    ]);
    let h1 = deploy(&http, &a, &v1).await;
    assert_eq!(deploy(&http, &c, &v1).await, h1);
    let h2 = deploy(&http, &b, &v2).await;
    let (s1, s2) = (h1[..12].to_string(), h2[..12].to_string());

    // Devices per version: two scraped, one pushed, all in one query.
    let versions = prom
        .query_until(
            "count by (version) (wasmops_active_module_info)",
            Duration::from_secs(20),
            |r| by_label(r, "version").values().sum::<f64>() == 3.0,
        )
        .await;
    assert_eq!(
        by_label(&versions, "version"),
        BTreeMap::from([(s1.clone(), 2.0), (s2.clone(), 1.0)])
    );
    // The pushed series carry the device's name as instance and the job, as a scrape would.
    let pushed = prom
        .query("wasmops_active_module_info{instance=\"edge-c\"}")
        .await;
    let m = &pushed[0]["metric"];
    assert_eq!(
        (m["job"].as_str(), m["hash"].as_str(), m["kind"].as_str()),
        (
            Some("wasmops-edge"),
            Some(h1.as_str()),
            Some("logistic_regression")
        ),
        "{pushed}"
    );

    // Traffic for 4 s on all three (so rates have several samples), two refused calls on a.
    let load = |d: &EdgeProcess, every_ms: u64| {
        let (url, http) = (d.url.clone(), http.clone());
        tokio::spawn(async move {
            let end = Instant::now() + Duration::from_secs(4);
            let mut i = 0u32;
            while Instant::now() < end {
                let x = f64::from(i % 13) / 4.0 - 1.5;
                http.post(format!("{url}{}", wire::paths::PREDICT))
                    .bearer_auth(TOKEN)
                    .json(&wire::PredictRequest {
                        rows: vec![vec![x, -x, x * 0.5, 1.0]],
                    })
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .expect("predict");
                i += 1;
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
            }
        })
    };
    let loads = [load(&a, 20), load(&b, 40), load(&c, 40)];
    for _ in 0..2 {
        let r = http
            .post(format!("{}{}", a.url, wire::paths::PREDICT))
            .bearer_auth(TOKEN)
            .json(&wire::PredictRequest {
                rows: vec![vec![1.0, 2.0]],
            })
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
    }
    for l in loads {
        l.await.unwrap();
    }

    // Request rates over the load, per device, from scrapes and pushes alike.
    let rates = prom
        .query("sum by (instance) (rate(wasmops_predict_requests_total[10s]))")
        .await;
    let rates = by_label(&rates, "instance");
    for d in [target(&a), target(&b), "edge-c".to_string()] {
        assert!(
            rates.get(&d).is_some_and(|r| *r > 1.0),
            "rate of {d}: {rates:?}"
        );
    }
    let errors = prom
        .query_until(
            &format!(
                "wasmops_predict_errors_total{{instance=\"{}\",kind=\"bad_request\"}}",
                target(&a)
            ),
            Duration::from_secs(10),
            |r| {
                r.as_array()
                    .is_some_and(|v| v.len() == 1 && sample_value(&v[0]) == 2.0)
            },
        )
        .await;
    assert_eq!(errors[0]["metric"]["job"], "wasmops-edge");
    let error_rate = prom
        .query(&format!(
            "sum(rate(wasmops_predict_errors_total{{instance=\"{0}\"}}[10s])) / sum(rate(wasmops_predict_requests_total{{instance=\"{0}\"}}[10s]))",
            target(&a)
        ))
        .await;
    let error_rate = sample_value(&error_rate[0]);
    assert!(error_rate > 0.0 && error_rate < 0.2, "{error_rate}");

    // Counters and p95 equal the devices' own records once the last scrape or push is in.
    for (d, instance) in [(&a, target(&a)), (&b, target(&b)), (&c, "edge-c".into())] {
        let (p95, n) = exact_p95(&http, d).await;
        prom.query_until(
            &format!("wasmops_predict_requests_total{{instance=\"{instance}\"}}"),
            Duration::from_secs(10),
            |r| {
                r.as_array()
                    .is_some_and(|v| v.len() == 1 && sample_value(&v[0]) == n as f64)
            },
        )
        .await;
        let q = prom
            .query(&format!(
                "histogram_quantile(0.95, sum by (le) (wasmops_predict_latency_seconds_bucket{{instance=\"{instance}\"}}))"
            ))
            .await;
        let (lower, upper) = bucket_of(p95);
        let got = sample_value(&q[0]);
        assert!(
            got >= lower && got <= upper,
            "{instance}: PromQL p95 {got} outside the bucket ({lower}, {upper}] of the exact p95 {p95}"
        );
    }
    let p95 = prom
        .query("histogram_quantile(0.95, sum by (le, instance) (rate(wasmops_predict_latency_seconds_bucket[10s])))")
        .await;
    let p95 = by_label(&p95, "instance");
    assert_eq!(p95.len(), 3, "{p95:?}");
    assert!(
        p95.values().all(|v| *v > 0.0 && *v <= 1.0),
        "p95 per device: {p95:?}"
    );

    // Drift per feature, by device, pushed too.
    let drift = prom
        .query("wasmops_feature_drift_psi{instance=\"edge-c\"}")
        .await;
    let features: Vec<String> = by_label(&drift, "feature").into_keys().collect();
    assert_eq!(features, ["f0", "f1", "f2", "f3"]);

    // The alias points at v1: the devices behind it are those on another version.
    let behind = prom
        .query(&format!("wasmops_active_module_info{{version!=\"{s1}\"}}"))
        .await;
    assert_eq!(
        by_label(&behind, "instance"),
        BTreeMap::from([(target(&b), 1.0)])
    );
    let elapsed = started.elapsed();
    eprintln!("prometheus e2e took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
