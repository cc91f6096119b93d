//! Fleets that pull (issue 12): three real devices follow the alias `champion` of a model on a
//! real MLflow server, with only signed modules trusted. Versions are registered through
//! MLflow's REST API exactly as the dashboard registers them (one run per module, the module
//! and its signature under the run's `model/<sha256>/`, the version's source that directory,
//! tagged with the module's sha256, size and kind).
//!
//! Shown: moving the alias makes all three serve the new version while a load runs against
//! them, with no failed request (the load runs from the first device up to the end); a version
//! with a bad signature, one with a wrong sha256 tag and one whose conformance vectors fail are
//! each pointed at and never activated, each device says why and does not download a refused
//! version again on every poll; moving back to a good version works; manual activation on a
//! following device is refused with 409.
//!
//! A real Prometheus scrapes the three devices meanwhile, and the dashboard's Fleet page,
//! reading Prometheus's HTTP API, shows their versions, request rates and that all three are
//! behind their alias while a refused version is pointed at; the Devices page says what a
//! device follows and why it refused (screenshots of both).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmops_e2e::pages::{DeviceForm, DevicesPage, Page};
use wasmops_e2e::registry::{create, iris_module, point, register, signer, Version};
use wasmops_e2e::{temp_dir, Browser, EdgeProcess, MlflowServer, PrometheusServer, StaticSite};
use wasmops_shared::digest::content_hash;
use wasmops_shared::mlflow::{MODEL_DIR, MODULE_FILE};
use wasmops_shared::module::ModuleInfo;
use wasmops_shared::{abi, wire};
use wasmops_trainer::{datasets, Algorithm};

const MODEL: &str = "iris-fleet";
const ALIAS: &str = "champion";
const TOKEN: &str = "pull-token";
const DEVICES: usize = 3;

/// `module` with its conformance section replaced by `data` (every other byte kept): a module
/// that still parses, whose conformance vectors no longer match its code.
fn with_conformance(module: &[u8], data: &[u8]) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn read_leb(bytes: &[u8], at: &mut usize) -> usize {
        let (mut v, mut shift) = (0usize, 0);
        loop {
            let b = bytes[*at];
            *at += 1;
            v |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    let mut out = module[..8].to_vec();
    let mut at = 8;
    let mut replaced = false;
    while at < module.len() {
        let id = module[at];
        at += 1;
        let size = read_leb(module, &mut at);
        let payload = &module[at..at + size];
        at += size;
        let mut name_at = 0;
        let is_it = id == 0 && {
            let len = read_leb(payload, &mut name_at);
            &payload[name_at..name_at + len] == abi::SECTION_CONFORMANCE.as_bytes()
        };
        out.push(id);
        if is_it {
            let mut new = Vec::new();
            leb(abi::SECTION_CONFORMANCE.len(), &mut new);
            new.extend_from_slice(abi::SECTION_CONFORMANCE.as_bytes());
            new.extend_from_slice(data);
            leb(new.len(), &mut out);
            out.extend(new);
            replaced = true;
        } else {
            leb(size, &mut out);
            out.extend_from_slice(payload);
        }
    }
    assert!(replaced, "the module has a conformance section");
    out
}

async fn info(http: &reqwest::Client, d: &EdgeProcess) -> wire::DeviceInfo {
    http.get(format!("{}{}", d.url, wire::paths::INFO))
        .bearer_auth(TOKEN)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("info of {}: {e}", d.url))
        .json()
        .await
        .unwrap()
}

/// Polls every device's `/v1/info` until `pred` holds for all (60 s at most).
async fn until_all(
    http: &reqwest::Client,
    devices: &[EdgeProcess],
    what: &str,
    pred: impl Fn(&wire::DeviceInfo) -> bool,
) -> Vec<wire::DeviceInfo> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut infos = Vec::new();
        for d in devices {
            infos.push(info(http, d).await);
        }
        if infos.iter().all(&pred) {
            return infos;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not on every device after 60 s: {:#?}",
            infos.iter().map(|i| &i.follow).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn follow(i: &wire::DeviceInfo) -> &wire::FollowStatus {
    i.follow
        .as_ref()
        .expect("a following device reports what it follows")
}

/// Predict requests against every device until stopped: counts answers, failures (with the
/// first few reasons) and which module answered.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
    answered_by: Mutex<BTreeMap<String, u64>>,
}

async fn run_load(load: Arc<Load>, stop: Arc<AtomicBool>, url: String, rows: Vec<Vec<f64>>) {
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let row = rows[i % rows.len()].clone();
        let r = http
            .post(format!("{url}{}", wire::paths::PREDICT))
            .bearer_auth(TOKEN)
            .json(&wire::PredictRequest { rows: vec![row] })
            .send()
            .await;
        let answer = match r {
            Ok(r) if r.status().is_success() => r.json::<wire::PredictResponse>().await.ok(),
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                load.failures
                    .lock()
                    .unwrap()
                    .push(format!("{url}: {status} {body}"));
                None
            }
            Err(e) => {
                load.failures.lock().unwrap().push(format!("{url}: {e}"));
                None
            }
        };
        match answer {
            Some(a) => {
                load.ok.fetch_add(1, Ordering::Relaxed);
                *load.answered_by.lock().unwrap().entry(a.model).or_default() += 1;
            }
            None => {
                load.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// How many times MLflow's access log shows `path` downloaded (`GET .../path HTTP/1.1`).
fn downloads(mlflow: &MlflowServer, path: &str) -> usize {
    let wanted = format!("/{path} HTTP/");
    std::fs::read_to_string(mlflow.dir.join("server.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"GET ") && l.contains(&wanted))
        .count()
}

fn keys_dir(dir: &Path) -> String {
    let keys = dir.join("trusted-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("dashboard.pem"), signer().public_key_pem()).unwrap();
    keys.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_devices_follow_an_alias_and_refuse_what_does_not_check_out() {
    let started = Instant::now();
    let dir = temp_dir("pull");
    let mlflow = MlflowServer::start(&dir.join("mlflow"));

    // Modules, made while MLflow starts.
    let v1 = iris_module(
        Algorithm::LogisticRegression {
            alpha: 1.0,
            max_iterations: 100,
        },
        7,
    );
    let v2 = iris_module(Algorithm::GaussianNb, 7);
    let hash1 = content_hash(&v1);
    let hash2 = content_hash(&v2);
    assert_ne!(hash1, hash2);
    // Bad signature: a new module whose signature document was altered (one character).
    let forged = iris_module(Algorithm::GaussianNb, 8);
    let mut bad_signature = Version::signed(forged);
    let mut doc: Value = serde_json::from_str(&bad_signature.signature).unwrap();
    let sig = doc["signature"].as_str().unwrap().to_string();
    let flipped = if &sig[10..11] == "A" { "B" } else { "A" };
    doc["signature"] = format!("{}{flipped}{}", &sig[..10], &sig[11..]).into();
    bad_signature.signature = doc.to_string();
    // Wrong hash: a good, signed module whose sha256 tag names another module.
    let mut wrong_hash = Version::signed(iris_module(Algorithm::GaussianNb, 9));
    wrong_hash.sha256_tag = hash1.clone();
    // Failing conformance vectors: the tag and signature are right for these bytes.
    let mut conformance = ModuleInfo::parse(&v1).unwrap().conformance.into_inner();
    conformance.expected[2].0 ^= 1;
    let failing = Version::signed(with_conformance(
        &v1,
        &serde_json::to_vec(&conformance).unwrap(),
    ));

    mlflow.ready().await;
    let experiment = create(&mlflow, "pull", MODEL).await;
    let n1 = register(&mlflow, &experiment, MODEL, &Version::signed(v1.clone())).await;
    let n2 = register(&mlflow, &experiment, MODEL, &Version::signed(v2.clone())).await;
    point(&mlflow, MODEL, ALIAS, &n1).await;

    let keys = keys_dir(&dir);
    let site = StaticSite::dashboard();
    let devices: Vec<EdgeProcess> = (0..DEVICES)
        .map(|i| {
            let data = dir.join(format!("device-{i}"));
            EdgeProcess::start_with(
                &data,
                TOKEN,
                &site.origin,
                "127.0.0.1:0",
                &format!("device-{i}"),
                &[
                    "--trusted-keys".into(),
                    keys.clone(),
                    "--follow".into(),
                    mlflow.url.clone(),
                    "--model".into(),
                    MODEL.into(),
                    "--alias".into(),
                    ALIAS.into(),
                    "--follow-interval".into(),
                    "1".into(),
                    "--label".into(),
                    format!("group={}", if i == 0 { "canary" } else { "fleet" }),
                ],
            )
        })
        .collect();
    // The team's Prometheus scrapes the three devices every second.
    let targets: Vec<String> = devices
        .iter()
        .map(|d| d.url.trim_start_matches("http://").to_string())
        .collect();
    let prometheus = PrometheusServer::start(&dir.join("prometheus"), &targets, TOKEN);
    let http = wasmops_e2e::client();
    let infos = until_all(&http, &devices, "running version 1", |i| {
        follow(i).running_version.as_deref() == Some(n1.as_str())
            && i.active.as_ref().map(|a| a.hash.as_str()) == Some(hash1.as_str())
    })
    .await;
    for i in &infos {
        let f = follow(i);
        assert_eq!(f.state, wire::FollowState::InSync);
        assert_eq!(f.desired_version.as_deref(), Some(n1.as_str()));
        assert_eq!((f.model.as_str(), f.alias.as_str()), (MODEL, ALIAS));
        assert!(f.last_check.is_some() && f.last_error.is_none(), "{f:?}");
        assert_eq!(i.trusted_keys, vec![signer().key_id().to_string()]);
    }
    assert_eq!(
        infos[0].labels.get("group").map(String::as_str),
        Some("canary")
    );

    // The load: two request loops per device, from here to the end.
    let iris = datasets::builtin("iris").unwrap();
    let rows: Vec<Vec<f64>> = iris.x.chunks(4).map(<[f64]>::to_vec).collect();
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for d in &devices {
        for _ in 0..2 {
            loops.push(tokio::spawn(run_load(
                load.clone(),
                stop.clone(),
                d.url.clone(),
                rows.clone(),
            )));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while load.ok.load(Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "the load does not get answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Move the alias: all three switch under load.
    point(&mlflow, MODEL, ALIAS, &n2).await;
    until_all(&http, &devices, "running version 2", |i| {
        follow(i).running_version.as_deref() == Some(n2.as_str())
            && follow(i).state == wire::FollowState::InSync
            && i.active.as_ref().map(|a| a.hash.as_str()) == Some(hash2.as_str())
    })
    .await;
    let answered_by_2 = |load: &Load| {
        load.answered_by
            .lock()
            .unwrap()
            .get(&hash2)
            .copied()
            .unwrap_or(0)
    };
    let before = answered_by_2(&load);
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered_by_2(&load) < before + 50 {
        assert!(
            Instant::now() < deadline,
            "version 2 does not answer the load"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bad versions: each pointed at, none activated, each device says why.
    let bad = [
        (
            "a bad signature",
            &bad_signature,
            "does not verify with trusted key",
            "signature",
        ),
        (
            "a wrong sha256 tag",
            &wrong_hash,
            "but the version's `wasmops.sha256` tag says",
            "sha256_mismatch",
        ),
        (
            "failing conformance vectors",
            &failing,
            "conformance vectors do not reproduce",
            "module_rejected",
        ),
    ];
    for (name, version, says, reason) in bad {
        let n = register(&mlflow, &experiment, MODEL, version).await;
        point(&mlflow, MODEL, ALIAS, &n).await;
        let infos = until_all(&http, &devices, name, |i| {
            follow(i).desired_version.as_deref() == Some(n.as_str())
                && follow(i).state == wire::FollowState::Refused
        })
        .await;
        let bad_hash = content_hash(&version.module);
        for i in &infos {
            let f = follow(i);
            let error = f.last_error.as_deref().unwrap_or_default();
            assert!(
                error.starts_with(&format!("version `{n}` refused: ")) && error.contains(says),
                "{name}: wanted {says:?} in {error:?}"
            );
            assert_eq!(f.running_version.as_deref(), Some(n2.as_str()), "{name}");
            assert_eq!(
                i.active.as_ref().map(|a| a.hash.as_str()),
                Some(hash2.as_str()),
                "{name}: still serving version 2"
            );
            assert!(
                !i.modules.contains(&bad_hash),
                "{name}: a refused module is not stored"
            );
        }
        if name == "a bad signature" {
            fleet_page(&site, &prometheus, &targets, &devices[0], &n2, &n).await;
        }
        // Refused once per device, not downloaded again on every poll.
        let path = format!("{MODEL_DIR}/{bad_hash}/{MODULE_FILE}");
        let fetched = downloads(&mlflow, &path);
        assert_eq!(fetched, DEVICES, "{name}: one download per device");
        let checks = |infos: &[wire::DeviceInfo]| -> Vec<u64> {
            infos
                .iter()
                .map(|i| follow(i).last_check.unwrap())
                .collect()
        };
        let first = checks(&infos);
        // Two more polls on every device (they report each in last_check)...
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen < 2 {
            let now = until_all(&http, &devices, "more polls", |_| true).await;
            if checks(&now).iter().zip(&first).all(|(a, b)| a > b) {
                seen += 1;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: the devices stopped polling"
            );
            tokio::time::sleep(Duration::from_millis(1300)).await;
        }
        // ...and still the same downloads.
        assert_eq!(
            downloads(&mlflow, &path),
            fetched,
            "{name}: downloaded again"
        );
        let metrics = http
            .get(format!("{}{}", devices[0].url, wire::paths::METRICS))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(&format!(
                "wasmops_follow_refused_total{{reason=\"{reason}\",group=\"canary\"}} 1"
            )),
            "{name}: {metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "wasmops_follow_info{{model=\"{MODEL}\",alias=\"{ALIAS}\",desired_version=\"{n}\",running_version=\"{n2}\",state=\"refused\",group=\"canary\"}} 1"
            )),
            "{name}: {metrics}"
        );
    }

    // Back to a good version: it works, and the error is gone.
    point(&mlflow, MODEL, ALIAS, &n1).await;
    until_all(&http, &devices, "back on version 1", |i| {
        follow(i).running_version.as_deref() == Some(n1.as_str())
            && follow(i).state == wire::FollowState::InSync
            && follow(i).last_error.is_none()
            && i.active.as_ref().map(|a| a.hash.as_str()) == Some(hash1.as_str())
    })
    .await;

    // Manual activation on a following device: 409, saying what to do instead.
    let r = http
        .post(format!(
            "{}{}",
            devices[1].url,
            wire::paths::activate(&hash2)
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let e: wire::ApiError = r.json().await.unwrap();
    assert_eq!(e.kind, "conflict");
    assert!(
        e.error
            .contains(&format!("follows alias `{ALIAS}` of model `{MODEL}`"))
            && e.error.contains("move the alias"),
        "{}",
        e.error
    );

    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    let failures = load.failures.lock().unwrap().clone();
    assert_eq!(
        load.failed.load(Ordering::Relaxed),
        0,
        "failed requests during the rollouts: {:?}",
        &failures[..failures.len().min(5)]
    );
    let by = load.answered_by.lock().unwrap().clone();
    assert!(
        by.get(&hash1).copied().unwrap_or(0) > 0 && by.get(&hash2).copied().unwrap_or(0) > 0,
        "the load saw both versions: {by:?}"
    );
    assert_eq!(
        by.keys().filter(|h| **h != hash1 && **h != hash2).count(),
        0,
        "only good versions ever answered: {by:?}"
    );
    eprintln!(
        "pull: {} requests, 0 failed, in {:.1} s",
        load.ok.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    drop(devices);
    drop(mlflow);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The dashboard's view of the fleet while every device refuses version `refused` and still
/// runs `running`: the Fleet page from Prometheus, and the Devices page for one device.
async fn fleet_page(
    site: &StaticSite,
    prometheus: &PrometheusServer,
    targets: &[String],
    device: &EdgeProcess,
    running: &str,
    refused: &str,
) {
    prometheus.ready().await;
    // Prometheus has scraped the refusal and enough traffic for a rate.
    prometheus
        .query_until("wasmops_follow_info", Duration::from_secs(30), |r| {
            r.as_array().is_some_and(|a| {
                a.len() == DEVICES && a.iter().all(|s| s["metric"]["desired_version"] == refused)
            })
        })
        .await;
    prometheus
        .query_until(
            "sum by (instance) (rate(wasmops_predict_requests_total[1m])) > 0",
            Duration::from_secs(30),
            |r| r.as_array().is_some_and(|a| a.len() == DEVICES),
        )
        .await;
    let browser = Browser::start().await;
    browser.open(&site.origin).await;
    browser.go(Page::Fleet).await;
    browser.fill("#prometheus-url", &prometheus.url).await;
    browser.click("#prometheus-save").await;
    let summary = browser
        .wait_text("[data-testid=fleet-summary]", "the fleet", |t| {
            t.starts_with(&format!("{DEVICES} devices reporting"))
        })
        .await;
    assert!(
        summary.ends_with(&format!("{DEVICES} behind their alias")),
        "{summary}"
    );
    let count = browser
        .wait_text(
            &format!(
                "[data-testid=fleet-versions] tr[data-version='{running}'] [data-testid=fleet-version-devices]"
            ),
            "the running version's devices",
            |t| !t.is_empty(),
        )
        .await;
    assert_eq!(
        count.trim(),
        DEVICES.to_string(),
        "devices on version {running}"
    );
    let behind = browser.html("[data-testid=fleet-behind]").await;
    assert_eq!(
        behind
            .matches(&format!("where {MODEL}@{ALIAS} names {refused}"))
            .count(),
        DEVICES,
        "{behind}"
    );
    // Each device by the address Prometheus scrapes (its `instance`), with its group label.
    let table = browser.html("[data-testid=fleet-devices]").await;
    for t in targets {
        assert!(
            table.contains(&format!("data-instance=\"{t}\"")),
            "{t} in the device table: {table}"
        );
    }
    assert_eq!(table.matches("group=canary").count(), 1, "{table}");
    // Every device shows a request rate above zero (the load runs).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let texts = browser
            .client
            .find_all(fantoccini::Locator::Css("[data-testid=fleet-device-rate]"))
            .await
            .unwrap();
        let mut positive = 0;
        for t in texts {
            let text = t.text().await.unwrap_or_default();
            if text
                .trim_end_matches("/s")
                .parse::<f64>()
                .is_ok_and(|r| r > 0.0)
            {
                positive += 1;
            }
        }
        if positive == DEVICES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "device rates never all above zero"
        );
        browser.click("#fleet-refresh").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    browser.screenshot("fleet-page-prometheus").await;

    // The Devices page: what the device follows, and why it refuses.
    browser.go(Page::Devices).await;
    browser
        .devices()
        .add(DeviceForm {
            name: "device-0",
            url: &device.url,
            token: TOKEN,
            window_s: None,
        })
        .await;
    let follows = browser
        .wait_text(
            &DevicesPage::cell(&device.url, "device-follow"),
            "what the device follows",
            |t| t.contains("refused"),
        )
        .await;
    assert!(
        follows.starts_with(&format!(
            "{MODEL}@{ALIAS} wants v{refused}, runs v{running}"
        )) && follows.contains("does not verify with trusted key")
            && follows.contains("group=canary")
            && follows.contains("signed modules only"),
        "{follows}"
    );
    let rollback = browser
        .element(&format!(
            "{} button.rollback",
            DevicesPage::row(&device.url)
        ))
        .await;
    assert!(
        !rollback.is_enabled().await.unwrap(),
        "a following device cannot be rolled back by hand"
    );
    browser.screenshot("devices-page-following").await;
    browser.close().await;
}
