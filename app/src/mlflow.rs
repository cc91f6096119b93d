//! The dashboard's MLflow connection: settings, the `fetch` transport, and the sync of runs
//! and of the registry (both ways) through `wasmops_shared::mlflow`.
//!
//! Offline-first: everything lives in IndexedDB; a sync sends what the server has not
//! confirmed (a run is marked synced only when every part of it was), resumes where a cut-off
//! sync stopped, and never makes a second MLflow run for one dashboard run (the client id tag).

use std::collections::{BTreeMap, BTreeSet};

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use wasmops_shared::digest::{content_hash, short};
use wasmops_shared::mlflow::{
    self as api, sync_run, Client, MlflowError, Partial, RunRecord, Synced, Transport,
};
use wasmops_shared::module::ModuleInfo;
use wasmops_shared::signature::{self, DetachedSignature};

use crate::module_runner::BrowserModule;
use crate::registry::{Alias, MlflowRef, ModelVersion};
use crate::run::{param_text, Run, RunSummary};
use crate::state::AppState;
use crate::storage::{Storage, StorageError, StoredModule};
use wasmops_trainer::run::{mlflow_record, ModuleFile};

pub const SETTINGS_KEY: &str = "mlflow";
/// How often the dashboard syncs on its own while connected (and auto sync is on).
pub const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// The connection, as the user set it on the Settings page. Stored in this browser only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub key: String,
    /// Tracking URI, e.g. `http://127.0.0.1:5000`.
    pub uri: String,
    pub auth: Auth,
    pub experiment: String,
    pub auto_sync: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Auth {
    None,
    /// MLflow's basic-auth app (`mlflow server --app-name basic-auth`).
    Basic {
        user: String,
        password: String,
    },
    Bearer {
        token: String,
    },
}

impl Settings {
    /// Checks what the user typed; the URI loses a trailing slash.
    pub fn checked(mut self) -> Result<Settings, String> {
        self.uri = self.uri.trim().trim_end_matches('/').to_string();
        self.experiment = self.experiment.trim().to_string();
        if !(self.uri.starts_with("http://") || self.uri.starts_with("https://"))
            || self.uri.len() <= "https://".len()
        {
            return Err(format!(
                "the tracking URI must start with http:// or https://, got `{}`",
                self.uri
            ));
        }
        let authority = self
            .uri
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("");
        if authority.contains('@') {
            return Err("put the user and password in Credentials, not in the tracking URI (a URI is shown and logged; credentials never are)".into());
        }
        if self.experiment.is_empty() {
            return Err("name an experiment (it is created if it does not exist)".into());
        }
        Ok(self)
    }

    fn authorization(&self) -> Option<String> {
        match &self.auth {
            Auth::None => None,
            Auth::Basic { user, password } => {
                // `btoa` takes one byte per character: encode UTF-8 bytes that way.
                let bytes: String = format!("{user}:{password}")
                    .bytes()
                    .map(char::from)
                    .collect();
                web_sys::window()
                    .and_then(|w| w.btoa(&bytes).ok())
                    .map(|b| format!("Basic {b}"))
            }
            Auth::Bearer { token } => Some(format!("Bearer {token}")),
        }
    }

    /// Where runs go: server and experiment. A change makes every run pending again.
    fn target(&self) -> String {
        format!("{}|{}", self.uri, self.experiment)
    }

    /// The MLflow UI's page of a run.
    pub fn run_url(&self, synced: &Synced) -> String {
        format!(
            "{}/#/experiments/{}/runs/{}",
            self.uri, synced.experiment_id, synced.run_id
        )
    }
}

/// `fetch`, with the connection's credentials.
pub struct Fetch {
    base: String,
    authorization: Option<String>,
}

impl Transport for Fetch {
    async fn send(&self, r: api::Request) -> Result<api::Response, String> {
        use gloo_net::http::Request;
        let url = format!("{}{}", self.base, r.path);
        let mut b = match r.method {
            api::Method::Get => Request::get(&url),
            api::Method::Post => Request::post(&url),
            api::Method::Put => Request::put(&url),
            api::Method::Delete => Request::delete(&url),
            api::Method::Patch => Request::patch(&url),
        };
        if let Some(a) = &self.authorization {
            b = b.header("Authorization", a);
        }
        let request = match r.body {
            api::Body::Empty => b.build(),
            api::Body::Json(text) => b.header("Content-Type", "application/json").body(text),
            api::Body::Bytes(bytes) => b
                .header("Content-Type", "application/octet-stream")
                .body(js_sys::Uint8Array::from(bytes.as_slice())),
        }
        .map_err(|e| e.to_string())?;
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.binary().await.map_err(|e| e.to_string())?;
        Ok(api::Response { status, body })
    }
}

pub fn client(settings: &Settings) -> Client<Fetch> {
    Client::new(Fetch {
        base: settings.uri.clone(),
        authorization: settings.authorization(),
    })
}

/// What the server confirmed of one run, as stored (`mlflow_runs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSync {
    pub id: String,
    /// The run's summary and target as of the last complete sync ([`fingerprint`]); empty
    /// until one completed. (Modules compiled since are caught by `modules`.)
    pub fingerprint: String,
    /// The modules uploaded with it (every module compiled from it), by hash, sorted.
    #[serde(default)]
    pub modules: Vec<String>,
    /// The tracking URI the ids in `synced` belong to: another server knows none of them.
    #[serde(default)]
    pub server: String,
    pub synced: Option<Synced>,
    /// Why the last attempt failed (the server's words), if it did.
    pub error: Option<String>,
    /// Parts MLflow has no place for, and where they went instead.
    #[serde(default)]
    pub warnings: Vec<String>,
    pub at_ms: f64,
}

/// A registered version on the server this dashboard could not take: module missing, hash
/// different from its tag, or conformance failed in this browser. Never deployable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteVersion {
    /// `name/version`.
    pub key: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub reason: String,
    pub at_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SyncState {
    Synced,
    Pending,
    Failed(String),
}

impl SyncState {
    pub fn word(&self) -> &'static str {
        match self {
            SyncState::Synced => "synced",
            SyncState::Pending => "pending",
            SyncState::Failed(_) => "sync failed",
        }
    }
}

/// The summary's fields a sync sends, and where it sends them: equal fingerprints, nothing
/// to send.
pub fn fingerprint(s: &RunSummary, settings: &Settings) -> String {
    let text = serde_json::to_string(&(
        settings.target(),
        &s.name,
        &s.tags,
        &s.notes,
        s.archived,
        &s.status,
        &s.error,
        s.started_at_ms,
        s.duration_ms,
        s.params
            .iter()
            .map(|(k, v)| (k, param_text(v)))
            .collect::<Vec<_>>(),
        &s.metrics,
    ))
    .unwrap_or_default();
    content_hash(text.as_bytes())
}

pub fn state_of(s: &RunSummary, sync: Option<&RunSync>, settings: &Settings) -> SyncState {
    match sync {
        Some(r) if r.error.is_some() => SyncState::Failed(r.error.clone().unwrap_or_default()),
        Some(r) if r.fingerprint == fingerprint(s, settings) => SyncState::Synced,
        _ => SyncState::Pending,
    }
}

/// The run as MLflow should have it, and the parts kept elsewhere than MLflow would put them
/// (`wasmops_trainer::run::mlflow_record`, which the `wasmops` CLI logs runs with too).
pub fn record(
    s: &RunSummary,
    run: Option<&Run>,
    modules: &[&StoredModule],
) -> (RunRecord, Vec<String>) {
    let files: Vec<ModuleFile<'_>> = modules
        .iter()
        .map(|m| ModuleFile {
            hash: &m.hash,
            bytes: &m.bytes,
            signature: m.signature.as_deref(),
        })
        .collect();
    mlflow_record(s, run, &files, "wasmops dashboard")
}

pub use wasmops_trainer::run::module_path;

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub runs_synced: usize,
    pub runs_failed: usize,
    pub runs_pending: usize,
    pub versions_pushed: usize,
    pub versions_pulled: usize,
    pub versions_rejected: usize,
    pub aliases_moved: usize,
    pub conflicts: usize,
    /// Why the sync stopped early (server unreachable, credentials refused), if it did.
    pub stopped: Option<String>,
    /// Versions waiting for something (their run not synced yet), in words.
    pub waiting: Vec<String>,
    pub traffic: api::Traffic,
}

impl Report {
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} runs synced, {} failed, {} pending",
            self.runs_synced, self.runs_failed, self.runs_pending
        )];
        if self.versions_pushed + self.versions_pulled + self.versions_rejected > 0 {
            parts.push(format!(
                "versions: {} sent, {} received, {} refused",
                self.versions_pushed, self.versions_pulled, self.versions_rejected
            ));
        }
        if self.aliases_moved > 0 {
            parts.push(format!("{} aliases moved", self.aliases_moved));
        }
        if self.conflicts > 0 {
            parts.push(format!(
                "{} alias conflicts to resolve (Registry)",
                self.conflicts
            ));
        }
        parts.join("; ")
    }
}

#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("{0}")]
    Server(#[from] MlflowError),
    #[error("{0}")]
    Storage(#[from] StorageError),
}

/// Syncs every run not yet confirmed, then the registry. Progress lands in `state` as it
/// goes (each run's state is stored as soon as the server confirmed it).
pub async fn sync(state: AppState, settings: &Settings) -> Result<Report, String> {
    let storage = Storage::open().await.map_err(|e| e.to_string())?;
    let client = client(settings);
    let mut report = Report::default();
    let result = sync_with(&storage, &client, state, settings, &mut report).await;
    report.traffic = client.traffic();
    match result {
        Ok(()) => Ok(report),
        Err(Stop::Storage(e)) => Err(e.to_string()),
        Err(Stop::Server(e)) => {
            report.stopped = Some(e.to_string());
            Ok(report)
        }
    }
}

async fn sync_with(
    storage: &Storage,
    client: &Client<Fetch>,
    state: AppState,
    settings: &Settings,
    report: &mut Report,
) -> Result<(), Stop> {
    let experiment_id = client.ensure_experiment(&settings.experiment).await?;
    let summaries = storage.run_summaries().await?;
    let mut syncs: BTreeMap<String, RunSync> = storage
        .run_syncs()
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    // Another tab may have synced since this one last looked.
    state.run_syncs.set(syncs.clone());
    // Every module compiled from each run, by run.
    let mut modules: BTreeMap<String, Vec<StoredModule>> = BTreeMap::new();
    for mut m in storage.modules().await? {
        // Modules compiled before this browser signed: signed now, once, so their runs'
        // artifacts carry a signature like every new one.
        if m.signature.is_none() {
            match crate::signing::sign(storage, &m.bytes).await {
                Ok(sig) => {
                    m.signature = Some(sig);
                    storage.put_module(&m).await?;
                }
                Err(e) => crate::logs::warn(
                    "signing",
                    format!("module {} not signed: {e}", short(&m.hash)),
                ),
            }
        }
        modules.entry(m.run_id.clone()).or_default().push(m);
    }
    // What a run's confirmed upload holds: each module, and its signature when it has one.
    let hashes = |id: &str| -> Vec<String> {
        let mut h: Vec<String> = modules
            .get(id)
            .map(|ms| {
                ms.iter()
                    .flat_map(|m| {
                        let sig = m.signature.as_ref().map(|_| format!("{}.sig", m.hash));
                        std::iter::once(m.hash.clone()).chain(sig)
                    })
                    .collect()
            })
            .unwrap_or_default();
        h.sort();
        h
    };
    let confirmed = |s: &RunSummary, r: Option<&RunSync>| {
        r.is_some_and(|r| {
            r.error.is_none()
                && r.server == settings.uri
                && r.fingerprint == fingerprint(s, settings)
                && r.modules == hashes(&s.id)
        })
    };
    let mut todo: Vec<&RunSummary> = summaries
        .iter()
        .filter(|s| !confirmed(s, syncs.get(&s.id)))
        .collect();
    todo.sort_by(|a, b| a.started_at_ms.total_cmp(&b.started_at_ms));
    report.runs_pending = todo.len();
    let known = |id: &str, syncs: &BTreeMap<String, RunSync>| {
        syncs.get(id).is_some_and(|r| {
            r.server == settings.uri
                && r.synced
                    .as_ref()
                    .is_some_and(|s| s.experiment_id == experiment_id)
        })
    };
    // Runs this dashboard has no MLflow id for may exist there already (another browser with
    // the same export, or a sync cut off after the server made the run): find them first.
    let found = if todo.iter().any(|s| !known(&s.id, &syncs)) {
        let since = todo
            .iter()
            .map(|s| s.started_at_ms as i64)
            .min()
            .unwrap_or(0);
        client.runs_by_client_id(&experiment_id, since).await?
    } else {
        BTreeMap::new()
    };
    for s in todo {
        let run = if s.is_finished() {
            storage.run(&s.id).await?
        } else {
            None
        };
        let mine: Vec<&StoredModule> = modules
            .get(&s.id)
            .map(|ms| ms.iter().collect())
            .unwrap_or_default();
        let (record, warnings) = record(s, run.as_ref(), &mine);
        let previous = syncs
            .get(&s.id)
            .filter(|r| r.server == settings.uri)
            .and_then(|r| r.synced.clone())
            .filter(|p| p.experiment_id == experiment_id);
        let result = sync_run(
            client,
            &experiment_id,
            &record,
            previous.clone(),
            found.get(&s.id).map(|r| &r.info),
        )
        .await;
        let mut rec = RunSync {
            id: s.id.clone(),
            fingerprint: String::new(),
            modules: Vec::new(),
            server: settings.uri.clone(),
            synced: None,
            error: None,
            warnings,
            at_ms: js_sys::Date::now(),
        };
        let stop = match result {
            Ok(synced) => {
                rec.fingerprint = fingerprint(s, settings);
                rec.modules = hashes(&s.id);
                rec.synced = Some(synced);
                report.runs_synced += 1;
                report.runs_pending -= 1;
                None
            }
            Err(Partial { synced, error }) => {
                rec.synced = synced.or(previous);
                // Keep the module and fingerprint of the last complete sync off: still to do.
                match error {
                    // Not the run's fault: it stays pending, and the sync stops here.
                    MlflowError::Unreachable(_)
                    | MlflowError::Unauthorized(_)
                    | MlflowError::Forbidden { .. } => Some(error),
                    other => {
                        rec.error = Some(other.to_string());
                        report.runs_failed += 1;
                        report.runs_pending -= 1;
                        crate::logs::warn("mlflow", format!("run {} not synced: {other}", s.name));
                        None
                    }
                }
            }
        };
        storage.put_run_sync(&rec).await?;
        state.run_syncs.update(|all| {
            all.insert(rec.id.clone(), rec.clone());
        });
        syncs.insert(rec.id.clone(), rec);
        if let Some(e) = stop {
            return Err(e.into());
        }
    }
    sync_registry(storage, client, state, settings, &syncs, report).await
}

enum PullFail {
    Stop(MlflowError),
    Refuse(String),
}

async fn sync_registry(
    storage: &Storage,
    client: &Client<Fetch>,
    state: AppState,
    settings: &Settings,
    syncs: &BTreeMap<String, RunSync>,
    report: &mut Report,
) -> Result<(), Stop> {
    let server = settings.uri.as_str();
    let mut versions = storage.versions().await?;
    // References to another server's versions count for nothing here.
    let on_this_server = |v: &ModelVersion| v.mlflow.as_ref().is_some_and(|m| m.server == server);
    // Local versions the server does not have yet.
    for v in versions
        .iter_mut()
        .filter(|v| !on_this_server(v) && !v.run_id.starts_with("mlflow:"))
    {
        let Some(run) = syncs
            .get(&v.run_id)
            .filter(|r| r.server == server)
            .and_then(|r| r.synced.as_ref())
        else {
            report
                .waiting
                .push(format!("{} waits for its run to sync", v.label()));
            continue;
        };
        if run.artifacts.get(&module_path(&v.hash)) != Some(&v.hash) {
            report.waiting.push(format!(
                "{} waits for its module to be uploaded with its run",
                v.label()
            ));
            continue;
        }
        let mv = client
            .register_module(
                &v.model,
                &run.run_id,
                &run.artifact_uri,
                &api::ModuleRef {
                    hash: &v.hash,
                    size: v.size,
                    kind: &v.card.kind,
                },
            )
            .await?;
        v.mlflow = Some(MlflowRef {
            name: mv.name,
            version: mv.version,
            server: server.to_string(),
        });
        storage.put_version(v, None).await?;
        report.versions_pushed += 1;
    }

    // The server's versions and aliases.
    let mut rejected: BTreeMap<String, RemoteVersion> = storage
        .remote_versions()
        .await?
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
    let mut aliases = storage.aliases().await?;
    for model in client.registered_models().await? {
        let remote = client.model_versions(&model.name).await?;
        if !remote.iter().any(|m| m.tag(api::SHA256_TAG).is_some()) {
            continue; // not a wasmops model
        }
        for mv in &remote {
            let Some(sha) = mv.tag(api::SHA256_TAG) else {
                continue;
            };
            if let Some(local) = versions.iter_mut().find(|v| v.hash == sha) {
                // The same bytes under another model name here stay that model's version.
                if local.model == mv.name
                    && !local.mlflow.as_ref().is_some_and(|m| m.server == server)
                {
                    local.mlflow = Some(MlflowRef {
                        name: mv.name.clone(),
                        version: mv.version.clone(),
                        server: server.to_string(),
                    });
                    storage.put_version(local, None).await?;
                }
                continue;
            }
            let key = format!("{}/{}", mv.name, mv.version);
            if rejected.get(&key).is_some_and(|r| r.sha256 == sha) {
                continue;
            }
            let taken = |n: u32| {
                versions
                    .iter()
                    .any(|v| v.model == mv.name && v.version == n)
            };
            let next = versions
                .iter()
                .filter(|v| v.model == mv.name)
                .map(|v| v.version)
                .max()
                .unwrap_or(0)
                + 1;
            let number = mv
                .version
                .parse::<u32>()
                .ok()
                .filter(|n| !taken(*n))
                .unwrap_or(next);
            match pull_version(client, mv, sha, number, server).await {
                Ok((version, module)) => {
                    storage.put_version(&version, Some(&module)).await?;
                    crate::logs::info(
                        "mlflow",
                        format!("received {} from MLflow v{}", version.label(), mv.version),
                    );
                    versions.push(version);
                    report.versions_pulled += 1;
                }
                Err(PullFail::Stop(e)) => return Err(e.into()),
                Err(PullFail::Refuse(reason)) => {
                    crate::logs::warn(
                        "mlflow",
                        format!("MLflow {} v{} refused: {reason}", mv.name, mv.version),
                    );
                    let r = RemoteVersion {
                        key: key.clone(),
                        name: mv.name.clone(),
                        version: mv.version.clone(),
                        sha256: sha.to_string(),
                        reason,
                        at_ms: js_sys::Date::now(),
                    };
                    storage.put_remote_version(&r).await?;
                    rejected.insert(key, r);
                    report.versions_rejected += 1;
                }
            }
        }
        reconcile_aliases(
            storage,
            client,
            server,
            &model,
            &versions,
            &mut aliases,
            report,
        )
        .await?;
    }
    versions.sort_by(|a, b| b.registered_at_ms.total_cmp(&a.registered_at_ms));
    state.versions.set(versions);
    state.aliases.set(aliases);
    state.remote_versions.set(rejected.into_values().collect());
    Ok(())
}

/// Downloads a version's module, checks its hash against the version's tag and its
/// conformance vectors in this browser, and makes it a local version.
async fn pull_version(
    client: &Client<Fetch>,
    mv: &api::ModelVersion,
    sha: &str,
    number: u32,
    server: &str,
) -> Result<(ModelVersion, StoredModule), PullFail> {
    let bytes = match client.get_artifact(&mv.source, api::MODULE_FILE).await {
        Ok(b) => b,
        // Not the version's fault (server down, credentials, a proxy's 5xx): try again later.
        Err(
            e @ (MlflowError::Unreachable(_)
            | MlflowError::Unauthorized(_)
            | MlflowError::Forbidden { .. }),
        ) => return Err(PullFail::Stop(e)),
        Err(e @ MlflowError::Api { status: 500.., .. }) => return Err(PullFail::Stop(e)),
        Err(e) => {
            return Err(PullFail::Refuse(format!(
                "its module `{}` could not be read: {e}",
                api::MODULE_FILE
            )))
        }
    };
    // Its detached signature, when it was signed (a device with trusted keys needs one).
    let signature = match client.get_artifact(&mv.source, signature::ARTIFACT).await {
        Ok(b) => match String::from_utf8(b)
            .ok()
            .and_then(|t| DetachedSignature::parse(&t).ok().map(|_| t))
        {
            Some(t) => Some(t),
            None => {
                return Err(PullFail::Refuse(format!(
                    "its `{}` is not a signature document",
                    signature::ARTIFACT
                )))
            }
        },
        Err(MlflowError::Api { status: 404, .. }) => None,
        Err(
            e @ (MlflowError::Unreachable(_)
            | MlflowError::Unauthorized(_)
            | MlflowError::Forbidden { .. }),
        ) => return Err(PullFail::Stop(e)),
        Err(_) => None,
    };
    let got = content_hash(&bytes);
    if got != sha {
        return Err(PullFail::Refuse(format!(
            "its module's sha256 is {} where the version's tag says {}",
            short(&got),
            short(sha)
        )));
    }
    let info = ModuleInfo::parse(&bytes)
        .map_err(|e| PullFail::Refuse(format!("not a wasmops module: {e}")))?;
    let rows = info.conformance.input_values();
    let module = BrowserModule::instantiate(&bytes)
        .await
        .map_err(PullFail::Refuse)?;
    let outputs = module.predict(&rows).map_err(PullFail::Refuse)?;
    info.conformance.verify(&outputs).map_err(|e| {
        PullFail::Refuse(format!("its conformance vectors fail in this browser: {e}"))
    })?;
    // A deployment checks the device on these rows through JSON, which has no NaN or
    // infinity: the conformance rows made of finite numbers are the check rows.
    let (d, k) = (
        info.card.feature_names.len().max(1),
        module.n_outputs().max(1),
    );
    let (mut check_rows, mut check_outputs) = (Vec::new(), Vec::new());
    for (row, out) in rows.chunks(d).zip(outputs.chunks(k)) {
        if row.iter().all(|v| v.is_finite()) {
            check_rows.extend_from_slice(row);
            check_outputs.extend_from_slice(out);
        }
    }
    let card = info.card.clone().into_inner();
    let metric = ["accuracy", "r2", "inertia"]
        .into_iter()
        .find(|m| card.metrics.contains_key(*m))
        .unwrap_or("accuracy");
    let value = card.metrics.get(metric).copied().unwrap_or(f64::NAN);
    let n_rows = info.conformance.n_rows;
    let version = ModelVersion {
        hash: sha.to_string(),
        model: mv.name.clone(),
        version: number,
        size: bytes.len(),
        registered_at_ms: mv.creation_timestamp as f64,
        run_id: format!("mlflow:{}", mv.run_id),
        run_name: format!("MLflow run {}", short(&mv.run_id)),
        dataset: card.dataset.clone(),
        code_version: card.code_version.clone(),
        profile: info.profile.clone().into_inner(),
        card,
        conformance_rows: n_rows,
        metric: metric.to_string(),
        module_metric: value,
        trained_metric: value,
        check_rows,
        check_outputs,
        mlflow: Some(MlflowRef {
            name: mv.name.clone(),
            version: mv.version.clone(),
            server: server.to_string(),
        }),
        pulled: Some(format!(
            "received from MLflow ({} v{}): sha256 equals its tag; {n_rows} conformance rows bit-identical in this browser",
            mv.name, mv.version
        )),
    };
    let module = StoredModule {
        hash: sha.to_string(),
        run_id: version.run_id.clone(),
        bytes,
        signature,
    };
    Ok((version, module))
}

/// Brings this model's aliases and the server's together: whoever moved since they last
/// agreed wins; both moved is a conflict, shown and left alone.
async fn reconcile_aliases(
    storage: &Storage,
    client: &Client<Fetch>,
    server_uri: &str,
    model: &api::RegisteredModel,
    versions: &[ModelVersion],
    aliases: &mut Vec<Alias>,
    report: &mut Report,
) -> Result<(), Stop> {
    let server: BTreeMap<String, String> = model
        .aliases
        .iter()
        .map(|a| (a.alias.clone(), a.version.clone()))
        .collect();
    let mlflow_of = |hash: &str| {
        versions
            .iter()
            .find(|v| v.hash == hash && v.model == model.name)
            .and_then(|v| v.mlflow.as_ref())
            .filter(|m| m.server == server_uri)
            .map(|m| m.version.clone())
    };
    let by_mlflow = |mv: &str| {
        versions.iter().find(|v| {
            v.model == model.name
                && v.mlflow
                    .as_ref()
                    .is_some_and(|m| m.version == mv && m.server == server_uri)
        })
    };
    let names: BTreeSet<String> = server
        .keys()
        .cloned()
        .chain(
            aliases
                .iter()
                .filter(|a| a.model == model.name)
                .map(|a| a.alias.clone()),
        )
        .collect();
    let now = js_sys::Date::now();
    for name in names {
        let key = format!("{}/{name}", model.name);
        let local = aliases.iter().find(|a| a.key == key).cloned();
        let remote = server.get(&name).cloned();
        let here = local.as_ref().and_then(|a| mlflow_of(&a.hash));
        if local.is_some() && here.is_none() {
            continue; // its version is not on this server yet: it goes first
        }
        let base = local
            .as_ref()
            .filter(|a| a.mlflow_server.as_deref() == Some(server_uri))
            .and_then(|a| a.mlflow_version.clone());
        let updated: Option<Alias> = match (
            &local,
            api::alias_decision(here.as_deref(), base.as_deref(), remote.as_deref()),
        ) {
            (Some(a), api::AliasDecision::Agree) => (a.mlflow_version != here
                || a.mlflow_server.as_deref() != Some(server_uri)
                || a.conflict.is_some())
            .then(|| Alias {
                mlflow_version: here.clone(),
                mlflow_server: Some(server_uri.to_string()),
                conflict: None,
                ..a.clone()
            }),
            (Some(a), api::AliasDecision::Push(m)) => {
                match client.set_alias(&model.name, &name, &m).await {
                    Ok(()) => {
                        report.aliases_moved += 1;
                        Some(Alias {
                            mlflow_version: Some(m),
                            mlflow_server: Some(server_uri.to_string()),
                            conflict: None,
                            ..a.clone()
                        })
                    }
                    Err(
                        e @ (MlflowError::Unreachable(_)
                        | MlflowError::Unauthorized(_)
                        | MlflowError::Forbidden { .. }),
                    ) => return Err(e.into()),
                    // Refused for this alias alone: said on it; the sync goes on.
                    Err(e) => {
                        report.conflicts += 1;
                        Some(Alias {
                            conflict: Some(format!("not moved on the server: {e}")),
                            ..a.clone()
                        })
                    }
                }
            }
            (_, api::AliasDecision::Follow(sv)) => by_mlflow(&sv).map(|v| {
                report.aliases_moved += 1;
                Alias {
                    mlflow_version: Some(sv.clone()),
                    mlflow_server: Some(server_uri.to_string()),
                    conflict: None,
                    ..Alias::point(local.as_ref(), &name, v, now)
                }
            }),
            (Some(a), api::AliasDecision::RemovedOnServer) => {
                let conflict = "removed on the server since they last agreed".to_string();
                report.conflicts += 1;
                (a.conflict.as_ref() != Some(&conflict)).then(|| Alias {
                    conflict: Some(conflict),
                    ..a.clone()
                })
            }
            (Some(a), api::AliasDecision::Conflict { here, server }) => {
                let here_label = versions
                    .iter()
                    .find(|v| v.hash == a.hash)
                    .map(|v| format!("v{}", v.version))
                    .unwrap_or(here);
                let conflict = format!(
                    "moved here (to {here_label}) and on the server (to MLflow v{server}) since they last agreed"
                );
                report.conflicts += 1;
                (a.conflict.as_ref() != Some(&conflict)).then(|| Alias {
                    conflict: Some(conflict),
                    ..a.clone()
                })
            }
            _ => None,
        };
        if let Some(u) = updated {
            storage.put_alias(&u).await?;
            aliases.retain(|a| a.key != u.key);
            aliases.push(u);
        }
    }
    Ok(())
}

/// Starts a sync unless one is running (then that one runs again when it ends, so a change
/// made meanwhile is not left behind). Does nothing while not connected.
pub fn request_sync(state: AppState) {
    let Some(settings) = state.mlflow.get_untracked() else {
        return;
    };
    if state.sync_status.with_untracked(|s| s.busy) {
        state.sync_status.update(|s| s.again = true);
        return;
    }
    state.sync_status.update(|s| {
        s.busy = true;
        s.again = false;
    });
    leptos::task::spawn_local(async move {
        let mut settings = settings;
        loop {
            let owned = settings.clone();
            // One tab at a time: two would both create the runs neither had synced yet.
            let result =
                crate::tabs::exclusive(
                    "wasmops-mlflow-sync",
                    async move { sync(state, &owned).await },
                )
                .await
                .unwrap_or_else(|| Err("the browser's lock for syncing was lost".into()));
            let at = js_sys::Date::now();
            match &result {
                Ok(r) => match &r.stopped {
                    Some(why) => crate::logs::warn("mlflow", format!("sync stopped: {why}")),
                    None => crate::logs::info(
                        "mlflow",
                        format!(
                            "synced with {}: {} ({} requests)",
                            settings.uri,
                            r.summary(),
                            r.traffic.requests
                        ),
                    ),
                },
                Err(e) => crate::logs::error("mlflow", format!("sync failed: {e}")),
            }
            state.sync_status.update(|s| {
                if let Ok(r) = &result {
                    s.session.requests += r.traffic.requests;
                    s.session.bytes_sent += r.traffic.bytes_sent;
                    s.session.bytes_received += r.traffic.bytes_received;
                }
                s.last = Some(result);
                s.at_ms = Some(at);
            });
            let again = state.sync_status.with_untracked(|s| s.again);
            match state.mlflow.get_untracked() {
                Some(now) if again => {
                    settings = now;
                    state.sync_status.update(|s| s.again = false);
                }
                _ => break,
            }
        }
        state.sync_status.update(|s| s.busy = false);
    });
}

/// The Settings page's status line, the runs table's badges and the automatic sync read this.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncStatus {
    pub busy: bool,
    pub again: bool,
    pub last: Option<Result<Report, String>>,
    pub at_ms: Option<f64>,
    /// Every sync since the page loaded.
    pub session: api::Traffic,
}
