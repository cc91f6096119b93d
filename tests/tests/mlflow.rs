//! The dashboard and a real `mlflow server` (the pinned MLflow, SQLite backend, artifact
//! proxy): runs trained while the server is down reach it once it is up, exactly once, with
//! every param, metric step, tag, status, time, dataset input and module artifact; a server
//! killed in the middle of a sync loses nothing and the next sync completes without
//! duplicates; wrong URLs and credentials say so. The registry goes both ways: a version and
//! its alias registered in one browser are verified and deployed from a second, empty browser
//! profile, and the device answers bit-identically; the module's detached signature, made by
//! the first browser's WebCrypto key, travels through MLflow with it, and the device, which
//! trusts only that key, accepts it from the second browser and refuses the bytes unsigned.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasmops_e2e::pages::{DeviceForm, Page, RunsTable};
use wasmops_e2e::{temp_dir, Browser, EdgeProcess, MlflowServer, StaticSite};

const EXPERIMENT: &str = "e2e";
const PASSWORD: &str = "e2e-admin-password";
/// Runs imported at once in the killed-sync part: enough that their sync takes many seconds
/// (MLflow's auth app checks the password hash on every request, about 1 run/s here).
const IMPORTED: usize = 60;

async fn connect(browser: &Browser, uri: &str, password: Option<&str>) {
    browser.go(Page::Settings).await;
    browser.fill("#mlflow-uri", uri).await;
    browser.fill("#mlflow-experiment", EXPERIMENT).await;
    if let Some(p) = password {
        browser.select("#mlflow-auth", "basic").await;
        browser.fill("#mlflow-user", "admin").await;
        browser.fill("#mlflow-password", p).await;
    }
    browser.click("#mlflow-save").await;
}

/// Clicks Sync now, unless a sync is already under way (the automatic one every 30 s, or one
/// a change started): then that one goes on.
async fn start_sync(browser: &Browser) {
    browser.go(Page::Settings).await;
    let button = browser.element("#mlflow-sync").await;
    if button.is_enabled().await.unwrap_or(false) {
        let _ = button.click().await;
    }
}

/// Clicks Sync now and waits for the Settings page's counts to read `want`.
async fn sync_until(browser: &Browser, want: &str) {
    browser.go(Page::Settings).await;
    browser
        .wait_text("#mlflow-sync", "Sync now enabled", |_| true)
        .await;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if browser
            .current_text("[data-testid=mlflow-last]")
            .await
            .is_some_and(|t| t != "Syncing…")
        {
            if let Ok(button) = browser
                .client
                .find(fantoccini::Locator::Css("#mlflow-sync"))
                .await
            {
                let _ = button.click().await;
            }
        }
        if browser
            .current_text("[data-testid=mlflow-counts]")
            .await
            .is_some_and(|t| t == want)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "counts never read `{want}`: {:?} / {:?}\n{}",
            browser.current_text("[data-testid=mlflow-counts]").await,
            browser.current_text("[data-testid=mlflow-status]").await,
            browser.html("table.runs tbody").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)?["value"]
        .as_str()
}

fn by_client_id(runs: &[Value]) -> BTreeMap<String, Value> {
    runs.iter()
        .filter_map(|r| Some((tag(r, "wasmops.client_id")?.to_string(), r.clone())))
        .collect()
}

/// As the dashboard sends params: text, numbers in their shortest form (`42`, `0.2`).
fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => format!("{}", n.as_f64().unwrap()),
        other => other.to_string(),
    }
}

fn wait_for_runs(n: usize) -> Duration {
    Duration::from_secs(30 + n as u64)
}

async fn train(browser: &Browser, algorithm: &str) {
    browser.go(Page::Lab).await;
    browser.select("#dataset", "iris").await;
    browser.select("#algorithm", algorithm).await;
    browser.train_and_wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_reach_mlflow_exactly_once_whatever_happens_to_the_server() {
    let site = StaticSite::dashboard();
    let dir = temp_dir("mlflow-runs");
    let port = MlflowServer::unused_port();
    let uri = format!("http://127.0.0.1:{port}");
    let browser = Browser::start().await;
    browser.open(&site.origin).await;

    // Connected while the server is down: the sync says so, and nothing else happens.
    connect(&browser, &uri, Some(PASSWORD)).await;
    let down = browser
        .wait_text(
            "[data-testid=mlflow-error]",
            "the unreachable server",
            |t| t.contains("unreachable"),
        )
        .await;
    assert!(down.contains("Nothing stored was lost"), "{down}");

    // Three finished runs, a failed and a cancelled one, all with the server down.
    train(&browser, "logistic_regression").await;
    train(&browser, "random_forest").await;
    train(&browser, "gaussian_nb").await;
    let module_hash = browser.compile_newest_run().await;
    browser.runs().open(3).await;
    browser.fill("#run-tags", "baseline").await;
    browser.fill("#run-notes", "first try").await;
    browser.click("#run-save-meta").await;
    let csv = dir.join("tiny.csv");
    std::fs::write(&csv, "a,b,label\n1,2,x\n3,4,y\n5,6,x\n").unwrap();
    browser.data().choose(&csv).await;
    browser.data().import().await;
    browser.select("#algorithm", "logistic_regression").await;
    browser.train().start().await;
    browser
        .wait_text("[data-testid=run-status]", "the failed run", |t| {
            t == "failed"
        })
        .await;
    browser.select("#dataset", "winequality").await;
    browser.select("#algorithm", "random_forest").await;
    browser.train().set_param("n_trees", "1000").await;
    browser.train().start().await;
    browser
        .wait_text(".progress", "the fit under way", |t| t.contains("fitting"))
        .await;
    browser.click("#cancel").await;
    browser
        .wait_text(
            &RunsTable::cell(1, "[data-testid=run-status]"),
            "the cancelled run",
            |t| t == "cancelled",
        )
        .await;
    let badges = browser.html("table.runs tbody").await;
    assert_eq!(
        badges.matches("data-testid=\"sync-state\"").count(),
        5,
        "{badges}"
    );
    assert_eq!(
        badges.matches("data-state=\"pending\"").count(),
        5,
        "nothing is synced yet: {badges}"
    );

    // The server comes up (with MLflow's auth app). Wrong credentials first: said, not stored.
    let mut server = MlflowServer::start_with(&dir, port, Some(PASSWORD));
    server.ready().await;
    connect(&browser, &uri, Some("wrong-password")).await;
    browser
        .wait_text("[data-testid=mlflow-error]", "refused credentials", |t| {
            t.contains("refused the credentials")
        })
        .await;
    connect(&browser, &uri, Some(PASSWORD)).await;
    sync_until(&browser, "5 runs synced, 0 pending, 0 failed").await;
    browser.screenshot("mlflow-settings-synced").await;

    // Read back through MLflow's REST API: everything equals the dashboard's record.
    let exp = server.experiment_id(EXPERIMENT).await;
    let remote = by_client_id(&server.runs(&exp).await);
    assert_eq!(remote.len(), 5, "{:?}", remote.keys());
    browser.go(Page::Lab).await;
    let export = browser.export_runs().await;
    let finished = export["runs"].as_array().expect("runs");
    assert_eq!(finished.len(), 3);
    for run in finished {
        let id = run["id"].as_str().unwrap();
        let r = &remote[id];
        let run_id = r["info"]["run_id"].as_str().unwrap();
        assert_eq!(r["info"]["status"], "FINISHED");
        assert_eq!(r["info"]["run_name"], run["name"]);
        let start = run["started_at_ms"].as_f64().unwrap();
        let end = start + run["duration_ms"].as_f64().unwrap();
        assert_eq!(r["info"]["start_time"].as_i64(), Some(start as i64));
        assert_eq!(r["info"]["end_time"].as_i64(), Some(end as i64));
        let params: BTreeMap<String, String> = r["data"]["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["key"].as_str().unwrap().to_string(),
                    p["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want: BTreeMap<String, String> = run["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), param_text(v)))
            .collect();
        assert_eq!(params, want);
        assert_eq!(
            tag(r, "mlflow.source.git.commit"),
            run["code_version"].as_str()
        );
        // Every step of every curve, and the final metrics as the latest values.
        let steps = run["metric_steps"].as_object().unwrap();
        for (key, curve) in steps {
            let history = server
                .get(&format!(
                    "metrics/get-history?run_id={run_id}&metric_key={key}&max_results=25000"
                ))
                .await;
            let got: BTreeSet<(i64, u64)> = history["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["step"].as_i64().unwrap(),
                        m["value"].as_f64().unwrap().to_bits(),
                    )
                })
                .collect();
            for point in curve.as_array().unwrap() {
                let (step, value) = (point[0].as_i64().unwrap(), point[1].as_f64().unwrap());
                assert!(
                    got.contains(&(step, value.to_bits())),
                    "{key} step {step} = {value} missing from {got:?}"
                );
            }
        }
        let latest: BTreeMap<String, f64> = r["data"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["key"].as_str().unwrap().to_string(),
                    m["value"].as_f64().unwrap(),
                )
            })
            .collect();
        for (k, v) in run["metrics"].as_object().unwrap() {
            assert_eq!(
                latest.get(k).map(|x| x.to_bits()),
                v.as_f64().map(f64::to_bits),
                "metric {k}"
            );
        }
        // The dataset as an input, its content hash as digest.
        let inputs = r["inputs"]["dataset_inputs"]
            .as_array()
            .expect("dataset inputs");
        let digest = inputs[0]["dataset"]["digest"].as_str().unwrap();
        assert!(run["dataset"]["hash"].as_str().unwrap().starts_with(digest) && digest.len() == 36);
        // Card and profile always; the module where it was compiled, byte for byte.
        let card = server
            .artifact(&format!("{exp}/{run_id}/artifacts/model/card.json"))
            .await;
        let card: Value = serde_json::from_slice(&card).unwrap();
        assert_eq!(card["feature_names"], run["feature_names"]);
        if run["name"].as_str().unwrap().starts_with("Gaussian NB") {
            let wasm = server
                .artifact(&format!(
                    "{exp}/{run_id}/artifacts/model/{module_hash}/model.wasm"
                ))
                .await;
            assert_eq!(wasmops_shared::digest::content_hash(&wasm), module_hash);
        }
    }
    let noted = remote
        .values()
        .find(|r| tag(r, "baseline").is_some())
        .expect("the tagged run");
    assert_eq!(tag(noted, "mlflow.note.content"), Some("first try"));
    let statuses: BTreeSet<&str> = remote
        .values()
        .map(|r| r["info"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, BTreeSet::from(["FINISHED", "FAILED", "KILLED"]));
    let failed = remote
        .values()
        .find(|r| r["info"]["status"] == "FAILED")
        .unwrap();
    assert!(
        tag(failed, "wasmops.error").unwrap().contains("too small"),
        "{failed}"
    );

    // Sync again: still five. A tag changed in the dashboard reaches the same MLflow run.
    sync_until(&browser, "5 runs synced, 0 pending, 0 failed").await;
    start_sync(&browser).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.runs(&exp).await.len(), 5);
    browser.go(Page::Lab).await;
    browser.runs().open(3).await;
    browser.fill("#run-tags", "baseline, reviewed").await;
    browser.click("#run-save-meta").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = by_client_id(&server.runs(&exp).await);
        if runs.values().any(|r| tag(r, "reviewed") == Some("true")) {
            assert_eq!(runs.len(), 5);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new tag never reached MLflow"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    browser.go(Page::Lab).await;
    let badges = browser.html("table.runs tbody").await;
    assert_eq!(
        badges.matches("data-state=\"synced\"").count(),
        5,
        "{badges}"
    );
    browser.screenshot("mlflow-runs-synced").await;

    // Two hundred more runs (an imported file); the server is killed in the middle of their
    // sync, once its log shows a few of them created.
    let template = finished[0].clone();
    let copies: Vec<Value> = (0..IMPORTED)
        .map(|i| {
            let mut r = template.clone();
            r["id"] = json!(format!("imported-{i}"));
            r["name"] = json!(format!("imported #{i}"));
            r["started_at_ms"] =
                json!(template["started_at_ms"].as_f64().unwrap() + 1000.0 + i as f64);
            r
        })
        .collect();
    let total = 5 + IMPORTED;
    let bundle = dir.join("imported.json");
    std::fs::write(
        &bundle,
        json!({"format": "wasmops-runs", "version": 1, "runs": copies}).to_string(),
    )
    .unwrap();
    browser.upload("#runs-import", &bundle).await;
    browser
        .wait_text("[data-testid=run-count]", "all runs", |t| {
            t.ends_with(&format!("{total} runs"))
        })
        .await;
    let created = |server: &MlflowServer| server.logged("POST /api/2.0/mlflow/runs/create");
    let before = created(&server);
    browser.go(Page::Settings).await;
    start_sync(&browser).await;
    let deadline = Instant::now() + wait_for_runs(IMPORTED);
    loop {
        let n = created(&server) - before;
        if n >= 5 {
            assert!(
                n < IMPORTED,
                "the sync finished before the server could be killed"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sync of the imported runs never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let stopped = browser
        .wait_text("[data-testid=mlflow-error]", "the sync cut off", |t| {
            t.contains("unreachable")
        })
        .await;
    assert!(stopped.contains("Nothing stored was lost"), "{stopped}");
    let counts = browser
        .current_text("[data-testid=mlflow-counts]")
        .await
        .unwrap();
    assert!(
        !counts.contains(" 0 pending"),
        "some runs wait for the server: {counts}"
    );
    browser.go(Page::Lab).await;
    let count = browser
        .current_text("[data-testid=run-count]")
        .await
        .unwrap();
    assert!(count.ends_with(&format!("{total} runs")), "{count}");

    server.restart().await;
    sync_until(
        &browser,
        &format!("{total} runs synced, 0 pending, 0 failed"),
    )
    .await;
    let all = server.runs(&exp).await;
    assert_eq!(all.len(), total, "one MLflow run per dashboard run");
    assert_eq!(by_client_id(&all).len(), total);

    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_browser_takes_the_registry_from_mlflow_and_deploys_it() {
    let site = StaticSite::dashboard();
    let dir = temp_dir("mlflow-registry");
    let server = MlflowServer::start(&dir);
    let token = "e2e-mlflow";
    let first = Browser::start().await;
    first.open(&site.origin).await;
    // The first browser's public key (its private half never leaves its WebCrypto): the device
    // trusts that key only, so it runs this browser's modules and nobody else's.
    first.go(Page::Settings).await;
    let pem = first
        .wait_text("[data-testid=signing-public-pem]", "the public key", |t| {
            t.starts_with("-----BEGIN PUBLIC KEY-----")
        })
        .await;
    let key_id = first
        .wait_text("[data-testid=signing-key-id]", "the key id", |t| {
            t.len() == 16
        })
        .await;
    let keys = temp_dir("mlflow-trusted-keys");
    std::fs::write(keys.join("first-browser.pem"), format!("{pem}\n")).unwrap();
    let device = EdgeProcess::start_with(
        &temp_dir("mlflow-device"),
        token,
        &site.origin,
        "127.0.0.1:0",
        "e2e-device",
        &["--trusted-keys".into(), keys.display().to_string()],
    );

    // First browser: train, compile, register, make champion, then connect.
    train(&first, "logistic_regression").await;
    let hash = first.compile_newest_run().await;
    first.click("#register").await;
    first
        .wait_text("[data-testid=version-page] h2", "the version page", |t| {
            t.contains(&hash)
        })
        .await;
    first.click("#alias-champion").await;
    first
        .wait_text("[data-testid=alias-history]", "the alias", |t| {
            t.contains("champion")
        })
        .await;
    first.go(Page::Lab).await;
    let export = first.export_runs().await;
    let run = export["runs"][0].clone();
    server.ready().await;
    connect(&first, &server.url, None).await;
    sync_until(&first, "1 runs synced, 0 pending, 0 failed").await;
    first.go(Page::Registry).await;
    first
        .wait_text("[data-testid=version-mlflow]", "the MLflow version", |t| {
            t == "v1"
        })
        .await;

    // MLflow has the version (with the module's hash, size and kind) and the alias.
    let name = "iris-logistic-regression";
    let deadline = Instant::now() + Duration::from_secs(60);
    let model = loop {
        let m = server
            .get(&format!("registered-models/get?name={name}"))
            .await;
        if m["registered_model"]["aliases"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the alias never reached MLflow: {m}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        model["registered_model"]["aliases"][0],
        json!({"alias": "champion", "version": "1"})
    );
    let versions = server
        .get(&format!("model-versions/search?filter=name%3D%27{name}%27"))
        .await;
    let v1 = &versions["model_versions"][0];
    let tags: BTreeMap<&str, &str> = v1["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["key"].as_str().unwrap(), t["value"].as_str().unwrap()))
        .collect();
    assert_eq!(tags["wasmops.sha256"], hash);
    assert_eq!(tags["wasmops.kind"], "logistic_regression");

    // MLflow's own UI, served by the same server, charts the synced run's loss curve.
    let exp = server.experiment_id(EXPERIMENT).await;
    let remote = by_client_id(&server.runs(&exp).await);
    let run_id = remote[run["id"].as_str().unwrap()]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The module's detached signature is beside it, by the first browser's key, and verifies.
    let module = server
        .artifact(&format!("{exp}/{run_id}/artifacts/model/{hash}/model.wasm"))
        .await;
    let sig = server
        .artifact(&format!(
            "{exp}/{run_id}/artifacts/model/{hash}/model.wasm.sig"
        ))
        .await;
    let sig = String::from_utf8(sig).expect("the signature document is text");
    let trusted =
        wasmops_shared::signature::TrustedKeys::from_pems([("first".to_string(), pem.as_str())])
            .unwrap();
    assert_eq!(
        trusted
            .verify(&module, Some(&sig))
            .expect("the signature verifies")
            .id,
        key_id
    );
    // The device refuses the same bytes unsigned, before compiling them.
    let unsigned = reqwest::Client::new()
        .post(format!("{}/v1/modules", device.url))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(module.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 422);
    let why = unsigned.text().await.unwrap();
    assert!(why.contains("unsigned"), "{why}");
    first
        .open(&format!(
            "{}/#/experiments/{exp}/runs/{run_id}/model-metrics",
            server.url
        ))
        .await;
    first
        .wait_text("body", "MLflow's run page", |t| {
            t.contains("train_log_loss")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.screenshot("mlflow-ui-run-metrics").await;
    first.open(&site.origin).await;

    // Someone else registers a version whose module does not match its hash tag.
    let source = v1["source"].as_str().unwrap();
    server
        .post(
            "model-versions/create",
            json!({"name": name, "source": source, "run_id": v1["run_id"],
                   "tags": [{"key": "wasmops.sha256", "value": "0".repeat(64)}]}),
        )
        .await;

    // A second, empty browser profile connected to the same server.
    let second = Browser::start().await;
    second.open(&site.origin).await;
    connect(&second, &server.url, None).await;
    second.go(Page::Registry).await;
    second
        .click(&format!("tr[data-version='{hash}'] a.version-link"))
        .await;
    let verified = second
        .wait_text(
            "[data-testid=version-verified]",
            "the pulled version",
            |t| t.contains("received from MLflow"),
        )
        .await;
    assert!(
        verified.contains("sha256 equals its tag") && verified.contains("bit-identical"),
        "{verified}"
    );
    second
        .wait_text("[data-testid=alias-history]", "champion from MLflow", |t| {
            t.contains("champion")
        })
        .await;
    let refused = second
        .wait_text("[data-testid=refused-versions]", "the bad version", |t| {
            t.contains("v2")
        })
        .await;
    assert!(refused.contains("sha256"), "{refused}");
    second.screenshot("mlflow-second-browser-registry").await;

    // The second browser imports the first one's runs (its export) plus a run MLflow cannot
    // hold (a param over MLflow's 6,000 bytes): the shared run is found by its client id, not
    // made twice; the other is refused by name and stays in this browser.
    let mut long = run.clone();
    long["id"] = json!("too-long-param");
    long["name"] = json!("long param");
    long["params"]["comment"] = json!("x".repeat(7000));
    let bundle = dir.join("shared-runs.json");
    std::fs::write(
        &bundle,
        json!({"format": "wasmops-runs", "version": 1, "runs": [run.clone(), long]}).to_string(),
    )
    .unwrap();
    second.go(Page::Lab).await;
    second.upload("#runs-import", &bundle).await;
    second
        .wait_text("[data-testid=run-count]", "the imported runs", |t| {
            t.ends_with("2 runs")
        })
        .await;
    sync_until(&second, "1 runs synced, 0 pending, 1 failed").await;
    assert_eq!(
        server.runs(&exp).await.len(),
        1,
        "the imported run is the first browser's MLflow run"
    );
    second.go(Page::Lab).await;
    let row = second.html("tr[data-run-id='too-long-param']").await;
    assert!(
        row.contains("sync failed") && row.contains("comment") && row.contains("6000"),
        "{row}"
    );

    // It deploys the version to a real device, which answers as the first browser's module.
    second.go(Page::Devices).await;
    second
        .devices()
        .add(DeviceForm {
            name: "edge",
            url: &device.url,
            token,
            window_s: None,
        })
        .await;
    second.go(Page::Registry).await;
    second
        .click(&format!("tr[data-version='{hash}'] a.version-link"))
        .await;
    second.registry().toggle_target(Some(&device.url)).await;
    second.registry().deploy().await;
    let result = second
        .registry()
        .result("the deployment", |t| !t.is_empty())
        .await;
    // Accepted: the second browser sent the signature that came with the version from MLflow
    // (its own key, which the device does not trust, signed nothing here).
    assert!(result.contains("bit-identical"), "{result}");
    let rows: Vec<Vec<f64>> = run["test_x"]
        .as_array()
        .unwrap()
        .chunks(run["feature_names"].as_array().unwrap().len())
        .map(|r| r.iter().map(|v| v.as_f64().unwrap()).collect())
        .collect();
    let answer = device.predict(rows.clone()).await;
    assert_eq!(answer.model, hash);
    let pipeline: wasmops_shared::pipeline::Pipeline =
        serde_json::from_value(run["pipeline"].clone()).unwrap();
    let flat: Vec<f64> = rows.concat();
    let want = wasmops_shared::reference::predict(&pipeline, &flat);
    let got: Vec<u64> = answer
        .outputs
        .concat()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(got, want.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    first.close().await;
    second.close().await;
}
