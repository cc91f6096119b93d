//! Benchmark (issue 5): the dashboard's size (wasm + js, gzip) and its time to first render in
//! headless Chromium, cold (fresh profile) and warm (reload, service worker and HTTP cache).
//! Baseline in the same run: a static page with one paragraph, served the same way (the
//! browser's own floor for a navigation to the first paint).
//!
//! `cargo xtask bench` runs it (it builds dist/ and sets WASMOPS_DIST, CHROMEDRIVER, CHROMIUM).

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmops_e2e::{median, required_env, temp_dir, Browser, StaticSite};

const ROUNDS: usize = 5;

fn main() {
    wasmops_e2e::run_bench(run());
}

fn gzip_size(path: &Path) -> u64 {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .expect("gzip (Debian's gzip package)");
    assert!(out.status.success(), "gzip {}", path.display());
    out.stdout.len() as u64
}

/// Time from navigation start to the first contentful paint, and to the first frame in which
/// `css` exists, in ms.
const MEASURE: &str = r#"
const [css, done] = [arguments[0], arguments[arguments.length - 1]];
(function check() {
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    if (document.querySelector(css) && fcp) {
        done({ fcp: fcp.startTime, ready: performance.now() });
    } else {
        requestAnimationFrame(check);
    }
})();
"#;

async fn measure(browser: &Browser, url: &str, css: &str, reload: bool) -> (f64, f64) {
    if reload {
        browser.client.refresh().await.expect("reload");
    } else {
        browser.open(url).await;
    }
    let v = browser
        .client
        .execute_async(MEASURE, vec![serde_json::json!(css)])
        .await
        .expect("measure");
    let ready = v["ready"].as_f64().unwrap_or(f64::NAN);
    (v["fcp"].as_f64().unwrap_or(f64::NAN), ready)
}

async fn run() {
    let dist = PathBuf::from(required_env("WASMOPS_DIST"));
    let mut page = (0u64, 0u64);
    let mut worker = (0u64, 0u64);
    for entry in std::fs::read_dir(&dist).expect("dist") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.ends_with(".wasm") || name.ends_with(".js")) || name == "sw.js" {
            continue;
        }
        let sizes = (std::fs::metadata(&path).unwrap().len(), gzip_size(&path));
        let target = if name.starts_with("train_worker") {
            &mut worker
        } else {
            &mut page
        };
        target.0 += sizes.0;
        target.1 += sizes.1;
    }

    let blank_dir = temp_dir("blank-site");
    std::fs::write(
        blank_dir.join("index.html"),
        "<!doctype html><html><head><title>blank</title></head><body><p id=\"ready\">hello</p></body></html>",
    )
    .unwrap();
    let blank = StaticSite::serve(&blank_dir);
    let site = StaticSite::dashboard();

    let (mut blank_fcp, mut cold_fcp, mut cold_ready, mut warm_fcp, mut warm_ready) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let browser = Browser::start().await;
        blank_fcp.push(measure(&browser, &blank.origin, "#ready", false).await.0);
        let (fcp, ready) = measure(&browser, &site.origin, "#train", false).await;
        cold_fcp.push(fcp);
        cold_ready.push(ready);
        // Let the service worker take control, then reload: the second visit.
        browser
            .eval_async(
                "const done = arguments[arguments.length - 1];
                 navigator.serviceWorker.ready.then(() => done(true), () => done(false));",
            )
            .await;
        let (fcp, ready) = measure(&browser, &site.origin, "#train", true).await;
        warm_fcp.push(fcp);
        warm_ready.push(ready);
        browser.close().await;
    }
    let base = median(blank_fcp);
    println!("\n## Dashboard size and first render (issue 5)\n");
    println!("| bundle | raw | gzip -9 |\n|---|---:|---:|");
    println!(
        "| page (wasm + js) | {:.0} KB | {:.0} KB |",
        page.0 as f64 / 1024.0,
        page.1 as f64 / 1024.0
    );
    println!(
        "| training worker (wasm + js), loaded on the first training | {:.0} KB | {:.0} KB |",
        worker.0 as f64 / 1024.0,
        worker.1 as f64 / 1024.0
    );
    println!("\n| navigation to (median of {ROUNDS}) | ms | ratio to the blank page's first paint |\n|---|---:|---:|");
    println!("| blank static page: first contentful paint | {base:.0} | 1.00 |");
    for (what, v) in [
        ("dashboard, cold: first contentful paint", median(cold_fcp)),
        (
            "dashboard, cold: app mounted (`#train` in the DOM)",
            median(cold_ready),
        ),
        (
            "dashboard, reload: first contentful paint",
            median(warm_fcp),
        ),
        ("dashboard, reload: app mounted", median(warm_ready)),
    ] {
        println!("| {what} | {v:.0} | {:.1} |", v / base);
    }
}
