//! IndexedDB persistence: runs, devices and compiled modules.
//!
//! Schema version 1 (`wasmops` database):
//! - `runs`: [`Run`] by `id`;
//! - `devices`: [`DeviceEntry`] by `url`;
//! - `modules`: [`StoredModule`] by `hash` (module bytes are content-addressed).
//!
//! Migrations run in `upgradeneeded` by the old version number, so existing data is kept when
//! a later schema adds stores or indexes. Every write awaits its transaction's commit and
//! reports failure (quota, blocked, aborted) as a [`StorageError`].

use idb::{
    Database, DatabaseEvent, Factory, KeyPath, ObjectStoreParams, TransactionMode,
    TransactionResult,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use wasm_bindgen::JsValue;

use crate::run::Run;

const DB_NAME: &str = "wasmops";
const DB_VERSION: u32 = 1;
const RUNS: &str = "runs";
const DEVICES: &str = "devices";
const MODULES: &str = "modules";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("IndexedDB is not available in this browser: {0}")]
    Unavailable(String),
    #[error("IndexedDB {op} failed: {reason}")]
    Failed { op: &'static str, reason: String },
    #[error("stored {what} could not be read: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

/// A device the dashboard talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    pub url: String,
    pub token: String,
    pub name: String,
}

/// A compiled module and the run it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredModule {
    pub hash: String,
    pub run_id: String,
    pub bytes: Vec<u8>,
}

#[derive(Clone)]
pub struct Storage {
    db: std::rc::Rc<Database>,
}

fn failed(op: &'static str) -> impl Fn(idb::Error) -> StorageError {
    move |e| StorageError::Failed {
        op,
        reason: e.to_string(),
    }
}

impl Storage {
    pub async fn open() -> Result<Storage, StorageError> {
        let factory = Factory::new().map_err(|e| StorageError::Unavailable(e.to_string()))?;
        let mut request = factory
            .open(DB_NAME, Some(DB_VERSION))
            .map_err(failed("open"))?;
        request.on_upgrade_needed(|event| {
            let old = event.old_version().unwrap_or(0);
            let Ok(db) = event.database() else { return };
            if old < 1 {
                for (store, key) in [(RUNS, "id"), (DEVICES, "url"), (MODULES, "hash")] {
                    let mut params = ObjectStoreParams::new();
                    params.key_path(Some(KeyPath::new_single(key)));
                    // An error here aborts the upgrade; `open` then reports it.
                    let _ = db.create_object_store(store, params);
                }
            }
        });
        let db = request.await.map_err(failed("open"))?;
        Ok(Storage {
            db: std::rc::Rc::new(db),
        })
    }

    async fn put<T: Serialize>(&self, store: &'static str, value: &T) -> Result<(), StorageError> {
        let value = value
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| StorageError::Failed {
                op: "encode",
                reason: e.to_string(),
            })?;
        let tx = self
            .db
            .transaction(&[store], TransactionMode::ReadWrite)
            .map_err(failed("write"))?;
        let os = tx.object_store(store).map_err(failed("write"))?;
        os.put(&value, None)
            .map_err(failed("write"))?
            .await
            .map_err(failed("write"))?;
        match tx
            .commit()
            .map_err(failed("commit"))?
            .await
            .map_err(failed("commit"))?
        {
            TransactionResult::Committed => Ok(()),
            TransactionResult::Aborted => Err(StorageError::Failed {
                op: "write",
                reason: "transaction aborted".into(),
            }),
        }
    }

    async fn all<T: DeserializeOwned>(
        &self,
        store: &'static str,
        what: &'static str,
    ) -> Result<Vec<T>, StorageError> {
        let tx = self
            .db
            .transaction(&[store], TransactionMode::ReadOnly)
            .map_err(failed("read"))?;
        let os = tx.object_store(store).map_err(failed("read"))?;
        let values: Vec<JsValue> = os
            .get_all(None, None)
            .map_err(failed("read"))?
            .await
            .map_err(failed("read"))?;
        values
            .into_iter()
            .map(|v| {
                serde_wasm_bindgen::from_value(v).map_err(|e| StorageError::Corrupt {
                    what,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    pub async fn put_run(&self, run: &Run) -> Result<(), StorageError> {
        self.put(RUNS, run).await
    }

    /// All runs, newest first.
    pub async fn runs(&self) -> Result<Vec<Run>, StorageError> {
        let mut runs: Vec<Run> = self.all(RUNS, "run").await?;
        runs.sort_by(|a, b| b.started_at_ms.total_cmp(&a.started_at_ms));
        Ok(runs)
    }

    pub async fn put_device(&self, device: &DeviceEntry) -> Result<(), StorageError> {
        self.put(DEVICES, device).await
    }

    pub async fn devices(&self) -> Result<Vec<DeviceEntry>, StorageError> {
        self.all(DEVICES, "device").await
    }

    pub async fn put_module(&self, module: &StoredModule) -> Result<(), StorageError> {
        self.put(MODULES, module).await
    }
}
