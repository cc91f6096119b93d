//! The unattended loop in the tab (issue 13): the dashboard's Automation page, real headless
//! Chromium, three real `wasmops-edge` devices, no server (the embedded default: IndexedDB and
//! direct deploys).
//!
//! Shown: after setup (devices, a champion trained on `iris.csv` v1 and deployed everywhere, a
//! newer shifted `iris.csv` v2, device groups, a plan and a drift rule made in the page's
//! editors) and with no click after it, shifted traffic drifts on the canary, the rule fires,
//! the run's spec is retrained on v2 in the tab, passes the gate, goes to the canary (judged on
//! its live labels), then to the fleet: every device runs it, `champion` moved, and the log says
//! why at each step. Then a plan whose fleet step asks for approval: a `new_dataset` rule fires
//! on v3, the canary step passes and the rollout waits (the fleet stays on the old version)
//! until Approve is clicked. Then a candidate trained on scrambled labels is stopped by the gate
//! (nothing deployed; the log names the threshold and the margin), and one that passes the gate
//! but fails the canary's live labels is rolled back on its own. A second tab of the dashboard is open all along: the loop runs in
//! one tab only, the other shows its log, passes its Approve click on, and takes the loop over
//! when the first tab closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wasmops_e2e::{temp_dir, Browser, EdgeProcess, StaticSite};
use wasmops_shared::wire;

const TOKEN: &str = "e2e-automation";
const WINDOW_S: u64 = 2;
/// Added to every feature of the newer data: far outside the training profile.
const SHIFT: f64 = 3.0;

fn iris_csv(shift: f64) -> String {
    let d = wasmops_trainer::datasets::builtin("iris").unwrap();
    let mut s = d.feature_names.join(",") + "," + &d.target_name + "\n";
    for i in 0..d.n_rows() {
        let x: Vec<String> = d.row(i).iter().map(|v| (v + shift).to_string()).collect();
        s += &format!("{},{}\n", x.join(","), d.class_names[d.y[i] as usize]);
    }
    s
}

/// Iris with its labels scrambled (row `i` gets row `(7 i + 3) mod 150`'s): nothing to learn.
fn scrambled_iris_csv(shift: f64) -> String {
    let d = wasmops_trainer::datasets::builtin("iris").unwrap();
    let n = d.n_rows();
    let mut s = d.feature_names.join(",") + "," + &d.target_name + "\n";
    for i in 0..n {
        let x: Vec<String> = d.row(i).iter().map(|v| (v + shift).to_string()).collect();
        let label = &d.class_names[d.y[(7 * i + 3) % n] as usize];
        s += &format!("{},{label}\n", x.join(","));
    }
    s
}

/// Iris with each class named as the next (setosa rows called versicolor, ...): a model
/// learns the wrong names, and holds up on its own held-out rows only.
fn rotated_iris_csv(shift: f64) -> String {
    let d = wasmops_trainer::datasets::builtin("iris").unwrap();
    let k = d.class_names.len();
    let mut s = d.feature_names.join(",") + "," + &d.target_name + "\n";
    for i in 0..d.n_rows() {
        let x: Vec<String> = d.row(i).iter().map(|v| (v + shift).to_string()).collect();
        let label = &d.class_names[(d.y[i] as usize + 1) % k];
        s += &format!("{},{label}\n", x.join(","));
    }
    s
}

async fn import(browser: &Browser, path: &std::path::Path, shift: f64, version: &str) {
    import_text(browser, path, &iris_csv(shift), version).await;
}

async fn import_text(browser: &Browser, path: &std::path::Path, csv: &str, version: &str) {
    std::fs::write(path, csv).unwrap();
    browser.click("#nav-lab").await;
    browser.upload("#csv-file", path).await;
    browser.click("#csv-import").await;
    browser
        .wait_text("[data-testid=csv-notice]", "the import", |t| {
            t.contains(&format!("iris.csv {version}"))
        })
        .await;
}

async fn active(http: &reqwest::Client, d: &EdgeProcess) -> Option<String> {
    let info: wire::DeviceInfo = http
        .get(format!("{}{}", d.url, wire::paths::INFO))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    info.active.map(|a| a.hash)
}

/// Shifted rows to every device until stopped (20 a call to the canary, with their true
/// labels as feedback; 2 a call to the others).
async fn load(stop: Arc<AtomicBool>, urls: Vec<String>, shift: f64) {
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let d = wasmops_trainer::datasets::builtin("iris").unwrap();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        for (k, url) in urls.iter().enumerate() {
            let n = if k == 0 { 20 } else { 2 };
            let picked: Vec<usize> = (0..n).map(|j| (i * 7 + j * 13) % d.n_rows()).collect();
            i += 1;
            let rows: Vec<Vec<f64>> = picked
                .iter()
                .map(|&r| d.row(r).iter().map(|v| v + shift).collect())
                .collect();
            let Ok(r) = http
                .post(format!("{url}{}", wire::paths::PREDICT))
                .bearer_auth(TOKEN)
                .json(&wire::PredictRequest { rows })
                .send()
                .await
            else {
                continue;
            };
            let Ok(a) = r.json::<wire::PredictResponse>().await else {
                continue;
            };
            if k == 0 {
                let labels: Vec<serde_json::Value> = picked
                    .iter()
                    .enumerate()
                    .map(|(j, &r)| json!({"id": a.first_id + j as u64, "label": d.y[r]}))
                    .collect();
                let _ = http
                    .post(format!("{url}{}", wire::paths::FEEDBACK))
                    .bearer_auth(TOKEN)
                    .json(&json!({ "labels": labels }))
                    .send()
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to `secs`) for the automation log's text to satisfy `pred`; returns it.
async fn wait_log(browser: &Browser, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = browser
            .current_text("[data-testid=automation-log]")
            .await
            .unwrap_or_default();
        if pred(&text) {
            return text;
        }
        if Instant::now() > deadline {
            let page = browser.current_text("body").await.unwrap_or_default();
            panic!("{what}: not in the automation log after {secs} s:\n{text}\npage:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs in this browser's IndexedDB that a rule's retraining made (whichever tab made them).
async fn retrained_runs(browser: &Browser) -> u64 {
    browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             const open = indexedDB.open('wasmops');
             open.onsuccess = () => {
                 const db = open.result;
                 const all = db.transaction('run_summaries').objectStore('run_summaries').getAll();
                 all.onsuccess = () => {
                     done(all.result.filter(r => r.name.startsWith('retrained by rule')).length);
                     db.close();
                 };
             };
             open.onerror = () => done(String(open.error));",
        )
        .await
        .as_u64()
        .expect("a count of runs")
}

/// Waits (up to `secs`) until every device runs `pred`'s module.
async fn until_all(
    http: &reqwest::Client,
    devices: &[&EdgeProcess],
    what: &str,
    secs: u64,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut hashes = Vec::new();
        for d in devices {
            hashes.push(active(http, d).await.unwrap_or_default());
        }
        if hashes.iter().all(|h| pred(h)) && hashes.windows(2).all(|w| w[0] == w[1]) {
            return hashes[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not after {secs} s: {hashes:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tab_retrains_gates_and_rolls_out_on_its_own_and_waits_for_approval_when_asked() {
    let started = Instant::now();
    let site = StaticSite::dashboard();
    let dir = temp_dir("automation");
    let devices: Vec<EdgeProcess> = ["canary", "fleet-1", "fleet-2"]
        .iter()
        .map(|n| EdgeProcess::start(&dir.join(n), TOKEN, &site.origin))
        .collect();
    let [canary, fleet1, fleet2] = [&devices[0], &devices[1], &devices[2]];
    let http = wasmops_e2e::client();
    let browser = Browser::start().await;
    browser.open(&site.origin).await;

    // Setup: the devices, with short windows.
    browser.click("#nav-devices").await;
    for (name, d) in [("canary", canary), ("fleet-1", fleet1), ("fleet-2", fleet2)] {
        browser.fill("#device-name", name).await;
        browser.fill("#device-url", &d.url).await;
        browser.fill("#device-token", TOKEN).await;
        browser.fill("#device-window", &WINDOW_S.to_string()).await;
        browser.click("#device-save").await;
        browser
            .wait_text(
                &format!("tr[data-device='{}'] [data-testid=device-status]", d.url),
                "the device's status",
                |t| t == "ok",
            )
            .await;
    }
    // A champion trained on iris.csv v1, deployed to every device.
    let csv = dir.join("iris.csv");
    import(&browser, &csv, 0.0, "v1").await;
    browser.select("#algorithm", "logistic_regression").await;
    browser.train_and_wait().await;
    let v1 = browser.compile_newest_run().await;
    browser.click("#register").await;
    let title = browser
        .wait_text("[data-testid=version-page] h2", "the version page", |t| {
            t.contains(&v1)
        })
        .await;
    let model = title.split(" v1").next().unwrap().trim().to_string();
    browser.click("#alias-champion").await;
    for d in &devices {
        browser
            .click(&format!("input.deploy-target[data-device='{}']", d.url))
            .await;
    }
    browser.click("#deploy").await;
    until_all(&http, &[canary, fleet1, fleet2], "v1 everywhere", 60, |h| {
        h == v1
    })
    .await;
    // The world moved: a newer version of the dataset.
    import(&browser, &csv, SHIFT, "v2").await;

    // The Automation page: groups, a plan (canary, then the fleet), a drift rule.
    browser.click("#nav-automation").await;
    for (d, g) in [(canary, "canary"), (fleet1, "fleet"), (fleet2, "fleet")] {
        browser
            .fill(&format!("input.device-group[data-device='{}']", d.url), g)
            .await;
    }
    browser.fill("#auto-window", &WINDOW_S.to_string()).await;
    browser.fill("#auto-every", "1").await;
    browser.click("#groups-save").await;
    browser
        .wait_text("[data-testid=groups-message]", "the groups saved", |t| {
            t.contains("3 devices watched")
        })
        .await;
    let step = |i: usize, field: &str| format!(".plan-step[data-step='{i}'] .{field}");
    browser.fill(&step(0, "step-hold"), "4").await;
    browser.fill(&step(1, "step-hold"), "3").await;
    browser
        .fill(&step(1, "step-checks"), "error_rate <= 0.01 min 10")
        .await;
    // A typo in a check is refused, saying where.
    browser
        .fill(
            &step(0, "step-checks"),
            "error_rate <= 0.01 min 20; accuracy >= 0.8",
        )
        .await;
    browser.click("#plan-save").await;
    let refused = browser
        .wait_text("[data-testid=plan-message]", "the refusal", |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        refused.contains("step 1") && refused.contains("unknown metric `accuracy`"),
        "{refused}"
    );
    browser
        .fill(
            &step(0, "step-checks"),
            "error_rate <= 0.01 min 20; live_accuracy >= 0.8 min 30",
        )
        .await;
    browser.click("#plan-save").await;
    browser
        .wait_text("[data-testid=plan-message]", "the plan saved", |t| {
            t.contains("Plan `canary first` saved")
        })
        .await;
    browser.fill("#rule-name", "drift-on-canary").await;
    browser.fill("#rule-cooldown", "3600").await;
    browser.fill("#rule-cap", "2").await;
    assert_eq!(
        browser
            .element("#rule-model")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(model.as_str())
    );
    browser.select("#rule-plan", "canary first").await;
    browser.click("#rule-save").await;
    browser
        .wait_text("[data-testid=rule-message]", "the rule saved", |t| {
            t.contains("saved")
        })
        .await;
    let setup_s = started.elapsed().as_secs_f64();

    // A second tab of the dashboard, open through all that follows. The loop runs in one tab
    // only (two would both retrain and deploy); the other says so, shows what the loop stores
    // and passes its clicks on.
    let first_tab = browser.client.window().await.unwrap();
    let second_tab = browser.client.new_window(true).await.unwrap().handle;
    browser.switch_to(&second_tab).await;
    browser.open(&site.origin).await;
    browser.click("#nav-automation").await;
    browser
        .wait_text(
            "[data-testid=automation-status]",
            "the second tab's status",
            |t| t.contains("runs in another tab"),
        )
        .await;
    browser.screenshot("automation-second-tab").await;
    browser.switch_to(&first_tab).await;

    // No click from here: shifted traffic with true labels on the canary.
    let stop = Arc::new(AtomicBool::new(false));
    let urls = devices.iter().map(|d| d.url.clone()).collect();
    let traffic = tokio::spawn(load(stop.clone(), urls, SHIFT));
    // Mid-rollout: the page says where it is.
    wait_log(&browser, "the canary step", 150, |t| {
        t.contains("step 1: canary -> version 2")
    })
    .await;
    browser
        .client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    browser.screenshot("automation-rollout").await;
    let done = wait_log(&browser, "the rollout completing", 150, |t| {
        t.contains("every step passed") || t.contains("rolled back") || t.contains("FAILED")
    })
    .await;
    let v2 = until_all(&http, &[canary, fleet1, fleet2], "v2 everywhere", 30, |h| {
        !h.is_empty() && h != v1
    })
    .await;
    for expected in [
        "rule `drift-on-canary` fired",
        "drift alert on canary (group canary)",
        "retrained logistic_regression on iris.csv v2",
        "gate passed against champion",
        "pass accuracy >= 0.8: candidate",
        "registered",
        "step 1: canary -> version 2",
        "step 1 (canary) passed its checks",
        "pass: live_accuracy",
        "deployed to canary",
        "step 2 (champion) passed its checks",
        "deployed to fleet-2",
        "every step passed: the rollout is complete",
    ] {
        assert!(
            done.contains(expected),
            "`{expected}` not in the log:\n{done}"
        );
    }
    assert!(
        !done.contains("rolled back") && !done.contains("NOT deployed"),
        "{done}"
    );
    // The fleet got v2 only after the canary step passed (the log is newest first).
    let canary_passed = done.find("step 1 (canary) passed").unwrap();
    let fleet_deployed = done.find("deployed to fleet-1").unwrap();
    assert!(fleet_deployed < canary_passed, "{done}");
    browser
        .wait_text("[data-testid=rollout-state]", "no rollout", |t| {
            t.starts_with("None")
        })
        .await;
    // `champion` moved to the new version.
    assert!(done.contains("step 2: champion -> version 2"), "{done}");
    assert_eq!(retrained_runs(&browser).await, 1, "one tab retrained");
    // The other tab saw it all happen.
    browser.switch_to(&second_tab).await;
    wait_log(&browser, "the rollout, in the second tab", 15, |t| {
        t.contains("every step passed") && t.contains("gate passed against champion")
    })
    .await;
    browser.switch_to(&first_tab).await;
    let rollout_s = started.elapsed().as_secs_f64() - setup_s;

    // A plan whose fleet step waits for a person, and a rule on new dataset versions.
    browser.click("#nav-automation").await;
    browser
        .click("tr[data-plan='canary first'] button.plan-edit")
        .await;
    browser.click(&step(1, "step-approval")).await;
    browser.click("#plan-save").await;
    browser
        .wait_text("[data-testid=plan-message]", "the plan saved", |t| {
            t.contains("saved")
        })
        .await;
    browser
        .wait_text("[data-testid=plans]", "approval shown", |t| {
            t.contains("after approval")
        })
        .await;
    browser.fill("#rule-name", "new-data").await;
    browser.select("#rule-trigger", "new_dataset").await;
    let retrained = browser
        .option_values("#rule-run")
        .await
        .into_iter()
        .find(|o| o.contains("retrained by rule"))
        .expect("the retrained run is offered");
    browser
        .select("#rule-run", retrained.split('\t').next().unwrap())
        .await;
    browser.fill("#rule-gate", "accuracy >= 0.8").await;
    browser.click("#rule-save").await;
    browser
        .wait_text("tr[data-rule='new-data']", "the new rule", |t| {
            t.contains("a new dataset version")
        })
        .await;
    // Let it see v2 as its baseline before v3 arrives.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    import(&browser, &csv, SHIFT + 0.05, "v3").await;
    browser.click("#nav-automation").await;
    wait_log(&browser, "the canary step of v3 passing", 150, |t| {
        t.contains("waits for approval") || t.contains("FAILED") || t.contains("rolled back")
    })
    .await;
    browser
        .wait_text("[data-testid=rollout-state]", "the approval wait", |t| {
            t == "awaiting approval"
        })
        .await;
    let log_now = wait_log(&browser, "the approval wait", 5, |t| {
        t.contains("waits for approval")
    })
    .await;
    assert!(
        log_now.contains("new dataset version iris.csv v3"),
        "{log_now}"
    );
    assert!(
        log_now.contains("step 2 (champion) waits for approval"),
        "{log_now}"
    );
    // It waits: the fleet stays on v2 while nobody approves.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(active(&http, fleet1).await.as_deref(), Some(v2.as_str()));
    assert_eq!(active(&http, fleet2).await.as_deref(), Some(v2.as_str()));
    let v3 = active(&http, canary).await.unwrap();
    assert_ne!(v3, v2, "the canary runs the new candidate");
    browser.scroll_to("#rollout-panel").await;
    browser.screenshot("automation-approval").await;
    // Approved in the other tab: the tab running the loop carries it out.
    browser.switch_to(&second_tab).await;
    browser
        .wait_text(
            "[data-testid=rollout-state]",
            "the approval wait, in the second tab",
            |t| t == "awaiting approval",
        )
        .await;
    browser.click("#rollout-approve").await;
    browser.switch_to(&first_tab).await;
    until_all(&http, &[canary, fleet1, fleet2], "v3 everywhere", 30, |h| {
        h == v3
    })
    .await;
    let done = wait_log(&browser, "the second rollout completing", 60, |t| {
        t.matches("every step passed").count() == 2
    })
    .await;
    assert!(done.contains("a person approved the step"), "{done}");
    assert_eq!(
        retrained_runs(&browser).await,
        2,
        "one tab retrained, each time"
    );
    browser.scroll_to("#automation-log-panel").await;
    browser.screenshot("automation-log").await;
    // A candidate worse than the champion: v4's labels are scrambled. The gate stops it,
    // nothing is deployed, and the log says which threshold failed and by how much.
    browser.click("#nav-automation").await;
    browser
        .click("tr[data-rule='new-data'] button.rule-edit")
        .await;
    browser.fill("#rule-cooldown", "0").await;
    browser.fill("#rule-cap", "10").await;
    browser.click("#rule-save").await;
    browser
        .wait_text(
            "tr[data-rule='new-data']",
            "the rule without cooldown",
            |t| t.contains("cooldown 0 s, at most 10 a day"),
        )
        .await;
    import_text(&browser, &csv, &scrambled_iris_csv(SHIFT + 0.05), "v4").await;
    browser.click("#nav-automation").await;
    let stopped = wait_log(&browser, "the gate stopping v4's candidate", 120, |t| {
        t.contains("gate FAILED")
    })
    .await;
    assert!(
        stopped.contains("accuracy 0.2667 is not >= 0.8 (the threshold): 0.5333 below it"),
        "{stopped}"
    );
    let gate_line = stopped
        .lines()
        .find(|l| l.contains("FAIL accuracy >= 0.8"))
        .unwrap_or_else(|| panic!("no failed threshold in the log:\n{stopped}"));
    assert!(
        gate_line.contains("required 0.8000") && gate_line.contains("margin -0."),
        "{gate_line}"
    );
    assert!(stopped.contains("nothing deployed"), "{stopped}");
    browser
        .wait_text(
            "[data-testid=rollout-state]",
            "no rollout after the gate",
            |t| t.starts_with("None"),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for d in [canary, fleet1, fleet2] {
        assert_eq!(active(&http, d).await.as_deref(), Some(v3.as_str()));
    }
    browser.scroll_to("#automation-log-panel").await;
    browser.screenshot("automation-gate-stop").await;

    // A candidate that passes the gate but does badly on the canary's live labels: v5 names
    // each class as the next, so its model is right on its own held-out rows and wrong on
    // every device's traffic. The canary step's checks fail, the rollout rolls back on its own
    // (the canary returns to v3), and the fleet never runs it.
    import_text(&browser, &csv, &rotated_iris_csv(SHIFT + 0.05), "v5").await;
    browser.click("#nav-automation").await;
    let rolled = wait_log(&browser, "the canary step rolling back", 120, |t| {
        t.contains("rolled back")
    })
    .await;
    assert!(
        rolled.contains(&format!("registered {model} v4")),
        "the candidate passed the gate: {rolled}"
    );
    assert!(
        rolled.contains("step 1 (canary) failed its checks 2 times: rolled back"),
        "{rolled}"
    );
    assert!(rolled.contains("FAIL: live_accuracy"), "{rolled}");
    assert!(!rolled.contains("version 4: step 2"), "{rolled}");
    until_all(&http, &[canary], "the canary back on v3", 30, |h| h == v3).await;
    for d in [fleet1, fleet2] {
        assert_eq!(active(&http, d).await.as_deref(), Some(v3.as_str()));
    }
    browser
        .wait_text(
            "[data-testid=rollout-state]",
            "no rollout after the rollback",
            |t| t.starts_with("None"),
        )
        .await;

    // The tab running the loop closes: the other takes it over.
    browser.client.close_window().await.unwrap();
    browser.switch_to(&second_tab).await;
    browser
        .wait_text(
            "[data-testid=automation-status]",
            "the second tab taking the loop over",
            |t| t.starts_with("Watching 3 devices"),
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    eprintln!(
        "automation in the tab: setup {setup_s:.1} s, drift to fleet-wide rollout {rollout_s:.1} s, total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    browser.close().await;
}
