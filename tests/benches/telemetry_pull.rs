//! Benchmark (issue 6): pulling and charting one hour of telemetry from a device that served
//! 100 requests/s, from click to chart, in headless Chromium against a real (release) device.
//!
//! One hour at 100 requests/s is 360,000 records in 60 one-minute windows. Instead of waiting
//! an hour, the load sends the same 360,000 single-row requests in about a minute and the
//! dashboard's window is set to 1 s: the same records, the same number of windows, through the
//! real API only. Baseline in the same run: the device answering the same windows query to a
//! native client (so the ratio is what the dashboard adds: fetch in the browser, IndexedDB,
//! alert rules, charts).
//!
//! `cargo xtask bench` runs it (it builds dist/ and the release device and sets WASMOPS_DIST,
//! WASMOPS_EDGE_BIN, CHROMEDRIVER, CHROMIUM).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmops_e2e::pages::{DeviceForm, Page};
use wasmops_e2e::{temp_dir, Browser, EdgeProcess, StaticSite};
use wasmops_shared::wire;

const RECORDS: u64 = 360_000;
const LOAD_SECONDS: u64 = 55;
const CONNECTIONS: usize = 16;

fn main() {
    wasmops_e2e::run_bench(run());
}

async fn run() {
    let site = StaticSite::dashboard();
    let token = "bench-telemetry";
    let device = EdgeProcess::start(&temp_dir("bench-telemetry"), token, &site.origin);
    let browser = Browser::start().await;
    browser.open(&site.origin).await;

    // A real model, trained in the tab, registered and deployed through the dashboard.
    browser.go(Page::Devices).await;
    browser.click("#auto-pull").await; // only the measured click pulls
    browser
        .devices()
        .add(DeviceForm {
            name: "bench",
            url: &device.url,
            token,
            window_s: Some(1),
        })
        .await;
    browser.go(Page::Lab).await;
    browser.train().start().await;
    browser
        .wait_text("[data-testid=run-metric]", "a run", |t| {
            t.parse::<f64>().is_ok()
        })
        .await;
    browser.click("button.compile").await;
    browser
        .wait_text("[data-testid=module-check]", "the check", |t| {
            t.contains("bit-identical")
        })
        .await;
    browser.click("#register").await;
    browser.registry().toggle_target(None).await;
    browser.registry().deploy().await;
    let deployed = browser
        .registry()
        .result("the deployment", |t| !t.is_empty())
        .await;
    assert!(deployed.contains("bit-identical"), "{deployed}");

    // The load: single-row predictions from 16 connections, RECORDS spread evenly over
    // LOAD_SECONDS (so the hour's records land in the last minute, as about 55 windows).
    let http = wasmops_e2e::client();
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(LOAD_SECONDS);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (http, sent, url, token) = (http.clone(), sent.clone(), device.url.clone(), token);
        tasks.push(tokio::spawn(async move {
            let mut i = c as u64;
            loop {
                // Paced to spread RECORDS evenly over LOAD_SECONDS (one window per second).
                let k = sent.fetch_add(1, Ordering::Relaxed);
                if k >= RECORDS || Instant::now() >= deadline {
                    break;
                }
                let due = started
                    + Duration::from_secs_f64(k as f64 * LOAD_SECONDS as f64 / RECORDS as f64);
                tokio::time::sleep_until(due.into()).await;
                let row = vec![
                    4.3 + (i % 36) as f64 * 0.1,
                    2.0 + (i % 24) as f64 * 0.1,
                    1.0 + (i % 59) as f64 * 0.1,
                    0.1 + (i % 24) as f64 * 0.1,
                ];
                let r = http
                    .post(format!("{url}{}", wire::paths::PREDICT))
                    .bearer_auth(token)
                    .json(&wire::PredictRequest { rows: vec![row] })
                    .send()
                    .await
                    .expect("predict");
                assert!(r.status().is_success(), "{}", r.status());
                i += CONNECTIONS as u64;
            }
        }));
    }
    for t in tasks {
        t.await.expect("load task");
    }
    let load_s = started.elapsed().as_secs_f64();
    let counted: wire::Telemetry = http
        .get(format!("{}{}", device.url, wire::paths::TELEMETRY))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Baseline: the device answering the query the dashboard will make, to a native client.
    let mut native = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let w: wire::WindowsResponse = http
            .get(format!(
                "{}{}?window_s=1&count=62",
                device.url,
                wire::paths::TELEMETRY_WINDOWS
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        native.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(w.windows.len() >= 50, "{} windows", w.windows.len());
    }
    native.sort_by(f64::total_cmp);

    // Click to chart: the device's Pull button, until the stored totals equal the device's
    // own count and the drift chart is drawn.
    let script = format!(
        r#"const done = arguments[arguments.length - 1];
        const button = document.querySelector("tr[data-device='{url}'] button.pull");
        const want = " {requests} requests ";
        let busy = false;
        const t0 = performance.now();
        button.click();
        (function check() {{
            busy = busy || button.disabled;
            const text = document.querySelector("[data-testid=stored-telemetry]")?.textContent || "";
            const chart = document.querySelector("[data-chart=chart-psi] svg");
            if (busy && !button.disabled && text.includes(want) && chart) {{
                requestAnimationFrame(() => done({{ ms: performance.now() - t0, text }}));
            }} else if (performance.now() - t0 > 60000) {{
                done({{ ms: -1, text }});
            }} else {{
                requestAnimationFrame(check);
            }}
        }})();"#,
        url = device.url,
        requests = counted.requests
    );
    browser.go(Page::Devices).await;
    browser.click("a.device-link").await;
    let first = browser.eval_async(&script).await;
    let again = browser.eval_async(&script).await;
    let ms = |v: &serde_json::Value| v["ms"].as_f64().unwrap_or(-1.0);
    assert!(
        ms(&first) >= 0.0,
        "the dashboard never showed all records: {first}"
    );
    browser.screenshot("bench-telemetry").await;

    println!("\n## Telemetry pull (issue 6)\n");
    println!(
        "load: {} requests in {load_s:.1} s ({:.0} req/s, {CONNECTIONS} connections); dashboard window 1 s",
        counted.requests,
        counted.requests as f64 / load_s
    );
    println!(
        "dashboard after the pull: {}",
        first["text"].as_str().unwrap_or("")
    );
    println!("\n| what | ms | ratio to native |\n|---|---:|---:|");
    println!(
        "| device answers the windows query to a native client (median of 3) | {:.0} | 1.00 |",
        native[1]
    );
    println!(
        "| dashboard: click Pull -> windows stored, alerts evaluated, charts drawn (first pull of the hour) | {:.0} | {:.2} |",
        ms(&first),
        ms(&first) / native[1]
    );
    println!(
        "| dashboard: the next pull (incremental: last windows only) | {:.0} | {:.2} |",
        ms(&again),
        ms(&again) / native[1]
    );
    browser.close().await;
}
