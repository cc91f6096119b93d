//! Per-window aggregates computed from the stored records: counts, errors by kind, latency
//! histogram and percentiles, prediction distribution, per-feature bin counts with drift
//! against the module's training profile, accuracy from feedback, and DDM per model.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};
use wasmops_shared::module::ModuleInfo;
use wasmops_shared::wire::{ConceptDrift, FeatureDrift, Window, WindowsResponse};

use super::drift::{self, Ddm};
use super::{latency_bucket, LATENCY_BUCKETS_US};

/// What a window query asks for.
#[derive(Debug, Clone, Copy)]
pub struct WindowQuery {
    pub window_s: u64,
    /// How many windows back from `now_ms` (the current, partial window included).
    pub count: u64,
    pub now_ms: u64,
}

/// Most records one query scans (bounds the work a single call can cause).
pub const MAX_SCAN: i64 = 500_000;

#[derive(Default)]
struct Acc {
    requests: u64,
    rows: u64,
    errors: BTreeMap<String, u64>,
    latency_counts: Vec<u64>,
    latencies: Vec<u64>,
    predictions: BTreeMap<String, u64>,
    bins: Vec<[u64; 12]>,
    labeled: u64,
    correct: u64,
}

pub fn compute(
    conn: &Connection,
    q: WindowQuery,
    module: &dyn Fn(&str) -> Option<std::sync::Arc<ModuleInfo>>,
) -> rusqlite::Result<WindowsResponse> {
    let w_ms = q.window_s.max(1) * 1000;
    let last_start = q.now_ms / w_ms * w_ms;
    let since = last_start.saturating_sub(w_ms * q.count.saturating_sub(1));
    let mut accs: BTreeMap<(u64, Option<String>), Acc> = BTreeMap::new();

    let mut stmt = conn.prepare_cached(
        "SELECT ts_ms, model, latency_us, rows, status, n_features, predictions, bins
         FROM records WHERE ts_ms >= ?1 AND purpose IS NULL ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![since as i64, MAX_SCAN])?;
    while let Some(r) = rows.next()? {
        let ts = r.get::<_, i64>(0)? as u64;
        let model: Option<String> = r.get(1)?;
        let latency = r.get::<_, i64>(2)? as u64;
        let n_rows = r.get::<_, i64>(3)? as u64;
        let status: String = r.get(4)?;
        let d = r.get::<_, i64>(5)? as usize;
        let acc = accs.entry((ts / w_ms * w_ms, model)).or_default();
        acc.requests += 1;
        if acc.latency_counts.is_empty() {
            acc.latency_counts = vec![0; LATENCY_BUCKETS_US.len() + 1];
        }
        acc.latency_counts[latency_bucket(latency)] += 1;
        acc.latencies.push(latency);
        if status != "ok" {
            *acc.errors.entry(status).or_default() += 1;
            continue;
        }
        acc.rows += n_rows;
        for p in super::decode_f64s(r.get_ref(6)?.as_blob()?) {
            *acc.predictions.entry(format!("{p}")).or_default() += 1;
        }
        if d > 0 {
            if acc.bins.len() < d {
                acc.bins.resize(d, [0; 12]);
            }
            for row in r.get_ref(7)?.as_blob()?.chunks_exact(d) {
                for (j, b) in row.iter().enumerate() {
                    acc.bins[j][usize::from(*b).min(11)] += 1;
                }
            }
        }
    }
    drop(rows);

    let mut fb = conn
        .prepare_cached("SELECT pred_ts_ms, model, correct FROM feedback WHERE pred_ts_ms >= ?1")?;
    let mut rows = fb.query([since as i64])?;
    while let Some(r) = rows.next()? {
        let ts = r.get::<_, i64>(0)? as u64;
        let model: String = r.get(1)?;
        let acc = accs.entry((ts / w_ms * w_ms, Some(model))).or_default();
        acc.labeled += 1;
        acc.correct += u64::from(r.get::<_, bool>(2)?);
    }
    drop(rows);

    let windows = accs
        .into_iter()
        .map(|((start, model), mut acc)| {
            let info = model.as_deref().and_then(module);
            let drift = info
                .map(|info| feature_drift(&info, &acc.bins))
                .unwrap_or_default();
            let drifting = drift
                .iter()
                .filter(|f| f.level != wasmops_shared::wire::DriftLevel::Ok)
                .count();
            acc.latencies.sort_unstable();
            Window {
                start_ms: start,
                end_ms: start + w_ms,
                model,
                requests: acc.requests,
                rows: acc.rows,
                errors: acc.errors,
                latency_us_buckets: LATENCY_BUCKETS_US.to_vec(),
                latency_us_counts: if acc.latency_counts.is_empty() {
                    vec![0; LATENCY_BUCKETS_US.len() + 1]
                } else {
                    acc.latency_counts
                },
                latency_p50_us: percentile(&acc.latencies, 0.50),
                latency_p95_us: percentile(&acc.latencies, 0.95),
                latency_p99_us: percentile(&acc.latencies, 0.99),
                predictions: acc.predictions,
                dataset_drift: !drift.is_empty() && drifting * 2 >= drift.len(),
                drift,
                labeled: acc.labeled,
                correct: acc.correct,
                accuracy: (acc.labeled > 0).then(|| acc.correct as f64 / acc.labeled as f64),
            }
        })
        .collect();

    Ok(WindowsResponse {
        window_s: q.window_s,
        windows,
        concept_drift: concept_drift(conn)?,
    })
}

/// Drift of each feature's live bin counts against the module's training profile.
pub(crate) fn feature_drift(info: &ModuleInfo, live: &[[u64; 12]]) -> Vec<FeatureDrift> {
    info.profile
        .features
        .iter()
        .enumerate()
        .filter_map(|(j, f)| {
            let counts = live.get(j)?;
            let psi = drift::psi(&f.counts, counts)?;
            let js = drift::js_distance(&f.counts, counts)?;
            Some(FeatureDrift {
                feature: f.name.clone(),
                counts: counts.to_vec(),
                psi,
                js,
                level: drift::level(psi, js),
            })
        })
        .collect()
}

/// DDM over every stored label of each model, in prediction order.
fn concept_drift(conn: &Connection) -> rusqlite::Result<Vec<ConceptDrift>> {
    let mut stmt =
        conn.prepare_cached("SELECT model, correct FROM feedback ORDER BY model, prediction_id")?;
    let mut rows = stmt.query([])?;
    let mut per_model: BTreeMap<String, Ddm> = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let model: String = r.get(0)?;
        let correct: bool = r.get(1)?;
        per_model.entry(model).or_default().push(!correct);
    }
    Ok(per_model
        .into_iter()
        .map(|(model, ddm)| ConceptDrift {
            model,
            samples: ddm.samples(),
            error_rate: ddm.error_rate(),
            state: ddm.state(),
        })
        .collect())
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
