//! Following a registry alias (`serve --follow URI --model NAME --alias ALIAS`, issue 12).
//!
//! The device asks MLflow, every interval (jittered +-20 %, so a fleet started together does
//! not poll together), which version the alias points at. When that is not the version it
//! runs, it downloads the version's `model.wasm` (bounded by the device's upload limit),
//! checks its sha256 against the version's `wasmops.sha256` tag, verifies `model.wasm.sig`
//! against the trusted keys (when the device has any), loads it and runs its conformance
//! vectors (the upload path of [`Device::upload_signed`]) and activates it with
//! [`Device::activate_loaded`]: the active module is an `Arc` swapped under a short lock, so
//! calls in flight finish on the old module and no call fails during the switch.
//!
//! On any failure the device keeps serving what it had and says why in `/v1/info`
//! (`follow.last_error`). A version refused for its content (hash, signature, conformance,
//! size) is not downloaded again while the alias stays on it, for [`REFUSED_RETRY`]; errors
//! of the conversation (MLflow down, 5xx, credentials refused) back off exponentially, capped
//! at [`MAX_BACKOFF`] (or the interval, if longer).
//!
//! Outbound connections only, each request with a time limit, no redirects followed (the
//! credentials go only where they were meant to). The shared MLflow [`Client`] is not `Send`
//! (its transport trait is the browser's too), so the follower runs on a thread of its own
//! with a single-threaded runtime; the module's compile happens there too, after it took one
//! of the sandbox's load slots like an upload.

pub mod http;
pub mod prometheus;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmops_shared::digest::{content_hash, ContentHash};
use wasmops_shared::mlflow::{self as api, Client, MlflowError, ModelVersion};
use wasmops_shared::quote::bounded;
use wasmops_shared::signature;
use wasmops_shared::wire::{FollowState, FollowStatus};

use crate::device::{Device, DeviceError};
use crate::sandbox::SandboxError;

/// A refused version is tried again after this long even if the alias stays on it (a key
/// may have been added to the device's directory meanwhile... after a restart; or the
/// artifact replaced).
pub const REFUSED_RETRY: Duration = Duration::from_secs(3600);
/// Longest wait between two polls after errors (unless the interval itself is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Time limit of one request to MLflow (the module download included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// MLflow credentials from `--follow-credentials`. Never printed: `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { user: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { .. } => f.write_str("Basic(<hidden>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<hidden>)"),
        }
    }
}

impl Credentials {
    /// Reads the file's first line: `user:password` or `Bearer <token>`. Errors name the
    /// file, never its content.
    pub fn read(path: &Path) -> Result<Credentials, String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("follow credentials {}: {e}", path.display()))?;
        if meta.len() > 16 * 1024 {
            return Err(format!(
                "follow credentials {}: {} bytes is not a credentials line",
                path.display(),
                meta.len()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("follow credentials {}: {e}", path.display()))?;
        Credentials::parse(text.lines().next().unwrap_or("").trim())
            .map_err(|why| format!("follow credentials {}: {why}", path.display()))
    }

    fn parse(line: &str) -> Result<Credentials, String> {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("bearer ") {
            let token = line[7..].trim();
            if token.is_empty() {
                return Err("`Bearer` without a token".into());
            }
            return Ok(Credentials::Bearer(token.to_string()));
        }
        match line.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Credentials::Basic {
                user: user.to_string(),
                password: password.to_string(),
            }),
            _ => Err("write one line, `user:password` (basic auth) or `Bearer <token>`".into()),
        }
    }
}

/// Reads and checks `--follow-ca`: one or more PEM certificates.
pub fn read_ca(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("follow CA {}: {e}", path.display()))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(format!(
            "follow CA {}: no `-----BEGIN CERTIFICATE-----` in it",
            path.display()
        )),
        Err(e) => Err(format!(
            "follow CA {}: not PEM certificates ({e})",
            path.display()
        )),
    }
}

/// What to follow and how.
#[derive(Clone)]
pub struct FollowConfig {
    /// `http(s)://host[:port][/prefix]`, no trailing slash.
    pub tracking_uri: String,
    pub model: String,
    pub alias: String,
    pub interval: Duration,
    pub credentials: Option<Credentials>,
    /// Extra trusted CA certificates (PEM) for an https tracking URI.
    pub ca_pem: Option<Vec<u8>>,
    /// Largest module the device downloads (the device's upload limit, `max_body`).
    pub max_module_bytes: usize,
    /// Time limit of one request ([`REQUEST_TIMEOUT`]).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for FollowConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowConfig")
            .field("tracking_uri", &self.tracking_uri)
            .field("model", &self.model)
            .field("alias", &self.alias)
            .field("interval", &self.interval)
            .field("credentials", &self.credentials)
            .field("ca", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("max_module_bytes", &self.max_module_bytes)
            .finish()
    }
}

impl FollowConfig {
    /// Checks the tracking URI: http or https, no credentials in it (they go in a file), no
    /// query; https needs `ca_pem` (the device carries no root store).
    pub fn new(
        uri: String,
        model: String,
        alias: String,
        interval: Duration,
        credentials: Option<Credentials>,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<FollowConfig, String> {
        let uri = uri.trim();
        let rest = if let Some(r) = uri.strip_prefix("https://") {
            if ca_pem.is_none() {
                return Err(format!(
                    "follow {}: an https tracking URI needs --follow-ca with the CA that signed its certificate (the device has no built-in root store; for a public CA pass the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt)",
                    bounded(uri)
                ));
            }
            r
        } else if let Some(r) = uri.strip_prefix("http://") {
            if ca_pem.is_some() {
                return Err(format!(
                    "follow {}: --follow-ca is for an https tracking URI, and this one is http",
                    bounded(uri)
                ));
            }
            r
        } else {
            return Err(format!(
                "follow {}: the tracking URI must start with http:// or https://",
                bounded(uri)
            ));
        };
        let scheme = &uri[..uri.len() - rest.len()];
        let rest = rest.trim_end_matches('/');
        let uri = format!("{scheme}{rest}");
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() {
            return Err(format!("follow {}: no host in it", bounded(&uri)));
        }
        if authority.contains('@') {
            return Err(
                "follow: the tracking URI holds credentials; put them in a file and pass --follow-credentials FILE (they would show in logs and /v1/info)".into(),
            );
        }
        if rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "follow {}: the tracking URI must not have a query or fragment",
                bounded(&uri)
            ));
        }
        Ok(FollowConfig {
            tracking_uri: uri,
            model,
            alias,
            interval,
            credentials,
            ca_pem,
            max_module_bytes: 8 << 20,
            request_timeout: REQUEST_TIMEOUT,
        })
    }
}

/// Why a version was refused (the `reason` label of `wasmops_follow_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefusalReason {
    /// No `wasmops.sha256` tag, or one that is not a sha256.
    HashTag,
    /// The downloaded bytes are not what the tag says.
    Sha256Mismatch,
    /// Unsigned, or a signature that does not verify with a trusted key.
    Signature,
    /// Bigger than the device's upload limit.
    TooLarge,
    /// The loader refused it: static checks, compile, or failing conformance vectors.
    ModuleRejected,
    /// Its source is not behind MLflow's artifact proxy.
    Source,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 6] = [
        RefusalReason::HashTag,
        RefusalReason::Sha256Mismatch,
        RefusalReason::Signature,
        RefusalReason::TooLarge,
        RefusalReason::ModuleRejected,
        RefusalReason::Source,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::HashTag => "hash_tag",
            RefusalReason::Sha256Mismatch => "sha256_mismatch",
            RefusalReason::Signature => "signature",
            RefusalReason::TooLarge => "too_large",
            RefusalReason::ModuleRejected => "module_rejected",
            RefusalReason::Source => "source",
        }
    }
}

/// What the follower shares with the HTTP side: its config (for the 409 message), its
/// status (for `/v1/info`) and counters (for `/metrics`).
pub struct Shared {
    pub config: FollowConfig,
    status: Mutex<FollowStatus>,
    refused: Mutex<BTreeMap<RefusalReason, u64>>,
    checks: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    pub fn new(config: FollowConfig) -> Shared {
        Shared {
            status: Mutex::new(FollowStatus {
                tracking_uri: config.tracking_uri.clone(),
                model: config.model.clone(),
                alias: config.alias.clone(),
                desired_version: None,
                running_version: None,
                state: FollowState::Starting,
                last_check: None,
                last_error: None,
            }),
            config,
            refused: Mutex::new(BTreeMap::new()),
            checks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    pub fn status(&self) -> FollowStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Versions refused since the start, by reason.
    pub fn refused(&self) -> BTreeMap<RefusalReason, u64> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Polls made, and polls that ended in an error (not counting refusals).
    pub fn checks(&self) -> (u64, u64) {
        (
            self.checks.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }

    fn update(&self, f: impl FnOnce(&mut FollowStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Starts following: attaches the shared state to the device (so manual activation is
/// refused from now on) and runs the poll loop on a thread of its own.
pub fn start(device: Arc<Device>, config: FollowConfig) -> std::io::Result<Arc<Shared>> {
    let shared = Arc::new(Shared::new(config));
    device.attach_follower(shared.clone());
    let follower_shared = shared.clone();
    std::thread::Builder::new()
        .name("wasmops-follow".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the follower could not start its runtime; not following");
                    follower_shared.update(|s| {
                        s.state = FollowState::Error;
                        s.last_error = Some(format!("the follower could not start: {e}"));
                    });
                    return;
                }
            };
            runtime.block_on(run(device, follower_shared));
        })?;
    Ok(shared)
}

async fn run(device: Arc<Device>, shared: Arc<Shared>) {
    let config = shared.config.clone();
    let transport = match http::HttpTransport::new(&config) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "the follower's HTTP client could not be built; not following");
            shared.update(|s| {
                s.state = FollowState::Error;
                s.last_error = Some(e);
            });
            return;
        }
    };
    tracing::info!(
        tracking_uri = %config.tracking_uri,
        model = %config.model,
        alias = %config.alias,
        interval_s = config.interval.as_secs_f64(),
        "following the alias"
    );
    let mut follower = Follower {
        device,
        shared,
        client: Client::new(transport),
        failures: 0,
        refusal: None,
        rng: seed(),
    };
    loop {
        let ok = follower.check().await;
        let wait = follower.next_wait(ok);
        tokio::time::sleep(wait).await;
    }
}

/// A version refused for its content, remembered so it is not downloaded on every poll.
struct Refusal {
    version: String,
    at: Instant,
    /// What `last_error` says while the alias stays on it.
    message: String,
}

/// Why one update did not happen.
enum Failure {
    /// The version itself is bad: wait for the alias to move.
    Refused(RefusalReason, String),
    /// Something on the way failed: try again (with backoff).
    Transient(String),
}

struct Follower {
    device: Arc<Device>,
    shared: Arc<Shared>,
    client: Client<http::HttpTransport>,
    /// Polls in a row that ended in an error.
    failures: u32,
    refusal: Option<Refusal>,
    rng: u64,
}

impl Follower {
    /// One poll; false when it ended in an error (the next one backs off).
    async fn check(&mut self) -> bool {
        self.shared.checks.fetch_add(1, Ordering::Relaxed);
        self.shared
            .update(|s| s.last_check = Some(crate::telemetry::now_ms()));
        let config = &self.shared.config;
        let mv = match self
            .client
            .model_version_by_alias(&config.model, &config.alias)
            .await
        {
            Ok(mv) => mv,
            Err(e) => {
                let message = self.describe(&e, "asking for the alias");
                return self.fail(message);
            }
        };
        let version = mv.version.clone();
        self.shared
            .update(|s| s.desired_version = Some(version.clone()));
        let wanted = mv.tag(api::SHA256_TAG).map(str::to_ascii_lowercase);
        let running = self.device.active().map(|m| m.info.hash.clone());
        if wanted.is_some() && running == wanted {
            // Already runs it (also right after a restart, which restored it).
            self.refusal = None;
            if let Some(h) = &running {
                self.device.set_module_version(h, &version);
            }
            self.in_sync(&version);
            return true;
        }
        if let Some(r) = &self.refusal {
            if r.version == version && r.at.elapsed() < REFUSED_RETRY {
                let message = r.message.clone();
                self.failures = 0;
                self.shared.update(|s| {
                    s.state = FollowState::Refused;
                    s.last_error = Some(message);
                });
                return true;
            }
        }
        self.refusal = None;
        self.shared.update(|s| s.state = FollowState::Updating);
        match self.update(&mv).await {
            Ok(hash) => {
                tracing::info!(version = %version, module = %hash, "now running the version the alias points at");
                // Its metrics carry the registry's version from now on.
                self.device.set_module_version(&hash, &version);
                self.in_sync(&version);
                true
            }
            Err(Failure::Refused(reason, why)) => {
                let message = format!("version {} refused: {why}", bounded(&version));
                tracing::warn!(reason = reason.as_str(), error = %message, "kept the running version");
                *self
                    .shared
                    .refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(reason)
                    .or_default() += 1;
                self.refusal = Some(Refusal {
                    version,
                    at: Instant::now(),
                    message: message.clone(),
                });
                self.shared.update(|s| {
                    s.state = FollowState::Refused;
                    s.last_error = Some(message);
                });
                self.failures = 0;
                true
            }
            Err(Failure::Transient(why)) => {
                self.fail(format!("updating to version {}: {why}", bounded(&version)))
            }
        }
    }

    fn in_sync(&mut self, version: &str) {
        self.failures = 0;
        self.shared.update(|s| {
            s.running_version = Some(version.to_string());
            s.state = FollowState::InSync;
            s.last_error = None;
        });
    }

    fn fail(&mut self, message: String) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %message, failures = self.failures, "follow check failed; still serving what the device had");
        self.shared.update(|s| {
            s.state = FollowState::Error;
            s.last_error = Some(message);
        });
        false
    }

    /// Download, hash, signature, load (conformance), activate. Returns the module's hash.
    async fn update(&mut self, mv: &ModelVersion) -> Result<String, Failure> {
        let max = self.shared.config.max_module_bytes;
        let tag = mv.tag(api::SHA256_TAG).ok_or_else(|| {
            Failure::Refused(
                RefusalReason::HashTag,
                format!(
                    "it has no `{}` tag, so its module cannot be checked (register versions from the dashboard or the CLI, which tag them)",
                    api::SHA256_TAG
                ),
            )
        })?;
        let want = ContentHash::parse(&tag.to_ascii_lowercase()).map_err(|_| {
            Failure::Refused(
                RefusalReason::HashTag,
                format!(
                    "its `{}` tag {} is not a sha256 (64 hex digits)",
                    api::SHA256_TAG,
                    bounded(tag)
                ),
            )
        })?;
        if let Some(size) = mv
            .tag(api::SIZE_TAG)
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            if size > max as u64 {
                return Err(Failure::Refused(
                    RefusalReason::TooLarge,
                    format!("its module is {size} bytes, more than this device's limit of {max} bytes (max_body)"),
                ));
            }
        }
        let bytes = self
            .client
            .get_artifact(&mv.source, api::MODULE_FILE)
            .await
            .map_err(|e| self.artifact_failure(e, api::MODULE_FILE))?;
        let actual = content_hash(&bytes);
        if actual != want.as_str() {
            return Err(Failure::Refused(
                RefusalReason::Sha256Mismatch,
                format!(
                    "the downloaded module's sha256 is {actual}, but the version's `{}` tag says {want}: the artifact or the tag was altered",
                    api::SHA256_TAG
                ),
            ));
        }
        let sig = if self.device.trusted_keys().is_empty() {
            None
        } else {
            match self
                .client
                .get_artifact(&mv.source, signature::ARTIFACT)
                .await
            {
                Ok(b) => Some(String::from_utf8(b).map_err(|_| {
                    Failure::Refused(
                        RefusalReason::Signature,
                        format!("its `{}` is not text", signature::ARTIFACT),
                    )
                })?),
                Err(MlflowError::Api { status: 404, .. }) => None,
                Err(e) => return Err(self.artifact_failure(e, signature::ARTIFACT)),
            }
        };
        self.device
            .verify_signature(&bytes, sig.as_deref())
            .map_err(|e| match e {
                DeviceError::Signature(s) => Failure::Refused(
                    RefusalReason::Signature,
                    format!("its signature ({}): {s}", signature::ARTIFACT),
                ),
                other => Failure::Transient(other.to_string()),
            })?;
        let permit = self.device.sandbox().load_permit().await;
        let loaded = self
            .device
            .upload_signed(&bytes, sig.as_deref())
            .map_err(|e| match e {
                DeviceError::Sandbox(SandboxError::Internal(m)) => Failure::Transient(m),
                DeviceError::Sandbox(s) => {
                    Failure::Refused(RefusalReason::ModuleRejected, s.to_string())
                }
                DeviceError::Signature(s) => {
                    Failure::Refused(RefusalReason::Signature, s.to_string())
                }
                other => Failure::Transient(other.to_string()),
            })?;
        drop(permit);
        let hash = loaded.info.hash.clone();
        self.device
            .activate_loaded(loaded)
            .map_err(|e| Failure::Transient(format!("activating it: {e}")))?;
        Ok(hash)
    }

    fn artifact_failure(&self, e: MlflowError, file: &str) -> Failure {
        match &e {
            MlflowError::Unreachable(m) if m.contains(http::TOO_LARGE) => Failure::Refused(
                RefusalReason::TooLarge,
                format!("downloading `{file}`: {m}"),
            ),
            MlflowError::Unsupported(m) => Failure::Refused(RefusalReason::Source, m.clone()),
            _ => Failure::Transient(self.describe(&e, &format!("downloading `{file}`"))),
        }
    }

    /// An MLflow error in the device's words (the shared messages speak to the dashboard).
    fn describe(&self, e: &MlflowError, during: &str) -> String {
        let c = &self.shared.config;
        match e {
            MlflowError::Unreachable(m) => {
                format!("{during}: MLflow at {} did not answer: {m}", c.tracking_uri)
            }
            MlflowError::Unauthorized(_) => format!(
                "{during}: MLflow refused the credentials (HTTP 401); check --follow-credentials"
            ),
            MlflowError::Api { code, message, .. } if code == "RESOURCE_DOES_NOT_EXIST" => {
                format!(
                    "{during}: MLflow has no alias {} on registered model {} ({})",
                    bounded(&c.alias),
                    bounded(&c.model),
                    bounded(message)
                )
            }
            other => format!("{during}: {other}"),
        }
    }

    fn next_wait(&mut self, ok: bool) -> Duration {
        let (wait, rng) = next_wait(self.shared.config.interval, ok, self.failures, self.rng);
        self.rng = rng;
        wait
    }
}

/// The interval (after `failures` errors in a row: doubled per failure, capped at
/// [`MAX_BACKOFF`] or the interval), jittered by +-20 %. Returns the wait and the next
/// state of the generator.
fn next_wait(interval: Duration, ok: bool, failures: u32, mut rng: u64) -> (Duration, u64) {
    let base = if ok || failures == 0 {
        interval
    } else {
        let cap = MAX_BACKOFF.max(interval);
        interval.saturating_mul(1u32 << failures.min(16)).min(cap)
    };
    // xorshift64*: jitter needs no cryptographic randomness, only devices that differ.
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    let r = rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
    let unit = r as f64 / (1u64 << 53) as f64;
    (base.mul_f64(0.8 + 0.4 * unit), rng)
}

/// A per-process seed for the jitter: the clock's nanoseconds and the process id.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_and_never_print() {
        let c = Credentials::parse("admin:s3cret:with-colon").unwrap();
        assert_eq!(
            c,
            Credentials::Basic {
                user: "admin".into(),
                password: "s3cret:with-colon".into()
            }
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let b = Credentials::parse("Bearer tok-123").unwrap();
        assert_eq!(b, Credentials::Bearer("tok-123".into()));
        assert!(!format!("{b:?}").contains("tok-123"));
        assert!(Credentials::parse("justatoken").is_err());
        assert!(Credentials::parse("bearer ").is_err());
    }

    #[test]
    fn tracking_uris_are_checked() {
        let new = |uri: &str, ca: Option<Vec<u8>>| {
            FollowConfig::new(
                uri.into(),
                "m".into(),
                "a".into(),
                Duration::from_secs(1),
                None,
                ca,
            )
        };
        assert_eq!(
            new("http://mlflow:5000/", None).unwrap().tracking_uri,
            "http://mlflow:5000"
        );
        assert!(new("https://mlflow", None)
            .unwrap_err()
            .contains("--follow-ca"));
        assert!(new("http://user:pw@mlflow", None)
            .unwrap_err()
            .contains("--follow-credentials"));
        assert!(new("ftp://mlflow", None).unwrap_err().contains("http://"));
        assert!(new("http://mlflow?x=1", None)
            .unwrap_err()
            .contains("query"));
        assert!(new("http://", None).unwrap_err().contains("no host"));
        assert!(new("http://mlflow", Some(b"pem".to_vec()))
            .unwrap_err()
            .contains("https"));
    }

    #[test]
    fn waits_jitter_and_back_off_with_a_cap() {
        let config = FollowConfig::new(
            "http://127.0.0.1:9".into(),
            "m".into(),
            "a".into(),
            Duration::from_secs(10),
            None,
            None,
        )
        .unwrap();
        let shared = Arc::new(Shared::new(config));
        let mut waits = Vec::new();
        let mut f = FollowerWaits {
            shared,
            failures: 0,
            rng: 42,
        };
        for _ in 0..200 {
            waits.push(f.wait(true));
        }
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_secs(8) && *w <= Duration::from_secs(12)));
        // Not all the same: devices started together spread out.
        assert!(waits.iter().any(|w| *w != waits[0]));
        f.failures = 1;
        assert!(f.wait(false) >= Duration::from_secs(16));
        f.failures = 30;
        let capped = f.wait(false);
        assert!(capped <= MAX_BACKOFF.mul_f64(1.2) && capped >= MAX_BACKOFF.mul_f64(0.8));
    }

    /// The wait computation alone (a `Follower` needs a device).
    struct FollowerWaits {
        shared: Arc<Shared>,
        failures: u32,
        rng: u64,
    }

    impl FollowerWaits {
        fn wait(&mut self, ok: bool) -> Duration {
            let (w, rng) = next_wait(self.shared.config.interval, ok, self.failures, self.rng);
            self.rng = rng;
            w
        }
    }
}
