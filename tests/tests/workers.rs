//! The dashboard's training workers (issue 14): a worker is kept between jobs with the last
//! imported dataset it received, so the next job on that dataset sends only its spec; k-means
//! spreads its runs over one worker per core (`navigator.hardwareConcurrency`, at most 4).
//! That the spread gives the same module as one worker is `cli.rs`'s
//! `the_cli_reproduces_the_tabs_module_byte_for_byte` (the CLI fits every run in one thread)
//! and the trainer's `runs_spread_over_workers_give_the_same_fit`.

use std::time::{Duration, Instant};

use wasmops_e2e::{temp_dir, Browser, StaticSite};

async fn runs_in_table(browser: &Browser) -> usize {
    browser
        .client
        .find_all(fantoccini::Locator::Css(
            "table.runs[data-testid=runs] tbody tr",
        ))
        .await
        .map(|r| r.len())
        .unwrap_or(0)
}

/// Clicks Train, waits for one more run in the table, opens it and returns its log.
async fn train_and_read_log(browser: &Browser) -> String {
    let before = runs_in_table(browser).await;
    browser.click("#train").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while runs_in_table(browser).await == before {
        assert!(Instant::now() < deadline, "the run did not finish in 2 min");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = "[data-testid=runs] tbody tr:nth-child(1)";
    browser
        .wait_text(first, "the finished run", |t| t.contains(" ms"))
        .await;
    browser.click(&format!("{first} a.run-name")).await;
    browser
        .wait_text("[data-testid=run-log]", "the run's log", |t| {
            t.contains("profiled")
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_worker_trains_again_without_the_dataset_and_kmeans_spreads_its_runs() {
    let dir = temp_dir("workers");
    let data = wasmops_trainer::datasets::synthetic(3000, 6, 4);
    let mut csv = data.feature_names.join(",") + ",label\n";
    for i in 0..data.n_rows() {
        let row: Vec<String> = data.row(i).iter().map(f64::to_string).collect();
        csv += &format!(
            "{},{}\n",
            row.join(","),
            data.class_names[data.y[i] as usize]
        );
    }
    let path = dir.join("synthetic.csv");
    std::fs::write(&path, csv).unwrap();

    let site = StaticSite::dashboard();
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    let cores = browser
        .client
        .execute("return navigator.hardwareConcurrency", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(1);
    browser.upload("#csv-file", &path).await;
    browser.click("#csv-import").await;
    browser
        .wait_text("[data-testid=csv-notice]", "the import", |t| {
            t.contains("imported")
        })
        .await;
    let value = browser
        .element("#dataset option:last-child")
        .await
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    browser.select("#dataset", &value).await;

    browser.select("#algorithm", "gaussian_nb").await;
    let first = train_and_read_log(&browser).await;
    assert!(
        first.contains("3000 rows x 6 features (imported)"),
        "the first job sends the dataset:\n{first}"
    );

    browser.select("#algorithm", "kmeans").await;
    let second = train_and_read_log(&browser).await;
    assert!(
        second
            .contains("3000 rows x 6 features (imported, kept by the worker from an earlier run)"),
        "the second job on the same dataset finds it in the worker:\n{second}"
    );
    let workers = cores.clamp(1, 4);
    if workers > 1 {
        for w in 1..=workers {
            let line = format!("(worker {w} of {workers})");
            assert!(
                second.contains(&line),
                "no `{line}` in the k-means run's log:\n{second}"
            );
        }
    } else {
        assert!(!second.contains("k-means runs"), "{second}");
    }
    browser.screenshot("kmeans-spread-log").await;
    browser.close().await;
}
