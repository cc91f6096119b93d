//! The device's state: modules stored content-addressed in the data dir, the active module,
//! and telemetry counters.
//!
//! Data dir layout:
//! - `modules/<sha256>.wasm`: every accepted module, named only by its hash;
//! - `active`: the hash of the active module (written to a temp file, then renamed, so a crash
//!   never leaves a half-written pointer). A restart re-loads and re-verifies it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use wasmops_shared::wire::{ActiveModel, DeviceInfo, Telemetry};

use crate::sandbox::{LoadedModule, Sandbox, SandboxError};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("no module with hash {0} on this device")]
    UnknownModule(String),
    #[error("`{0}` is not a module hash (64 lowercase hex digits)")]
    BadHash(String),
    #[error("no model is active on this device")]
    NoActiveModel,
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Device {
    name: String,
    data_dir: PathBuf,
    sandbox: Sandbox,
    active: RwLock<Option<Arc<LoadedModule>>>,
    started: Instant,
    pub telemetry: Counters,
}

/// In-memory counters (durable telemetry in SQLite is issue 4's).
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub predictions: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Telemetry {
        Telemetry {
            requests: self.requests.load(Ordering::Relaxed),
            predictions: self.predictions.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl Device {
    /// Opens (creating if needed) a data dir and restores the active module, if any.
    pub fn open(name: String, data_dir: &Path, sandbox: Sandbox) -> Result<Device, DeviceError> {
        std::fs::create_dir_all(data_dir.join("modules"))?;
        let device = Device {
            name,
            data_dir: data_dir.to_path_buf(),
            sandbox,
            active: RwLock::new(None),
            started: Instant::now(),
            telemetry: Counters::default(),
        };
        match std::fs::read_to_string(device.data_dir.join("active")) {
            Ok(hash) => {
                let hash = hash.trim().to_string();
                let loaded = device.load_stored(&hash)?;
                tracing::info!(module = %hash, "restored active module");
                *device.active.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(loaded));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(device)
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Verifies a module (static checks, compile, conformance) and stores it. Not activated.
    pub fn upload(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, DeviceError> {
        let loaded = self.sandbox.load(bytes)?;
        let path = self.module_path(&loaded.info.hash)?;
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        tracing::info!(module = %loaded.info.hash, size = bytes.len(), kind = %loaded.info.card.kind, "module accepted");
        Ok(Arc::new(loaded))
    }

    /// Makes a stored module the active one; returns the previously active hash.
    pub fn activate(&self, hash: &str) -> Result<Option<String>, DeviceError> {
        let loaded = Arc::new(self.load_stored(hash)?);
        write_atomic(&self.data_dir.join("active"), hash.as_bytes())?;
        let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
        let previous = active.as_ref().map(|m| m.info.hash.clone());
        *active = Some(loaded);
        tracing::info!(module = %hash, previous = ?previous, "module activated");
        Ok(previous)
    }

    pub fn active(&self) -> Option<Arc<LoadedModule>> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn info(&self) -> Result<DeviceInfo, DeviceError> {
        let mut modules = Vec::new();
        for entry in std::fs::read_dir(self.data_dir.join("modules"))? {
            let name = entry?.file_name().to_string_lossy().to_string();
            if let Some(hash) = name.strip_suffix(".wasm") {
                modules.push(hash.to_string());
            }
        }
        modules.sort();
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
        })
    }

    fn load_stored(&self, hash: &str) -> Result<LoadedModule, DeviceError> {
        let path = self.module_path(hash)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DeviceError::UnknownModule(hash.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(self.sandbox.load(&bytes)?)
    }

    /// The only way a path is built from request data: a validated hash, never a name.
    fn module_path(&self, hash: &str) -> Result<PathBuf, DeviceError> {
        let valid = hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(DeviceError::BadHash(hash.chars().take(80).collect()));
        }
        Ok(self.data_dir.join("modules").join(format!("{hash}.wasm")))
    }
}

/// Writes a file so that readers see either the old or the new content, never a torn one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
