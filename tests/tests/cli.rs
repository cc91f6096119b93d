//! The headless `wasmops` binary (`$WASMOPS_CLI_BIN`) against a real `mlflow server`: train,
//! sign, register with an alias, move the alias; everything read back through MLflow's own
//! REST API (the version, its tags and source, the alias, the artifact bytes and signature),
//! and credentials as MLflow's client takes them. And the reproducibility promise: a run
//! trained and compiled in the tab (headless Chromium), given to `wasmops train` as the runs
//! export with the same CSV, gives the same module bytes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use wasmops_e2e::{required_env, temp_dir, Browser, MlflowServer, StaticSite};
use wasmops_shared::digest::content_hash;
use wasmops_shared::signature::TrustedKeys;

const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../cli/tests/fixtures/signing-key.pem"
);

fn wasmops(args: &[&str], env: &[(&str, &str)]) -> Output {
    let bin = required_env("WASMOPS_CLI_BIN");
    let mut c = Command::new(&bin);
    c.args(args);
    for var in [
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
    ] {
        c.env_remove(var);
    }
    c.envs(env.iter().copied());
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
}

fn expect(code: i32, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = wasmops(args, env);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert_eq!(
        o.status.code(),
        Some(code),
        "wasmops {args:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    out + &err
}

/// The built-in iris dataset as a CSV file (class names as labels).
fn iris_csv(dir: &Path) -> PathBuf {
    let d = wasmops_trainer::datasets::builtin("iris").unwrap();
    let mut s = d.feature_names.join(",") + "," + &d.target_name + "\n";
    for i in 0..d.n_rows() {
        let row: Vec<String> = d.row(i).iter().map(f64::to_string).collect();
        s += &format!("{},{}\n", row.join(","), d.class_names[d.y[i] as usize]);
    }
    let path = dir.join("iris.csv");
    std::fs::write(&path, s).unwrap();
    path
}

fn train(dir: &Path, data: &Path, name: &str, spec: &str) -> PathBuf {
    let spec_path = dir.join(format!("{name}.json"));
    std::fs::write(&spec_path, spec).unwrap();
    let out = dir.join(name);
    expect(
        0,
        &[
            "train",
            "--spec",
            spec_path.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    out
}

const LOGISTIC: &str = r#"{"algorithm": {"algorithm": "logistic_regression", "alpha": 1.0, "max_iterations": 100}, "scale": true, "test_fraction": 0.2, "seed": 42}"#;
const TREE: &str = r#"{"algorithm": {"algorithm": "decision_tree", "max_depth": 3}, "scale": false, "test_fraction": 0.2, "seed": 7}"#;

fn tag<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v["tags"].as_array()?.iter().find(|t| t["key"] == key)?["value"].as_str()
}

/// The proxy path of a version's source directory (`mlflow-artifacts:/<exp>/<run>/...`).
fn proxy_path(source: &str) -> &str {
    source
        .strip_prefix("mlflow-artifacts:/")
        .unwrap_or_else(|| panic!("source {source} is not behind the artifact proxy"))
        .trim_start_matches('/')
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_trains_signs_registers_and_moves_the_alias() {
    let dir = temp_dir("cli-register");
    let server = MlflowServer::start(&dir.join("mlflow"));
    let data = iris_csv(&dir);
    let run_dir = train(&dir, &data, "logistic", LOGISTIC);
    let module = std::fs::read(run_dir.join("model.wasm")).unwrap();
    let hash = content_hash(&module);
    let wasm = run_dir.join("model.wasm");
    expect(0, &["sign", "--key", KEY, wasm.to_str().unwrap()], &[]);
    let pem = expect(0, &["pubkey", "--key", KEY], &[]);
    server.ready().await;

    let register = |run_dir: &Path, alias: Option<&str>| {
        let mut args = vec![
            "register",
            "--tracking-uri",
            &server.url,
            "--model",
            "iris",
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--experiment",
            "ci",
            "--json",
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        if let Some(a) = alias {
            args.extend(["--alias".to_string(), a.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = wasmops(&args, &[]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    // The signature `wasmops sign` left beside the module goes up with it.
    let registered = register(&run_dir, Some("challenger"));
    assert_eq!(registered["version"], "1");
    assert_eq!(registered["sha256"], hash.as_str());
    assert!(registered["signed_by"].is_string(), "{registered}");

    // Read back through MLflow's REST API.
    let model = server.get("registered-models/get?name=iris").await;
    let aliases = model["registered_model"]["aliases"].as_array().unwrap();
    assert!(
        aliases
            .iter()
            .any(|a| a["alias"] == "challenger" && a["version"] == "1"),
        "{model}"
    );
    let v = server.get("model-versions/get?name=iris&version=1").await["model_version"].clone();
    assert_eq!(tag(&v, "wasmops.sha256"), Some(hash.as_str()), "{v}");
    assert_eq!(
        tag(&v, "wasmops.size"),
        Some(module.len().to_string().as_str())
    );
    assert_eq!(tag(&v, "wasmops.kind"), Some("logistic_regression"));
    let source = v["source"].as_str().unwrap();
    assert!(source.ends_with(&format!("/model/{hash}")), "{source}");
    let artifact = server
        .artifact(&format!("{}/model.wasm", proxy_path(source)))
        .await;
    assert_eq!(
        content_hash(&artifact),
        hash,
        "the artifact's sha256 is the tag's"
    );
    assert_eq!(artifact, module);
    let signature = server
        .artifact(&format!("{}/model.wasm.sig", proxy_path(source)))
        .await;
    let trusted = TrustedKeys::from_pems([("cli".to_string(), pem.trim())]).unwrap();
    trusted
        .verify(&artifact, Some(std::str::from_utf8(&signature).unwrap()))
        .expect("the uploaded signature verifies with `wasmops pubkey`'s key");

    // The run as the dashboard logs one: params, metrics, dataset, the CLI as its source.
    let run = server
        .get(&format!(
            "runs/get?run_id={}",
            v["run_id"].as_str().unwrap()
        ))
        .await["run"]
        .clone();
    let run_tags = &run["data"];
    assert_eq!(tag(run_tags, "mlflow.source.name"), Some("wasmops cli"));
    let local: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(tag(run_tags, "wasmops.client_id"), local["id"].as_str());
    let params = run["data"]["params"].as_array().unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["key"] == "alpha" && p["value"] == "1"),
        "{params:?}"
    );
    let metrics = run["data"]["metrics"].as_array().unwrap();
    let accuracy = metrics.iter().find(|m| m["key"] == "accuracy").unwrap();
    assert_eq!(
        accuracy["value"].as_f64(),
        local["metrics"]["accuracy"].as_f64()
    );

    // Registering again changes nothing: same version, same run.
    let again = register(&run_dir, None);
    assert_eq!(again["version"], "1");
    assert_eq!(again["run_id"], registered["run_id"]);
    let versions = server
        .get("model-versions/search?filter=name%3D%27iris%27")
        .await;
    assert_eq!(versions["model_versions"].as_array().unwrap().len(), 1);

    // A second model, then the alias moves to it and back.
    let tree_dir = train(&dir, &data, "tree", TREE);
    let second = register(&tree_dir, None);
    assert_eq!(second["version"], "2");
    assert!(second["signed_by"].is_null(), "unsigned: {second}");
    let out = expect(
        0,
        &[
            "alias",
            "--tracking-uri",
            &server.url,
            "--model",
            "iris",
            "--alias",
            "challenger",
            "--version",
            "2",
        ],
        &[],
    );
    assert!(out.contains("challenger: 1 -> 2"), "{out}");
    let model = server.get("registered-models/get?name=iris").await;
    assert!(
        model["registered_model"]["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alias"] == "challenger" && a["version"] == "2"),
        "{model}"
    );
    // A version that does not exist: MLflow's refusal, exit status 2.
    let out = expect(
        2,
        &[
            "alias",
            "--tracking-uri",
            &server.url,
            "--model",
            "iris",
            "--alias",
            "champion",
            "--version",
            "9",
        ],
        &[],
    );
    assert!(out.contains("moving the alias"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_credentials_as_mlflow_takes_them() {
    const PASSWORD: &str = "cli-admin-password";
    let dir = temp_dir("cli-auth");
    let server = MlflowServer::start_with(
        &dir.join("mlflow"),
        MlflowServer::unused_port(),
        Some(PASSWORD),
    );
    let data = iris_csv(&dir);
    let run_dir = train(&dir, &data, "tree", TREE);
    server.ready().await;
    let run_dir = run_dir.to_str().unwrap();
    let args = [
        "register",
        "--tracking-uri",
        &server.url,
        "--model",
        "secured",
        "--run-dir",
        run_dir,
        "--alias",
        "challenger",
    ];

    // No credentials, then wrong ones: refused, saying so, never echoing the password.
    let out = expect(2, &args, &[]);
    assert!(out.contains("HTTP 401"), "{out}");
    let out = expect(
        2,
        &args,
        &[
            ("MLFLOW_TRACKING_USERNAME", "admin"),
            ("MLFLOW_TRACKING_PASSWORD", "wrong-password"),
        ],
    );
    assert!(
        out.contains("refused the credentials") && !out.contains("wrong-password"),
        "{out}"
    );

    // The environment, as MLflow's client reads it.
    let out = expect(
        0,
        &args,
        &[
            ("MLFLOW_TRACKING_USERNAME", "admin"),
            ("MLFLOW_TRACKING_PASSWORD", PASSWORD),
        ],
    );
    assert!(out.contains("registered secured version 1"), "{out}");

    // A credentials file, and the tracking URI from MLFLOW_TRACKING_URI.
    let creds = dir.join("mlflow-credentials");
    std::fs::write(&creds, format!("admin:{PASSWORD}\n")).unwrap();
    let out = expect(
        0,
        &[
            "alias",
            "--credentials",
            creds.to_str().unwrap(),
            "--model",
            "secured",
            "--alias",
            "champion",
            "--version",
            "1",
        ],
        &[("MLFLOW_TRACKING_URI", &server.url)],
    );
    assert!(out.contains("champion: (none) -> 1"), "{out}");
    let bad = dir.join("bad-credentials");
    std::fs::write(&bad, "just-a-token\n").unwrap();
    let out = expect(
        2,
        &[
            "alias",
            "--credentials",
            bad.to_str().unwrap(),
            "--tracking-uri",
            &server.url,
            "--model",
            "secured",
            "--alias",
            "champion",
            "--version",
            "1",
        ],
        &[],
    );
    assert!(
        out.contains("bad-credentials: line 1: expected `user:password` or `Bearer TOKEN`")
            && !out.contains("just-a-token"),
        "{out}"
    );
}

/// The same spec and data give the same module bytes in the tab and in the CLI: a CSV with CRLF
/// line endings imported in the dashboard (a fresh profile per algorithm), trained in its
/// worker and compiled there; then `wasmops train` with the dashboard's runs export as the spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reproduces_the_tabs_module_byte_for_byte() {
    let dir = temp_dir("cli-tab");
    let csv = iris_csv(&dir);
    let crlf = dir.join("iris-crlf.csv");
    std::fs::write(
        &crlf,
        std::fs::read_to_string(&csv).unwrap().replace('\n', "\r\n"),
    )
    .unwrap();
    let site = StaticSite::dashboard();
    let mut results = Vec::new();
    // Gaussian NB and logistic regression failed this on first run: their fits took exp and
    // log from the platform (compiler-builtins on wasm32, glibc natively), whose last bits
    // differ; the trainer now uses the libm crate's on both.
    for algorithm in [
        "decision_tree",
        "random_forest",
        "gaussian_nb",
        "logistic_regression",
        "kmeans",
        "gradient_boosting",
    ] {
        // A fresh browser profile each: one import, one run, one module.
        let browser = Browser::start().await;
        browser.open(&site.origin).await;
        browser.data().choose(&crlf).await;
        browser.data().import().await;
        browser
            .data()
            .notice("the import notice", |t| {
                t.starts_with("imported iris-crlf.csv")
            })
            .await;
        browser.select("#algorithm", algorithm).await;
        browser.train_and_wait().await;
        let tab_hash = browser.compile_newest_run().await;
        let export = browser.export_runs().await;
        let run_id = export["runs"][0]["id"].as_str().unwrap().to_string();
        let spec = dir.join(format!("export-{algorithm}.json"));
        std::fs::write(&spec, export.to_string()).unwrap();
        browser.close().await;
        let out = dir.join(format!("from-cli-{algorithm}"));
        expect(
            0,
            &[
                "train",
                "--spec",
                spec.to_str().unwrap(),
                "--run-id",
                &run_id,
                "--data",
                crlf.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        );
        let module = std::fs::read(out.join("model.wasm")).unwrap();
        results.push((algorithm, content_hash(&module) == tab_hash));
    }
    assert!(results.iter().all(|r| r.1), "{results:?}");
}
