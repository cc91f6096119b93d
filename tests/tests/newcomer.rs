//! The dashboard as a newcomer finds it (issue #16): the usual mistakes and datasets people
//! bring (CRLF files, a picture instead of a CSV, 64 features and 10 classes, a regression
//! target), each checked for a result that is right, said where people look, and readable.

use std::path::PathBuf;
use std::time::Duration;

use wasmops_e2e::pages::{DeviceForm, DevicesPage, Page, RunsTable};
use wasmops_e2e::{temp_dir, Browser, EdgeProcess, StaticSite};

/// A CSV with `features` numeric columns and a target, CRLF line endings (as Excel and Python's
/// csv module write them). Class `c` rows sit around `c` in every feature, so a model can learn
/// them; `regression` makes the target a continuous sum instead of a class.
fn csv_text(features: usize, classes: usize, rows: usize, regression: bool) -> String {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1000) as f64 / 1000.0 - 0.5
    };
    let mut header: Vec<String> = (0..features).map(|j| format!("px{j}")).collect();
    header.push(if regression { "price" } else { "digit" }.into());
    let mut out = header.join(",") + "\r\n";
    for i in 0..rows {
        let class = i % classes.max(1);
        let xs: Vec<f64> = (0..features)
            .map(|j| class as f64 * (1.0 + (j % 3) as f64) + noise())
            .collect();
        let target = if regression {
            format!("{:.3}", xs.iter().sum::<f64>() * 0.5 + noise())
        } else {
            class.to_string()
        };
        let fields: Vec<String> = xs.iter().map(|x| format!("{x:.3}")).collect();
        out.push_str(&format!("{},{target}\r\n", fields.join(",")));
    }
    out
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Imports a CSV with its defaults and returns the notice.
async fn import(browser: &Browser, path: &std::path::Path) -> String {
    browser.data().choose(path).await;
    browser.data().import().await;
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    browser
        .data()
        .notice("the import notice", |t| {
            t.starts_with(&format!("imported {name}"))
        })
        .await
}

/// The `<option>` value of the imported dataset whose label starts with `name`.
async fn dataset_value(browser: &Browser, name: &str) -> String {
    browser
        .option_values("#dataset")
        .await
        .into_iter()
        .find_map(|o| {
            let (value, text) = o.split_once('\t')?;
            text.starts_with(name).then(|| value.to_string())
        })
        .unwrap_or_else(|| panic!("no dataset option for {name}"))
}

/// #16 item 1: after a second import the dropdown and Train agree on the dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_uses_the_dataset_the_dropdown_shows() {
    let site = StaticSite::dashboard();
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    let dir = temp_dir("two-imports");

    import(
        &browser,
        &write(&dir, "first.csv", &csv_text(4, 3, 60, false)),
    )
    .await;
    let first = dataset_value(&browser, "first.csv").await;
    browser.select("#dataset", &first).await;
    import(
        &browser,
        &write(&dir, "second.csv", &csv_text(5, 2, 40, false)),
    )
    .await;

    let shown = browser.selected_text("#dataset").await;
    browser.train_and_wait().await;
    let used = browser
        .wait_text(
            &RunsTable::cell(1, "td:nth-child(4)"),
            "the run's dataset",
            |t| !t.is_empty(),
        )
        .await;
    let used_name = used.split(" @").next().unwrap();
    assert!(
        shown.starts_with(used_name),
        "the dropdown shows `{shown}` but the run trained on `{used}`"
    );
    // An import is what the user means to train on next.
    assert!(shown.starts_with("second.csv"), "{shown}");
    browser.close().await;
}

/// #16 items 4, 5 and 19: line numbers of CRLF files, a picture is not a CSV, and import
/// failures are in the Logs page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_mistakes_are_reported_on_the_right_line() {
    let site = StaticSite::dashboard();
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    let dir = temp_dir("csv-mistakes");

    // A text column in a CRLF file is left out, not a reason to refuse the file (#16 item
    // 14); its example is on line 2, not on the header.
    let texty = "id,city,y\r\n1,Paris,1\r\n2,Oslo,0\r\n3,Rome,1\r\n4,Oslo,0\r\n";
    browser
        .upload("#csv-file", &write(&dir, "cities.csv", texty))
        .await;
    let left_out = browser
        .wait_text("[data-testid=csv-left-out]", "the text column", |t| {
            !t.is_empty()
        })
        .await;
    assert_eq!(
        left_out,
        "left out of the features: city (text, e.g. `Paris` on line 2)"
    );
    // Ticked anyway, it is refused with the same line.
    browser.click("details.columns summary").await;
    browser.click("input.use-column[data-column=city]").await;
    let err = browser
        .wait_text("[data-testid=csv-error]", "the text column", |t| {
            t.contains("not numeric")
        })
        .await;
    assert_eq!(
        err,
        "column `city` is not numeric (e.g. `Paris` on line 2); features must be numbers"
    );
    browser.click("input.use-column[data-column=city]").await;
    browser.click("input.use-column[data-column=id]").await;
    browser
        .wait_text("[data-testid=csv-error]", "no feature left", |t| {
            t.contains("needs at least one feature")
        })
        .await;
    browser.click("input.use-column[data-column=id]").await;
    browser
        .wait_text("[data-testid=csv-preview]", "the id as feature", |t| {
            t.contains("4 usable rows, 1 features")
        })
        .await;
    browser.data().import().await;
    browser
        .data()
        .notice("the import", |t| t.starts_with("imported cities.csv"))
        .await;

    // A bad value on line 4 of a CRLF file is reported on line 4.
    let mut crlf = csv_text(3, 2, 20, false);
    let mut lines: Vec<&str> = crlf.split("\r\n").collect();
    lines[3] = "1.0,oops,2.0,1";
    crlf = lines.join("\r\n");
    browser
        .upload("#csv-file", &write(&dir, "crlf.csv", &crlf))
        .await;
    let problems = browser
        .wait_text("[data-testid=csv-problems]", "the bad row", |t| {
            !t.is_empty()
        })
        .await;
    assert_eq!(
        problems,
        "line 4, column `px1`: `oops` is not a finite number"
    );
    browser.click("#csv-cancel").await;

    // A picture chosen by mistake.
    let png = browser.screenshot("newcomer-any-picture").await;
    browser.data().choose(&png).await;
    let err = browser
        .wait_text("[data-testid=csv-error]", "the PNG refusal", |t| {
            t.contains("PNG")
        })
        .await;
    assert_eq!(
        err,
        "newcomer-any-picture.png is not a text (CSV) file: it looks like a PNG image"
    );
    assert!(
        browser
            .current_text("[data-testid=csv-preview]")
            .await
            .is_none(),
        "no preview of a picture as a table"
    );

    browser.go(Page::Logs).await;
    let logs = browser
        .wait_text("[data-testid=logs]", "the import failure in the log", |t| {
            t.contains("PNG image")
        })
        .await;
    assert!(logs.contains("import failed"), "{logs}");
    browser.close().await;
}

/// #16 item 3: the algorithms offered follow the dataset's task, k-means gets one cluster per
/// class, and the task can be set at import when the guess is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn algorithms_follow_the_datasets_task() {
    let site = StaticSite::dashboard();
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    let dir = temp_dir("tasks");
    let names = |options: Vec<String>| -> Vec<String> {
        options
            .into_iter()
            .map(|o| o.split('\t').next().unwrap().to_string())
            .collect()
    };

    let iris = names(browser.option_values("#algorithm").await);
    assert_eq!(
        iris,
        [
            "logistic_regression",
            "decision_tree",
            "random_forest",
            "gradient_boosting",
            "gaussian_nb",
            "kmeans"
        ]
    );
    browser.select("#dataset", "diabetes").await;
    browser
        .wait_text("[data-testid=train-task]", "the regression task", |t| {
            t == "regression"
        })
        .await;
    let diabetes = names(browser.option_values("#algorithm").await);
    assert_eq!(
        diabetes,
        [
            "linear_regression",
            "ridge",
            "elastic_net",
            "gradient_boosting"
        ]
    );

    // 64 features, 10 classes: k-means with k 10.
    import(
        &browser,
        &write(&dir, "digits.csv", &csv_text(64, 10, 300, false)),
    )
    .await;
    browser
        .wait_text("[data-testid=train-task]", "ten classes", |t| {
            t == "classification, 10 classes"
        })
        .await;
    browser.select("#algorithm", "kmeans").await;
    let k = browser
        .element("#param-k")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(k.as_deref(), Some("10"));

    // Whole-number targets with few values look like classes; here they are amounts.
    let mut amounts = String::from("a,b,amount\r\n");
    for i in 0..60 {
        amounts.push_str(&format!("{i},{},{}\r\n", (i * 7) % 5, i % 12 + (i * 7) % 5));
    }
    browser
        .upload("#csv-file", &write(&dir, "amounts.csv", &amounts))
        .await;
    browser.element("#csv-task").await;
    assert_eq!(browser.selected_text("#csv-task").await, "classification");
    browser.select("#csv-task", "regression").await;
    browser
        .wait_text("[data-testid=csv-preview]", "the regression preview", |t| {
            t.contains("regression: 60 usable rows")
        })
        .await;
    browser.data().import().await;
    browser
        .wait_text("[data-testid=train-task]", "the chosen task", |t| {
            t == "regression"
        })
        .await;
    assert_eq!(
        browser.selected_text("#algorithm").await,
        "linear regression (OLS)"
    );
    browser.train_and_wait().await;
    let row = browser
        .wait_text(&RunsTable::row(1), "the regression run", |t| {
            t.contains("amounts.csv")
        })
        .await;
    assert!(row.contains("r2"), "{row}");
    browser.close().await;
}

/// #16 items 6 and 7: sorting by Metric keeps each metric's runs together, and a delete
/// never makes a run name repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_sort_groups_metrics_and_names_never_repeat() {
    let site = StaticSite::dashboard();
    let browser = Browser::start().await;
    browser.open(&site.origin).await;

    // Accuracy 0.3-ish (one class for everything), R2 of a regression, accuracy ~0.97.
    browser.train().set_param("alpha", "1000000").await;
    browser.train_and_wait().await;
    browser.select("#dataset", "diabetes").await;
    browser.select("#algorithm", "linear_regression").await;
    browser.train_and_wait().await;
    browser.select("#dataset", "iris").await;
    browser.select("#algorithm", "logistic_regression").await;
    browser.train_and_wait().await;
    browser.select("#algorithm", "kmeans").await;
    browser.train_and_wait().await;

    browser
        .wait_text("[data-testid=run-count]", "four runs", |t| {
            t.starts_with("4 of 4")
        })
        .await;
    // Ascending by metric.
    browser.click("table.runs th:nth-child(6)").await;
    let metric_names = browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             setTimeout(() => done(Array.from(document.querySelectorAll('table.runs tbody .metric-name')).map(e => e.textContent)), 300);",
        )
        .await;
    let metric_names: Vec<String> = serde_json::from_value(metric_names).unwrap();
    let mut blocks = metric_names.clone();
    blocks.dedup();
    let mut distinct = blocks.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        blocks.len(),
        distinct.len(),
        "each metric's runs together: {metric_names:?}"
    );

    // Delete the first run (#1), then train: the new run is #5, not a second #4.
    browser
        .client
        .execute(
            "Array.from(document.querySelectorAll('a.run-name')).find(a => a.textContent == 'logistic regression #1').click()",
            vec![],
        )
        .await
        .unwrap();
    browser
        .wait_text("[data-testid=run-details] h3", "run #1", |t| {
            t.starts_with("logistic regression #1 ")
        })
        .await;
    browser.click("#run-delete").await;
    browser.accept_dialog().await;
    browser
        .wait_text("[data-testid=run-count]", "three runs", |t| {
            t.ends_with("of 3 runs")
        })
        .await;
    browser.select("#algorithm", "kmeans").await;
    browser.train_and_wait().await;
    let names = browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             setTimeout(() => done(Array.from(document.querySelectorAll('table.runs tbody a.run-name')).map(e => e.textContent)), 300);",
        )
        .await;
    let mut names: Vec<String> = serde_json::from_value(names).unwrap();
    assert!(
        names.iter().any(|n| n == "kmeans #5"),
        "the new run is #5: {names:?}"
    );
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "no name twice: {names:?}");
    browser.close().await;
}

/// #16 items 2, 8, 10, 11, 16, 17: a 64-feature, 10-class model from import to an alert.
/// The deploy check is not live traffic; Compile shows its module by the run; the details,
/// drift charts and the alert stay readable with 64 features; Roll back asks first; the
/// Devices page says how to send predictions and labels. Screenshots of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_feature_model_from_import_to_alert() {
    const WINDOW_S: u64 = 2;
    let site = StaticSite::dashboard();
    let token = "e2e-newcomer";
    let device = EdgeProcess::start(&temp_dir("newcomer-device"), token, &site.origin);
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    let dir = temp_dir("wide");

    browser.go(Page::Devices).await;
    browser
        .devices()
        .add(DeviceForm {
            name: "bench",
            url: &device.url,
            token,
            window_s: Some(WINDOW_S),
        })
        .await;
    let row = DevicesPage::row(&device.url);
    browser
        .wait_text(
            &format!("{row} [data-testid=device-status]"),
            "the device",
            |t| t == "ok",
        )
        .await;
    browser.go(Page::Lab).await;

    let digits = csv_text(64, 10, 400, false);
    import(&browser, &write(&dir, "digits64.csv", &digits)).await;
    browser.train().set_param("max_iterations", "30").await;
    browser.train_and_wait().await;
    browser.select("#algorithm", "decision_tree").await;
    // A depth limit, so the tree has a `max_depth` the logistic run lacks (the default is
    // unlimited, `none`).
    browser.train().set_param("max_depth", "8").await;
    browser.train_and_wait().await;

    // Compile the logistic run (second row): its module appears under that run's name.
    browser.runs().compile(2).await;
    let module = browser
        .wait_text("[data-testid=module] h3", "the module box", |t| {
            !t.is_empty()
        })
        .await;
    assert_eq!(module, "Model module of logistic regression #1");
    let details = browser
        .wait_text("[data-testid=run-details] h3", "the run's details", |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        details.starts_with("logistic regression #1 on digits64.csv"),
        "{details}"
    );
    browser
        .wait_text("[data-testid=module-check]", "the module check", |t| {
            t.contains("bit-identical")
        })
        .await;
    // The details come before the 64 histograms, which are folded.
    let order = browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             const d = document.querySelector('[data-testid=run-details]');
             const y = s => { const e = d.querySelector(s); return e ? e.getBoundingClientRect().top : -1; };
             done([y('[data-testid=module]'), y('[data-testid=curves]'), y('[data-testid=confusion]'), y('details.profile'), d.querySelector('details.profile').open]);",
        )
        .await;
    let order = order.as_array().unwrap();
    let tops: Vec<f64> = order[..4].iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(
        tops.windows(2).all(|w| w[0] >= 0.0 && w[0] < w[1]),
        "module, curves, confusion matrix, then the profile: {tops:?}"
    );
    assert_eq!(
        order[4],
        serde_json::json!(false),
        "64 histograms start folded"
    );
    browser.screenshot("newcomer-run-details-64").await;
    let curve = browser.html("[data-chart=curve-train_log_loss]").await;
    assert!(
        !curve.contains(">1000<"),
        "the step axis ends near 30, not 1000"
    );

    // Compare the two runs.
    browser.runs().toggle_compare(1).await;
    browser.runs().toggle_compare(2).await;
    browser.element("[data-testid=compare]").await;
    browser.scroll_to("[data-testid=compare]").await;
    browser.screenshot("newcomer-compare-64").await;
    browser.scroll_to("[data-chart=parallel]").await;
    browser.screenshot("newcomer-parallel-64").await;
    // #16 item 12: a param one run lacks is drawn in a `none` slot, not at the axis midpoint.
    let parallel = browser.html("[data-chart=parallel]").await;
    assert!(
        parallel
            .split("</text>")
            .any(|t| t.rsplit('>').next().map(str::trim) == Some("none"))
            && parallel.contains("max_depth"),
        "missing params marked"
    );

    // Register and deploy: the check's 80 held-out rows are not traffic.
    browser.click("#register").await;
    browser
        .wait_text("[data-testid=version-page] h2", "the version page", |t| {
            !t.is_empty()
        })
        .await;
    browser.registry().toggle_target(None).await;
    browser.registry().deploy().await;
    let verdict = browser
        .registry()
        .result("the verdict", |t| !t.is_empty())
        .await;
    assert!(verdict.contains("bit-identical"), "{verdict}");
    let http = wasmops_e2e::client();
    let counters: wasmops_shared::wire::Telemetry = http
        .get(format!("{}/v1/telemetry", device.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (counters.requests, counters.predictions),
        (0, 0),
        "the deployment check is not live traffic"
    );
    let windows: wasmops_shared::wire::WindowsResponse = http
        .get(format!(
            "{}/v1/telemetry/windows?window_s={WINDOW_S}&count=30",
            device.url
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requests: u64 = windows.windows.iter().map(|w| w.requests).sum();
    assert_eq!(requests, 0, "no window counts the check");
    browser.go(Page::Devices).await;
    browser.click(&format!("{row} a.device-link")).await;

    // How to use the device, with its URL.
    browser.click("[data-testid=device-usage] summary").await;
    let usage = browser
        .wait_text("[data-testid=device-usage]", "the usage", |t| {
            t.contains("curl")
        })
        .await;
    assert!(
        usage.contains(&format!("{}/v1/predict", device.url))
            && usage.contains(&format!("{}/v1/feedback", device.url))
            && usage.contains("px0,px1"),
        "{usage}"
    );

    // Live traffic: the digits shifted in every feature, over three windows.
    let rows: Vec<Vec<f64>> = digits
        .lines()
        .skip(1)
        .take(120)
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|x| x.trim().parse().unwrap()).collect();
            v[..64]
                .iter()
                .enumerate()
                .map(|(j, x)| x + 3.0 * (j % 5) as f64)
                .collect()
        })
        .collect();
    for _ in 0..4 {
        let sent = http
            .post(format!("{}/v1/predict", device.url))
            .bearer_auth(token)
            .json(&wasmops_shared::wire::PredictRequest { rows: rows.clone() })
            .send()
            .await
            .unwrap();
        assert!(sent.status().is_success());
        tokio::time::sleep(Duration::from_millis(WINDOW_S * 1000 + 100)).await;
    }
    browser.devices().pull_all().await;
    let alert = browser
        .wait_text("li.alert[data-kind=drift] strong", "the drift alert", |t| {
            !t.is_empty()
        })
        .await;
    // One short line, the worst features named; the PSI values behind a click.
    assert!(alert.contains("features, worst "), "{alert}");
    assert!(alert.len() < 160, "{alert}");
    let open: serde_json::Value = browser
        .client
        .execute(
            "return document.querySelector('li.alert[data-kind=drift] details.detail').open",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(open, serde_json::json!(false));
    let psi = browser.html("[data-chart=chart-psi]").await;
    assert!(psi.contains("top 5 of"), "top features only");
    assert!(psi.contains("alert 0.25") && psi.contains("warn 0.1"));
    browser.scroll_to("[data-testid=alerts]").await;
    browser.screenshot("newcomer-alert-64").await;
    browser.scroll_to("[data-testid=model-telemetry]").await;
    browser.screenshot("newcomer-devices-64").await;

    // Roll back asks first; dismissed, nothing changes.
    browser.click(&format!("{row} button.rollback")).await;
    let question = browser
        .client
        .get_alert_text()
        .await
        .expect("Roll back opens a confirmation");
    assert!(question.starts_with("Roll back bench from "), "{question}");
    browser.client.dismiss_alert().await.unwrap();
    browser.close().await;
}

/// #16 item 15: an imported dataset can be renamed, and deleted after saying what was made
/// from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_datasets_can_be_renamed_and_deleted() {
    let site = StaticSite::dashboard();
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    let dir = temp_dir("rename-delete");
    import(
        &browser,
        &write(&dir, "export_2024_final(3).csv", &csv_text(4, 3, 60, false)),
    )
    .await;

    browser.click("button.dataset-rename").await;
    browser.fill("input.dataset-name", "pumps").await;
    browser.click("button.dataset-rename-save").await;
    browser
        .wait_text("[data-testid=datasets]", "the new name", |t| {
            t.contains("pumps v1")
        })
        .await;
    assert!(browser
        .selected_text("#dataset")
        .await
        .starts_with("pumps v1"));
    browser.train_and_wait().await;

    browser.click("button.dataset-delete").await;
    let question = browser.accept_dialog_text().await;
    assert!(
        question.starts_with("Delete dataset pumps v1 (60 rows)? 1 run trained on it"),
        "{question}"
    );
    browser
        .wait_text("#data-panel", "the dataset gone", |t| {
            !t.contains("pumps v1")
        })
        .await;
    let options = browser.option_values("#dataset").await;
    assert!(options.iter().all(|o| !o.contains("pumps")), "{options:?}");
    assert_eq!(
        browser.selected_text("#dataset").await,
        "iris: 150 rows, 4 features, 3 classes"
    );
    // The run stays.
    browser
        .wait_text(&RunsTable::row(1), "the run", |t| t.contains("pumps"))
        .await;
    browser.close().await;
}

/// #16 items 11 and 12: two runs that differ only in a yes/no param (scaling) get that param
/// as an axis of the parallel coordinates, and a constant feature's histogram draws its one bar
/// with readable labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_is_an_axis_and_a_constant_feature_is_drawn() {
    let site = StaticSite::dashboard();
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    let dir = temp_dir("constant");
    let mut csv = String::from("width,height,batch,kind\r\n");
    for i in 0..90 {
        let class = i % 3;
        csv.push_str(&format!(
            "{:.2},{:.2},5,{class}\r\n",
            class as f64 + (i % 7) as f64 * 0.1,
            2.0 * class as f64 - (i % 5) as f64 * 0.1
        ));
    }
    import(&browser, &write(&dir, "constant.csv", &csv)).await;
    browser.train_and_wait().await;
    browser.click("#scale").await;
    browser.train().start().await;
    // The second run has landed once its details open.
    browser
        .wait_text(
            "[data-testid=run-details]",
            "the second run's details",
            |t| t.contains("#2") && t.contains("scale"),
        )
        .await;

    browser.runs().toggle_compare(1).await;
    browser.runs().toggle_compare(2).await;
    browser.element("[data-testid=compare]").await;
    browser.screenshot("newcomer-compare-scaling").await;
    let parallel = browser.html("[data-chart=parallel]").await;
    let labels: Vec<&str> = parallel
        .split("</text>")
        .filter_map(|t| t.rsplit('>').next().map(str::trim))
        .collect();
    assert!(
        labels.contains(&"scale"),
        "scaling is the only difference, so it is an axis: {labels:?}"
    );

    // The details of the newest run: its `batch` feature is constant.
    browser.runs().open(1).await;
    browser.element("[data-testid=run-details]").await;
    browser
        .client
        .execute(
            "const d = document.querySelector('[data-testid=run-details] details.profile'); \
             if (d) { d.open = true; d.scrollIntoView(); }",
            vec![],
        )
        .await
        .unwrap();
    let profile = browser
        .html("[data-testid=run-details] details.profile")
        .await;
    let batch = profile
        .split("<svg")
        .find(|svg| svg.contains(">batch<") || svg.contains("batch"))
        .expect("a histogram for the constant feature");
    assert!(
        batch.contains("<rect"),
        "the constant feature's histogram draws its bar"
    );
    browser.screenshot("newcomer-constant-feature").await;
}
