//! The whole loop in a real browser: train in the tab, persist, compile to a module, verify it
//! in V8, deploy to a real device, and see the device's answers and counters.

use wasmops_e2e::{required_env, temp_dir, Browser, EdgeProcess, StaticSite};
use wasmops_shared::wire;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_compile_deploy_loop() {
    let dist = std::path::PathBuf::from(required_env("WASMOPS_DIST"));
    let site = StaticSite::serve(&dist).await;
    let token = "e2e-token-7f3a";
    let mut device = EdgeProcess::start(&temp_dir("device"), token, &site.origin);
    let browser = Browser::start().await;

    // 1. Open the dashboard with the device in the fragment, train on iris.
    let url = format!("{}/#device={}&token={token}", site.origin, device.url);
    browser.client.goto(&url).await.expect("open dashboard");
    browser
        .wait_text(
            "#device-panel input#device-url",
            "the device from the URL",
            |_| true,
        )
        .await;
    browser.click("#train").await;
    let accuracy = browser
        .wait_text("[data-testid=run-accuracy]", "a finished run", |t| {
            t.parse::<f64>().is_ok()
        })
        .await;
    let accuracy: f64 = accuracy.parse().unwrap();
    assert!(
        accuracy > 0.85,
        "logistic regression on iris should exceed 0.85 accuracy, got {accuracy}"
    );

    // 2. Reload: the run comes back from IndexedDB.
    browser.client.refresh().await.expect("reload");
    let after_reload = browser
        .wait_text("[data-testid=run-accuracy]", "the stored run", |t| {
            !t.is_empty()
        })
        .await;
    assert_eq!(after_reload.parse::<f64>().unwrap(), accuracy);

    // 3. Compile into a module and evaluate it in the browser through WebAssembly.
    browser.click("button.compile").await;
    let module_accuracy = browser
        .wait_text(
            "[data-testid=module-accuracy]",
            "the module's accuracy",
            |t| !t.is_empty(),
        )
        .await;
    assert_eq!(
        module_accuracy.parse::<f64>().unwrap(),
        accuracy,
        "module accuracy must equal the trained model's"
    );
    let check = browser
        .wait_text("[data-testid=module-check]", "the module check", |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        check.contains("matches the trained model") && check.contains("bit-identical"),
        "{check}"
    );
    let hash = browser
        .wait_text("[data-testid=module-hash]", "the module hash", |t| {
            t.len() == 64
        })
        .await;

    // A wrong token is reported as such, and nothing stored is lost.
    browser.fill("#device-token", "wrong-token").await;
    browser.click("#device-save").await;
    browser.click("#deploy").await;
    let err = browser
        .wait_text("[data-testid=device-error]", "the token error", |t| {
            !t.is_empty()
        })
        .await;
    assert!(err.contains("refused the access token"), "{err}");

    // 4. Deploy with the right token: the device validates, activates and answers held-out rows
    // bit-identically to the browser.
    browser.fill("#device-token", token).await;
    browser.click("#device-save").await;
    browser.click("#deploy").await;
    let verdict = browser
        .wait_text(
            "[data-testid=deploy-verdict]",
            "the deployment verdict",
            |t| !t.is_empty(),
        )
        .await;
    assert!(verdict.contains("bit-identical"), "{verdict}");
    let (same, total) = parse_fraction(&verdict);
    assert!(total >= 20 && same == total, "{verdict}");

    // 5. The dashboard shows the prediction count pulled from the device, and it is the
    // device's own count.
    let telemetry = browser
        .wait_text(
            "[data-testid=device-telemetry]",
            "the device's counters",
            |t| t.contains("predictions served"),
        )
        .await;
    let http = reqwest::Client::new();
    let t: wire::Telemetry = http
        .get(format!("{}/v1/telemetry", device.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t.predictions, total as u64);
    assert!(
        telemetry.contains(&format!("predictions served: {}", t.predictions)),
        "{telemetry}"
    );
    let info: wire::DeviceInfo = http
        .get(format!("{}/v1/info", device.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info.active.map(|a| a.hash), Some(hash));
    let shot = browser.screenshot("loop").await;
    println!("screenshot: {}", shot.display());

    // A device that is down is reported as unreachable; the run is still stored.
    device.kill();
    browser.click("#device-refresh").await;
    let err = browser
        .wait_text("[data-testid=device-error]", "the unreachable error", |t| {
            t.contains("unreachable")
        })
        .await;
    assert!(err.contains(&device.url), "{err}");
    browser.client.refresh().await.expect("reload");
    browser
        .wait_text("[data-testid=run-accuracy]", "the run after errors", |t| {
            t.parse::<f64>().ok() == Some(accuracy)
        })
        .await;

    browser.close().await;
}

/// Reads "N/M" out of a sentence.
fn parse_fraction(s: &str) -> (usize, usize) {
    let part = s
        .split_whitespace()
        .find(|w| w.contains('/') && w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or("0/0");
    let (a, b) = part.split_once('/').unwrap();
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}
