//! The `wasmops` binary as a user (or CI) runs it: train, gate, sign, pubkey, with real files,
//! exit statuses and messages. (register and alias run against a real MLflow server in the
//! e2e suite, `tests/tests/cli.rs`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wasmops_shared::dataset::Dataset;
use wasmops_shared::signature::{DetachedSignature, TrustedKeys};
use wasmops_trainer::run::Run;

const BIN: &str = env!("CARGO_BIN_EXE_wasmops");
const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/signing-key.pem"
);

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wasmops-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wasmops(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run wasmops")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs and expects exit status `code`; returns stdout and stderr.
fn expect(code: i32, args: &[&str]) -> (String, String) {
    let o = wasmops(args);
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "wasmops {args:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    (out, err)
}

/// A dataset as a CSV file with a header; class labels as their names.
fn write_csv(path: &Path, d: &Dataset) {
    let mut s = d.feature_names.join(",") + "," + &d.target_name + "\n";
    for i in 0..d.n_rows() {
        let row: Vec<String> = d.row(i).iter().map(f64::to_string).collect();
        let label = if d.class_names.is_empty() {
            d.y[i].to_string()
        } else {
            d.class_names[d.y[i] as usize].clone()
        };
        s += &format!("{},{label}\n", row.join(","));
    }
    std::fs::write(path, s).unwrap();
}

fn iris(dir: &Path) -> PathBuf {
    let path = dir.join("iris.csv");
    write_csv(&path, &wasmops_trainer::datasets::builtin("iris").unwrap());
    path
}

fn spec(dir: &Path, name: &str, json: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    path
}

const LOGISTIC: &str = r#"{"algorithm": {"algorithm": "logistic_regression", "alpha": 1.0, "max_iterations": 100}, "scale": true, "test_fraction": 0.2, "seed": 42}"#;
const STUMP: &str = r#"{"algorithm": {"algorithm": "decision_tree", "max_depth": 1}, "scale": false, "test_fraction": 0.2, "seed": 42}"#;

fn train(dir: &Path, spec: &Path, data: &Path, out: &str) -> (PathBuf, Vec<u8>, Run) {
    let out = dir.join(out);
    expect(
        0,
        &[
            "train",
            "--spec",
            spec.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let module = std::fs::read(out.join("model.wasm")).unwrap();
    let run: Run =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    (out, module, run)
}

#[test]
fn training_the_same_spec_twice_gives_the_same_module_bytes() {
    let d = dir("twice");
    let data = iris(&d);
    let spec = spec(&d, "spec.json", LOGISTIC);
    let (_, first, run) = train(&d, &spec, &data, "a");
    let (_, second, run2) = train(&d, &spec, &data, "b");
    assert_eq!(
        first, second,
        "two trainings of one spec gave different modules"
    );
    assert_ne!(run.id, run2.id, "each training is a run of its own");
    // The run record is the dashboard's: the module is its compile, byte for byte.
    assert_eq!(run.compile().unwrap(), first);
    // Named as the dashboard names an import (the file's name), hashed as it hashes one.
    assert_eq!(run.dataset.name, "iris.csv");
    let table =
        wasmops_trainer::csv_import::read("iris.csv", &std::fs::read_to_string(&data).unwrap())
            .unwrap();
    let prepared = table.prepare(table.default_target().unwrap()).unwrap();
    assert_eq!(run.dataset.hash, prepared.dataset.content_hash());
    // Params as the dashboard's store keeps them (whole numbers as integers).
    assert_eq!(run.params["alpha"].to_string(), "1");
    assert_eq!(run.code_version, wasmops_trainer::run::CODE_VERSION);
    assert!(run.metrics["accuracy"] > 0.8, "{:?}", run.metrics);
    assert!(
        !run.metric_steps.is_empty(),
        "logistic regression records its curve"
    );
    let info = wasmops_shared::module::ModuleInfo::parse(&first).unwrap();
    assert_eq!(info.card.dataset.name, "iris.csv");
}

#[test]
fn a_run_record_or_runs_export_as_spec_gives_the_same_module() {
    let d = dir("record");
    let data = iris(&d);
    let spec_path = spec(&d, "spec.json", LOGISTIC);
    let (out, module, run) = train(&d, &spec_path, &data, "a");
    // The run record itself.
    let (_, again, _) = train(&d, &out.join("run.json"), &data, "b");
    assert_eq!(again, module);
    // The dashboard's runs export, with the dataset renamed there: the card says the run's name.
    let mut renamed = run.clone();
    renamed.dataset.name = "flowers".into();
    let bundle = wasmops_trainer::run::Bundle::new(vec![renamed.clone()]);
    let export = spec(
        &d,
        "wasmops-runs.json",
        &serde_json::to_string(&bundle).unwrap(),
    );
    let (_, from_export, r) = train(&d, &export, &data, "c");
    assert_eq!(r.dataset.name, "flowers");
    assert_eq!(from_export, renamed.compile().unwrap());
    // Flat params, as MLflow logs them.
    let params = spec(
        &d,
        "params.json",
        &serde_json::to_string(&run.params).unwrap(),
    );
    let (_, from_params, _) = train(&d, &params, &data, "d");
    assert_eq!(from_params, module);
    // Two runs: one must be chosen.
    let mut other = run.clone();
    other.id = "run-2".into();
    let two = spec(
        &d,
        "two.json",
        &serde_json::to_string(&wasmops_trainer::run::Bundle::new(vec![run.clone(), other]))
            .unwrap(),
    );
    let (_, err) = expect(
        2,
        &[
            "train",
            "--spec",
            two.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            d.join("e").to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("holds 2 runs") && err.contains("--run-id"),
        "{err}"
    );
    let (_, from_two, _) = {
        let out = d.join("f");
        expect(
            0,
            &[
                "train",
                "--spec",
                two.to_str().unwrap(),
                "--run-id",
                &run.id,
                "--data",
                data.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        (
            out.clone(),
            std::fs::read(out.join("model.wasm")).unwrap(),
            (),
        )
    };
    assert_eq!(from_two, module);
}

#[test]
fn bad_input_is_named_with_its_file_and_line() {
    let d = dir("bad");
    let data = d.join("bad.csv");
    std::fs::write(
        &data,
        "a,b,y\n1,2,0\n3,oops,1\n5,6,0\n7,8,1\n9,10,0\n11,12,1\n13,14,0\n",
    )
    .unwrap();
    let spec_path = spec(&d, "spec.json", STUMP);
    let out = d.join("out");
    let args = [
        "train",
        "--spec",
        spec_path.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let (_, err) = expect(2, &args);
    assert!(
        err.contains("bad.csv: line 3, column `b`: `oops` is not a finite number"),
        "{err}"
    );
    assert!(err.contains("--skip-bad-rows"), "{err}");
    let (_, err) = expect(0, &[&args[..], &["--skip-bad-rows"]].concat());
    assert!(err.contains("skipped 1 bad rows"), "{err}");

    // A spec that is not one, and one with a bad hyperparameter.
    let not_spec = spec(&d, "nope.json", r#"{"hello": 1}"#);
    let (_, err) = expect(
        2,
        &[
            "train",
            "--spec",
            not_spec.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            d.join("x").to_str().unwrap(),
        ],
    );
    assert!(err.contains("nope.json: neither a spec"), "{err}");
    let broken = spec(&d, "broken.json", "{\"algorithm\": ");
    let (_, err) = expect(
        2,
        &[
            "train",
            "--spec",
            broken.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            d.join("x").to_str().unwrap(),
        ],
    );
    assert!(err.contains("broken.json: not JSON"), "{err}");
    let huge_seed = spec(
        &d,
        "seed.json",
        r#"{"algorithm": {"algorithm": "gaussian_nb"}, "scale": false, "test_fraction": 0.2, "seed": 9007199254740992}"#,
    );
    let (_, err) = expect(
        2,
        &[
            "train",
            "--spec",
            huge_seed.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            d.join("x").to_str().unwrap(),
            "--skip-bad-rows",
        ],
    );
    assert!(err.contains("seed: 9007199254740992 is too large"), "{err}");
    let (_, err) = expect(
        2,
        &[
            "train",
            "--spec",
            spec_path.to_str().unwrap(),
            "--data",
            d.join("missing.csv").to_str().unwrap(),
            "--out",
            d.join("x").to_str().unwrap(),
        ],
    );
    assert!(err.contains("missing.csv"), "{err}");
}

#[test]
fn the_gate_passes_fails_and_reports_each_rule() {
    let d = dir("gate");
    let data = iris(&d);
    let (good_dir, _, good) = train(&d, &spec(&d, "good.json", LOGISTIC), &data, "good");
    let (weak_dir, _, _) = train(&d, &spec(&d, "weak.json", STUMP), &data, "weak");
    let good_wasm = good_dir.join("model.wasm");
    let weak_wasm = weak_dir.join("model.wasm");
    let gate = |candidate: &Path, baseline: &Path, rules: &[&str], json: bool| {
        let mut a = vec![
            "gate".to_string(),
            "--candidate".into(),
            candidate.display().to_string(),
            "--baseline".into(),
            baseline.display().to_string(),
            "--data".into(),
            data.display().to_string(),
        ];
        for r in rules {
            a.push("--rule".into());
            a.push(r.to_string());
        }
        if json {
            a.push("--json".into());
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        wasmops(&a)
    };
    let rules = ["accuracy >= 0.9", "accuracy min_absolute_change 0.0"];

    let o = gate(&good_wasm, &weak_wasm, &rules, false);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("PASS  accuracy >= 0.9"), "{out}");
    assert!(
        out.contains("PASS  accuracy min_absolute_change 0.0"),
        "{out}"
    );
    assert!(out.contains("gate passed: 2 rules"), "{out}");

    // The weak model against the good one: both rules fail, each says by how much.
    let o = gate(&weak_wasm, &good_wasm, &rules, false);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("FAIL  accuracy >= 0.9"), "{out}");
    assert!(
        out.contains("FAIL  accuracy min_absolute_change 0.0"),
        "{out}"
    );
    assert!(out.contains("is not >= 0.9 (the threshold)"), "{out}");
    assert!(out.contains("gate FAILED: 2 of 2 rules"), "{out}");

    let o = gate(&weak_wasm, &good_wasm, &rules, true);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["passed"], false);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["rule"], "accuracy min_absolute_change 0.0");
    let (c, b) = (
        results[1]["candidate"].as_f64().unwrap(),
        results[1]["baseline"].as_f64().unwrap(),
    );
    assert!(c < b, "{report}");
    assert_eq!(results[1]["margin"].as_f64().unwrap(), c - b);
    assert_eq!(report["candidate"]["rows"], 150);

    // The baseline's figure is what its module computes: the reference (bit for bit the
    // module's outputs) on the same rows gives the same accuracy.
    let table =
        wasmops_trainer::csv_import::read("iris.csv", &std::fs::read_to_string(&data).unwrap())
            .unwrap();
    let wasmops_trainer::csv_import::ModelRows { x, y, .. } = table
        .rows_for(&good.feature_names, &good.target_name, &good.class_names)
        .unwrap();
    let outputs = wasmops_shared::reference::predict(&good.pipeline, &x);
    let expected = wasmops_shared::metrics::evaluate(&good.pipeline, &x, &outputs, &y)["accuracy"];
    assert_eq!(b, expected);

    // Usage and input errors: exit status 2, naming the rule or the file.
    let o = gate(&good_wasm, &weak_wasm, &["accuracy > 0.9"], false);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("rule 1 `accuracy > 0.9`: `>`: thresholds are inclusive"),
        "{:?}",
        text(&o)
    );
    let o = gate(
        &good_wasm,
        &weak_wasm,
        &["accuracy >= 0.5", "mse <= 0.5"],
        false,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("no model has a metric `mse`"),
        "{:?}",
        text(&o)
    );
    let o = gate(&good_wasm, &d.join("nothing.wasm"), &rules, false);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("nothing.wasm"), "{:?}", text(&o));
    let not_a_module = d.join("not.wasm");
    std::fs::write(&not_a_module, b"hello").unwrap();
    let o = gate(&not_a_module, &weak_wasm, &rules, false);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("not.wasm"), "{:?}", text(&o));
    let o = wasmops(&["gate", "--candidate", "a.wasm"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "clap's usage errors are status 2 too"
    );
}

#[test]
fn sign_writes_a_signature_the_public_key_verifies() {
    let d = dir("sign");
    let data = iris(&d);
    let (out, module, _) = train(&d, &spec(&d, "spec.json", STUMP), &data, "a");
    let wasm = out.join("model.wasm");
    let (stdout, _) = expect(0, &["sign", "--key", KEY, wasm.to_str().unwrap()]);
    assert!(stdout.contains("model.wasm.sig"), "{stdout}");
    let sig_text = std::fs::read_to_string(out.join("model.wasm.sig")).unwrap();
    let sig = DetachedSignature::parse(&sig_text).unwrap();
    assert_eq!(
        sig.module_sha256,
        wasmops_shared::digest::content_hash(&module)
    );
    let (pem, _) = expect(0, &["pubkey", "--key", KEY]);
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let trusted = TrustedKeys::from_pems([("cli".to_string(), pem.as_str())]).unwrap();
    assert_eq!(
        trusted.verify(&module, Some(&sig_text)).unwrap().id,
        sig.key_id
    );
    // The signature is of these bytes only.
    let mut altered = module.clone();
    *altered.last_mut().unwrap() ^= 1;
    assert!(trusted.verify(&altered, Some(&sig_text)).is_err());
    // A file that is no key.
    let (_, err) = expect(2, &["pubkey", "--key", data.to_str().unwrap()]);
    assert!(err.contains("iris.csv: not a P-256 private key"), "{err}");
}

/// A retrain that fails (here: the datasets directory holds no CSV yet) must not hold the
/// rule's cooldown: the next poll fires the rule again; the failures count against the daily
/// cap, which then holds it. (Before the fix the first failed firing held the cooldown for an
/// hour and the rule never retried.) No MLflow and no device are reached: both are unused
/// addresses, and the controller logs the devices as unreachable and carries on.
#[test]
fn a_failed_retrain_keeps_no_cooldown_and_retries_at_the_next_poll() {
    let d = dir("ctl-retry");
    std::fs::create_dir_all(d.join("datasets")).unwrap();
    spec(
        &d,
        "spec.json",
        r#"{"algorithm": {"algorithm": "gaussian_nb"}, "scale": false, "test_fraction": 0.2, "seed": 1}"#,
    );
    let config = format!(
        r#"tracking_uri = "http://127.0.0.1:9"
model = "m"
signing_key = "{KEY}"
spec = "spec.json"
datasets = "datasets"
work_dir = "work"
state_file = "state.json"
decision_log = "decisions.jsonl"

[gate]
rules = ["accuracy >= 0.8"]

[[rules]]
name = "hourly"
trigger = {{ kind = "schedule", every_s = 1 }}
cooldown_s = 3600
daily_cap = 2

[plan]
max_failed_checks = 1

[[plan.steps]]
alias = "champion"
group = "fleet"
hold_s = 1

[[devices]]
url = "http://127.0.0.1:9"
group = "fleet"
"#
    );
    let path = d.join("controller.toml");
    std::fs::write(&path, config).unwrap();
    let log = |d: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d.join("decisions.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let events = |d: &Path, event: &str| log(d).iter().filter(|l| l["event"] == event).count();
    let once = || {
        expect(
            0,
            &["controller", "--config", path.to_str().unwrap(), "--once"],
        )
    };
    once();
    assert_eq!(events(&d, "rule_fired"), 1);
    let stopped: Vec<String> = log(&d)
        .iter()
        .filter(|l| l["event"] == "error" && l["what"].as_str().unwrap().contains("stopped"))
        .map(|l| l["what"].as_str().unwrap().to_string())
        .collect();
    assert!(
        stopped[0].contains("rule `hourly`: stopped") && stopped[0].contains("no *.csv"),
        "{stopped:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    once();
    assert_eq!(events(&d, "rule_fired"), 2, "fired again: {:#?}", log(&d));
    assert_eq!(events(&d, "rule_held"), 0, "{:#?}", log(&d));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    once();
    let held: Vec<serde_json::Value> = log(&d)
        .into_iter()
        .filter(|l| l["event"] == "rule_held")
        .collect();
    assert_eq!(held.len(), 1, "{held:#?}");
    assert!(
        held[0]["what"]
            .as_str()
            .unwrap()
            .contains("daily cap reached: it fired 2 times"),
        "{held:#?}"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        state["rules"]["hourly"]["fired_ms"],
        serde_json::json!([]),
        "{state}"
    );
    assert_eq!(
        state["rules"]["hourly"]["failed_ms"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{state}"
    );
}
