//! The device's state: modules stored content-addressed in the data dir, the active module
//! and its activation history, and the durable telemetry store.
//!
//! Data dir layout:
//! - `modules/<sha256>.wasm`: every accepted module, named only by its hash;
//! - `modules/<sha256>.wasm.sig`: its detached signature, when it came with one
//!   ([`wasmops_shared::signature`]); with trusted keys, every load of a stored module (a
//!   restart, an activation, a rollback) verifies it again under the keys of the day;
//! - `active`: the activation history, one hash per line, the last line being the active
//!   module (written to a temp file, then renamed, so a crash never leaves a half-written
//!   pointer). A restart re-loads and re-verifies the last line (a module that no longer
//!   passes leaves no model active, and is logged); rollback drops it;
//! - `telemetry.sqlite` (+ WAL): see [`crate::telemetry`];
//! - `logs/`: the daemon's rotated log files (written by `main.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use wasmops_shared::digest::{BadHash, ContentHash};
use wasmops_shared::module::ModuleInfo;
use wasmops_shared::signature::{DetachedSignature, SignatureError, TrustedKeys};
use wasmops_shared::wire::{ActiveModel, DeviceInfo, ModuleList, ModuleSummary};

use crate::sandbox::{LoadedModule, Sandbox, SandboxError};
use crate::telemetry::prometheus;
use crate::telemetry::{ResolvedLabel, TelemetryConfig, TelemetryError, TelemetryStore};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Refused before anything was compiled: see [`wasmops_shared::signature`].
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("no module with hash {0} on this device")]
    UnknownModule(String),
    #[error("`{0}` is not a module hash (64 lowercase hex digits)")]
    BadHash(String),
    #[error("no model is active on this device")]
    NoActiveModel,
    #[error("no earlier version to roll back to (activation history: {0})")]
    NothingToRollBack(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error("label {index} (prediction id {id}): {reason}")]
    BadLabel {
        /// Position of the label in the request.
        index: usize,
        id: u64,
        reason: String,
    },
}

pub struct Device {
    name: String,
    data_dir: PathBuf,
    sandbox: Sandbox,
    /// Predict reads this on every call; activation swaps the `Arc` under a short write lock,
    /// so in-flight calls finish on the module they started with.
    active: RwLock<Option<Arc<LoadedModule>>>,
    /// Serializes activation and rollback (history file and pointer change together).
    activation: Mutex<()>,
    /// Parsed (not compiled) modules, for drift against their profiles.
    infos: Mutex<HashMap<String, Arc<ModuleInfo>>>,
    started: Instant,
    /// Registry versions of modules, where known (see [`Device::set_module_version`]).
    versions: Mutex<HashMap<String, String>>,
    pub telemetry: TelemetryStore,
    /// Keys whose signatures this device accepts; empty: any module is accepted.
    trusted: TrustedKeys,
    /// `--label key=value` pairs, shown in `/v1/info` and on the follow metrics.
    labels: BTreeMap<String, String>,
    /// Set when the device follows an alias (`--follow`): manual activation is refused.
    follower: OnceLock<Arc<crate::follow::Shared>>,
}

impl Device {
    /// Opens (creating if needed) a data dir and restores the active module, if any.
    pub fn open(name: String, data_dir: &Path, sandbox: Sandbox) -> Result<Device, DeviceError> {
        Device::open_with(name, data_dir, sandbox, TelemetryConfig::default())
    }

    pub fn open_with(
        name: String,
        data_dir: &Path,
        sandbox: Sandbox,
        telemetry: TelemetryConfig,
    ) -> Result<Device, DeviceError> {
        Device::open_trusting(name, data_dir, sandbox, telemetry, TrustedKeys::default())
    }

    /// Opens a device that runs only modules signed by one of `trusted` (none: any module).
    /// The restored active module is verified under these keys too.
    pub fn open_trusting(
        name: String,
        data_dir: &Path,
        sandbox: Sandbox,
        telemetry: TelemetryConfig,
        trusted: TrustedKeys,
    ) -> Result<Device, DeviceError> {
        std::fs::create_dir_all(data_dir.join("modules"))?;
        let device = Device {
            name,
            data_dir: data_dir.to_path_buf(),
            sandbox,
            active: RwLock::new(None),
            activation: Mutex::new(()),
            infos: Mutex::new(HashMap::new()),
            started: Instant::now(),
            versions: Mutex::new(HashMap::new()),
            telemetry: TelemetryStore::open(data_dir, telemetry)?,
            trusted,
            labels: BTreeMap::new(),
            follower: OnceLock::new(),
        };
        // The active module is checked again as if uploaded: one that this build's loader
        // refuses (or that is gone) leaves the device up with no active model, never down.
        if let Some(hash) = device.history()?.last() {
            match device.load_stored(hash) {
                Ok(loaded) => {
                    tracing::info!(module = %hash, "restored active module");
                    device.swap(Arc::new(loaded));
                }
                Err(e @ DeviceError::Signature(_)) => {
                    tracing::error!(module = %hash, error = %e, "the active module is not signed by a trusted key; no model is active (serving nothing rather than an untrusted module)");
                }
                Err(e) => {
                    tracing::error!(module = %hash, error = %e, "the active module no longer loads; no model is active (activate one, or roll back)");
                }
            }
        }
        Ok(device)
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Verifies a module (static checks, compile, conformance) and stores it. Not activated.
    /// With trusted keys this refuses it: it carries no signature (see [`Device::upload_signed`]).
    pub fn upload(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, DeviceError> {
        self.upload_signed(bytes, None)
    }

    /// Checks a module's detached signature (the JSON document, if any) against the trusted
    /// keys, before anything compiles it. Without trusted keys every module passes. Returns
    /// the id of the key that verified it.
    pub fn verify_signature(
        &self,
        bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<Option<String>, DeviceError> {
        if self.trusted.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.trusted.verify(bytes, signature)?.id.clone()))
    }

    /// The keys this device trusts (empty: it accepts any module).
    pub fn trusted_keys(&self) -> &TrustedKeys {
        &self.trusted
    }

    /// [`Device::upload`] with the module's detached signature: verified first (with trusted
    /// keys), then the module is loaded (static checks, compile, conformance) and stored with
    /// its signature beside it. Not activated.
    pub fn upload_signed(
        &self,
        bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<Arc<LoadedModule>, DeviceError> {
        let key = self.verify_signature(bytes, signature)?;
        let loaded = self.sandbox.load(bytes)?;
        let hash = parse_hash(&loaded.info.hash)?;
        let path = self.module_path(&hash);
        // The signature first: a module file never sits there without the signature it came
        // with. Without trusted keys, a signature is kept only when it is well-formed and
        // names this module (so keys added later can verify it).
        if let Some(sig) = signature {
            let keep = key.is_some()
                || DetachedSignature::parse(sig)
                    .is_ok_and(|d| d.module_sha256.eq_ignore_ascii_case(&loaded.info.hash));
            if keep {
                write_atomic(&self.signature_path(&hash), sig.as_bytes())?;
            }
        }
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        tracing::info!(module = %loaded.info.hash, size = bytes.len(), kind = %loaded.info.card.kind, signed_by = key.as_deref().unwrap_or("-"), "module accepted");
        Ok(Arc::new(loaded))
    }

    /// Makes a stored module the active one; returns the previously active hash.
    pub fn activate(&self, hash: &str) -> Result<Option<String>, DeviceError> {
        let loaded = Arc::new(self.load_stored(hash)?);
        self.activate_loaded(loaded)
    }

    /// Makes a module just loaded by [`Device::upload_signed`] the active one, without
    /// compiling it again; returns the previously active hash.
    pub fn activate_loaded(
        &self,
        loaded: Arc<LoadedModule>,
    ) -> Result<Option<String>, DeviceError> {
        let hash = loaded.info.hash.clone();
        let hash = hash.as_str();
        let _serial = self.activation.lock().unwrap_or_else(|p| p.into_inner());
        let mut history = self.history()?;
        let previous = history.last().cloned();
        if previous.as_deref() != Some(hash) {
            history.push(hash.to_string());
            self.write_history(&history)?;
        }
        self.swap(loaded);
        tracing::info!(module = %hash, previous = ?previous, "module activated");
        Ok(previous)
    }

    /// Re-activates the version that was active before the current one, in one step:
    /// the history file is rewritten atomically, then the pointer is swapped.
    /// Returns `(now_active, rolled_back)`.
    pub fn rollback(&self) -> Result<(String, String), DeviceError> {
        let _serial = self.activation.lock().unwrap_or_else(|p| p.into_inner());
        let mut history = self.history()?;
        if history.len() < 2 {
            return Err(DeviceError::NothingToRollBack(if history.is_empty() {
                "empty".into()
            } else {
                format!("only {}", history[0])
            }));
        }
        let rolled_back = history.pop().expect("len >= 2");
        let target = history.last().expect("len >= 1").clone();
        let loaded = Arc::new(self.load_stored(&target)?);
        self.write_history(&history)?;
        self.swap(loaded);
        tracing::info!(module = %target, rolled_back = %rolled_back, "rolled back");
        Ok((target, rolled_back))
    }

    /// Checks every resolved label against the model that made its prediction (a class index
    /// for a classifier); the first bad label, by its position in the request, is the error.
    pub fn check_labels(&self, labels: &[ResolvedLabel]) -> Result<(), DeviceError> {
        let mut infos: HashMap<&str, Option<Arc<ModuleInfo>>> = HashMap::new();
        for (index, label) in labels.iter().enumerate() {
            // A module no longer stored cannot say its classes: its labels need only be finite.
            let Some(info) = infos
                .entry(label.model.as_ref())
                .or_insert_with(|| self.module_info(&label.model))
            else {
                continue;
            };
            info.card
                .check_label(label.label)
                .map_err(|reason| DeviceError::BadLabel {
                    index,
                    id: label.id,
                    reason,
                })?;
        }
        Ok(())
    }

    fn swap(&self, loaded: Arc<LoadedModule>) {
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = Some(loaded);
    }

    /// Activation history, oldest first; the last entry is the active module.
    fn history(&self) -> Result<Vec<String>, DeviceError> {
        match std::fs::read_to_string(self.data_dir.join("active")) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn write_history(&self, history: &[String]) -> Result<(), DeviceError> {
        // Bounded: the last 100 activations are enough to roll back through.
        let keep = &history[history.len().saturating_sub(100)..];
        let mut text = keep.join("\n");
        text.push('\n');
        Ok(write_atomic(
            &self.data_dir.join("active"),
            text.as_bytes(),
        )?)
    }

    /// Every stored version with its card summary, newest upload first.
    pub fn modules(&self) -> Result<ModuleList, DeviceError> {
        let active = self.active().map(|m| m.info.hash.clone());
        let mut modules = Vec::new();
        for hash in self.stored_hashes()? {
            let path = self.module_path(&hash);
            let meta = std::fs::metadata(&path)?;
            let uploaded_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            let Some(info) = self.module_info(hash.as_str()) else {
                tracing::warn!(module = %hash, "stored module no longer parses; skipped");
                continue;
            };
            modules.push(ModuleSummary {
                active: active.as_deref() == Some(hash.as_str()),
                hash: hash.into(),
                size: meta.len(),
                uploaded_ms,
                kind: info.card.kind.clone(),
                feature_names: info.card.feature_names.clone(),
                classes: info.card.classes.clone(),
                dataset: format!(
                    "{} ({} rows)",
                    info.card.dataset.name, info.card.dataset.n_rows
                ),
                code_version: info.card.code_version.clone(),
            });
        }
        modules.sort_by(|a, b| b.uploaded_ms.cmp(&a.uploaded_ms).then(a.hash.cmp(&b.hash)));
        Ok(ModuleList { active, modules })
    }

    /// The parsed sections of a stored module (cached), for drift and listings.
    pub fn module_info(&self, hash: &str) -> Option<Arc<ModuleInfo>> {
        if let Some(info) = self
            .infos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
        {
            return Some(info.clone());
        }
        let bytes = std::fs::read(self.module_path(&ContentHash::parse(hash).ok()?)).ok()?;
        let info = Arc::new(ModuleInfo::parse(&bytes).ok()?);
        self.infos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash.to_string(), info.clone());
        Some(info)
    }

    fn stored_hashes(&self) -> Result<Vec<ContentHash>, DeviceError> {
        let mut modules = Vec::new();
        for entry in std::fs::read_dir(self.data_dir.join("modules"))? {
            let name = entry?.file_name().to_string_lossy().to_string();
            if let Some(hash) = name.strip_suffix(".wasm") {
                modules.extend(ContentHash::parse(hash).ok());
            }
        }
        modules.sort();
        Ok(modules)
    }

    pub fn active(&self) -> Option<Arc<LoadedModule>> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets the device's labels (before it serves).
    pub fn set_labels(&mut self, labels: BTreeMap<String, String>) {
        self.labels = labels;
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// Marks the device as following an alias; returns false if it already follows one.
    pub fn attach_follower(&self, follower: Arc<crate::follow::Shared>) -> bool {
        self.follower.set(follower).is_ok()
    }

    /// What the device follows, if it follows an alias.
    pub fn follower(&self) -> Option<&Arc<crate::follow::Shared>> {
        self.follower.get()
    }

    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Records the registry's version of a module (e.g. the MLflow model version it was
    /// pulled as): the `version` label of `wasmops_active_module_info` from then on.
    pub fn set_module_version(&self, hash: &str, version: &str) {
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash.to_string(), version.to_string());
    }

    /// The version label of a module ([`prometheus::module_version`]).
    pub fn module_version(&self, hash: &str) -> String {
        let versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        prometheus::module_version(hash, versions.get(hash).map(String::as_str))
    }

    /// What `/metrics` and remote write show: the durable counters, the active module, and
    /// its drift and live accuracy over the trailing [`prometheus::DRIFT_WINDOW_S`].
    /// Blocking (SQLite reads).
    pub fn metrics(&self, unauthorized: u64) -> Result<prometheus::Inputs, DeviceError> {
        let counters = self.telemetry.counters()?;
        let active = self.active();
        let since = crate::telemetry::now_ms().saturating_sub(prometheus::DRIFT_WINDOW_S * 1000);
        let live = match &active {
            Some(m) => Some(self.telemetry.live_quality(&m.info, since)?),
            None => None,
        };
        Ok(prometheus::Inputs {
            counters,
            active: active.map(|m| prometheus::ActiveModule {
                hash: m.info.hash.clone(),
                kind: m.info.card.kind.clone(),
                version: self.module_version(&m.info.hash),
            }),
            live,
            uptime_s: self.uptime_s(),
            unauthorized,
        })
    }

    pub fn info(&self) -> Result<DeviceInfo, DeviceError> {
        let modules = self
            .stored_hashes()?
            .into_iter()
            .map(String::from)
            .collect();
        Ok(DeviceInfo {
            name: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            active: self.active().map(|m| ActiveModel {
                hash: m.info.hash.clone(),
                kind: m.info.card.kind.clone(),
                feature_names: m.info.card.feature_names.clone(),
                classes: m.info.card.classes.clone(),
                outputs: m.info.card.outputs.clone(),
            }),
            modules,
            follow: self.follower().map(|f| f.status()),
            labels: self.labels.clone(),
            trusted_keys: self.trusted.keys().iter().map(|k| k.id.clone()).collect(),
        })
    }

    /// A stored module, verified under today's keys (its stored signature) and loaded.
    fn load_stored(&self, hash: &str) -> Result<LoadedModule, DeviceError> {
        let hash = parse_hash(hash)?;
        let path = self.module_path(&hash);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DeviceError::UnknownModule(hash.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        if !self.trusted.is_empty() {
            let signature = match std::fs::read(self.signature_path(&hash)) {
                Ok(sig) => Some(String::from_utf8_lossy(&sig).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            self.verify_signature(&bytes, signature.as_deref())?;
        }
        Ok(self.sandbox.load(&bytes)?)
    }

    /// The only way a path is built from request data: a [`ContentHash`] (checked when it
    /// was made), never a name.
    fn module_path(&self, hash: &ContentHash) -> PathBuf {
        self.data_dir.join("modules").join(format!("{hash}.wasm"))
    }

    fn signature_path(&self, hash: &ContentHash) -> PathBuf {
        self.data_dir
            .join("modules")
            .join(format!("{hash}.wasm.sig"))
    }
}

/// A hash from a request or the data dir, checked before it names a file.
fn parse_hash(hash: &str) -> Result<ContentHash, DeviceError> {
    ContentHash::parse(hash).map_err(|BadHash(shown)| DeviceError::BadHash(shown))
}

/// Writes a file so that readers see either the old or the new content, never a torn one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // A unique temp name: two concurrent uploads of the same module never share a temp file.
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
