//! IndexedDB persistence: runs, devices and compiled modules.
//!
//! Schema (`wasmops` database):
//! - v1: `runs`: [`Run`] by `id`; `devices`: [`DeviceEntry`] by `url`; `modules`:
//!   [`StoredModule`] by `hash` (module bytes are content-addressed);
//! - v2: `datasets`: [`StoredDataset`] by `hash` (imported datasets, content-addressed).
//! - v3: the registry and the fleet: `versions`: [`ModelVersion`] by `hash`; `aliases`:
//!   [`Alias`] by `key`; `device_status`: [`DeviceStatus`] by `url`; `windows`:
//!   [`StoredWindow`] by `key` (device, window size, start, model: range-scannable per device);
//!   `deployments`: [`Deployment`] by `id`; `alerts`: [`Alert`] by `id`.
//! - v4: `logs`: [`LogLine`] by `id` (time-ordered).
//! - v5: `run_summaries`: [`RunSummary`] by `id`, indexed by `started_at_ms` (the runs table
//!   reads these, newest first, and never the full runs). Written with their run in one
//!   transaction; runs stored before v5 get theirs on the first load ([`Storage::run_summaries`]).
//! - v6: MLflow: `settings`: [`crate::mlflow::Settings`] by `key` (the connection, credentials
//!   included: they stay in this browser and are never exported or logged); `mlflow_runs`:
//!   [`crate::mlflow::RunSync`] by `id` (what the server confirmed of each run);
//!   `mlflow_versions`: [`crate::mlflow::RemoteVersion`] by `key` (versions seen on the server
//!   that could not be verified here, with why).
//!
//! This module is a leaf of the crate's behaviour: it reads and writes records and reports
//! failures as values; it logs nothing and shows nothing (the log writes its lines through a
//! hook the app installs, [`crate::logs::persist_with`]).
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
use wasmops_trainer::catalog::Task;
use wasmops_trainer::csv_import::Prepared;

use crate::logic::log_line::LogLine;
use crate::registry::{Alert, Alias, Deployment, DeviceStatus, ModelVersion, StoredWindow};
use crate::run::{Run, RunSummary};

pub(crate) const DB_NAME: &str = "wasmops";
const DB_VERSION: u32 = 6;
const RUNS: &str = "runs";
const RUN_SUMMARIES: &str = "run_summaries";
/// Index of `run_summaries` by start time.
const BY_START: &str = "started_at_ms";
const DEVICES: &str = "devices";
const MODULES: &str = "modules";
const DATASETS: &str = "datasets";
const VERSIONS: &str = "versions";
const ALIASES: &str = "aliases";
const DEVICE_STATUS: &str = "device_status";
const WINDOWS: &str = "windows";
const DEPLOYMENTS: &str = "deployments";
const ALERTS: &str = "alerts";
const LOGS: &str = "logs";
const SETTINGS: &str = "settings";
const MLFLOW_RUNS: &str = "mlflow_runs";
const MLFLOW_VERSIONS: &str = "mlflow_versions";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("IndexedDB is not available in this browser: {0}")]
    Unavailable(String),
    #[error("IndexedDB {op} failed: {reason}")]
    Failed { op: &'static str, reason: String },
    #[error("stored {what} could not be read: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

/// A device the dashboard talks to, as the user set it up (what the dashboard learns from it
/// is a separate [`DeviceStatus`], so a pull never overwrites an edit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceEntry {
    pub url: String,
    pub token: String,
    pub name: String,
    /// Telemetry window length the dashboard pulls and charts, in seconds.
    #[serde(default = "default_window_s")]
    pub window_s: u64,
    #[serde(default)]
    pub added_ms: f64,
}

pub const DEFAULT_WINDOW_S: u64 = 60;

fn default_window_s() -> u64 {
    DEFAULT_WINDOW_S
}

/// A compiled module and the run it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredModule {
    pub hash: String,
    pub run_id: String,
    pub bytes: Vec<u8>,
    /// The detached signature document (`wasmops_shared::signature`): by this browser's key
    /// (made when first needed), or as pulled from MLflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// An imported dataset version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDataset {
    pub hash: String,
    /// As the import decided it (JSON: `"classification"` or `"regression"`).
    pub task: Task,
    /// Bad rows the user chose to skip at import.
    pub skipped_rows: usize,
    pub imported_at_ms: f64,
    pub dataset: Dataset,
    /// Version number among the datasets of the same name (1 for the first import).
    #[serde(default = "first_version")]
    pub version: u32,
    /// The previous version of the same name (a re-import of a changed file).
    #[serde(default)]
    pub parent: Option<String>,
}

fn first_version() -> u32 {
    1
}

impl StoredDataset {
    /// A new version of `p`'s dataset: versions count up per name and link to the newest
    /// earlier one. An import identical to a stored version (same content hash) is that version.
    pub fn new(
        p: &Prepared,
        now_ms: f64,
        existing: &[StoredDataset],
    ) -> Result<StoredDataset, Box<StoredDataset>> {
        let hash = p.dataset.content_hash();
        if let Some(same) = existing.iter().find(|d| d.hash == hash) {
            return Err(Box::new(same.clone()));
        }
        let earlier = existing
            .iter()
            .filter(|d| d.dataset.name == p.dataset.name)
            .max_by_key(|d| d.version);
        Ok(StoredDataset {
            hash,
            task: p.task,
            skipped_rows: p.problems.len(),
            imported_at_ms: now_ms,
            dataset: p.dataset.clone(),
            version: earlier.map_or(1, |e| e.version + 1),
            parent: earlier.map(|e| e.hash.clone()),
        })
    }
}

thread_local! {
    static OPEN: std::cell::RefCell<Option<Storage>> = const { std::cell::RefCell::new(None) };
}

const BLOCKED_BANNER: &str = "storage-blocked";

/// A banner at the top of the page, outside the app's reactive tree (it must show even while
/// the app waits for the database).
fn show_banner(id: &str, text: &str) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    remove_banner(id);
    if let Some(body) = doc.body() {
        let _ = body.insert_adjacent_html(
            "afterbegin",
            &format!("<p id=\"{id}\" class=\"error banner\" data-testid=\"{id}\">{text}</p>"),
        );
    }
}

fn remove_banner(id: &str) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(id))
    {
        el.remove();
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
            reason: format!(
                "transaction aborted{}; nothing of it was stored, and what was stored before is unchanged",
                match usage().await {
                    Some((used, quota)) if used >= quota * 0.9 => format!(
                        " (browser storage is nearly full: {} of {} used; export and delete old runs to make room)",
                        megabytes(used),
                        megabytes(quota)
                    ),
                    Some((used, quota)) => format!(" (storage: {} of {} used)", megabytes(used), megabytes(quota)),
                    None => String::new(),
                }
            ),
        }),
    }
}

/// Bytes this origin uses in browser storage and the quota the browser grants it.
pub async fn usage() -> Option<(f64, f64)> {
    let storage = web_sys::window()?.navigator().storage();
    let estimate = wasm_bindgen_futures::JsFuture::from(storage.estimate().ok()?)
        .await
        .ok()?;
    let get = |k: &str| js_sys::Reflect::get(&estimate, &k.into()).ok()?.as_f64();
    Some((get("usage")?, get("quota")?))
}

pub fn megabytes(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1_048_576.0)
}

fn encode<T: Serialize>(value: &T) -> Result<JsValue, StorageError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| StorageError::Failed {
            op: "encode",
            reason: e.to_string(),
        })
}

fn decode<T: DeserializeOwned>(value: JsValue, what: &'static str) -> Result<T, StorageError> {
    serde_wasm_bindgen::from_value(value).map_err(|e| StorageError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

fn failed(op: &'static str) -> impl Fn(idb::Error) -> StorageError {
    move |e| {
        let reason = e.to_string();
        StorageError::Failed {
            op,
            reason: if reason.contains("Quota") {
                format!("{reason}: browser storage is full; export and delete old runs to make room (nothing stored was lost)")
            } else {
                reason
            },
        }
    }
}

impl Storage {
    /// The page's connection to the database, opened (and upgraded) on first use.
    pub async fn open() -> Result<Storage, StorageError> {
        if let Some(open) = OPEN.with(|o| o.borrow().clone()) {
            return Ok(open);
        }
        let storage = Self::connect().await?;
        OPEN.with(|o| *o.borrow_mut() = Some(storage.clone()));
        Ok(storage)
    }

    async fn connect() -> Result<Storage, StorageError> {
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
                db.create_object_store(store, params).ok()
            };
            if old < 1 {
                create(RUNS, "id");
                create(DEVICES, "url");
                create(MODULES, "hash");
            }
            if old < 2 {
                create(DATASETS, "hash");
            }
            if old < 3 {
                create(VERSIONS, "hash");
                create(ALIASES, "key");
                create(DEVICE_STATUS, "url");
                create(WINDOWS, "key");
                create(DEPLOYMENTS, "id");
                create(ALERTS, "id");
            }
            if old < 4 {
                create(LOGS, "id");
            }
            if old < 5 {
                if let Some(store) = create(RUN_SUMMARIES, "id") {
                    let _ = store.create_index(BY_START, KeyPath::new_single(BY_START), None);
                }
            }
            if old < 6 {
                create(SETTINGS, "key");
                create(MLFLOW_RUNS, "id");
                create(MLFLOW_VERSIONS, "key");
            }
        });
        // Another tab holding an older schema open delays the upgrade until it lets go: say so
        // on the page instead of waiting silently.
        request.on_blocked(|_| show_banner(BLOCKED_BANNER, "Stored data is being upgraded to a new schema, and another tab with an older version of the dashboard is keeping it open: close or reload that tab, and this page continues."));
        let mut db = request.await.map_err(failed("open"))?;
        remove_banner(BLOCKED_BANNER);
        // When a newer dashboard in another tab upgrades the schema, let go of the database
        // (this tab's code is then older: it asks to be reloaded).
        db.on_version_change(|event| {
            if let Some(db) = event
                .target()
                .and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::IdbDatabase>(t).ok())
            {
                db.close();
            }
            OPEN.with(|o| *o.borrow_mut() = None);
            show_banner(BLOCKED_BANNER, "A newer version of the dashboard was opened in another tab: reload this tab to keep working (stored data is kept).");
        });
        Ok(Storage {
            db: std::rc::Rc::new(db),
        })
    }

    /// Writes values to several stores in one transaction: all of them are stored or none is.
    async fn put_in(&self, items: Vec<(&'static str, JsValue)>) -> Result<(), StorageError> {
        let mut stores: Vec<&str> = items.iter().map(|(s, _)| *s).collect();
        stores.sort_unstable();
        stores.dedup();
        let tx = self
            .db
            .transaction(&stores, TransactionMode::ReadWrite)
            .map_err(failed("write"))?;
        for (store, value) in items {
            tx.object_store(store)
                .map_err(failed("write"))?
                .put(&value, None)
                .map_err(failed("write"))?
                .await
                .map_err(failed("write"))?;
        }
        commit(tx, "write").await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        store: &'static str,
        key: &str,
        what: &'static str,
    ) -> Result<Option<T>, StorageError> {
        let tx = self
            .db
            .transaction(&[store], TransactionMode::ReadOnly)
            .map_err(failed("read"))?;
        let value = tx
            .object_store(store)
            .map_err(failed("read"))?
            .get(JsValue::from_str(key))
            .map_err(failed("read"))?
            .await
            .map_err(failed("read"))?;
        value.map(|v| decode(v, what)).transpose()
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
        let items = values
            .iter()
            .map(|v| Ok((store, encode(v)?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        self.put_in(items).await
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
        values.into_iter().map(|v| decode(v, what)).collect()
    }

    /// Values whose key starts with `prefix` (keys are strings), in key order.
    async fn with_prefix<T: DeserializeOwned>(
        &self,
        store: &'static str,
        prefix: &str,
        what: &'static str,
    ) -> Result<Vec<T>, StorageError> {
        self.key_range(store, prefix, "", what).await
    }

    /// Values whose key starts with `prefix` and, after it, sorts at or above `from`.
    async fn key_range<T: DeserializeOwned>(
        &self,
        store: &'static str,
        prefix: &str,
        from: &str,
        what: &'static str,
    ) -> Result<Vec<T>, StorageError> {
        let tx = self
            .db
            .transaction(&[store], TransactionMode::ReadOnly)
            .map_err(failed("read"))?;
        let os = tx.object_store(store).map_err(failed("read"))?;
        let range = idb::KeyRange::bound(
            &JsValue::from_str(&format!("{prefix}{from}")),
            &JsValue::from_str(&format!("{prefix}\u{ffff}")),
            Some(false),
            Some(false),
        )
        .map_err(failed("read"))?;
        let values: Vec<JsValue> = os
            .get_all(Some(range.into()), None)
            .map_err(failed("read"))?
            .await
            .map_err(failed("read"))?;
        values.into_iter().map(|v| decode(v, what)).collect()
    }

    /// Writes a run and its summary in one transaction.
    pub async fn put_run(&self, run: &Run) -> Result<(), StorageError> {
        self.put_runs(std::slice::from_ref(run)).await
    }

    /// Writes all runs and their summaries in one transaction: either every run is stored or
    /// none is.
    pub async fn put_runs(&self, runs: &[Run]) -> Result<(), StorageError> {
        let mut items = Vec::with_capacity(2 * runs.len());
        for run in runs {
            items.push((RUNS, encode(run)?));
            items.push((RUN_SUMMARIES, encode(&RunSummary::of(run))?));
        }
        self.put_in(items).await
    }

    /// A run that has only its summary (failed or cancelled).
    pub async fn put_run_summary(&self, summary: &RunSummary) -> Result<(), StorageError> {
        self.put(RUN_SUMMARIES, summary).await
    }

    /// Deletes a run and its summary (its modules stay: they are content-addressed and may be
    /// deployed).
    pub async fn delete_run(&self, id: &str) -> Result<(), StorageError> {
        let tx = self
            .db
            .transaction(&[RUNS, RUN_SUMMARIES], TransactionMode::ReadWrite)
            .map_err(failed("delete"))?;
        for store in [RUNS, RUN_SUMMARIES] {
            tx.object_store(store)
                .map_err(failed("delete"))?
                .delete(JsValue::from_str(id))
                .map_err(failed("delete"))?
                .await
                .map_err(failed("delete"))?;
        }
        commit(tx, "delete").await
    }

    /// One full run.
    pub async fn run(&self, id: &str) -> Result<Option<Run>, StorageError> {
        self.get(RUNS, id, "run").await
    }

    /// Full runs by id, in the order asked; ids that are gone are left out.
    pub async fn runs(&self, ids: &[String]) -> Result<Vec<Run>, StorageError> {
        let tx = self
            .db
            .transaction(&[RUNS], TransactionMode::ReadOnly)
            .map_err(failed("read"))?;
        let os = tx.object_store(RUNS).map_err(failed("read"))?;
        // Requests are queued at once and answered in order: one round trip, not one per run.
        let pending = ids
            .iter()
            .map(|id| {
                // `into_future` attaches the success handler now, before any event can fire.
                os.get(JsValue::from_str(id))
                    .map(std::future::IntoFuture::into_future)
                    .map_err(failed("read"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut runs = Vec::with_capacity(ids.len());
        for request in pending {
            if let Some(v) = request.await.map_err(failed("read"))? {
                runs.push(decode(v, "run")?);
            }
        }
        Ok(runs)
    }

    /// Ids of every stored run.
    pub async fn run_ids(&self) -> Result<std::collections::BTreeSet<String>, StorageError> {
        let tx = self
            .db
            .transaction(&[RUNS], TransactionMode::ReadOnly)
            .map_err(failed("read"))?;
        let keys = tx
            .object_store(RUNS)
            .map_err(failed("read"))?
            .get_all_keys(None, None)
            .map_err(failed("read"))?
            .await
            .map_err(failed("read"))?;
        Ok(keys.into_iter().filter_map(|k| k.as_string()).collect())
    }

    /// The newest `n` run summaries, newest first, and how many runs there are: what the runs
    /// table shows first (an index cursor, so it costs the same with 10 or 100,000 runs).
    pub async fn newest_run_summaries(
        &self,
        n: usize,
    ) -> Result<(Vec<RunSummary>, usize), StorageError> {
        let tx = self
            .db
            .transaction(&[RUN_SUMMARIES], TransactionMode::ReadOnly)
            .map_err(failed("read"))?;
        let os = tx.object_store(RUN_SUMMARIES).map_err(failed("read"))?;
        let total = os
            .count(None)
            .map_err(failed("read"))?
            .await
            .map_err(failed("read"))? as usize;
        let cursor = os
            .index(BY_START)
            .map_err(failed("read"))?
            .open_cursor(None, Some(idb::CursorDirection::Prev))
            .map_err(failed("read"))?
            .await
            .map_err(failed("read"))?;
        let mut out = Vec::with_capacity(n);
        if let Some(cursor) = cursor {
            let mut cursor = cursor.into_managed();
            while out.len() < n {
                let Some(value) = cursor.value().map_err(failed("read"))? else {
                    break;
                };
                out.push(decode(value, "run summary")?);
                if out.len() < n {
                    cursor.next(None).await.map_err(failed("read"))?;
                }
            }
        }
        Ok((out, total))
    }

    /// Every run summary, newest first. Runs without one (stored before schema v5) get it here,
    /// written in one transaction; finished summaries whose run is gone are left out.
    pub async fn run_summaries(&self) -> Result<Vec<RunSummary>, StorageError> {
        Ok(self.run_summaries_indexing().await?.0)
    }

    /// [`Storage::run_summaries`], and how many runs got their summary now (the caller says
    /// so in the log: storage logs nothing itself, it is a leaf).
    pub async fn run_summaries_indexing(&self) -> Result<(Vec<RunSummary>, usize), StorageError> {
        let mut indexed = 0;
        let mut all: Vec<RunSummary> = self.all(RUN_SUMMARIES, "run summary").await?;
        let ids = self.run_ids().await?;
        let finished = all.iter().filter(|s| s.is_finished()).count();
        if ids.len() != finished || all.iter().any(|s| s.is_finished() && !ids.contains(&s.id)) {
            all.retain(|s| !s.is_finished() || ids.contains(&s.id));
            let have: std::collections::BTreeSet<&str> =
                all.iter().map(|s| s.id.as_str()).collect();
            let missing: Vec<String> = ids
                .iter()
                .filter(|id| !have.contains(id.as_str()))
                .cloned()
                .collect();
            let runs = self.runs(&missing).await?;
            let summaries: Vec<RunSummary> = runs.iter().map(RunSummary::of).collect();
            self.put_all(RUN_SUMMARIES, &summaries).await?;
            indexed = summaries.len();
            all.extend(summaries);
        }
        all.sort_by(|a, b| b.started_at_ms.total_cmp(&a.started_at_ms));
        Ok((all, indexed))
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

    /// Writes renamed dataset versions in one transaction (all of a name, or none).
    pub async fn put_datasets(&self, datasets: &[StoredDataset]) -> Result<(), StorageError> {
        self.put_all(DATASETS, datasets).await
    }

    /// Deletes an imported dataset version (runs trained on it keep their reference and
    /// metrics; they can no longer be rerun).
    pub async fn delete_dataset(&self, hash: &str) -> Result<(), StorageError> {
        let tx = self
            .db
            .transaction(&[DATASETS], TransactionMode::ReadWrite)
            .map_err(failed("delete"))?;
        tx.object_store(DATASETS)
            .map_err(failed("delete"))?
            .delete(JsValue::from_str(hash))
            .map_err(failed("delete"))?
            .await
            .map_err(failed("delete"))?;
        commit(tx, "delete").await
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

    pub async fn module(&self, hash: &str) -> Result<Option<StoredModule>, StorageError> {
        self.get(MODULES, hash, "module").await
    }

    /// A settings record as the raw JS value (for values serde cannot hold: `CryptoKey`s).
    pub async fn get_raw_setting(&self, key: &str) -> Result<Option<JsValue>, StorageError> {
        let tx = self
            .db
            .transaction(&[SETTINGS], TransactionMode::ReadOnly)
            .map_err(failed("read"))?;
        tx.object_store(SETTINGS)
            .map_err(failed("read"))?
            .get(JsValue::from_str(key))
            .map_err(failed("read"))?
            .await
            .map_err(failed("read"))
    }

    /// Stores a raw settings record under `key` unless one is already there, and returns the
    /// record that is stored afterwards (this one, or the one that was there first). The read
    /// and the write share one read-write transaction, which IndexedDB runs alone on the store,
    /// so two callers (two tabs, or two tasks of one tab) cannot both store theirs.
    pub async fn put_raw_setting_if_absent(
        &self,
        key: &str,
        record: JsValue,
    ) -> Result<JsValue, StorageError> {
        let tx = self
            .db
            .transaction(&[SETTINGS], TransactionMode::ReadWrite)
            .map_err(failed("write"))?;
        let store = tx.object_store(SETTINGS).map_err(failed("write"))?;
        let existing = store
            .get(JsValue::from_str(key))
            .map_err(failed("read"))?
            .await
            .map_err(failed("read"))?;
        let stored = match existing {
            Some(existing) => existing,
            None => {
                store
                    .put(&record, None)
                    .map_err(failed("write"))?
                    .await
                    .map_err(failed("write"))?;
                record
            }
        };
        commit(tx, "write").await?;
        Ok(stored)
    }

    pub async fn module_bytes(&self, hash: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .get::<StoredModule>(MODULES, hash, "module")
            .await?
            .map(|m| m.bytes))
    }

    /// Registers a version and its module bytes in one transaction. Versions are immutable:
    /// a hash already registered is refused (the caller shows which version holds it).
    pub async fn register(
        &self,
        version: &ModelVersion,
        module: &StoredModule,
    ) -> Result<(), StorageError> {
        if let Some(existing) = self
            .get::<ModelVersion>(VERSIONS, &version.hash, "model version")
            .await?
        {
            return Err(StorageError::Failed {
                op: "register",
                reason: format!(
                    "this module is already registered as {} (versions are immutable)",
                    existing.label()
                ),
            });
        }
        self.put_in(vec![
            (VERSIONS, encode(version)?),
            (MODULES, encode(module)?),
        ])
        .await
    }

    /// Every stored module (bytes included): few, small, and what a sync looks runs up in.
    pub async fn modules(&self) -> Result<Vec<StoredModule>, StorageError> {
        self.all(MODULES, "module").await
    }

    /// Stores a version verified elsewhere (pulled from MLflow) with its module, or a local
    /// version's new MLflow reference: one transaction.
    pub async fn put_version(
        &self,
        version: &ModelVersion,
        module: Option<&StoredModule>,
    ) -> Result<(), StorageError> {
        let mut items = vec![(VERSIONS, encode(version)?)];
        if let Some(m) = module {
            items.push((MODULES, encode(m)?));
        }
        self.put_in(items).await
    }

    pub async fn prometheus_settings(
        &self,
    ) -> Result<Option<crate::panels::fleet::PrometheusSettings>, StorageError> {
        self.get(
            SETTINGS,
            crate::panels::fleet::SETTINGS_KEY,
            "Prometheus settings",
        )
        .await
    }

    pub async fn put_prometheus_settings(
        &self,
        settings: &crate::panels::fleet::PrometheusSettings,
    ) -> Result<(), StorageError> {
        self.put(SETTINGS, settings).await
    }

    pub async fn mlflow_settings(&self) -> Result<Option<crate::mlflow::Settings>, StorageError> {
        self.get(SETTINGS, crate::mlflow::SETTINGS_KEY, "MLflow settings")
            .await
    }

    pub async fn put_mlflow_settings(
        &self,
        settings: &crate::mlflow::Settings,
    ) -> Result<(), StorageError> {
        self.put(SETTINGS, settings).await
    }

    /// The automation's rules, plans and device groups (`settings` store, key `automation`).
    pub async fn automation(&self) -> Result<Option<crate::automation::SetupRecord>, StorageError> {
        self.get(SETTINGS, crate::automation::SETUP_KEY, "automation setup")
            .await
    }

    /// The automation's loop state (rule firings, the rollout in progress) and its log, in one
    /// record written in one transaction (so a decision carried out is never logged without
    /// being counted, nor the other way round).
    pub async fn automation_state(
        &self,
    ) -> Result<Option<crate::automation::StateRecord>, StorageError> {
        self.get(SETTINGS, crate::automation::STATE_KEY, "automation state")
            .await
    }

    pub async fn put_automation(
        &self,
        setup: &crate::automation::SetupRecord,
    ) -> Result<(), StorageError> {
        self.put(SETTINGS, setup).await
    }

    pub async fn put_automation_state(
        &self,
        state: &crate::automation::StateRecord,
    ) -> Result<(), StorageError> {
        self.put(SETTINGS, state).await
    }

    pub async fn delete_alias(&self, key: &str) -> Result<(), StorageError> {
        let tx = self
            .db
            .transaction(&[ALIASES], TransactionMode::ReadWrite)
            .map_err(failed("delete"))?;
        tx.object_store(ALIASES)
            .map_err(failed("delete"))?
            .delete(JsValue::from_str(key))
            .map_err(failed("delete"))?
            .await
            .map_err(failed("delete"))?;
        commit(tx, "delete").await
    }

    pub async fn delete_mlflow_settings(&self) -> Result<(), StorageError> {
        let tx = self
            .db
            .transaction(&[SETTINGS], TransactionMode::ReadWrite)
            .map_err(failed("delete"))?;
        tx.object_store(SETTINGS)
            .map_err(failed("delete"))?
            .delete(JsValue::from_str(crate::mlflow::SETTINGS_KEY))
            .map_err(failed("delete"))?
            .await
            .map_err(failed("delete"))?;
        commit(tx, "delete").await
    }

    pub async fn run_syncs(&self) -> Result<Vec<crate::mlflow::RunSync>, StorageError> {
        self.all(MLFLOW_RUNS, "run sync state").await
    }

    pub async fn put_run_sync(&self, sync: &crate::mlflow::RunSync) -> Result<(), StorageError> {
        self.put(MLFLOW_RUNS, sync).await
    }

    pub async fn remote_versions(&self) -> Result<Vec<crate::mlflow::RemoteVersion>, StorageError> {
        self.all(MLFLOW_VERSIONS, "MLflow version").await
    }

    pub async fn put_remote_version(
        &self,
        v: &crate::mlflow::RemoteVersion,
    ) -> Result<(), StorageError> {
        self.put(MLFLOW_VERSIONS, v).await
    }

    pub async fn versions(&self) -> Result<Vec<ModelVersion>, StorageError> {
        let mut all: Vec<ModelVersion> = self.all(VERSIONS, "model version").await?;
        all.sort_by(|a, b| b.registered_at_ms.total_cmp(&a.registered_at_ms));
        Ok(all)
    }

    pub async fn put_alias(&self, alias: &Alias) -> Result<(), StorageError> {
        self.put(ALIASES, alias).await
    }

    pub async fn aliases(&self) -> Result<Vec<Alias>, StorageError> {
        self.all(ALIASES, "alias").await
    }

    pub async fn device_statuses(&self) -> Result<Vec<DeviceStatus>, StorageError> {
        self.all(DEVICE_STATUS, "device status").await
    }

    /// Stores what one pull brought: the device's status (with its cursor) and the windows, in
    /// one transaction, so the cursor never moves past windows that were not stored.
    pub async fn save_pull(
        &self,
        status: &DeviceStatus,
        windows: &[StoredWindow],
    ) -> Result<(), StorageError> {
        let mut items = vec![(DEVICE_STATUS, encode(status)?)];
        for w in windows {
            items.push((WINDOWS, encode(w)?));
        }
        self.put_in(items).await
    }

    /// The stored windows of one device at one window length starting at or after `since_ms`
    /// (device clock), oldest first. Keys hold the zero-padded start, so this reads only them.
    pub async fn windows(
        &self,
        device: &str,
        window_s: u64,
        since_ms: u64,
    ) -> Result<Vec<StoredWindow>, StorageError> {
        self.key_range(
            WINDOWS,
            &StoredWindow::prefix(device, window_s),
            &format!("{since_ms:015}"),
            "telemetry window",
        )
        .await
    }

    pub async fn add_deployment(&self, d: &Deployment) -> Result<(), StorageError> {
        self.put(DEPLOYMENTS, d).await
    }

    /// Deployment history of one device, newest first.
    pub async fn deployments(&self, device: &str) -> Result<Vec<Deployment>, StorageError> {
        let mut all: Vec<Deployment> = self
            .with_prefix(DEPLOYMENTS, &format!("{device}|"), "deployment")
            .await?;
        all.reverse();
        Ok(all)
    }

    pub async fn put_alerts(&self, alerts: &[Alert]) -> Result<(), StorageError> {
        self.put_all(ALERTS, alerts).await
    }

    /// Every alert, newest first.
    pub async fn alerts(&self) -> Result<Vec<Alert>, StorageError> {
        let mut all: Vec<Alert> = self.all(ALERTS, "alert").await?;
        all.sort_by(|a, b| b.raised_ms.total_cmp(&a.raised_ms));
        Ok(all)
    }

    pub async fn put_log(&self, line: &LogLine) -> Result<(), StorageError> {
        self.put(LOGS, line).await
    }

    /// The newest `keep` stored log lines, oldest first; older ones are deleted.
    pub async fn logs(&self, keep: usize) -> Result<Vec<LogLine>, StorageError> {
        let mut all: Vec<LogLine> = self.all(LOGS, "log line").await?;
        if all.len() > keep {
            let cut = all.len() - keep;
            let first_kept = all[cut].id.clone();
            let tx = self
                .db
                .transaction(&[LOGS], TransactionMode::ReadWrite)
                .map_err(failed("delete"))?;
            let range = idb::KeyRange::upper_bound(&JsValue::from_str(&first_kept), Some(true))
                .map_err(failed("delete"))?;
            tx.object_store(LOGS)
                .map_err(failed("delete"))?
                .delete(range)
                .map_err(failed("delete"))?
                .await
                .map_err(failed("delete"))?;
            commit(tx, "delete").await?;
            all.drain(..cut);
        }
        Ok(all)
    }
}
