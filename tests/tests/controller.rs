//! The unattended loop as a process (issue 13): the real `wasmops controller`
//! (`$WASMOPS_CLI_BIN`) against a real `mlflow server` and three real `wasmops-edge` devices
//! following MLflow aliases, no browser.
//!
//! Shown: (1) the world shifts; the canary's drift alert (2 of 3 windows) fires the rule, the
//! spec is retrained on the newer dataset, passes the gate, goes to `canary` (the canary runs
//! it, its live labels are judged), then `champion` moves and all three devices run it; the
//! fleet devices never answered with it before the canary step passed; the decision log and
//! the version's tags hold the rule, the gate figures and each check's values. (2) A candidate
//! trained on bad labels is stopped by the gate: the log names the failed threshold and by how
//! much, nothing is registered and no alias moves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use wasmops_e2e::{required_env, temp_dir, EdgeProcess, MlflowServer, PrometheusServer};
use wasmops_shared::wire;

const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../cli/tests/fixtures/signing-key.pem"
);
const TOKEN: &str = "ctl-token";
const MODEL: &str = "iris-ctl";
const WINDOW_S: u64 = 2;
/// Added to every feature of the newer data: far outside the training profile.
const SHIFT: f64 = 3.0;
const LOGISTIC: &str = r#"{"algorithm": {"algorithm": "logistic_regression", "alpha": 1.0, "max_iterations": 100}, "scale": true, "test_fraction": 0.2, "seed": 42}"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn wasmops(args: &[&str]) -> String {
    let bin = required_env("WASMOPS_CLI_BIN");
    let o = Command::new(&bin)
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "wasmops {args:?}\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Iris, shifted by `shift` on every feature, labelled (class index) well or badly.
struct Iris {
    features: Vec<String>,
    target: String,
    rows: Vec<(Vec<f64>, usize)>,
    classes: Vec<String>,
}

fn iris(shift: f64, bad_labels: bool) -> Iris {
    let d = wasmops_trainer::datasets::builtin("iris").unwrap();
    let rows = (0..d.n_rows())
        .map(|i| {
            let x: Vec<f64> = d.row(i).iter().map(|v| v + shift).collect();
            let y = d.y[i] as usize;
            (x, if bad_labels { (y + i) % 3 } else { y })
        })
        .collect();
    Iris {
        features: d.feature_names.clone(),
        target: d.target_name.clone(),
        rows,
        classes: d.class_names.clone(),
    }
}

fn write_csv(path: &Path, shift: f64, bad_labels: bool) {
    let d = iris(shift, bad_labels);
    let mut s = d.features.join(",") + "," + &d.target + "\n";
    for (x, y) in d.rows {
        let x: Vec<String> = x.iter().map(f64::to_string).collect();
        s += &format!("{},{}\n", x.join(","), d.classes[y]);
    }
    std::fs::write(path, s).unwrap();
}

struct Controller(Child, PathBuf);

impl Controller {
    fn start(config: &Path, out: PathBuf) -> Controller {
        let bin = required_env("WASMOPS_CLI_BIN");
        let child = Command::new(&bin)
            .args(["controller", "--config", config.to_str().unwrap()])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Controller(child, out)
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A champion (v1, trained on the old data) behind `champion` and `canary`; one canary device
/// and two fleet devices following them; a newer dataset in the datasets directory; the
/// controller running.
struct Setup {
    dir: PathBuf,
    mlflow: MlflowServer,
    devices: Vec<EdgeProcess>,
    v1_hash: String,
    controller: Option<Controller>,
    log: PathBuf,
    config: PathBuf,
    prometheus: Option<PrometheusServer>,
}

async fn setup(name: &str, bad_labels: bool) -> Setup {
    setup_with(name, bad_labels, false, true).await
}

/// `prometheus`: a real Prometheus scrapes the devices and the plan is judged through it;
/// `start`: the controller runs.
async fn setup_with(name: &str, bad_labels: bool, prometheus: bool, start: bool) -> Setup {
    let dir = temp_dir(name);
    let mlflow = MlflowServer::start(&dir.join("mlflow"));
    let datasets = dir.join("datasets");
    std::fs::create_dir_all(&datasets).unwrap();
    write_csv(&datasets.join("2026-01-01-iris.csv"), 0.0, false);
    let spec = dir.join("spec.json");
    std::fs::write(&spec, LOGISTIC).unwrap();
    let v1 = dir.join("v1");
    wasmops(&[
        "train",
        "--spec",
        spec.to_str().unwrap(),
        "--data",
        datasets.join("2026-01-01-iris.csv").to_str().unwrap(),
        "--out",
        v1.to_str().unwrap(),
    ]);
    let v1_hash =
        wasmops_shared::digest::content_hash(&std::fs::read(v1.join("model.wasm")).unwrap());
    let keys = dir.join("trusted-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("ctl.pem"), wasmops(&["pubkey", "--key", KEY])).unwrap();
    mlflow.ready().await;
    let registered = wasmops(&[
        "register",
        "--tracking-uri",
        &mlflow.url,
        "--model",
        MODEL,
        "--alias",
        "champion",
        "--run-dir",
        v1.to_str().unwrap(),
        "--key",
        KEY,
        "--json",
    ]);
    let registered: Value = serde_json::from_str(&registered).unwrap();
    assert_eq!(registered["version"], "1");
    wasmops(&[
        "alias",
        "--tracking-uri",
        &mlflow.url,
        "--model",
        MODEL,
        "--alias",
        "canary",
        "--version",
        "1",
    ]);

    let devices: Vec<EdgeProcess> = (0..3)
        .map(|i| {
            let (alias, group) = if i == 0 {
                ("canary", "canary")
            } else {
                ("champion", "fleet")
            };
            EdgeProcess::start_with(
                &dir.join(format!("device-{i}")),
                TOKEN,
                "http://localhost",
                "127.0.0.1:0",
                &format!("device-{i}"),
                &[
                    "--trusted-keys".into(),
                    keys.display().to_string(),
                    "--follow".into(),
                    mlflow.url.clone(),
                    "--model".into(),
                    MODEL.into(),
                    "--alias".into(),
                    alias.into(),
                    "--follow-interval".into(),
                    "1".into(),
                    "--label".into(),
                    format!("group={group}"),
                ],
            )
        })
        .collect();
    until_active(&devices, &v1_hash, "v1 on every device").await;

    // The newer dataset version: the shifted world, labelled (well or badly).
    write_csv(
        &datasets.join("2026-02-01-iris-shifted.csv"),
        SHIFT,
        bad_labels,
    );
    let token = dir.join("device-token");
    std::fs::write(&token, TOKEN).unwrap();
    let prometheus = prometheus.then(|| {
        let targets: Vec<String> = devices
            .iter()
            .map(|d| d.url.trim_start_matches("http://").to_string())
            .collect();
        PrometheusServer::start(&dir.join("prometheus"), &targets, TOKEN)
    });
    let prometheus_line = prometheus
        .as_ref()
        .map(|p| format!("prometheus = \"{}\"\n", p.url))
        .unwrap_or_default();
    let log = dir.join("decisions.jsonl");
    let device = |d: &EdgeProcess, group: &str| {
        format!(
            "[[devices]]\nurl = \"{}\"\ntoken_file = \"device-token\"\ngroup = \"{group}\"\nwindow_s = {WINDOW_S}\ncount = 10\n",
            d.url
        )
    };
    let config = format!(
        r#"tracking_uri = "{mlflow}"
model = "{MODEL}"
experiment = "controller"
signing_key = "{KEY}"
spec = "spec.json"
datasets = "datasets"
work_dir = "work"
state_file = "state.json"
decision_log = "decisions.jsonl"
poll_interval_s = 0.5

[gate]
rules = ["accuracy >= 0.8", "accuracy min_absolute_change 0.0"]

[[rules]]
name = "drift-on-canary"
trigger = {{ kind = "drift", group = "canary" }}
cooldown_s = 3600
daily_cap = 2

[plan]
max_failed_checks = 2
{prometheus_line}
[[plan.steps]]
alias = "canary"
group = "canary"
hold_s = 4
checks = [
  {{ metric = "error_rate", threshold = 0.01, min_samples = 20 }},
  {{ metric = "live_accuracy", threshold = 0.8, min_samples = 30 }},
]

[[plan.steps]]
alias = "champion"
group = "fleet"
hold_s = 3
checks = [{{ metric = "error_rate", threshold = 0.01, min_samples = 10 }}]

{}
{}
{}
"#,
        device(&devices[0], "canary"),
        device(&devices[1], "fleet"),
        device(&devices[2], "fleet"),
        mlflow = mlflow.url,
    );
    let config_path = dir.join("controller.toml");
    std::fs::write(&config_path, config).unwrap();
    let controller = start.then(|| Controller::start(&config_path, dir.join("controller.out")));
    Setup {
        dir,
        mlflow,
        devices,
        v1_hash,
        controller,
        log,
        config: config_path,
        prometheus,
    }
}

async fn active(d: &EdgeProcess) -> Option<String> {
    let info: wire::DeviceInfo = reqwest::Client::new()
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

async fn until_active(devices: &[EdgeProcess], hash: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = true;
        for d in devices {
            all &= active(d).await.as_deref() == Some(hash);
        }
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls the decision log until a line satisfies `pred` (deadline 75 s).
async fn until_logged(s: &Setup, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(75);
    loop {
        if let Some(l) = log_lines(&s.log).into_iter().find(&pred) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not in the decision log after 75 s; controller said:\n{}",
            s.controller
                .as_ref()
                .map(Controller::output)
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Shifted rows to every device until stopped: the canary gets 20 rows a call (with their
/// true labels as feedback), the fleet 2 rows a call. Records when each device first
/// answered with each module.
#[derive(Default)]
struct Load {
    first_answer: Mutex<BTreeMap<(usize, String), u64>>,
    failures: Mutex<Vec<String>>,
}

/// `wrong_labels`: the canary's feedback says every prediction's class is the next one.
async fn run_load(
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
    urls: Vec<String>,
    wrong_labels: bool,
    shift: f64,
) {
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let rows = iris(shift, false).rows;
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        for (d, url) in urls.iter().enumerate() {
            let n = if d == 0 { 20 } else { 2 };
            let batch: Vec<&(Vec<f64>, usize)> = (0..n)
                .map(|k| &rows[(i * 7 + k * 13) % rows.len()])
                .collect();
            i += 1;
            let r = http
                .post(format!("{url}{}", wire::paths::PREDICT))
                .bearer_auth(TOKEN)
                .json(&wire::PredictRequest {
                    rows: batch.iter().map(|(x, _)| x.clone()).collect(),
                })
                .send()
                .await;
            let answer = match r {
                Ok(r) if r.status().is_success() => r.json::<wire::PredictResponse>().await.ok(),
                Ok(r) => {
                    load.failures
                        .lock()
                        .unwrap()
                        .push(format!("{url}: {}", r.status()));
                    None
                }
                Err(e) => {
                    load.failures.lock().unwrap().push(format!("{url}: {e}"));
                    None
                }
            };
            let Some(a) = answer else { continue };
            load.first_answer
                .lock()
                .unwrap()
                .entry((d, a.model.clone()))
                .or_insert_with(now_ms);
            if d == 0 {
                let labels: Vec<Value> = batch
                    .iter()
                    .enumerate()
                    .map(|(k, (_, y))| {
                        let label = if wrong_labels { (y + 1) % 3 } else { *y };
                        json!({"id": a.first_id + k as u64, "label": label})
                    })
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

fn start_load(
    s: &Setup,
    wrong_labels: bool,
) -> (Arc<Load>, Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    start_load_shifted(s, wrong_labels, SHIFT)
}

fn start_load_shifted(
    s: &Setup,
    wrong_labels: bool,
    shift: f64,
) -> (Arc<Load>, Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let urls = s.devices.iter().map(|d| d.url.clone()).collect();
    let task = tokio::spawn(run_load(
        load.clone(),
        stop.clone(),
        urls,
        wrong_labels,
        shift,
    ));
    (load, stop, task)
}

fn tag<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v["tags"].as_array()?.iter().find(|t| t["key"] == key)?["value"].as_str()
}

async fn aliases(mlflow: &MlflowServer) -> BTreeMap<String, String> {
    let m = mlflow
        .get(&format!("registered-models/get?name={MODEL}"))
        .await;
    m["registered_model"]["aliases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["alias"].as_str().unwrap().to_string(),
                a["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_on_the_canary_retrains_gates_and_rolls_out_to_every_device() {
    let started = Instant::now();
    let mut s = setup("controller-rollout", false).await;
    let (load, stop, task) = start_load(&s, false);

    let fired = until_logged(&s, "the rule firing", |l| l["event"] == "rule_fired").await;
    assert_eq!(fired["figures"]["rule"], "drift-on-canary", "{fired}");
    let why = fired["reasons"].to_string();
    assert!(
        why.contains("PSI") && why.contains("group canary"),
        "{fired}"
    );

    let gate = until_logged(&s, "the gate", |l| l["event"] == "gate").await;
    assert!(
        gate["what"].as_str().unwrap().starts_with("gate passed"),
        "{gate}"
    );
    let report = &gate["figures"];
    assert_eq!(report["passed"], true, "{gate}");
    let acc = report["candidate_metrics"]["accuracy"].as_f64().unwrap();
    let champion_acc = report["baseline_metrics"]["accuracy"].as_f64().unwrap();
    assert!(
        acc >= 0.8 && acc > champion_acc,
        "candidate {acc}, champion {champion_acc}"
    );

    // The controller dies mid-rollout (canary step holding) and is started again: it resumes
    // from its state file.
    until_logged(&s, "the canary step", |l| {
        l["event"] == "rollout" && l["what"].as_str().unwrap().contains("step 1: canary ->")
    })
    .await;
    s.controller = Some(Controller::start(
        &s.dir.join("controller.toml"),
        s.dir.join("controller-restarted.out"),
    ));
    let resumed = until_logged(&s, "the resume", |l| l["event"] == "resume").await;
    assert!(
        resumed["what"].as_str().unwrap().contains("version 2"),
        "{resumed}"
    );

    let done = until_logged(&s, "the rollout completing", |l| {
        l["event"] == "rollout" && l["figures"]["rollout_state"] == "completed"
    })
    .await;
    let v2 = done["figures"]["version"].as_str().unwrap().to_string();
    assert_eq!(v2, "2");
    let v2_hash = log_lines(&s.log)
        .iter()
        .find(|l| l["event"] == "registered")
        .expect("registered line")["figures"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(v2_hash, s.v1_hash);

    // Every check's values are in the log: the canary's judged on its live labels.
    let lines = log_lines(&s.log);
    let canary_pass = lines
        .iter()
        .find(|l| {
            l["event"] == "rollout"
                && l["what"]
                    .as_str()
                    .unwrap()
                    .contains("step 1 (canary) passed")
        })
        .unwrap_or_else(|| panic!("canary step passed: {lines:#?}"));
    let reasons = canary_pass["reasons"].to_string();
    assert!(reasons.contains("pass: error_rate 0.0000"), "{reasons}");
    assert!(reasons.contains("pass: live_accuracy"), "{reasons}");
    assert!(lines.iter().any(|l| l["event"] == "rollout"
        && l["what"]
            .as_str()
            .unwrap()
            .contains("step 2 (champion) passed")));

    // MLflow: every alias on v2, the decisions as tags on the version.
    let a = aliases(&s.mlflow).await;
    for alias in ["champion", "canary", "challenger"] {
        assert_eq!(
            a.get(alias).map(String::as_str),
            Some("2"),
            "{alias}: {a:?}"
        );
    }
    let mv = s
        .mlflow
        .get(&format!("model-versions/get?name={MODEL}&version=2"))
        .await["model_version"]
        .clone();
    assert_eq!(tag(&mv, "wasmops.rollout.state"), Some("completed"), "{mv}");
    assert!(
        tag(&mv, "wasmops.gate").unwrap().starts_with("passed"),
        "{mv}"
    );
    assert!(
        tag(&mv, "wasmops.rule")
            .unwrap()
            .starts_with("drift-on-canary"),
        "{mv}"
    );

    // Every device runs v2; the fleet never answered with it before the canary step passed.
    until_active(&s.devices, &v2_hash, "v2 on every device").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let first = load.first_answer.lock().unwrap().clone();
    let canary_passed_at = canary_pass["at_ms"].as_u64().unwrap();
    for d in [1, 2] {
        let at = first
            .get(&(d, v2_hash.clone()))
            .unwrap_or_else(|| panic!("device {d} answered with v2: {first:?}"));
        assert!(
            *at >= canary_passed_at,
            "device {d} ran v2 at {at}, before the canary passed at {canary_passed_at}"
        );
    }
    assert!(first.contains_key(&(0, v2_hash.clone())));
    let failures = load.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:?}");
    // The state file holds no rollout any more, and the rule's firing.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(s.dir.join("state.json")).unwrap()).unwrap();
    assert!(state["rollout"].is_null(), "{state}");
    assert_eq!(
        state["rules"]["drift-on-canary"]["fired_ms"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    eprintln!(
        "controller rollout scenario: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_worse_than_the_champion_is_stopped_by_the_gate() {
    let s = setup("controller-gate", true).await;
    let (_load, stop, task) = start_load(&s, false);

    let gate = until_logged(&s, "the gate", |l| l["event"] == "gate").await;
    let what = gate["what"].as_str().unwrap();
    assert!(what.starts_with("gate FAILED"), "{gate}");
    assert!(what.contains("nothing deployed"), "{gate}");
    // Which threshold failed, and by how much.
    let failed: Vec<&Value> = gate["figures"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["passed"] == false)
        .collect();
    assert!(
        failed
            .iter()
            .any(|r| r["rule"] == "accuracy >= 0.8" && r["margin"].as_f64().unwrap() < 0.0),
        "{gate}"
    );
    assert!(gate["reasons"].to_string().contains("FAIL"), "{gate}");

    // Two more polls: nothing registered, no alias moved, every device on v1.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lines = log_lines(&s.log);
    assert!(
        !lines
            .iter()
            .any(|l| l["event"] == "registered" || l["event"] == "rollout"),
        "{lines:#?}"
    );
    let a = aliases(&s.mlflow).await;
    assert_eq!(a.get("champion").map(String::as_str), Some("1"));
    assert_eq!(a.get("canary").map(String::as_str), Some("1"));
    assert!(!a.contains_key("challenger"), "{a:?}");
    let versions = s
        .mlflow
        .get(&format!(
            "model-versions/search?filter=name%3D%27{MODEL}%27"
        ))
        .await;
    assert_eq!(
        versions["model_versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );
    for d in &s.devices {
        assert_eq!(active(d).await.as_deref(), Some(s.v1_hash.as_str()));
    }
    // The rule stays in its cooldown: it is held, not fired again.
    let fired = lines.iter().filter(|l| l["event"] == "rule_fired").count();
    assert_eq!(fired, 1, "{lines:#?}");
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_failing_the_canary_s_live_labels_is_rolled_back() {
    let s = setup("controller-rollback", false).await;
    // The candidate passes the gate, but the canary's labels disagree with it.
    let (load, stop, task) = start_load(&s, true);

    let gate = until_logged(&s, "the gate", |l| l["event"] == "gate").await;
    assert_eq!(gate["figures"]["passed"], true, "{gate}");
    let back = until_logged(&s, "the rollback", |l| {
        l["event"] == "rollout" && l["figures"]["rollout_state"] == "rolled_back"
    })
    .await;
    assert!(
        back["what"]
            .as_str()
            .unwrap()
            .contains("step 1 (canary) failed its checks 2 times"),
        "{back}"
    );
    assert!(
        back["reasons"].to_string().contains("FAIL: live_accuracy"),
        "{back}"
    );
    assert_eq!(
        back["figures"]["actions"],
        json!([{"action": "move_alias", "alias": "canary", "version": "1"}]),
        "{back}"
    );
    let lines = log_lines(&s.log);
    assert!(
        lines.iter().any(|l| l["what"]
            .as_str()
            .unwrap()
            .contains("failed its checks (1 of 2 allowed): holding again")),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l["what"].as_str().unwrap().contains("champion ->")),
        "{lines:#?}"
    );

    // MLflow: canary back on v1, champion never moved; the version says why.
    let a = aliases(&s.mlflow).await;
    assert_eq!(a.get("canary").map(String::as_str), Some("1"), "{a:?}");
    assert_eq!(a.get("champion").map(String::as_str), Some("1"), "{a:?}");
    let mv = s
        .mlflow
        .get(&format!("model-versions/get?name={MODEL}&version=2"))
        .await["model_version"]
        .clone();
    assert_eq!(
        tag(&mv, "wasmops.rollout.state"),
        Some("rolled_back"),
        "{mv}"
    );
    assert!(
        tag(&mv, "wasmops.rollout.last")
            .unwrap()
            .contains("live_accuracy"),
        "{mv}"
    );

    // The canary runs v1 again; the other devices never ran v2.
    until_active(&s.devices, &s.v1_hash, "v1 back on every device").await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let v2_hash = lines
        .iter()
        .find(|l| l["event"] == "registered")
        .expect("registered line")["figures"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let first = load.first_answer.lock().unwrap().clone();
    assert!(first.contains_key(&(0, v2_hash.clone())), "{first:?}");
    for d in [1, 2] {
        assert!(!first.contains_key(&(d, v2_hash.clone())), "{first:?}");
    }
}

/// Trains `spec` on `data` with the CLI and registers it (no alias); returns its version and
/// module hash.
fn train_and_register(s: &Setup, tag: &str, spec: &str, data: &Path) -> (String, String) {
    let spec_path = s.dir.join(format!("spec-{tag}.json"));
    std::fs::write(&spec_path, spec).unwrap();
    let out = s.dir.join(tag);
    wasmops(&[
        "train",
        "--spec",
        spec_path.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let r: Value = serde_json::from_str(&wasmops(&[
        "register",
        "--tracking-uri",
        &s.mlflow.url,
        "--model",
        MODEL,
        "--run-dir",
        out.to_str().unwrap(),
        "--key",
        KEY,
        "--json",
    ]))
    .unwrap();
    (
        r["version"].as_str().unwrap().to_string(),
        r["sha256"].as_str().unwrap().to_string(),
    )
}

/// `wasmops rollout --config ... --version V`: its exit code and what it printed.
async fn rollout(s: &Setup, version: &str) -> (Option<i32>, String) {
    let bin = required_env("WASMOPS_CLI_BIN");
    let config = s.config.clone();
    let version = version.to_string();
    let o = tokio::task::spawn_blocking(move || {
        Command::new(&bin)
            .args([
                "rollout",
                "--config",
                config.to_str().unwrap(),
                "--version",
                &version,
            ])
            .env_remove("MLFLOW_TRACKING_URI")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code(), text)
}

/// `wasmops rollout` with the checks read through a real Prometheus scraping the devices (as
/// for devices behind NAT): a good version completes (exit 0), a version that does badly on
/// the canary's live labels is rolled back (exit 1) and the fleet never runs it. No rule fires
/// (the traffic is the training world: no drift), and the controller's state file is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasmops_rollout_judges_steps_through_prometheus_and_exits_1_on_rollback() {
    let s = setup_with("controller-rollout-cmd", false, true, false).await;
    let prom = s.prometheus.as_ref().unwrap();
    prom.ready().await;
    let old = s.dir.join("datasets").join("2026-01-01-iris.csv");
    let (v2, v2_hash) = train_and_register(&s, "v2", &LOGISTIC.replace("42", "7"), &old);
    let bad = s.dir.join("bad-labels.csv");
    write_csv(&bad, 0.0, true);
    let (v3, v3_hash) = train_and_register(&s, "v3", LOGISTIC, &bad);
    assert_eq!((v2.as_str(), v3.as_str()), ("2", "3"));
    assert_ne!(v2_hash, s.v1_hash);
    let (load, stop, task) = start_load_shifted(&s, false, 0.0);
    prom.query_until(
        "count(wasmops_predict_requests_total{group=\"canary\"} > 0)",
        Duration::from_secs(30),
        |r| r.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;

    let (code, out) = rollout(&s, &v2).await;
    assert_eq!(code, Some(0), "{out}");
    for expected in [
        "step 1 (canary) passed its checks",
        "pass: live_accuracy",
        "step 2 (champion) passed its checks",
        "rollout of version 2: completed",
    ] {
        assert!(out.contains(expected), "`{expected}` not in:\n{out}");
    }
    until_active(&s.devices, &v2_hash, "v2 on every device").await;

    let (code, out) = rollout(&s, &v3).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL: live_accuracy"), "{out}");
    assert!(
        out.contains("step 1 (canary) failed its checks 2 times: rolled back"),
        "{out}"
    );
    assert!(out.contains("rollout of version 3: rolled_back"), "{out}");
    until_active(&s.devices, &v2_hash, "v2 back on every device").await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let first = load.first_answer.lock().unwrap().clone();
    assert!(
        first.contains_key(&(0, v3_hash.clone())),
        "the canary ran v3: {first:?}"
    );
    for d in [1, 2] {
        assert!(!first.contains_key(&(d, v3_hash.clone())), "{first:?}");
    }
    let a = aliases(&s.mlflow).await;
    assert_eq!(a.get("champion").map(String::as_str), Some("2"), "{a:?}");
    assert_eq!(a.get("canary").map(String::as_str), Some("2"), "{a:?}");
    assert!(
        !s.dir.join("state.json").exists(),
        "the state file is the controller's"
    );
}
