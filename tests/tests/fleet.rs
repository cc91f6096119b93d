//! The registry, deployment to two real devices, and telemetry review: the dashboard registers
//! versions, deploys them, rolls one device back, and after a load script sends normal inputs
//! to one device and shifted inputs to the other, raises a drift alert for the shifted one
//! only; a device stopped and restarted is caught up without gaps or duplicates.

use std::time::Duration;

use wasmops_e2e::pages::{DeviceForm, DevicesPage, Page, RegistryPage};
use wasmops_e2e::{temp_dir, Browser, EdgeProcess, StaticSite};
use wasmops_shared::wire;

/// Telemetry window the test's devices are set to, in seconds (short, so three windows pass
/// in a few seconds).
const WINDOW_S: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_deploys_to_two_devices_and_flags_drift_on_the_shifted_one() {
    let site = StaticSite::dashboard();
    let token = "e2e-fleet";
    let dir_a = temp_dir("fleet-north");
    let mut north = EdgeProcess::start(&dir_a, token, &site.origin);
    let south = EdgeProcess::start(&temp_dir("fleet-south"), token, &site.origin);
    let browser = Browser::start().await;
    browser.open(&site.origin).await;

    // Two devices, with short telemetry windows.
    browser.go(Page::Devices).await;
    for (name, dev) in [("north", &north), ("south", &south)] {
        browser
            .devices()
            .add(DeviceForm {
                name,
                url: &dev.url,
                token,
                window_s: Some(WINDOW_S),
            })
            .await;
        browser
            .devices()
            .wait_status(&dev.url, "the device's status", |t| t == "ok")
            .await;
    }

    // Train and register two versions of one model and one of another.
    let logistic_v1 = train_and_register(&browser, "logistic_regression", None).await;
    let logistic_v2 = train_and_register(&browser, "logistic_regression", Some("0.3")).await;
    assert_ne!(logistic_v1, logistic_v2);
    let title = browser
        .wait_text("[data-testid=version-page] h2", "v2", |t| !t.is_empty())
        .await;
    assert!(title.starts_with("iris-logistic-regression v2"), "{title}");
    // The two logistic runs compared: their loss curves overlaid, one line per run.
    browser.go(Page::Lab).await;
    browser.runs().toggle_compare(1).await;
    browser.runs().toggle_compare(2).await;
    let overlay = browser.html("[data-chart=compare-train_log_loss]").await;
    assert!(
        overlay.contains("logistic regression #1") && overlay.contains("logistic regression #2"),
        "both runs in the overlaid loss curves"
    );
    browser.go(Page::Registry).await;
    // Aliases move between versions and keep their history.
    browser.click("#alias-champion").await;
    select_version(&browser, &logistic_v1).await;
    browser.click("#alias-champion").await;
    let aliases = browser
        .wait_text("[data-testid=alias-history]", "the alias history", |t| {
            t.matches("champion").count() == 2
        })
        .await;
    assert!(
        aliases.contains("v1") && aliases.contains("v2") && aliases.contains("now"),
        "{aliases}"
    );

    // Deploy v1 to both devices: each checks it bit for bit.
    for dev in [&north, &south] {
        browser.registry().toggle_target(Some(&dev.url)).await;
    }
    browser.registry().deploy().await;
    let results = wait_results(&browser, 2).await;
    for r in &results {
        assert!(r.contains("bit-identical"), "{results:?}");
    }
    let tree = train_and_register(&browser, "decision_tree", None).await;
    // The tree goes to north only, then north rolls back to the logistic model.
    browser.registry().toggle_target(Some(&south.url)).await;
    browser.registry().deploy().await;
    let results = wait_results(&browser, 1).await;
    assert!(
        results[0].starts_with("north: iris-decision-tree v1 active"),
        "{results:?}"
    );
    browser.go(Page::Devices).await;
    let north_row = DevicesPage::row(&north.url);
    browser
        .wait_text(
            &format!("{north_row} [data-testid=device-active]"),
            "the tree",
            |t| t == "iris-decision-tree v1",
        )
        .await;
    browser.click(&format!("{north_row} button.rollback")).await;
    // Rolling back changes what serves traffic: it asks first, naming both versions.
    let question = browser.accept_dialog_text().await;
    assert!(
        question.starts_with("Roll back north from iris-decision-tree v1"),
        "{question}"
    );
    browser
        .wait_text(
            &format!("{north_row} [data-testid=device-active]"),
            "the rollback",
            |t| t == "iris-logistic-regression v1",
        )
        .await;
    let history = browser
        .wait_text("[data-testid=deployments]", "north's history", |t| {
            t.contains("rolled back")
        })
        .await;
    assert!(
        history.contains("rolled back from iris-decision-tree v1 to iris-logistic-regression v1"),
        "{history}"
    );
    let http = wasmops_e2e::client();
    assert_eq!(active(&http, &north).await, logistic_v1);
    assert_eq!(active(&http, &south).await, logistic_v1);
    assert_ne!(tree, logistic_v1);

    // Load: normal iris rows to north, the same rows shifted to south, with true labels.
    let iris = wasmops_trainer::datasets::builtin("iris").unwrap();
    for _ in 0..5 {
        send_round(&http, &north, &iris, 0.0).await;
        send_round(&http, &south, &iris, 3.0).await;
        tokio::time::sleep(Duration::from_millis(WINDOW_S * 1000 + 100)).await;
    }
    browser.devices().pull_all().await;
    let south_alert = format!("li.alert[data-device='{}'][data-kind=drift]", south.url);
    let alert = browser
        .wait_text(&south_alert, "south's drift alert", |t| !t.is_empty())
        .await;
    assert!(
        alert.starts_with("south · iris-logistic-regression v1 · input drift in "),
        "{alert}"
    );
    for f in ["petal length", "petal width", "sepal length", "sepal width"] {
        assert!(alert.contains(f), "{f} missing from {alert}");
    }
    // One line; the numbers behind it are a click away.
    assert!(alert.contains("input drift in 4 features: "), "{alert}");
    let open = browser
        .client
        .execute(
            "return document.querySelector(arguments[0] + ' details.detail').open",
            vec![serde_json::json!(south_alert)],
        )
        .await
        .unwrap();
    assert_eq!(open, serde_json::json!(false), "the detail starts folded");
    browser
        .click(&format!("{south_alert} details.detail summary"))
        .await;
    let alert = browser
        .wait_text(&south_alert, "the alert's detail", |t| t.contains("PSI"))
        .await;
    assert!(alert.contains("alert at PSI >= 0.25"), "{alert}");
    let alerts = browser
        .wait_text("[data-testid=alerts]", "the alerts", |_| true)
        .await;
    assert!(
        !alerts.contains("north ·"),
        "north must raise no alert:\n{alerts}"
    );

    // South's telemetry: drift at alert level in the latest window, charts drawn.
    browser.devices().open(&south.url).await;
    let drift = browser
        .wait_text("[data-testid=drift-table]", "south's drift table", |t| {
            t.contains("alert")
        })
        .await;
    assert!(drift.contains("petal width"), "{drift}");
    let charts = browser
        .client
        .find_all(fantoccini::Locator::Css(
            "[data-testid=telemetry-charts] svg",
        ))
        .await
        .unwrap();
    assert!(
        charts.len() >= 6,
        "rate, latency, PSI, JS, accuracy, predictions: {}",
        charts.len()
    );
    let psi = browser.html("[data-chart=chart-psi]").await;
    assert!(
        psi.contains("alert 0.25") && psi.contains("warn 0.1") && psi.contains("petal width"),
        "PSI chart lacks thresholds or legend"
    );
    browser.scroll_to("[data-testid=model-telemetry]").await;
    browser.screenshot("telemetry-south").await;

    // North: no drift, live accuracy from the labels.
    browser.click(&format!("{north_row} a.device-link")).await;
    let summary = browser
        .wait_text("[data-testid=model-telemetry]", "north's telemetry", |t| {
            t.contains("labeled") && !t.contains(" 0 labeled")
        })
        .await;
    assert!(summary.contains("750 labeled"), "{summary}");
    browser.screenshot("telemetry-north").await;

    // Acknowledge south's alert: it stays listed, marked, and the badge clears.
    browser.click(&format!("{south_alert} button.ack")).await;
    browser
        .wait_text(
            &format!("{south_alert}.acknowledged"),
            "the acknowledgement",
            |t| t.contains("acknowledged"),
        )
        .await;

    // North goes down: shown as unreachable with when it was last seen; what was stored stays.
    north.kill();
    browser.devices().pull_all().await;
    let err = browser
        .wait_text(
            &format!("{north_row} [data-testid=device-error]"),
            "north down",
            |t| t.contains("unreachable"),
        )
        .await;
    assert!(err.contains(&north.url), "{err}");
    let last_seen = browser
        .wait_text(
            &format!("{north_row} [data-testid=device-last-seen]"),
            "last seen",
            |t| t != "never",
        )
        .await;
    assert!(!last_seen.is_empty());

    // Restarted on the same port and data dir, it serves more; the dashboard catches up and
    // its stored windows count exactly what the device counted: no gaps, no duplicates.
    north = EdgeProcess::start_on(
        &dir_a,
        token,
        &site.origin,
        &format!("127.0.0.1:{}", north.port()),
    );
    for _ in 0..2 {
        send_round(&http, &north, &iris, 0.0).await;
        tokio::time::sleep(Duration::from_millis(WINDOW_S * 1000 + 100)).await;
    }
    let counted: wire::Telemetry = get(&http, &north, wire::paths::TELEMETRY).await;
    browser.devices().pull_all().await;
    browser
        .wait_text(
            &format!("{north_row} [data-testid=device-status]"),
            "north back",
            |t| t == "ok",
        )
        .await;
    let stored = browser
        .wait_text("[data-testid=stored-telemetry]", "north caught up", |t| {
            t.contains(&format!(" {} requests ", counted.requests))
        })
        .await;
    assert!(
        stored.contains(&format!(" {} rows predicted", counted.predictions)),
        "device counted {counted:?}; dashboard stored: {stored}"
    );
    browser.screenshot("devices").await;
    select_version(&browser, &logistic_v1).await;
    browser.screenshot("registry").await;
    browser.close().await;
}

/// Trains `algorithm` on iris in the Lab, compiles and registers it; returns the module hash.
async fn train_and_register(browser: &Browser, algorithm: &str, alpha: Option<&str>) -> String {
    browser.go(Page::Lab).await;
    browser.select("#algorithm", algorithm).await;
    if let Some(a) = alpha {
        browser.train().set_param("alpha", a).await;
    }
    let before = browser
        .client
        .find_all(fantoccini::Locator::Css(
            "table.runs[data-testid=runs] tbody tr",
        ))
        .await
        .map(|r| r.len())
        .unwrap_or(0);
    browser.train().start().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows = browser
            .client
            .find_all(fantoccini::Locator::Css(
                "table.runs[data-testid=runs] tbody tr",
            ))
            .await
            .map(|r| r.len())
            .unwrap_or(0);
        if rows > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "training {algorithm} never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hash = browser.compile_newest_run().await;
    browser.click("#register").await;
    browser
        .wait_text("[data-testid=version-page] h2", "the version page", |t| {
            t.contains(&hash)
        })
        .await;
    hash
}

async fn select_version(browser: &Browser, hash: &str) {
    browser.go(Page::Registry).await;
    browser
        .click(&format!("tr[data-version='{hash}'] a.version-link"))
        .await;
    browser
        .wait_text("[data-testid=version-page] h2", "the version", |t| {
            t.contains(hash)
        })
        .await;
}

/// Waits for `n` deployment results and returns their texts.
async fn wait_results(browser: &Browser, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let items = browser
            .client
            .find_all(fantoccini::Locator::Css(RegistryPage::RESULT))
            .await
            .unwrap_or_default();
        if items.len() >= n {
            let mut texts = Vec::new();
            for i in items {
                texts.push(i.text().await.unwrap_or_default());
            }
            return texts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {n} deployment results"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every iris row once (plus `shift` on every feature), in batches of 15, then the true label
/// of each prediction.
async fn send_round(
    http: &reqwest::Client,
    dev: &EdgeProcess,
    iris: &wasmops_shared::dataset::Dataset,
    shift: f64,
) {
    let mut labels = Vec::new();
    for start in (0..iris.n_rows()).step_by(15) {
        let rows: Vec<Vec<f64>> = (start..(start + 15).min(iris.n_rows()))
            .map(|i| iris.row(i).iter().map(|v| v + shift).collect())
            .collect();
        let n = rows.len();
        let answer = dev.predict(rows).await;
        for i in 0..n {
            labels.push(wire::Label {
                id: answer.first_id + i as u64,
                label: iris.y[start + i],
            });
        }
    }
    http.post(format!("{}{}", dev.url, wire::paths::FEEDBACK))
        .bearer_auth(&dev.token)
        .json(&wire::FeedbackRequest { labels })
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

async fn get<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    dev: &EdgeProcess,
    path: &str,
) -> T {
    http.get(format!("{}{path}", dev.url))
        .bearer_auth(&dev.token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn active(http: &reqwest::Client, dev: &EdgeProcess) -> String {
    let info: wire::DeviceInfo = get(http, dev, wire::paths::INFO).await;
    info.active.expect("an active model").hash
}
