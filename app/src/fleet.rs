//! Working with devices: deploy a registered version, roll back, and pull telemetry windows
//! incrementally (then evaluate the alert rules over what is stored).
//!
//! Every outcome is written to IndexedDB before it is shown: deployments and rollbacks go to
//! the device's history whether they worked or not (with the device's own words), and a pull
//! stores its windows and the device's new cursor in one transaction.

use wasmops_shared::digest::short;
use wasmops_shared::monitor;

use crate::device_client::DeviceClient;
use crate::registry::{version_label, Alert, Deployment, DeviceStatus, ModelVersion, StoredWindow};
use crate::storage::{DeviceEntry, Storage};

pub use crate::logic::pull::CHART_WINDOWS;
use crate::logic::pull::{self, ALERT_LOOKBACK_WINDOWS, MAX_WINDOWS};

pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Why a pull failed: the device (shown in its row, from its stored status) or this browser's
/// storage (shown in the page's storage banner).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    Device(String),
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// What one pull did.
pub struct Pulled {
    pub status: DeviceStatus,
    pub windows: usize,
    /// Alerts raised or updated by this pull.
    pub alerts: Vec<Alert>,
}

/// Pulls the windows since the device's cursor, stores them with the new cursor, and evaluates
/// the alert rules over the device's stored windows. An unreachable device keeps everything
/// stored and records the error and when it was last seen.
pub async fn pull(
    storage: &Storage,
    device: &DeviceEntry,
    versions: &[ModelVersion],
) -> Result<Pulled, PullError> {
    let mut status = storage
        .device_statuses()
        .await?
        .into_iter()
        .find(|s| s.url == device.url)
        .unwrap_or_else(|| DeviceStatus::new(&device.url));
    let client = DeviceClient { device };
    // Window starts and the cursor are the device's clock (see `logic::pull`).
    let key = device.window_s.to_string();
    let plan = pull::plan(
        status.cursors.get(&key).copied(),
        status.last_seen_ms,
        now_ms(),
        device.window_s,
    );
    if plan.missed() > 0 {
        crate::logs::warn(
            "telemetry",
            format!(
                "{}: not pulled for {} windows of {} s; the oldest {} are beyond one pull ({MAX_WINDOWS} windows) and are not fetched",
                device.name,
                plan.wanted,
                device.window_s,
                plan.missed()
            ),
        );
    }
    let (from, count) = (plan.from, plan.count);
    let fetched = async {
        let info = client.info().await?;
        let windows = client.windows(device.window_s, count).await?;
        Ok::<_, crate::device_client::DeviceError>((info, windows))
    }
    .await;
    let (info, response) = match fetched {
        Ok(x) => x,
        Err(e) => {
            crate::logs::warn("telemetry", format!("{}: {e}", device.name));
            status.last_error = Some(e.to_string());
            storage.save_pull(&status, &[]).await?;
            return Err(PullError::Device(e.to_string()));
        }
    };
    let windows: Vec<StoredWindow> = response
        .windows
        .into_iter()
        .filter(|w| from.is_none_or(|f| w.start_ms >= f))
        .map(|w| StoredWindow::new(&device.url, device.window_s, w))
        .collect();
    if let Some(cursor) = pull::advance(
        status.cursors.get(&key).copied(),
        windows.iter().map(|w| w.window.start_ms),
    ) {
        status.cursors.insert(key.clone(), cursor);
    }
    status.last_seen_ms = Some(now_ms());
    status.last_info = Some(info);
    status.last_error = None;
    status.concept_drift = response.concept_drift;
    storage.save_pull(&status, &windows).await?;

    let stored: Vec<_> = storage
        // The alert rules look at the last windows only.
        .windows(
            &device.url,
            device.window_s,
            pull::since(
                status.cursors.get(&key).copied(),
                ALERT_LOOKBACK_WINDOWS,
                device.window_s,
            ),
        )
        .await?
        .into_iter()
        .map(|w| w.window)
        .collect();
    let accuracy = |hash: &str| {
        versions
            .iter()
            .find(|v| v.hash == hash)
            .and_then(ModelVersion::held_out_accuracy)
    };
    let findings = monitor::findings(&stored, &accuracy);
    let existing = storage.alerts().await?;
    let alerts = monitor::merge_alerts(
        &existing,
        (&device.url, &device.name),
        &findings,
        &|hash| version_label(versions, hash),
        now_ms(),
    );
    // An alert acknowledged while this pull ran keeps its acknowledgement.
    let latest = storage.alerts().await?;
    let alerts: Vec<Alert> = alerts
        .into_iter()
        .filter(|a| {
            latest
                .iter()
                .find(|l| l.id == a.id)
                .is_none_or(|l| l.acknowledged_ms.is_none())
        })
        .collect();
    if !alerts.is_empty() {
        storage.put_alerts(&alerts).await?;
        for a in &alerts {
            crate::logs::warn(
                "alerts",
                format!(
                    "{} · {} · {} alert: {}",
                    a.device_name,
                    a.version,
                    a.kind.as_str(),
                    a.detail
                ),
            );
        }
    }
    crate::logs::debug(
        "telemetry",
        format!(
            "{}: pulled {} windows of {} s",
            device.name,
            windows.len(),
            device.window_s
        ),
    );
    Ok(Pulled {
        status,
        windows: windows.len(),
        alerts,
    })
}

/// Uploads, activates and checks a version on one device, and records the outcome in the
/// device's history (the device's own message when it refused).
pub async fn deploy(
    storage: &Storage,
    device: &DeviceEntry,
    version: &ModelVersion,
    bytes: &[u8],
    signature: Option<&str>,
) -> Deployment {
    let result = deploy_and_check(device, version, bytes, signature).await;
    match &result {
        Ok(m) => crate::logs::info("deploy", format!("{}: {m}", device.name)),
        Err(e) => crate::logs::error(
            "deploy",
            format!("{}: {} not deployed: {e}", device.name, version.label()),
        ),
    }
    let d = Deployment::new(
        &device.url,
        now_ms(),
        "deploy",
        Some(version.hash.clone()),
        version.label(),
        result,
    );
    record(storage, d).await
}

async fn deploy_and_check(
    device: &DeviceEntry,
    version: &ModelVersion,
    bytes: &[u8],
    signature: Option<&str>,
) -> Result<String, String> {
    let client = DeviceClient { device };
    let uploaded = client
        .upload(bytes, signature)
        .await
        .map_err(|e| e.to_string())?;
    if uploaded.hash != version.hash {
        return Err(format!(
            "device stored hash {} but the module's hash is {}",
            uploaded.hash, version.hash
        ));
    }
    let activated = client
        .activate(&uploaded.hash)
        .await
        .map_err(|e| e.to_string())?;
    let d = version.card.feature_names.len();
    let rows: Vec<Vec<f64>> = version.check_rows.chunks(d).map(<[f64]>::to_vec).collect();
    let n = rows.len();
    let answer = client.verify(rows).await.map_err(|e| e.to_string())?;
    let k = version.card.outputs.len().max(1);
    let device_bits: Vec<u64> = answer
        .outputs
        .iter()
        .flatten()
        .map(|v| v.to_bits())
        .collect();
    let browser_bits: Vec<u64> = version.check_outputs.iter().map(|v| v.to_bits()).collect();
    let same = device_bits
        .chunks(k)
        .zip(browser_bits.chunks(k))
        .filter(|(a, b)| a == b)
        .count();
    let previous = activated
        .previous
        .map(|p| format!(" (was {})", short(&p)))
        .unwrap_or_default();
    if same == n && device_bits.len() == browser_bits.len() {
        Ok(format!(
            "{} active{previous} · {} conformance rows passed on the device · answers {same}/{n} held-out rows bit-identical to this browser",
            version.label(),
            uploaded.conformance_rows
        ))
    } else {
        Err(format!(
            "{} active{previous}, but its answers differ from this browser: only {same}/{n} held-out rows bit-identical",
            version.label()
        ))
    }
}

/// Rolls a device back to the version active before the current one, and records it.
pub async fn rollback(
    storage: &Storage,
    device: &DeviceEntry,
    versions: &[ModelVersion],
) -> Deployment {
    let client = DeviceClient { device };
    let d = match client.rollback().await {
        Ok(r) => {
            crate::logs::info(
                "deploy",
                format!(
                    "{}: rolled back from {} to {}",
                    device.name,
                    short(&r.rolled_back),
                    short(&r.active)
                ),
            );
            Deployment::new(
                &device.url,
                now_ms(),
                "rollback",
                Some(r.active.clone()),
                version_label(versions, &r.active),
                Ok(format!(
                    "rolled back from {} to {}",
                    version_label(versions, &r.rolled_back),
                    version_label(versions, &r.active)
                )),
            )
        }
        Err(e) => {
            crate::logs::error("deploy", format!("{}: rollback failed: {e}", device.name));
            Deployment::new(
                &device.url,
                now_ms(),
                "rollback",
                None,
                String::new(),
                Err(e.to_string()),
            )
        }
    };
    record(storage, d).await
}

/// Stores a history entry; a storage failure is appended to its message rather than lost.
async fn record(storage: &Storage, mut d: Deployment) -> Deployment {
    if let Err(e) = storage.add_deployment(&d).await {
        d.message = format!("{} (not saved to history: {e})", d.message);
    }
    d
}
