//! IndexedDB persistence: runs, devices and compiled modules.
//!
//! Schema (`wasmops` database):
//! - v1: `runs`: [`Run`] by `id`; `devices`: [`DeviceEntry`] by `url`; `modules`:
//!   [`StoredModule`] by `hash` (module bytes are content-addressed);
//! - v2: `datasets`: [`StoredDataset`] by `hash` (imported datasets, content-addressed).
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

use wasmops_shared::dataset::Dataset;
use wasmops_trainer::csv_import::Prepared;

use crate::run::Run;

const DB_NAME: &str = "wasmops";
const DB_VERSION: u32 = 2;
const RUNS: &str = "runs";
const DEVICES: &str = "devices";
const MODULES: &str = "modules";
const DATASETS: &str = "datasets";

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

/// An imported dataset version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDataset {
    pub hash: String,
    pub task: String,
    /// Bad rows the user chose to skip at import.
    pub skipped_rows: usize,
    pub imported_at_ms: f64,
    pub dataset: Dataset,
}

impl StoredDataset {
    pub fn new(p: &Prepared, now_ms: f64) -> StoredDataset {
        StoredDataset {
            hash: p.dataset.content_hash(),
            task: p.task.to_string(),
            skipped_rows: p.problems.len(),
            imported_at_ms: now_ms,
            dataset: p.dataset.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Storage {
    db: std::rc::Rc<Database>,
}

/// Commits a transaction; an abort (quota, blocked, error) is reported as a failed `op`.
async fn commit(tx: idb::Transaction, op: &'static str) -> Result<(), StorageError> {
    match tx
        .commit()
        .map_err(failed("commit"))?
        .await
        .map_err(failed("commit"))?
    {
        TransactionResult::Committed => Ok(()),
        TransactionResult::Aborted => Err(StorageError::Failed {
            op,
            reason: "transaction aborted".into(),
        }),
    }
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
            // Each step only adds; data of earlier versions is kept. An error here aborts the
            // upgrade and `open` reports it.
            let create = |store: &str, key: &str| {
                let mut params = ObjectStoreParams::new();
                params.key_path(Some(KeyPath::new_single(key)));
                let _ = db.create_object_store(store, params);
            };
            if old < 1 {
                create(RUNS, "id");
                create(DEVICES, "url");
                create(MODULES, "hash");
            }
            if old < 2 {
                create(DATASETS, "hash");
            }
        });
        let db = request.await.map_err(failed("open"))?;
        Ok(Storage {
            db: std::rc::Rc::new(db),
        })
    }

    async fn put<T: Serialize>(&self, store: &'static str, value: &T) -> Result<(), StorageError> {
        self.put_all(store, std::slice::from_ref(value)).await
    }

    /// Writes all values in one transaction: either every value is stored or none is.
    async fn put_all<T: Serialize>(
        &self,
        store: &'static str,
        values: &[T],
    ) -> Result<(), StorageError> {
        let tx = self
            .db
            .transaction(&[store], TransactionMode::ReadWrite)
            .map_err(failed("write"))?;
        let os = tx.object_store(store).map_err(failed("write"))?;
        for value in values {
            let value = value
                .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
                .map_err(|e| StorageError::Failed {
                    op: "encode",
                    reason: e.to_string(),
                })?;
            os.put(&value, None)
                .map_err(failed("write"))?
                .await
                .map_err(failed("write"))?;
        }
        commit(tx, "write").await
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

    /// Writes all runs in one transaction: either every run is stored or none is.
    pub async fn put_runs(&self, runs: &[Run]) -> Result<(), StorageError> {
        self.put_all(RUNS, runs).await
    }

    /// Deletes a run (its modules stay: they are content-addressed and may be deployed).
    pub async fn delete_run(&self, id: &str) -> Result<(), StorageError> {
        let tx = self
            .db
            .transaction(&[RUNS], TransactionMode::ReadWrite)
            .map_err(failed("delete"))?;
        let os = tx.object_store(RUNS).map_err(failed("delete"))?;
        os.delete(JsValue::from_str(id))
            .map_err(failed("delete"))?
            .await
            .map_err(failed("delete"))?;
        commit(tx, "delete").await
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

    pub async fn put_dataset(&self, dataset: &StoredDataset) -> Result<(), StorageError> {
        self.put(DATASETS, dataset).await
    }

    /// Imported datasets, newest first.
    pub async fn datasets(&self) -> Result<Vec<StoredDataset>, StorageError> {
        let mut all: Vec<StoredDataset> = self.all(DATASETS, "dataset").await?;
        all.sort_by(|a, b| b.imported_at_ms.total_cmp(&a.imported_at_ms));
        Ok(all)
    }

    pub async fn put_module(&self, module: &StoredModule) -> Result<(), StorageError> {
        self.put(MODULES, module).await
    }
}
