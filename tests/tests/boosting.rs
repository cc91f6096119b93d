//! Gradient boosting in the tab (issue 14): its scikit-learn parameters in the Train form, a
//! classifier and a regression trained in the worker, their loss curves (train, validation and
//! held-out rows on one chart), compiled, registered and deployed to a real device, which must
//! answer the held-out rows bit-identically to the browser.

use wasmops_e2e::{temp_dir, Browser, EdgeProcess, StaticSite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradient_boosting_trains_in_the_tab_and_answers_bit_identically_on_a_device() {
    let site = StaticSite::dashboard();
    let token = "e2e-boosting";
    let device = EdgeProcess::start(&temp_dir("boosting"), token, &site.origin);
    let browser = Browser::start().await;
    browser
        .open(&format!(
            "{}/#device={}&token={token}",
            site.origin, device.url
        ))
        .await;

    browser.select("#dataset", "winequality").await;
    browser.select("#algorithm", "gradient_boosting").await;
    // scikit-learn's names and defaults.
    let value = |css: &'static str| {
        let browser = &browser;
        async move {
            browser
                .element(css)
                .await
                .prop("value")
                .await
                .unwrap()
                .unwrap_or_default()
        }
    };
    assert_eq!(value("#param-learning_rate").await, "0.1");
    assert_eq!(value("#param-max_leaf_nodes").await, "31");
    assert_eq!(value("#param-max_depth").await, "none");
    assert_eq!(value("#param-min_samples_leaf").await, "20");
    assert_eq!(value("#param-early_stopping").await, "auto");
    // A word the parameter does not take is refused, naming it.
    browser.fill("#param-early_stopping", "sometimes").await;
    browser.click("#train").await;
    let err = browser
        .wait_text("[data-testid=train-error]", "the parameter error", |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        err.contains("early_stopping: `sometimes` is not auto, true or false"),
        "{err}"
    );
    // Early stopping on (1,199 training rows: `auto` would leave it off), 60 iterations.
    browser.fill("#param-early_stopping", "true").await;
    browser.fill("#param-max_iter", "60").await;
    let accuracy = browser.train_and_wait().await;
    assert!(accuracy > 0.5, "accuracy {accuracy}");
    let chart = browser.html("[data-chart=curve-log_loss]").await;
    for line in ["train", "validation", "test", "<polyline", "step"] {
        assert!(chart.contains(line), "{line} missing from the loss chart");
    }
    browser.screenshot("boosting-run").await;
    deploy(&browser, true).await;

    // A regression: the same form, the task's own loss.
    browser.click("#nav-lab").await;
    browser.select("#dataset", "diabetes").await;
    browser
        .wait_text("[data-testid=train-task]", "the regression task", |t| {
            t == "regression"
        })
        .await;
    browser.select("#algorithm", "gradient_boosting").await;
    let r2 = browser.train_and_wait().await;
    assert!(r2 > 0.2, "R2 {r2}");
    let chart = browser.html("[data-chart=curve-mse]").await;
    assert!(
        chart.contains("train") && chart.contains("test"),
        "mse chart"
    );
    deploy(&browser, false).await;
    browser.close().await;
}

/// Compiles the newest run (checked in V8 against its conformance vectors), registers it and
/// deploys it to the device, whose answers must be the browser's bits.
async fn deploy(browser: &Browser, first: bool) {
    let hash = browser.compile_newest_run().await;
    browser.click("#register").await;
    browser
        .wait_text("[data-testid=version-page] h2", "the version page", |t| {
            t.contains(&hash)
        })
        .await;
    if first {
        browser.click("input.deploy-target").await;
    }
    browser.click("#deploy").await;
    let verdict = browser
        .wait_text("[data-testid=deploy-result]", "the verdict", |t| {
            !t.is_empty()
        })
        .await;
    assert!(verdict.contains("bit-identical"), "{verdict}");
}
