//! The real `wasmops-edge` binary: `kill -9` during sustained load loses no acknowledged
//! telemetry; config file plus environment overrides; file logs; `run` and `inspect`.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;

const BIN: &str = env!("CARGO_BIN_EXE_wasmops-edge");

/// A running `wasmops-edge serve`, killed when dropped.
pub(super) struct Daemon {
    pub(super) child: std::process::Child,
    pub(super) base: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_daemon(config: &std::path::Path) -> Daemon {
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || start_daemon_blocking(&config))
        .await
        .unwrap()
}

fn start_daemon_blocking(config: &std::path::Path) -> Daemon {
    use std::io::BufRead;
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("WASMOPS_NAME", "from-env")
        .env_remove("WASMOPS_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("daemon prints its address");
    let line = line.trim_end();
    let base = line
        .strip_prefix("wasmops-edge listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Daemon { child, base }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_load_keeps_every_acknowledged_record() {
    let dir = temp_dir("kill9");
    let data = dir.join("data");
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ntoken = {TOKEN:?}\nname = \"from-file\"\n[telemetry]\nmax_records = 1000000\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let mut daemon = start_daemon(&config).await;
    let http = reqwest::Client::new();
    let base = daemon.base.clone();
    let hash = deploy(&http, &base, build(&iris_like(), &[5.1, 3.5, 1.4, 0.2])).await;
    let info: wire::DeviceInfo =
        ok_json(http.get(format!("{base}/v1/info")).bearer_auth(TOKEN)).await;
    assert_eq!(
        info.name, "from-env",
        "environment overrides the config file"
    );

    // Sustained load from several tasks; every 2xx answer is remembered.
    const TASKS: usize = 6;
    const MAX_PER_TASK: usize = 5_000;
    let acked: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (http, base, acked, count) = (http.clone(), base.clone(), acked.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..MAX_PER_TASK {
                let rows = vec![vec![t as f64, i as f64 * 0.01, 1.0, -1.0]; 1 + i % 2];
                let sent = http
                    .post(format!("{base}/v1/predict"))
                    .bearer_auth(TOKEN)
                    .json(&wire::PredictRequest { rows: rows.clone() })
                    .send()
                    .await;
                let Ok(r) = sent else { return true };
                if !r.status().is_success() {
                    return true;
                }
                let Ok(p) = r.json::<wire::PredictResponse>().await else {
                    return true;
                };
                acked.lock().unwrap().push((p.first_id, rows.len() as u64));
                count.fetch_add(1, Ordering::Relaxed);
            }
            false
        }));
    }
    // Kill once the load is well under way (bounded wait: 2,000 polls).
    for _ in 0..2_000 {
        if count.load(Ordering::Relaxed) >= 600 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // `Child::kill` sends SIGKILL on Unix: no shutdown code runs.
    daemon.child.kill().expect("SIGKILL");
    let status = daemon.child.wait().unwrap();
    assert!(
        !status.success(),
        "the daemon was killed, not stopped: {status}"
    );
    let mut interrupted = 0;
    for t in tasks {
        interrupted += usize::from(t.await.unwrap());
    }
    assert_eq!(
        interrupted, TASKS,
        "every task was cut off by the kill, mid-load"
    );
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= 600,
        "load ran before the kill: {}",
        acked.len()
    );

    // Restart on the same data dir: every acknowledged request has its record.
    let daemon = start_daemon(&config).await;
    let records = read_all_records(&http, &daemon.base, 5_000).await;
    assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
    let stored: HashMap<u64, u64> = records
        .iter()
        .filter_map(|r| r.first_id.map(|id| (id, r.rows)))
        .collect();
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, rows)| stored.get(id) != Some(rows))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let t: wire::Telemetry = ok_json(
        http.get(format!("{}/v1/telemetry", daemon.base))
            .bearer_auth(TOKEN),
    )
    .await;
    assert!(t.requests >= acked.len() as u64);
    assert_eq!(
        t.requests,
        records.len() as u64,
        "counters agree with the records"
    );
    // The active module came back, and no acknowledged prediction id is issued again.
    let max_end = acked.iter().map(|(id, rows)| id + rows).max().unwrap();
    let p: wire::PredictResponse = ok_json(
        http.post(format!("{}/v1/predict", daemon.base))
            .bearer_auth(TOKEN)
            .json(&wire::PredictRequest {
                rows: vec![vec![1.0; 4]],
            }),
    )
    .await;
    assert_eq!(p.model, hash);
    assert!(p.first_id >= max_end, "{} < {max_end}", p.first_id);

    // The log file in the data dir recorded the deploy and the activation.
    let logs: String = std::fs::read_dir(data.join("logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        logs.contains("module accepted") && logs.contains("module activated"),
        "{logs}"
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_and_inspect_work_offline() {
    let dir = temp_dir("offline");
    let p = iris_like();
    let module = build(&p, &[5.1, 3.5, 1.4, 0.2]);
    let module_path = dir.join("m.wasm");
    std::fs::write(&module_path, &module).unwrap();
    let rows = [
        [5.1, 3.5, 1.4, 0.2],
        [6.7, 3.0, 5.2, 2.3],
        [5.9, 3.0, 4.2, 1.5],
    ];
    let input = dir.join("rows.csv");
    let mut csv = String::from("f0,f1,f2,f3\n");
    for r in rows {
        csv += &format!("{},{},{},{}\n", r[0], r[1], r[2], r[3]);
    }
    std::fs::write(&input, csv).unwrap();
    let output = dir.join("out.csv");

    let run = std::process::Command::new(BIN)
        .args(["run", "--module"])
        .arg(&module_path)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = std::fs::read_to_string(&output).unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("class,p(class0),p(class1),p(class2)"));
    let got: Vec<f64> = lines
        .flat_map(|l| {
            l.split(',')
                .map(|v| v.parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(bits(&got), bits(&reference::predict(&p, &rows.concat())));

    std::fs::write(&input, "1,2,3,4\ninf,2,3,4\n").unwrap();
    let bad = std::process::Command::new(BIN)
        .args(["run", "--module"])
        .arg(&module_path)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("row 1, column 0 (`f0`): inf is not a finite number"),
        "{err}"
    );

    let inspect = std::process::Command::new(BIN)
        .arg("inspect")
        .arg(&module_path)
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let report = String::from_utf8_lossy(&inspect.stdout);
    let hash = wasmops_shared::digest::content_hash(&module);
    for needle in [
        format!("hash        {hash}"),
        format!("size        {} bytes", module.len()),
        "custom `wasmops.card`".to_string(),
        "kind        logistic_regression".to_string(),
        "conformance all 9 rows reproduce bit for bit".to_string(),
    ] {
        assert!(report.contains(&needle), "missing {needle:?} in\n{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn json_logs_token_file_and_public_predict_from_the_config_file() {
    let dir = temp_dir("json-logs");
    let data = dir.join("data");
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ntoken_file = {:?}\npublic_predict = true\nlog_format = \"json\"\n",
            data.display().to_string(),
            dir.join("token").display().to_string()
        ),
    )
    .unwrap();
    let daemon = start_daemon(&config).await;
    let http = reqwest::Client::new();
    // Predict needs no token (409: nothing active yet, so it got past authorization)...
    let r = http
        .post(format!("{}/v1/predict", daemon.base))
        .json(&wire::PredictRequest {
            rows: vec![vec![1.0; 4]],
        })
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 409);
    // ...everything else does, with the token from the file.
    let r = http
        .post(format!("{}/v1/modules", daemon.base))
        .body(b"\0asm\x01\0\0\0junk".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 401);
    let r = http
        .post(format!("{}/v1/modules", daemon.base))
        .bearer_auth(TOKEN)
        .body(b"\0asm\x01\0\0\0junk".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 422);
    drop(daemon);

    // Every log line in the data dir is a JSON object; the rejection is among them.
    let logs: String = std::fs::read_dir(data.join("logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "module rejected"
                && l["fields"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("not a valid WebAssembly module"))),
        "{logs}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A receiver that is down (accepts and hangs up) and then comes back (answers 204): the
/// device logs the failure once, not per push, keeps serving meanwhile, and logs the recovery
/// with the number of pushes it dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_remote_write_receiver_is_logged_once_and_never_holds_up_serving() {
    use std::io::{Read, Write};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let dir = temp_dir("remote-write-down");
    let data = dir.join("data");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let attempts = Arc::new(AtomicUsize::new(0));
    let up = Arc::new(AtomicBool::new(false));
    let (seen, is_up) = (attempts.clone(), up.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            seen.fetch_add(1, Ordering::SeqCst);
            if !is_up.load(Ordering::SeqCst) {
                drop(stream);
                continue;
            }
            // Read the head and the body it announces, then accept the push.
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body_len = loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    assert!(head.contains("content-encoding: snappy"), "{head}");
                    assert!(head.contains("x-prometheus-remote-write-version: 0.1.0"));
                    break Some((end + 4, len));
                }
            };
            if let Some((start, len)) = body_len {
                while buf.len() < start + len {
                    let n = stream.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ntoken = {TOKEN:?}\n[remote_write]\nurl = \"http://127.0.0.1:{port}/api/v1/write\"\ninterval_s = 1\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let daemon = start_daemon(&config).await;
    let http = reqwest::Client::new();
    deploy(&http, &daemon.base, build(&iris_like(), &[])).await;
    let logs = || -> String {
        std::fs::read_dir(data.join("logs"))
            .map(|d| {
                d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Serving goes on, promptly, through several failed pushes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while attempts.load(Ordering::SeqCst) < 4 {
        assert!(std::time::Instant::now() < deadline, "no push attempts");
        let t = std::time::Instant::now();
        let _: wire::PredictResponse = ok_json(
            http.post(format!("{}/v1/predict", daemon.base))
                .bearer_auth(TOKEN)
                .json(&wire::PredictRequest {
                    rows: vec![vec![1.0; 4]],
                }),
        )
        .await;
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = logs();
    assert_eq!(
        text.matches("remote write failing").count(),
        1,
        "one line for a run of failures:\n{text}"
    );
    // The receiver comes back: the next push is accepted and the recovery logged once.
    up.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !logs().contains("remote write recovered") {
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery:\n{}",
            logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = logs();
    let line = text
        .lines()
        .find(|l| l.contains("remote write recovered"))
        .unwrap();
    let dropped: u64 = line
        .split("dropped=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no dropped count in {line}"));
    assert!(dropped >= 3, "{line}");
    assert_eq!(text.matches("remote write failing").count(), 1, "{text}");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
