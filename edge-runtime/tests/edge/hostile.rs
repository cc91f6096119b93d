//! Clients and modules that try to stall, bloat or blind the device: requests without a token,
//! bodies that never finish, idle and half-sent connections, more connections than the device
//! holds, uploads that fill the instance slots, and a feedback call for a 100,000-row batch.
//! Each case failed on the daemon before the hardening (issue 15); none compares a time with a
//! fixed number: a stall shows as a latency that is a large share of the attack's own length.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// A looping module that carries `rows` conformance rows: loading it burns the whole fuel
/// budget of a `rows`-row batch, then it is refused.
pub(super) fn looping_module(rows: usize) -> Vec<u8> {
    let inputs: Vec<f64> = (0..rows * 4).map(|i| (i % 5) as f64).collect();
    let conformance = ModuleInfo::parse(&build(&iris_like(), &inputs))
        .unwrap()
        .conformance
        .into_inner();
    with_section(
        &hostile(&endless_loop(), 1, false),
        abi::SECTION_CONFORMANCE,
        &serde_json::to_vec(&conformance).unwrap(),
    )
}

/// Sends raw bytes on a new connection and reads what comes back until the device closes it
/// or `wait` passes; `None` if the connection was still open then.
async fn raw_exchange(addr: &str, request: &[u8], wait: Duration) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The device may answer and close before it has read everything (that is the point of
    // some cases): a failed write is not the test's concern, the answer is.
    let _ = tcp.write_all(request).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&got).into_owned())
}

fn addr_of(dev: &TestDevice) -> String {
    dev.base.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_request_without_the_token_is_refused_before_its_body_is_read() {
    let dir = temp_dir("auth-first");
    let dev = TestDevice::start(&dir).await;
    let addr = addr_of(&dev);
    for path in ["/v1/modules", "/v1/predict", "/v1/feedback"] {
        // Declares a body at the limit and sends none of it: the answer must not wait for it.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: device\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            1 << 20
        );
        let answer = raw_exchange(&addr, head.as_bytes(), Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{path}: no answer while the body was outstanding"));
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "{path}: {}",
            answer.lines().next().unwrap_or("")
        );
        assert!(answer.contains("\"kind\":\"unauthorized\""), "{answer}");
    }
    dev.stop().await;
}

#[tokio::test]
async fn every_route_but_health_needs_the_token_and_the_scheme_is_case_insensitive() {
    let dir = temp_dir("auth-layer");
    let dev = TestDevice::start(&dir).await;
    let hash = "ab".repeat(32);
    let activate = wire::paths::activate(&hash);
    let routes: Vec<(&str, &str)> = vec![
        ("GET", wire::paths::INFO),
        ("GET", wire::paths::MODULES),
        ("POST", wire::paths::MODULES),
        ("POST", &activate),
        ("POST", wire::paths::ROLLBACK),
        ("POST", wire::paths::PREDICT),
        ("POST", wire::paths::FEEDBACK),
        ("GET", wire::paths::FEEDBACK_RECORDS),
        ("GET", wire::paths::TELEMETRY),
        ("GET", wire::paths::TELEMETRY_RECORDS),
        ("GET", wire::paths::TELEMETRY_WINDOWS),
        ("GET", wire::paths::METRICS),
    ];
    for (method, path) in &routes {
        let url = format!("{}{path}", dev.base);
        let request = match *method {
            "GET" => dev.http.get(&url),
            _ => dev.http.post(&url).body("{}"),
        };
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{method} {path} without a token");
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{method} {path}"
        );
        let wrong = match *method {
            "GET" => dev.http.get(&url),
            _ => dev.http.post(&url).body("{}"),
        };
        let r = wrong.bearer_auth("not-the-token").send().await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            401,
            "{method} {path} with a wrong token"
        );
    }
    let r = dev
        .http
        .get(format!("{}{}", dev.base, wire::paths::HEALTH))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "health is open");
    // RFC 9110: the scheme is case-insensitive.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = dev
            .http
            .get(format!("{}{}", dev.base, wire::paths::INFO))
            .header("Authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "scheme {scheme:?}");
    }
    dev.stop().await;
}

#[tokio::test]
async fn predicts_without_the_token_are_counted_and_never_stored() {
    let dir = temp_dir("unauth-records");
    let dev = TestDevice::start(&dir).await;
    let hash = dev
        .upload(&build(&iris_like(), &[5.1, 3.5, 1.4, 0.2]))
        .await;
    dev.activate(&hash).await;
    dev.predict(&[vec![5.9, 3.0, 4.2, 1.5]]).await;
    let before = dev.counters().await;
    for _ in 0..50 {
        let r = dev
            .http
            .post(format!("{}/v1/predict", dev.base))
            .header("Content-Type", "application/json")
            .body(r#"{"rows": [[1, 2, 3, 4]]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let after = dev.counters().await;
    assert_eq!(
        (after.requests, after.errors),
        (before.requests, before.errors),
        "refused-before-auth calls must not be written to the telemetry database"
    );
    assert_eq!(dev.all_records(100).await.len() as u64, after.requests);
    let metrics = metrics_text(&dev.http, &dev.base).await;
    assert!(
        metrics.contains("wasmops_unauthorized_requests_total 50"),
        "{metrics}"
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_in_memory_are_bounded_and_a_stalled_body_times_out() {
    let dir = temp_dir("body-budget");
    let http = HttpConfig {
        max_body: 1 << 20,
        max_buffered: 2 << 20,
        body_timeout: Duration::from_secs(2),
        ..HttpConfig::new(TOKEN)
    };
    let dev = TestDevice::start_with(&dir, http, Limits::default()).await;
    let addr = addr_of(&dev);
    // Two authenticated uploads declare the largest body, send 1 KiB of it and stall: together
    // they hold the whole budget of buffered bytes.
    let head = format!(
        "POST /v1/modules HTTP/1.1\r\nHost: device\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/wasm\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    );
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&[0u8; 1024]).await.unwrap();
        stalled.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third full-size body finds no room and is told to come back, instead of being held.
    let r = dev
        .post("/v1/modules")
        .header("Content-Type", "application/wasm")
        .body(vec![0u8; 1 << 20])
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(r).await;
    assert_eq!(status, 503, "{error:?}");
    assert_eq!(error.kind, "unavailable");
    // Health is served all along, and the stalled bodies end with 408 after the body timeout.
    let r = dev
        .http
        .get(format!("{}/v1/health", dev.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for mut tcp in stalled {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut got)).await;
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(got.contains("did not arrive within 2 s"), "{got}");
    }
    // Small bodies are served as soon as the budget is free again.
    let r = dev
        .post("/v1/predict")
        .header("Content-Type", "application/json")
        .body(r#"{"rows": [[1, 2, 3, 4]]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        409,
        "no model active: the body was read and answered"
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_and_a_full_table_gives_way() {
    let dir = temp_dir("idle-conns");
    let http = HttpConfig {
        conn: server::conn::ConnLimits {
            max_connections: 16,
            header_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..HttpConfig::new(TOKEN)
    };
    let dev = TestDevice::start_with(&dir, http, Limits::default()).await;
    let addr = addr_of(&dev);
    // Silent, half a request head, and idle after one answered request: all closed.
    assert!(
        raw_exchange(&addr, b"", Duration::from_secs(15))
            .await
            .is_some(),
        "a silent connection stays open"
    );
    assert!(
        raw_exchange(
            &addr,
            b"GET /v1/health HTTP/1.1\r\nHost: d",
            Duration::from_secs(15)
        )
        .await
        .is_some(),
        "a half-sent request head stays open"
    );
    let kept_alive = raw_exchange(
        &addr,
        b"GET /v1/health HTTP/1.1\r\nHost: device\r\n\r\n",
        Duration::from_secs(15),
    )
    .await
    .expect("an idle kept-alive connection stays open");
    assert!(kept_alive.starts_with("HTTP/1.1 200"), "{kept_alive}");

    // 64 idle connections against a table of 16: the oldest idle ones give way, and a new
    // client is served at once (long before the header timeout would have freed anything).
    let dev_conn = server::conn::ConnLimits {
        max_connections: 16,
        header_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let dir = temp_dir("full-table");
    let http = HttpConfig {
        conn: dev_conn,
        ..HttpConfig::new(TOKEN)
    };
    let dev2 = TestDevice::start_with(&dir, http, Limits::default()).await;
    let addr = addr_of(&dev2);
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let started = Instant::now();
    let r = dev2
        .http
        .get(format!("{}/v1/info", dev2.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let served_in = started.elapsed();
    let mut closed = 0;
    for tcp in &mut idle {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 64 - 16,
        "only {closed} of 64 idle connections gave way (served in {served_in:?})"
    );
    dev.stop().await;
    dev2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_that_fill_the_slots_never_stop_health_or_predicts() {
    let dir = temp_dir("slot-fill");
    let limits = Limits {
        max_concurrent_calls: 4,
        max_concurrent_loads: 2,
        ..Limits::default()
    };
    let http = HttpConfig {
        max_body: 1 << 20,
        ..HttpConfig::new(TOKEN)
    };
    let dev = Arc::new(TestDevice::start_with(&dir, http, limits).await);
    let hash = dev
        .upload(&build(&iris_like(), &[5.1, 3.5, 1.4, 0.2]))
        .await;
    dev.activate(&hash).await;
    let looping = looping_module(1000);
    let started = Instant::now();
    let uploads: Vec<_> = (0..8)
        .map(|_| {
            let (dev, looping) = (dev.clone(), looping.clone());
            tokio::spawn(async move {
                let r = dev
                    .post("/v1/modules")
                    .header("Content-Type", "application/wasm")
                    .body(looping)
                    .send()
                    .await
                    .unwrap();
                error_of(r).await
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    let mut served = 0;
    while uploads.iter().any(|u| !u.is_finished()) {
        let t = Instant::now();
        let r = dev
            .http
            .get(format!("{}/v1/health", dev.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        dev.predict(&[vec![5.9, 3.0, 4.2, 1.5]]).await;
        worst = worst.max(t.elapsed());
        served += 1;
    }
    let attack = started.elapsed();
    for u in uploads {
        let (status, error) = u.await.unwrap();
        assert_eq!(status, 422, "{error:?}");
        assert!(error.error.contains("compute budget"), "{error:?}");
    }
    assert!(
        served >= 3,
        "only {served} health+predict rounds during {attack:?}"
    );
    assert!(
        worst * 4 < attack,
        "a health+predict round waited {worst:?} during {attack:?} of slot-filling uploads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_for_a_100k_row_batch_never_holds_up_predictions() {
    let dir = temp_dir("big-feedback");
    let http = HttpConfig {
        max_body: 8 << 20,
        ..HttpConfig::new(TOKEN)
    };
    let dev = Arc::new(TestDevice::start_with(&dir, http, Limits::default()).await);
    let p = iris_like();
    let hash = dev.upload(&build(&p, &[5.1, 3.5, 1.4, 0.2])).await;
    dev.activate(&hash).await;
    const N: usize = 100_000;
    let csv = csv_rows(N);
    let batch: wire::PredictResponse = ok_json(
        dev.post("/v1/predict")
            .header("Content-Type", "text/csv")
            .body(csv),
    )
    .await;
    assert_eq!(batch.outputs.len(), N);
    // Even ids get the predicted class as their label, odd ids another one.
    let labels: Vec<wire::Label> = batch
        .outputs
        .iter()
        .enumerate()
        .map(|(i, out)| wire::Label {
            id: batch.first_id + i as u64,
            label: if i % 2 == 0 {
                out[0]
            } else {
                (out[0] + 1.0) % 3.0
            },
        })
        .collect();
    let started = Instant::now();
    let feedback = {
        let dev = dev.clone();
        tokio::spawn(async move {
            ok_json::<wire::FeedbackResponse>(
                dev.post("/v1/feedback")
                    .json(&wire::FeedbackRequest { labels }),
            )
            .await
        })
    };
    let mut latencies = Vec::new();
    while !feedback.is_finished() {
        let t = Instant::now();
        dev.predict(&[vec![5.9, 3.0, 4.2, 1.5]]).await;
        latencies.push(t.elapsed());
    }
    let took = started.elapsed();
    assert_eq!(feedback.await.unwrap().accepted, N);
    latencies.sort();
    let worst = *latencies.last().expect("at least one predict ran");
    eprintln!(
        "feedback for {N} labels took {took:?}; {} one-row predicts meanwhile, p50 {:?}, worst {worst:?}",
        latencies.len(),
        latencies[latencies.len() / 2]
    );
    assert!(
        latencies.len() >= 5,
        "only {} predicts in {took:?}",
        latencies.len()
    );
    assert!(
        worst * 4 < took,
        "a one-row predict waited {worst:?} while feedback ran {took:?}"
    );
    // Every label was checked against the right prediction.
    let metrics = metrics_text(&dev.http, &dev.base).await;
    assert!(
        metrics.contains(&format!("wasmops_feedback_labels_total {N}")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("wasmops_feedback_correct_total {}", N / 2)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_answer_is_let_go() {
    let dir = temp_dir("stalled-reader");
    let http = HttpConfig {
        max_body: 8 << 20,
        conn: server::conn::ConnLimits {
            stall_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        ..HttpConfig::new(TOKEN)
    };
    let dev = TestDevice::start_with(&dir, http, Limits::default()).await;
    let hash = dev
        .upload(&build(&iris_like(), &[5.1, 3.5, 1.4, 0.2]))
        .await;
    dev.activate(&hash).await;
    // A 100,000-row answer (megabytes) to a client with a tiny receive buffer that never reads.
    let csv = csv_rows(100_000);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket
        .connect(addr_of(&dev).parse().unwrap())
        .await
        .unwrap();
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: device\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
        csv.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(csv.as_bytes()).await.unwrap();
    // Not reading for a while: the device gives up on the connection...
    tokio::time::sleep(Duration::from_secs(8)).await;
    // ...so what is left to read ends well before the whole answer, then the socket closes.
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the connection is still open");
    let complete = String::from_utf8_lossy(&got).trim_end().ends_with("]]}");
    assert!(
        !complete,
        "the whole answer ({} bytes) was kept for a client that did not read",
        got.len()
    );
    // The device serves everyone else all along.
    dev.predict(&[vec![5.9, 3.0, 4.2, 1.5]]).await;
    dev.stop().await;
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_without_being_buffered() {
    let dir = temp_dir("big-head");
    let dev = TestDevice::start(&dir).await;
    // 200 KiB of headers: hyper would buffer up to ~400 KiB per connection by default.
    let mut head = String::from("GET /v1/health HTTP/1.1\r\nHost: device\r\n");
    for i in 0..200 {
        head.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(1000)));
    }
    head.push_str("\r\n");
    let answer = raw_exchange(&addr_of(&dev), head.as_bytes(), Duration::from_secs(20))
        .await
        .expect("the device closes the connection");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        answer.lines().next().unwrap_or("")
    );
    let r = dev
        .http
        .get(format!("{}/v1/health", dev.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_declare_a_body_and_never_send_it_give_way_to_new_ones() {
    // Public predict: anyone may send a body. 40 connections declare one and send nothing,
    // against a table of 16: each holds a request "in flight" until the body timeout.
    let dir = temp_dir("body-squat");
    let http = HttpConfig {
        predict_requires_token: false,
        body_timeout: Duration::from_secs(120),
        conn: server::conn::ConnLimits {
            max_connections: 16,
            ..Default::default()
        },
        ..HttpConfig::new(TOKEN)
    };
    let dev = TestDevice::start_with(&dir, http, Limits::default()).await;
    let addr = addr_of(&dev);
    let mut squatters = Vec::new();
    for _ in 0..40 {
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(
            b"POST /v1/predict HTTP/1.1\r\nHost: device\r\nContent-Type: text/csv\r\nContent-Length: 100\r\n\r\n",
        )
        .await
        .unwrap();
        squatters.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A new client is served long before any body timeout would have freed a place.
    let health = tokio::time::timeout(
        Duration::from_secs(20),
        dev.http.get(format!("{}/v1/health", dev.base)).send(),
    )
    .await
    .expect("health waited for a squatter's body timeout")
    .expect("health was turned away");
    assert_eq!(health.status().as_u16(), 200);
    drop(squatters);
    dev.stop().await;
}
