//! A fleet that pulls, at scale on one machine (issue 12): N real `wasmops-edge` processes
//! (200 by default, `WASMOPS_FOLLOW_DEVICES`) follow one alias on a real MLflow server, with
//! signed modules only. Measured: each device's idle RSS, the time from moving the alias until
//! every device serves the new version (goal: within one poll interval plus 10 s), and
//! MLflow's request rate meanwhile. The baseline, in the same run: one device alone following
//! the same alias on the same server.

use std::time::{Duration, Instant};

use wasmops_e2e::registry::{create, iris_module, point, register, signer, Version};
use wasmops_e2e::{median, run_bench, temp_dir, EdgeProcess, MlflowServer};
use wasmops_shared::wire;
use wasmops_trainer::Algorithm;

const MODEL: &str = "fleet-scale";
const ALIAS: &str = "champion";
const TOKEN: &str = "scale-token";
/// Seconds between polls (each jittered by +-20 %).
const INTERVAL_S: u64 = 10;

/// A process's resident memory in KiB: all of it (`VmRSS`) and its private part (`RssAnon`;
/// the rest is file pages, mostly the binary's code, shared by every device on the machine).
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn mb(kib: &[u64]) -> (f64, f64) {
    let v: Vec<f64> = kib.iter().map(|&k| k as f64 / 1024.0).collect();
    let max = v.iter().copied().fold(0.0, f64::max);
    (median(v), max)
}

fn start(dir: &std::path::Path, mlflow: &MlflowServer, keys: &str, i: usize) -> EdgeProcess {
    EdgeProcess::start_with(
        &dir.join(format!("device-{i}")),
        TOKEN,
        "http://localhost",
        "127.0.0.1:0",
        &format!("device-{i}"),
        &[
            "--trusted-keys".into(),
            keys.into(),
            "--follow".into(),
            mlflow.url.clone(),
            "--model".into(),
            MODEL.into(),
            "--alias".into(),
            ALIAS.into(),
            "--follow-interval".into(),
            INTERVAL_S.to_string(),
        ],
    )
}

/// Polls every device until it runs `version`; returns each device's time to get there.
async fn until_running(
    http: &reqwest::Client,
    devices: &[EdgeProcess],
    version: &str,
    from: Instant,
    limit: Duration,
) -> Vec<Option<Duration>> {
    let mut done: Vec<Option<Duration>> = vec![None; devices.len()];
    while done.iter().any(Option::is_none) && from.elapsed() < limit {
        let pending: Vec<usize> = (0..devices.len()).filter(|&i| done[i].is_none()).collect();
        let answers = futures_join(http, devices, &pending).await;
        for (i, info) in pending.into_iter().zip(answers) {
            let running = info.and_then(|i| i.follow).and_then(|f| f.running_version);
            if running.as_deref() == Some(version) {
                done[i] = Some(from.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done
}

/// `/v1/info` of the given devices, 32 at a time.
async fn futures_join(
    http: &reqwest::Client,
    devices: &[EdgeProcess],
    which: &[usize],
) -> Vec<Option<wire::DeviceInfo>> {
    let mut out = Vec::with_capacity(which.len());
    for chunk in which.chunks(32) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let http = http.clone();
                let url = format!("{}{}", devices[i].url, wire::paths::INFO);
                tokio::spawn(async move {
                    http.get(url)
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .ok()?
                        .json::<wire::DeviceInfo>()
                        .await
                        .ok()
                })
            })
            .collect();
        for t in tasks {
            out.push(t.await.ok().flatten());
        }
    }
    out
}

struct Switch {
    devices: usize,
    all_s: f64,
    median_s: f64,
    missing: usize,
    mlflow_rps: f64,
    downloads: usize,
}

/// Moves the alias to `version` and measures the switch of `devices`.
async fn switch(
    http: &reqwest::Client,
    mlflow: &MlflowServer,
    devices: &[EdgeProcess],
    version: &str,
) -> Switch {
    let polls_before = mlflow.logged("registered-models/alias");
    let downloads_before = mlflow.logged("model.wasm ");
    let from = Instant::now();
    point(mlflow, MODEL, ALIAS, version).await;
    let limit = Duration::from_secs(INTERVAL_S * 3 + 30);
    let times = until_running(http, devices, version, from, limit).await;
    let elapsed = from.elapsed().as_secs_f64();
    let got: Vec<f64> = times.iter().flatten().map(Duration::as_secs_f64).collect();
    Switch {
        devices: devices.len(),
        all_s: got.iter().copied().fold(0.0, f64::max),
        median_s: median(got.clone()),
        missing: devices.len() - got.len(),
        mlflow_rps: (mlflow.logged("registered-models/alias") - polls_before) as f64 / elapsed,
        downloads: mlflow.logged("model.wasm ") - downloads_before,
    }
}

fn main() {
    let n: usize = std::env::var("WASMOPS_FOLLOW_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    run_bench(async move {
        let dir = temp_dir("follow-scale");
        let mlflow = MlflowServer::start(&dir.join("mlflow"));
        let modules: Vec<Version> = [(1.0, 7), (0.5, 8), (0.25, 9)]
            .into_iter()
            .map(|(alpha, seed)| {
                Version::signed(iris_module(
                    Algorithm::LogisticRegression {
                        alpha,
                        max_iterations: 100,
                    },
                    seed,
                ))
            })
            .collect();
        mlflow.ready().await;
        let experiment = create(&mlflow, "scale", MODEL).await;
        let mut versions = Vec::new();
        for m in &modules {
            versions.push(register(&mlflow, &experiment, MODEL, m).await);
        }
        point(&mlflow, MODEL, ALIAS, &versions[0]).await;
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(keys.join("ci.pem"), signer().public_key_pem()).unwrap();
        let keys = keys.display().to_string();
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();

        // Baseline: one device alone.
        let one = vec![start(&dir.join("one"), &mlflow, &keys, 0)];
        let first = until_running(
            &http,
            &one,
            &versions[0],
            Instant::now(),
            Duration::from_secs(60),
        )
        .await;
        assert!(first[0].is_some(), "the single device never ran version 1");
        let baseline = switch(&http, &mlflow, &one, &versions[1]).await;
        drop(one);
        point(&mlflow, MODEL, ALIAS, &versions[0]).await;

        // The fleet.
        let started = Instant::now();
        let fleet: Vec<EdgeProcess> = (0..n)
            .map(|i| start(&dir.join("fleet"), &mlflow, &keys, i))
            .collect();
        let start_s = started.elapsed().as_secs_f64();
        let ready = until_running(
            &http,
            &fleet,
            &versions[0],
            Instant::now(),
            Duration::from_secs(INTERVAL_S * 3 + 60),
        )
        .await;
        let ready_n = ready.iter().flatten().count();
        // Idle: nothing to do but poll.
        tokio::time::sleep(Duration::from_secs(INTERVAL_S)).await;
        let rss: Vec<(u64, u64)> = fleet.iter().map(|d| rss_kib(d.pid())).collect();
        let idle_rps = {
            let before = mlflow.logged("registered-models/alias");
            tokio::time::sleep(Duration::from_secs(INTERVAL_S * 2)).await;
            (mlflow.logged("registered-models/alias") - before) as f64 / (INTERVAL_S * 2) as f64
        };
        let s = switch(&http, &mlflow, &fleet, &versions[2]).await;
        let rss_after: Vec<(u64, u64)> = fleet.iter().map(|d| rss_kib(d.pid())).collect();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

        println!(
            "\nfollow_scale: {n} devices following one alias, poll interval {INTERVAL_S} s +-20 %"
        );
        println!("  started {n} devices in {start_s:.1} s; {ready_n}/{n} running version 1 after the first polls");
        for (when, r) in [("idle", &rss), ("after the switch", &rss_after)] {
            let all: Vec<u64> = r.iter().map(|x| x.0).collect();
            let private: Vec<u64> = r.iter().map(|x| x.1).collect();
            let (all_med, all_max) = mb(&all);
            let (own_med, own_max) = mb(&private);
            println!(
                "  RSS per device, {when}: median {all_med:.1} MB, max {all_max:.1} MB (goal <= 15 MB); of it private (RssAnon): median {own_med:.1} MB, max {own_max:.1} MB; the rest is file pages (the binary's code) shared by all {n}"
            );
        }
        println!("  MLflow alias lookups while idle: {idle_rps:.1}/s (expected {n}/{INTERVAL_S} = {:.1}/s)", n as f64 / INTERVAL_S as f64);
        println!("| devices | all switched (s) | median (s) | never switched | alias lookups/s during | module downloads |");
        println!("|---:|---:|---:|---:|---:|---:|");
        for r in [&baseline, &s] {
            println!(
                "| {} | {:.1} | {:.1} | {} | {:.1} | {} |",
                r.devices, r.all_s, r.median_s, r.missing, r.mlflow_rps, r.downloads
            );
        }
        println!(
            "  goal: all within one poll interval + 10 s = {} s (jitter makes the longest interval {:.0} s): {}",
            INTERVAL_S + 10,
            INTERVAL_S as f64 * 1.2,
            if s.missing == 0 && s.all_s <= (INTERVAL_S + 10) as f64 { "met" } else { "NOT met" }
        );
        println!(
            "  fleet / one device, time until all switched: {:.2}x",
            s.all_s / baseline.all_s.max(0.001)
        );
        println!("  load average at the end: {}", load.trim());
    });
}
