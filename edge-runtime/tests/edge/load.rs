//! The real binary under hostile load: a client's one-row predicts keep being answered while a
//! feedback call for a 100,000-row batch, 64 uploads that fill the instance slots and 200
//! unauthenticated 8 MiB senders run at the same time, and the daemon's memory stays bounded;
//! and a daemon with few descriptors stays reachable under a flood of idle connections.
//! Latencies are reported (`--nocapture`), not compared with fixed numbers: a stall shows as a
//! wait that is a large share of the attack's own length.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::hostile::looping_module;
use super::process::Daemon;
use super::*;

/// The binary under test: this build's, or another one named by `WASMOPS_EDGE_UNDER_TEST` (to
/// measure an older build against the same attack).
fn bin() -> String {
    std::env::var("WASMOPS_EDGE_UNDER_TEST")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_wasmops-edge").to_string())
}

/// Starts `wasmops-edge serve` with at most `open_files` descriptors (as `ulimit -n` sets them;
/// 1024 is the usual default for services).
fn start(data: &std::path::Path, open_files: usize) -> Daemon {
    use std::io::BufRead;
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {open_files} && exec \"$0\" serve --listen 127.0.0.1:0 --data-dir \"$1\""
        ))
        .arg(bin())
        .arg(data)
        .env("WASMOPS_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("daemon prints its address");
    let base = line
        .trim_end()
        .strip_prefix("wasmops-edge listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Daemon { child, base }
}

/// Resident memory of a process in KiB (Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_under_attack_keeps_answering_its_client() {
    let dir = temp_dir("under-attack");
    let daemon = start(&dir.join("data"), 1024);
    let pid = daemon.child.id();
    let base = daemon.base.clone();
    let http = reqwest::Client::new();
    let idle_rss = rss_kib(pid).unwrap_or(0);

    deploy(&http, &base, build(&iris_like(), &[5.1, 3.5, 1.4, 0.2])).await;
    const N: usize = 100_000;
    let csv = csv_rows(N);
    let batch: wire::PredictResponse = ok_json(
        http.post(format!("{base}/v1/predict"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "text/csv")
            .body(csv),
    )
    .await;
    let labels: Vec<wire::Label> = (0..N)
        .map(|i| wire::Label {
            id: batch.first_id + i as u64,
            label: (i % 3) as f64,
        })
        .collect();

    // Memory, sampled all along.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };

    let started = Instant::now();
    let mut attack = Vec::new();
    // (a) Feedback for the whole batch.
    {
        let (http, base) = (http.clone(), base.clone());
        attack.push(tokio::spawn(async move {
            let r: wire::FeedbackResponse = ok_json(
                http.post(format!("{base}/v1/feedback"))
                    .bearer_auth(TOKEN)
                    .json(&wire::FeedbackRequest { labels }),
            )
            .await;
            assert_eq!(r.accepted, N);
            "feedback"
        }));
    }
    // (b) 64 uploads of a module that loops through 1,000 conformance rows.
    let looping = looping_module(1000);
    for _ in 0..64 {
        let (http, base, looping) = (http.clone(), base.clone(), looping.clone());
        attack.push(tokio::spawn(async move {
            let r = http
                .post(format!("{base}/v1/modules"))
                .bearer_auth(TOKEN)
                .header("Content-Type", "application/wasm")
                .body(looping)
                .send()
                .await
                .unwrap();
            let (status, error) = error_of(r).await;
            assert_eq!(status, 422, "{error:?}");
            "upload"
        }));
    }
    // (c) 200 clients without the token, each sending an 8 MiB predict body as fast as it can.
    let addr = base.trim_start_matches("http://").to_string();
    for _ in 0..200 {
        let addr = addr.clone();
        attack.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST /v1/predict HTTP/1.1\r\nHost: device\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
                8 << 20
            );
            tcp.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'1'; 64 << 10];
            for _ in 0..128 {
                if tcp.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut answer))
                .await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 401"),
                "{}",
                answer.lines().next().unwrap_or("")
            );
            "unauthenticated sender"
        }));
    }

    // The client: one-row predicts until the attack is over.
    let mut latencies = Vec::new();
    while attack.iter().any(|t| !t.is_finished()) {
        let t = Instant::now();
        let r: wire::PredictResponse = ok_json(
            http.post(format!("{base}/v1/predict"))
                .bearer_auth(TOKEN)
                .json(&wire::PredictRequest {
                    rows: vec![vec![5.9, 3.0, 4.2, 1.5]],
                }),
        )
        .await;
        assert_eq!(r.outputs.len(), 1);
        latencies.push(t.elapsed());
    }
    let took = started.elapsed();
    for t in attack {
        t.await.expect("every attacker finished as expected");
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_rss = sampler.await.unwrap();
    let after_rss = rss_kib(pid).unwrap_or(0);
    latencies.sort();
    let (p50, p99, worst) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        *latencies.last().unwrap(),
    );
    eprintln!(
        "under attack for {took:?}: {} one-row predicts, p50 {p50:?}, p99 {p99:?}, worst {worst:?}; \
         daemon RSS idle {} MiB, peak {} MiB, after {} MiB",
        latencies.len(),
        idle_rss / 1024,
        peak_rss / 1024,
        after_rss / 1024
    );
    assert!(
        latencies.len() >= 10,
        "only {} predicts answered",
        latencies.len()
    );
    assert!(
        worst * 4 < took,
        "a one-row predict waited {worst:?} during {took:?} of attack"
    );
    // 200 senders of 8 MiB would be 1.6 GiB if bodies were buffered before the token check;
    // the device holds at most its budget of buffered bytes (64 MiB by default).
    assert!(
        peak_rss < 400 * 1024,
        "daemon peaked at {} MiB resident",
        peak_rss / 1024
    );
    // Nothing an attacker sent reached the database: only the client's own records are there.
    let c: wire::Telemetry =
        ok_json(http.get(format!("{base}/v1/telemetry")).bearer_auth(TOKEN)).await;
    assert_eq!(c.requests, latencies.len() as u64 + 1, "{c:?}");
    assert_eq!(c.errors, 0, "{c:?}");
    let metrics = metrics_text(&http, &base).await;
    assert!(
        metrics.contains("wasmops_unauthorized_requests_total 200"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_leaves_a_device_with_few_descriptors_reachable() {
    let dir = temp_dir("idle-flood");
    // 256 descriptors and 400 idle connections: without a connection limit below the
    // descriptor limit, accept fails (EMFILE) and nobody gets in.
    let daemon = start(&dir.join("data"), 256);
    let addr = daemon.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..400 {
        match TcpStream::connect(&addr).await {
            Ok(tcp) => idle.push(tcp),
            Err(e) => panic!("connect failed after {} connections: {e}", idle.len()),
        }
    }
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            http.get(format!("{}/v1/health", daemon.base)).send(),
        )
        .await
        .expect("health answered despite the flood")
        .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let info = tokio::time::timeout(
            Duration::from_secs(30),
            http.get(format!("{}/v1/info", daemon.base))
                .bearer_auth(TOKEN)
                .send(),
        )
        .await
        .expect("an authenticated client answered despite the flood")
        .unwrap();
        assert_eq!(info.status().as_u16(), 200);
    }
    drop(idle);
}
