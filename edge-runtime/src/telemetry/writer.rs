//! The telemetry writer thread: drains the queue into one transaction per round (group
//! commit), acknowledges every job of the round only after `COMMIT`, and applies retention.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::{latency_bucket, now_ms, NewRecord, ResolvedLabel, TelemetryConfig, TelemetryError};

/// Most jobs in one transaction (bounds the latency a single commit adds).
const MAX_BATCH: usize = 2048;

pub(super) enum Job {
    Record(NewRecord, oneshot::Sender<Result<u64, TelemetryError>>),
    /// Labels already checked against their predictions (see [`super::TelemetryStore::feedback`]).
    Labels(
        Vec<ResolvedLabel>,
        oneshot::Sender<Result<usize, TelemetryError>>,
    ),
}

pub(super) fn init_schema(conn: &Connection, sync_full: bool) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync_full { "FULL" } else { "NORMAL" },
    )?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS records (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts_ms INTEGER NOT NULL,
            model TEXT,
            latency_us INTEGER NOT NULL,
            rows INTEGER NOT NULL,
            status TEXT NOT NULL,
            first_id INTEGER,
            n_features INTEGER NOT NULL,
            predictions BLOB NOT NULL,
            bins BLOB NOT NULL
        );
        CREATE INDEX IF NOT EXISTS records_ts ON records (ts_ms);
        CREATE INDEX IF NOT EXISTS records_first_id ON records (first_id) WHERE first_id IS NOT NULL;
        CREATE TABLE IF NOT EXISTS feedback (
            prediction_id INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            pred_ts_ms INTEGER NOT NULL,
            model TEXT NOT NULL,
            predicted REAL NOT NULL,
            label REAL NOT NULL,
            correct INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS feedback_pred_ts ON feedback (pred_ts_ms);
        CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )?;
    init_purpose(conn)?;
    init_label_log(conn)
}

/// `records.purpose`: NULL for live traffic, `verify` for the dashboard's deployment checks.
/// Added to databases from before it existed (their records were all counted as live).
fn init_purpose(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('records') WHERE name = 'purpose'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE records ADD COLUMN purpose TEXT")?;
    }
    Ok(())
}

/// The append-only log behind `GET /v1/feedback/records`: one row per accepted label, in
/// commit order. A database from before the log existed gets it filled from `feedback` (the
/// latest label per prediction, in the order they were received) in the same transaction that
/// creates it, so a crash cannot leave an empty log behind.
fn init_label_log(conn: &Connection) -> Result<(), rusqlite::Error> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'label_log'",
        [],
        |r| r.get(0),
    )?;
    if exists {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
        CREATE TABLE IF NOT EXISTS label_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts_ms INTEGER NOT NULL,
            prediction_id INTEGER NOT NULL,
            label REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS label_log_ts ON label_log (ts_ms);
        INSERT INTO label_log (ts_ms, prediction_id, label)
            SELECT ts_ms, prediction_id, label FROM feedback ORDER BY ts_ms, prediction_id;
        COMMIT;",
    )
}

pub(super) fn run(mut conn: Connection, jobs: Receiver<Job>, config: TelemetryConfig) {
    let mut last_retention: Option<Instant> = None;
    loop {
        let first = match jobs.recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let retention = last_retention.is_none_or(|t| t.elapsed() >= config.retention_every);
        match write_batch(&mut conn, &batch, retention.then_some(&config)) {
            Ok(results) => {
                if retention {
                    last_retention = Some(Instant::now());
                }
                for (job, result) in batch.into_iter().zip(results) {
                    match (job, result) {
                        (Job::Record(_, ack), Outcome::Seq(seq)) => {
                            let _ = ack.send(Ok(seq));
                        }
                        (Job::Labels(_, ack), Outcome::Labels(n)) => {
                            let _ = ack.send(Ok(n));
                        }
                        _ => unreachable!("outcomes follow jobs"),
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "telemetry commit failed");
                for job in batch {
                    let err = TelemetryError::Commit(e.to_string());
                    match job {
                        Job::Record(_, ack) => {
                            let _ = ack.send(Err(err));
                        }
                        Job::Labels(_, ack) => {
                            let _ = ack.send(Err(err));
                        }
                    }
                }
            }
        }
    }
}

enum Outcome {
    Seq(u64),
    Labels(usize),
}

/// One transaction for the whole batch; counters change in the same transaction.
fn write_batch(
    conn: &mut Connection,
    batch: &[Job],
    retention: Option<&TelemetryConfig>,
) -> Result<Vec<Outcome>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    let mut next_id = 0u64;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO records (ts_ms, model, latency_us, rows, status, first_id, n_features, predictions, bins, purpose)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for job in batch {
            match job {
                Job::Record(r, _) => {
                    let preds: Vec<u8> =
                        r.predictions.iter().flat_map(|v| v.to_le_bytes()).collect();
                    insert.execute(params![
                        r.ts_ms as i64,
                        r.model,
                        r.latency_us as i64,
                        r.rows as i64,
                        r.status.as_str(),
                        r.first_id.map(|v| v as i64),
                        r.n_features as i64,
                        preds,
                        r.bins,
                        r.purpose.column(),
                    ])?;
                    outcomes.push(Outcome::Seq(tx.last_insert_rowid() as u64));
                    if let Some(first) = r.first_id {
                        next_id = next_id.max(first + r.rows);
                    }
                    // A deployment check is stored, and counted apart from the traffic.
                    if r.purpose != super::Purpose::Live {
                        *deltas.entry("verify_requests".into()).or_default() += 1;
                        continue;
                    }
                    *deltas.entry("requests".into()).or_default() += 1;
                    *deltas
                        .entry(format!("latency_bucket.{}", latency_bucket(r.latency_us)))
                        .or_default() += 1;
                    *deltas.entry("latency_sum_us".into()).or_default() += r.latency_us as i64;
                    if r.status == super::Status::Ok {
                        *deltas.entry("predictions".into()).or_default() += r.rows as i64;
                    } else {
                        *deltas.entry("errors".into()).or_default() += 1;
                        *deltas.entry(format!("errors.{}", r.status)).or_default() += 1;
                    }
                }
                Job::Labels(labels, _) => {
                    outcomes.push(Outcome::Labels(store_labels(&tx, labels, &mut deltas)?));
                }
            }
        }
    }
    {
        let mut bump = tx.prepare_cached(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        )?;
        for (name, delta) in &deltas {
            bump.execute(params![name, delta])?;
        }
        // Ids are handed out before commit, possibly out of order: keep the highest end so a
        // restart never re-issues an acknowledged id.
        tx.prepare_cached(
            "INSERT INTO counters (name, value) VALUES ('next_prediction_id', ?1)
             ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
        )?
        .execute([next_id as i64])?;
    }
    if let Some(config) = retention {
        let cutoff = now_ms().saturating_sub(config.max_age.as_millis() as u64) as i64;
        let mut removed = tx.execute("DELETE FROM records WHERE ts_ms < ?1", [cutoff])?;
        removed += tx.execute(
            "DELETE FROM records WHERE seq <= (SELECT max(seq) FROM records) - ?1",
            [config.max_records as i64],
        )?;
        tx.execute("DELETE FROM feedback WHERE pred_ts_ms < ?1", [cutoff])?;
        // The label log follows the records' rules: same maximum age, same maximum count.
        tx.execute("DELETE FROM label_log WHERE ts_ms < ?1", [cutoff])?;
        tx.execute(
            "DELETE FROM label_log WHERE seq <= (SELECT max(seq) FROM label_log) - ?1",
            [config.max_records as i64],
        )?;
        if removed > 0 {
            tracing::info!(removed, "telemetry retention removed old records");
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

/// Writes labels that were resolved against their predictions before: a few indexed
/// statements per label, nothing decoded, so the writer's transaction costs O(labels).
fn store_labels(
    tx: &rusqlite::Transaction<'_>,
    resolved: &[ResolvedLabel],
    deltas: &mut BTreeMap<String, i64>,
) -> Result<usize, rusqlite::Error> {
    let mut old = tx.prepare_cached("SELECT correct FROM feedback WHERE prediction_id = ?1")?;
    let mut put = tx.prepare_cached(
        "INSERT OR REPLACE INTO feedback (prediction_id, ts_ms, pred_ts_ms, model, predicted, label, correct)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut log = tx.prepare_cached(
        "INSERT INTO label_log (ts_ms, prediction_id, label) VALUES (?1, ?2, ?3)",
    )?;
    let now = now_ms() as i64;
    for l in resolved {
        let previous: Option<bool> = old.query_row([l.id as i64], |r| r.get(0)).optional()?;
        let correct = l.predicted == l.label;
        put.execute(params![
            l.id as i64,
            now,
            l.pred_ts_ms,
            l.model.as_ref(),
            l.predicted,
            l.label,
            correct
        ])?;
        // Every accepted label is a new log entry, also one that replaces an earlier label.
        log.execute(params![now, l.id as i64, l.label])?;
        match previous {
            None => *deltas.entry("labels".into()).or_default() += 1,
            Some(true) => *deltas.entry("labels_correct".into()).or_default() -= 1,
            Some(false) => {}
        }
        if correct {
            *deltas.entry("labels_correct".into()).or_default() += 1;
        }
    }
    Ok(resolved.len())
}

/// Copies the WAL back into the database file every `every`, off the writer's path, so no
/// acknowledged request waits for a checkpoint's fsync. Stops when `stop` is dropped.
pub(super) fn checkpointer(conn: Connection, stop: Receiver<()>, every: Duration) {
    loop {
        match stop.recv_timeout(every) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        // PASSIVE never blocks the writer; what it cannot copy now waits for the next round.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "telemetry checkpoint failed");
        }
    }
}
