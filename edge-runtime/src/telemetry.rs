//! Durable telemetry: one SQLite database (WAL) in the data dir, written by one thread.
//!
//! Handlers hand a [`NewRecord`] to [`TelemetryStore::commit`] and answer their client only
//! after the transaction holding it committed. The writer thread takes every record queued
//! while the previous commit ran into the next transaction (group commit), so many concurrent
//! requests share one commit, and "every record the device acknowledged survives `kill -9`" is
//! true by construction. With `synchronous=NORMAL` a commit survives a killed process; a power
//! cut may lose the last commits (`synchronous = "full"` in the config closes that too).
//!
//! Counters (`requests`, errors by kind, the latency histogram, the next prediction id) live
//! in the same database and are updated in the same transaction as the records, so they agree
//! with the records after any crash.

pub mod drift;
pub mod prometheus;
pub mod remote_write;
pub mod windows;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use wasmops_shared::wire::{Label, LabelPage, LabelRecord, TelemetryPage, TelemetryRecord};

/// Most rows the live drift gauges read (the newest ones of the window).
pub const MAX_LIVE_ROWS: u64 = 200_000;

/// Most prediction rows in one page of `records` (see [`TelemetryStore::records`]).
pub const MAX_PAGE_ROWS: u64 = 100_000;

/// Upper bounds (µs) of the latency histogram's buckets; a last, unbounded bucket follows.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("starting the telemetry writer: {0}")]
    Thread(#[from] std::io::Error),
    #[error("telemetry commit failed: {0}")]
    Commit(String),
    #[error("the telemetry writer stopped")]
    WriterGone,
    #[error("prediction id {0} is unknown to this device (never issued, or removed by retention)")]
    UnknownPrediction(u64),
    #[error("label for prediction id {id} is not a finite number")]
    BadLabel { id: u64 },
}

/// Most labels written in one transaction: a large feedback call is written in chunks of this
/// many, so predictions queued meanwhile commit between two chunks instead of waiting for the
/// whole call (a chunk takes a few milliseconds).
pub const LABELS_PER_COMMIT: usize = 2_000;

/// A label checked against the prediction it is for.
#[derive(Debug, Clone)]
pub struct ResolvedLabel {
    pub id: u64,
    pub label: f64,
    /// The module that made the prediction.
    pub model: std::sync::Arc<str>,
    /// The prediction's first output.
    pub predicted: f64,
    /// When the prediction was made.
    pub pred_ts_ms: i64,
}

/// How much telemetry is kept and how hard commits are pushed to disk.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Records older than this are removed.
    pub max_age: Duration,
    /// At most this many records are kept (oldest removed first).
    pub max_records: u64,
    /// `synchronous=FULL` (survives power loss) instead of `NORMAL` (survives a killed process).
    pub sync_full: bool,
    /// How often the writer applies retention.
    pub retention_every: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_records: 1_000_000,
            sync_full: false,
            retention_every: Duration::from_secs(10),
        }
    }
}

/// What a predict call came to: answered, or refused with an error of this kind. Stored and
/// sent as the same strings as before it was a type (`ok`, `bad_request`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Error(ErrorKind),
}

/// The kind of a refused request: `kind` in every error body, and the status of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    Unauthorized,
    BadRequest,
    NotFound,
    ModuleRejected,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Timeout,
    Unavailable,
    MethodNotAllowed,
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ModuleRejected => "module_rejected",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Internal => "internal",
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error(kind) => kind.as_str(),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One predict request, as a handler hands it over.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub ts_ms: u64,
    pub model: Option<String>,
    pub latency_us: u64,
    pub rows: u64,
    pub status: Status,
    pub first_id: Option<u64>,
    /// First output per row.
    pub predictions: Vec<f64>,
    /// Row-major profile bin per row and feature.
    pub bins: Vec<u8>,
    pub n_features: usize,
    /// Why the call was made: only live calls count in the counters, windows and drift.
    pub purpose: Purpose,
}

/// Why a predict call was made (header [`wasmops_shared::wire::PURPOSE_HEADER`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Purpose {
    /// Traffic the device serves: monitored.
    #[default]
    Live,
    /// The dashboard checking a deployment on held-out rows: stored as a record like any
    /// call, never counted as traffic.
    Verify,
}

impl Purpose {
    /// The value stored in the `purpose` column (NULL for live calls).
    pub(crate) fn column(self) -> Option<&'static str> {
        match self {
            Purpose::Live => None,
            Purpose::Verify => Some(wasmops_shared::wire::PURPOSE_VERIFY),
        }
    }
}

/// The durable counters behind `GET /v1/telemetry` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub requests: u64,
    pub predictions: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Per bucket of [`LATENCY_BUCKETS_US`] plus the unbounded one (not cumulative).
    pub latency_counts: Vec<u64>,
    pub latency_sum_us: u64,
    pub labels: u64,
    pub labels_correct: u64,
}

pub struct TelemetryStore {
    path: std::path::PathBuf,
    jobs: Mutex<mpsc::Sender<writer::Job>>,
    reader: Mutex<Connection>,
    next_prediction_id: AtomicU64,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Dropping this stops the checkpoint thread.
    checkpoint_stop: Option<mpsc::Sender<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

impl TelemetryStore {
    /// Opens (creating) `telemetry.sqlite` in `dir` and starts the writer thread.
    pub fn open(dir: &Path, config: TelemetryConfig) -> Result<TelemetryStore, TelemetryError> {
        let path = dir.join("telemetry.sqlite");
        let conn = Connection::open(&path)?;
        writer::init_schema(&conn, config.sync_full)?;
        let next_id = read_counter(&conn, "next_prediction_id")?;
        let reader = Connection::open(&path)?;
        reader.busy_timeout(Duration::from_secs(5))?;
        let checkpoint_conn = Connection::open(&path)?;
        checkpoint_conn.busy_timeout(Duration::from_secs(5))?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("telemetry-writer".into())
            .spawn(move || writer::run(conn, rx, config))?;
        let (stop, stopped) = mpsc::channel();
        let checkpointer = std::thread::Builder::new()
            .name("telemetry-checkpoint".into())
            .spawn(move || {
                writer::checkpointer(checkpoint_conn, stopped, Duration::from_secs(1))
            })?;
        Ok(TelemetryStore {
            path,
            jobs: Mutex::new(tx),
            reader: Mutex::new(reader),
            next_prediction_id: AtomicU64::new(next_id),
            writer: Some(handle),
            checkpoint_stop: Some(stop),
            checkpointer: Some(checkpointer),
        })
    }

    /// Reserves `n` consecutive prediction ids; returns the first.
    pub fn allocate_ids(&self, n: u64) -> u64 {
        self.next_prediction_id.fetch_add(n, Ordering::Relaxed)
    }

    /// Stores a record; resolves with its seq once the transaction holding it committed.
    pub async fn commit(&self, record: NewRecord) -> Result<u64, TelemetryError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(writer::Job::Record(record, tx))?;
        rx.await.map_err(|_| TelemetryError::WriterGone)?
    }

    /// Stores labels for earlier predictions; resolves once every label committed
    /// ([`TelemetryStore::resolve_labels`], then [`TelemetryStore::store_labels`]).
    pub async fn feedback(&self, labels: Vec<Label>) -> Result<usize, TelemetryError> {
        let resolved = self.resolve_labels(labels).await?;
        self.store_labels(resolved).await
    }

    /// Checks every label (finite, for a prediction this device made) and finds its
    /// prediction and the model that made it, on a read connection of its own off the writer,
    /// reading 8 bytes of the stored predictions per label; the first bad label is the error.
    pub async fn resolve_labels(
        &self,
        labels: Vec<Label>,
    ) -> Result<Vec<ResolvedLabel>, TelemetryError> {
        if let Some(l) = labels.iter().find(|l| !l.label.is_finite()) {
            return Err(TelemetryError::BadLabel { id: l.id });
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || resolve_labels(&path, &labels))
            .await
            .map_err(|e| TelemetryError::Commit(format!("resolving labels: {e}")))?
    }

    /// Writes resolved labels in chunks of [`LABELS_PER_COMMIT`], one transaction each, so a
    /// feedback call for a 100,000-row batch never holds up predictions for more than one
    /// chunk. A device killed between two chunks keeps the chunks that committed; the client,
    /// unanswered, sends the call again, and a label sent twice replaces itself (the label log
    /// records both).
    pub async fn store_labels(
        &self,
        resolved: Vec<ResolvedLabel>,
    ) -> Result<usize, TelemetryError> {
        let mut stored = 0;
        for chunk in resolved.chunks(LABELS_PER_COMMIT) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.send(writer::Job::Labels(chunk.to_vec(), tx))?;
            stored += rx.await.map_err(|_| TelemetryError::WriterGone)??;
        }
        Ok(stored)
    }

    fn send(&self, job: writer::Job) -> Result<(), TelemetryError> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| TelemetryError::WriterGone)
    }

    pub fn counters(&self) -> Result<Counters, TelemetryError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached("SELECT name, value FROM counters")?;
        let mut c = Counters {
            latency_counts: vec![0; LATENCY_BUCKETS_US.len() + 1],
            ..Counters::default()
        };
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (name, value) = row?;
            let value = value as u64;
            match name.as_str() {
                "requests" => c.requests = value,
                "predictions" => c.predictions = value,
                "errors" => c.errors = value,
                "latency_sum_us" => c.latency_sum_us = value,
                "labels" => c.labels = value,
                "labels_correct" => c.labels_correct = value,
                other => {
                    if let Some(kind) = other.strip_prefix("errors.") {
                        c.errors_by_kind.insert(kind.to_string(), value);
                    } else if let Some(i) = other.strip_prefix("latency_bucket.") {
                        if let Some(slot) = i
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| c.latency_counts.get_mut(i))
                        {
                            *slot = value;
                        }
                    }
                }
            }
        }
        Ok(c)
    }

    /// Records with `seq > after`, oldest first, at most `limit` (fewer once the page holds
    /// [`MAX_PAGE_ROWS`] rows).
    pub fn records(&self, after: u64, limit: usize) -> Result<TelemetryPage, TelemetryError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, ts_ms, model, latency_us, rows, status, first_id, n_features, predictions, bins
             FROM records WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        // A page ends early once it holds MAX_PAGE_ROWS prediction rows (always at least one
        // record), so a page of large batches stays a reasonable size.
        let mut records = Vec::new();
        let mut rows = 0;
        for record in stmt.query_map(params![cursor(after), limit as i64], row_to_record)? {
            let record = record?;
            rows += record.rows;
            records.push(record);
            if rows >= MAX_PAGE_ROWS {
                break;
            }
        }
        let oldest: Option<i64> = conn
            .query_row("SELECT min(seq) FROM records", [], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(TelemetryPage {
            next: records.last().map_or(after, |r| r.seq),
            oldest: oldest.map(|s| s as u64),
            records,
        })
    }

    /// Accepted labels with `seq > after`, in commit order, at most `limit`.
    pub fn labels(&self, after: u64, limit: usize) -> Result<LabelPage, TelemetryError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, ts_ms, prediction_id, label FROM label_log
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let labels = stmt
            .query_map(params![cursor(after), limit as i64], |r| {
                Ok(LabelRecord {
                    seq: r.get::<_, i64>(0)? as u64,
                    ts_ms: r.get::<_, i64>(1)? as u64,
                    id: r.get::<_, i64>(2)? as u64,
                    label: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LabelPage {
            next: labels.last().map_or(after, |l| l.seq),
            labels,
        })
    }

    /// Per-window aggregates with drift; `module` finds a stored module's profile by hash.
    /// Runs on its own read connection, so a long scan never holds up the cursor, the
    /// counters or `/metrics`.
    pub fn windows(
        &self,
        query: windows::WindowQuery,
        module: &dyn Fn(&str) -> Option<std::sync::Arc<wasmops_shared::module::ModuleInfo>>,
    ) -> Result<wasmops_shared::wire::WindowsResponse, TelemetryError> {
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(windows::compute(&conn, query, module)?)
    }

    /// Drift and accuracy of `model`'s live traffic predicted since `since_ms` (the gauges of
    /// `/metrics`). Bounded: reads the newest records back to at most [`MAX_LIVE_ROWS`] rows,
    /// on a read connection of its own.
    pub fn live_quality(
        &self,
        model: &wasmops_shared::module::ModuleInfo,
        since_ms: u64,
    ) -> Result<prometheus::LiveQuality, TelemetryError> {
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mut stmt = conn.prepare(
            "SELECT rows, n_features, bins FROM records
             WHERE ts_ms >= ?1 AND model = ?2 AND purpose IS NULL AND status = 'ok'
             ORDER BY seq DESC",
        )?;
        let mut rows = stmt.query(params![since_ms as i64, model.hash])?;
        let mut bins: Vec<[u64; 12]> = Vec::new();
        let mut n = 0u64;
        while let Some(r) = rows.next()? {
            let d = r.get::<_, i64>(1)? as usize;
            if d > 0 {
                if bins.len() < d {
                    bins.resize(d, [0; 12]);
                }
                let blob = r.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
                for row in blob.chunks_exact(d) {
                    for (j, b) in row.iter().enumerate() {
                        bins[j][usize::from(*b).min(11)] += 1;
                    }
                }
            }
            n += r.get::<_, i64>(0)? as u64;
            if n >= MAX_LIVE_ROWS {
                break;
            }
        }
        drop(rows);
        let (labeled, correct): (i64, Option<i64>) = conn.query_row(
            "SELECT count(*), sum(correct) FROM feedback WHERE pred_ts_ms >= ?1 AND model = ?2",
            params![since_ms as i64, model.hash],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(prometheus::LiveQuality {
            rows: n,
            drift: windows::feature_drift(model, &bins),
            labeled: labeled as u64,
            correct: correct.unwrap_or(0) as u64,
        })
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for TelemetryStore {
    /// Lets the writer drain its queue and close the database.
    fn drop(&mut self) {
        let (dead, _) = mpsc::channel();
        *self.jobs.get_mut().unwrap_or_else(|p| p.into_inner()) = dead;
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
        drop(self.checkpoint_stop.take());
        if let Some(h) = self.checkpointer.take() {
            let _ = h.join();
        }
    }
}

/// Finds each label's prediction: its record through the `first_id` index, its first output by
/// reading 8 bytes of the record's predictions blob (never decoding the whole batch). Labels
/// for the same batch share one record lookup and one open blob.
fn resolve_labels(path: &Path, labels: &[Label]) -> Result<Vec<ResolvedLabel>, TelemetryError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut find = conn.prepare(
        "SELECT seq, first_id, rows, model, ts_ms FROM records
         WHERE first_id IS NOT NULL AND first_id <= ?1 ORDER BY first_id DESC LIMIT 1",
    )?;
    struct Hit {
        seq: i64,
        first: u64,
        rows: u64,
        model: std::sync::Arc<str>,
        ts_ms: i64,
    }
    let mut current: Option<Hit> = None;
    let mut blob: Option<rusqlite::blob::Blob<'_>> = None;
    let mut resolved = Vec::with_capacity(labels.len());
    for l in labels {
        let cached = current
            .as_ref()
            .is_some_and(|h| h.first <= l.id && l.id < h.first + h.rows);
        if !cached {
            let hit = find
                .query_row([l.id as i64], |r| {
                    Ok(Hit {
                        seq: r.get(0)?,
                        first: r.get::<_, i64>(1)? as u64,
                        rows: r.get::<_, i64>(2)? as u64,
                        model: r.get::<_, Option<String>>(3)?.unwrap_or_default().into(),
                        ts_ms: r.get(4)?,
                    })
                })
                .optional()?
                .filter(|h| l.id < h.first + h.rows)
                .ok_or(TelemetryError::UnknownPrediction(l.id))?;
            match blob.as_mut() {
                Some(b) => b.reopen(hit.seq)?,
                None => {
                    blob = Some(conn.blob_open(
                        rusqlite::MAIN_DB,
                        "records",
                        "predictions",
                        hit.seq,
                        true,
                    )?)
                }
            }
            current = Some(hit);
        }
        let hit = current.as_ref().expect("set above");
        let mut bytes = [0u8; 8];
        let offset = ((l.id - hit.first) * 8) as usize;
        let predicted = match blob.as_ref() {
            Some(b) if b.read_at(&mut bytes, offset).is_ok_and(|n| n == 8) => {
                f64::from_le_bytes(bytes)
            }
            _ => f64::NAN,
        };
        resolved.push(ResolvedLabel {
            id: l.id,
            label: l.label,
            model: hit.model.clone(),
            predicted,
            pred_ts_ms: hit.ts_ms,
        });
    }
    Ok(resolved)
}

fn read_counter(conn: &Connection, name: &str) -> Result<u64, rusqlite::Error> {
    Ok(conn
        .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(0) as u64)
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<TelemetryRecord> {
    let n_features: i64 = r.get(7)?;
    let preds: Vec<u8> = r.get(8)?;
    let bins: Vec<u8> = r.get(9)?;
    Ok(TelemetryRecord {
        seq: r.get::<_, i64>(0)? as u64,
        ts_ms: r.get::<_, i64>(1)? as u64,
        model: r.get(2)?,
        latency_us: r.get::<_, i64>(3)? as u64,
        rows: r.get::<_, i64>(4)? as u64,
        status: r.get(5)?,
        first_id: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        predictions: decode_f64s(&preds),
        bins: if n_features > 0 {
            bins.chunks(n_features as usize)
                .map(<[u8]>::to_vec)
                .collect()
        } else {
            Vec::new()
        },
    })
}

/// A cursor as SQLite's integer: seqs never exceed `i64::MAX`, so a larger cursor is past
/// every seq (an empty page), never a negative number that starts over.
fn cursor(after: u64) -> i64 {
    i64::try_from(after).unwrap_or(i64::MAX)
}

pub(crate) fn decode_f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")))
        .collect()
}

/// Index into the latency histogram for a latency.
pub fn latency_bucket(us: u64) -> usize {
    LATENCY_BUCKETS_US.partition_point(|b| *b < us)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rows: u64, first_id: u64) -> NewRecord {
        NewRecord {
            ts_ms: now_ms(),
            model: Some("m".into()),
            latency_us: 40,
            rows,
            status: Status::Ok,
            first_id: Some(first_id),
            predictions: vec![1.0; rows as usize],
            bins: vec![3; rows as usize * 2],
            n_features: 2,
            purpose: Purpose::Live,
        }
    }

    #[tokio::test]
    async fn a_page_of_large_batches_ends_early_and_the_cursor_continues() {
        let dir = std::env::temp_dir().join(format!("wasmops-page-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = TelemetryStore::open(&dir, TelemetryConfig::default()).unwrap();
        for _ in 0..3 {
            let id = store.allocate_ids(60_000);
            store.commit(record(60_000, id)).await.unwrap();
        }
        let first = store.records(0, 100).unwrap();
        assert_eq!(
            first.records.len(),
            2,
            "60k + 60k rows reach the page limit"
        );
        let second = store.records(first.next, 100).unwrap();
        assert_eq!(
            second.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![3]
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn retention_keeps_the_newest_records_and_counters_stay_whole() {
        let dir = std::env::temp_dir().join(format!("wasmops-retention-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = TelemetryConfig {
            max_records: 5,
            retention_every: Duration::ZERO,
            ..TelemetryConfig::default()
        };
        let store = TelemetryStore::open(&dir, config.clone()).unwrap();
        for i in 0..20 {
            let id = store.allocate_ids(2);
            assert_eq!(store.commit(record(2, id)).await.unwrap(), i + 1);
        }
        let page = store.records(0, 100).unwrap();
        let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![16, 17, 18, 19, 20]);
        assert_eq!(page.oldest, Some(16));
        assert_eq!(page.records[0].bins, vec![vec![3, 3], vec![3, 3]]);
        let c = store.counters().unwrap();
        assert_eq!((c.requests, c.predictions, c.errors), (20, 40, 0));
        assert_eq!(c.latency_counts[latency_bucket(40)], 20);
        drop(store);

        // Age: with a zero maximum age, the next commit removes everything older.
        let store = TelemetryStore::open(
            &dir,
            TelemetryConfig {
                max_age: Duration::ZERO,
                ..config
            },
        )
        .unwrap();
        assert_eq!(store.allocate_ids(1), 40, "ids continue after a reopen");
        std::thread::sleep(Duration::from_millis(5));
        store.commit(record(1, 40)).await.unwrap();
        let page = store.records(0, 100).unwrap();
        assert!(
            page.records.iter().all(|r| r.seq == 21),
            "older records remain: {:?}",
            page.records
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn retention_trims_the_label_log_like_the_records() {
        let dir = std::env::temp_dir().join(format!("wasmops-label-ret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = TelemetryConfig {
            max_records: 3,
            retention_every: Duration::ZERO,
            ..TelemetryConfig::default()
        };
        let store = TelemetryStore::open(&dir, config.clone()).unwrap();
        let first = store.allocate_ids(10);
        store.commit(record(10, first)).await.unwrap();
        for i in 0..6 {
            let label = Label {
                id: first + i % 2,
                label: i as f64,
            };
            assert_eq!(store.feedback(vec![label]).await.unwrap(), 1);
        }
        let page = store.labels(0, 100).unwrap();
        let kept: Vec<(u64, f64)> = page.labels.iter().map(|l| (l.seq, l.label)).collect();
        assert_eq!(kept, vec![(4, 3.0), (5, 4.0), (6, 5.0)]);
        assert_eq!(page.next, 6);
        assert_eq!(store.labels(6, 100).unwrap().labels, vec![]);
        drop(store);

        // Age: with a zero maximum age, the next commit removes every older label.
        let store = TelemetryStore::open(
            &dir,
            TelemetryConfig {
                max_age: Duration::ZERO,
                ..config
            },
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let id = store.allocate_ids(1);
        store.commit(record(1, id)).await.unwrap();
        let page = store.labels(0, 100).unwrap();
        assert!(page.labels.is_empty(), "{:?}", page.labels);
        assert_eq!(page.next, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
