//! Versions registered in MLflow exactly as the dashboard registers them (one run per module,
//! the module and its detached signature under the run's `model/<sha256>/`, the version's
//! source that directory, tagged with the module's sha256, size and kind), for tests and
//! benchmarks that need a registry without a browser.

use std::collections::BTreeMap;

use serde_json::json;
use wasmops_shared::abi;
use wasmops_shared::compiler::{compile, CompileInput};
use wasmops_shared::digest::content_hash;
use wasmops_shared::mlflow::{KIND_TAG, MODEL_DIR, MODULE_FILE, SHA256_TAG, SIZE_TAG};
use wasmops_shared::module::{DatasetRef, ModelCard, ModuleInfo};
use wasmops_shared::profile::Profile;
use wasmops_shared::signature::{self, ModuleSigner};
use wasmops_trainer::{datasets, train, Algorithm, TrainSpec};

use crate::MlflowServer;

/// The test signing key (its public half is `edge-runtime/tests/fixtures/keys/a.pem`).
pub fn signer() -> ModuleSigner {
    ModuleSigner::from_pem(
        "a.key.pem",
        include_str!("../../edge-runtime/tests/fixtures/keys/a.key.pem"),
    )
    .unwrap()
}

/// A module trained natively on iris, as the dashboard's worker would make it.
pub fn iris_module(algorithm: Algorithm, seed: u64) -> Vec<u8> {
    let data = datasets::builtin("iris").unwrap();
    let spec = TrainSpec {
        algorithm,
        scale: true,
        test_fraction: 0.25,
        seed,
    };
    let t = train(&data, &spec, |_, _| {}).unwrap();
    let card = ModelCard {
        abi_version: abi::ABI_VERSION,
        kind: t.pipeline.model.kind().into(),
        feature_names: data.feature_names.clone(),
        target_name: data.target_name.clone(),
        classes: t.class_names.clone(),
        outputs: t.pipeline.output_names(&t.class_names),
        dataset: DatasetRef {
            name: data.name.clone(),
            hash: data.content_hash(),
            n_rows: data.n_rows(),
        },
        params: BTreeMap::new(),
        metrics: t.metrics.clone(),
        code_version: "e2e-pull".into(),
    };
    let profile = Profile::from_rows(&data.feature_names, &t.train_x);
    compile(&CompileInput {
        pipeline: &t.pipeline,
        card: &card,
        profile: &profile,
        conformance_rows: &t.test_x,
    })
    .unwrap()
}

/// What the dashboard registers for one module.
pub struct Version {
    pub module: Vec<u8>,
    /// The `model.wasm.sig` artifact's bytes.
    pub signature: String,
    /// The `wasmops.sha256` tag (normally the module's sha256).
    pub sha256_tag: String,
}

impl Version {
    /// Signed with [`signer`], tagged with its own sha256.
    pub fn signed(module: Vec<u8>) -> Version {
        Version {
            signature: signer().sign(&module).to_json(),
            sha256_tag: content_hash(&module),
            module,
        }
    }
}

/// Registers `v` as the dashboard does: a run, the module and its signature under the run's
/// `model/<sha256>/`, a model version with that source and the wasmops tags. Returns the
/// version number.
pub async fn register(
    mlflow: &MlflowServer,
    experiment_id: &str,
    model: &str,
    v: &Version,
) -> String {
    let run = mlflow
        .post(
            "runs/create",
            json!({"experiment_id": experiment_id, "run_name": "pull", "start_time": 1}),
        )
        .await;
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let artifact_uri = run["run"]["info"]["artifact_uri"].as_str().unwrap();
    let under_proxy = artifact_uri
        .strip_prefix("mlflow-artifacts:/")
        .unwrap_or_else(|| panic!("artifact URI behind the proxy: {artifact_uri}"))
        .trim_start_matches('/');
    let sha = content_hash(&v.module);
    let dir = format!("{MODEL_DIR}/{sha}");
    mlflow
        .put_artifact(
            &format!("{under_proxy}/{dir}/{MODULE_FILE}"),
            v.module.clone(),
        )
        .await;
    mlflow
        .put_artifact(
            &format!("{under_proxy}/{dir}/{}", signature::ARTIFACT),
            v.signature.clone().into_bytes(),
        )
        .await;
    let kind = ModuleInfo::parse(&v.module)
        .map(|i| i.card.kind.clone())
        .unwrap_or_else(|_| "?".into());
    let mv = mlflow
        .post(
            "model-versions/create",
            json!({
                "name": model,
                "source": format!("{artifact_uri}/{dir}"),
                "run_id": run_id,
                "tags": [
                    {"key": SHA256_TAG, "value": v.sha256_tag},
                    {"key": SIZE_TAG, "value": v.module.len().to_string()},
                    {"key": KIND_TAG, "value": kind},
                ],
            }),
        )
        .await;
    mv["model_version"]["version"].as_str().unwrap().to_string()
}

/// Creates `experiment` and the registered `model` on a fresh server; the experiment's id.
pub async fn create(mlflow: &MlflowServer, experiment: &str, model: &str) -> String {
    let id = mlflow
        .post("experiments/create", json!({"name": experiment}))
        .await["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    mlflow
        .post("registered-models/create", json!({"name": model}))
        .await;
    id
}

/// Points `alias` of `model` at `version`.
pub async fn point(mlflow: &MlflowServer, model: &str, alias: &str, version: &str) {
    mlflow
        .post(
            "registered-models/alias",
            json!({"name": model, "alias": alias, "version": version}),
        )
        .await;
}
