//! Settings for `wasmops-edge serve`: command-line flags, then `WASMOPS_*` environment
//! variables, then a TOML file (`--config`), then defaults. The first that sets a value wins.
//!
//! ```toml
//! listen = "0.0.0.0:7878"
//! data_dir = "/var/lib/wasmops-edge"
//! token_file = "/etc/wasmops-edge/token"   # or `token = "..."`
//! allow_origins = ["https://dashboard.example"]
//! public_predict = false
//! name = "gateway-1"
//! max_body = 8388608
//! max_buffered = 67108864                 # request bodies in memory at once, all clients
//! max_connections = 512
//! header_timeout_s = 10                   # to send a request head (also idle keep-alive)
//! body_timeout_s = 30                     # to send a request body (or to go on reading an answer)
//! log_format = "text"                     # or "json"
//! tls_cert = "/etc/wasmops-edge/cert.pem"  # HTTPS: both or neither
//! tls_key = "/etc/wasmops-edge/key.pem"
//!
//! trusted_keys = "/etc/wasmops-edge/keys"  # run only modules signed by a key in here (*.pem)
//! follow = "https://mlflow.example"        # follow a registry alias (with model and alias)
//! model = "iris"
//! alias = "champion"
//! follow_interval_s = 30
//! follow_credentials = "/etc/wasmops-edge/mlflow-credentials"  # `user:password` or `Bearer <token>`
//! follow_ca = "/etc/wasmops-edge/mlflow-ca.pem"
//! labels = { group = "canary", site = "north" }
//!
//! [telemetry]
//! max_age_days = 7
//! max_records = 1000000
//! synchronous = "normal"                  # or "full" (survives power loss, slower)
//!
//! [remote_write]                          # push metrics where Prometheus cannot scrape
//! url = "https://prometheus.example/api/v1/write"
//! interval_s = 15
//! bearer_file = "/etc/wasmops-edge/remote-write-token"   # or basic_auth_file (user:password)
//! ca = "/etc/wasmops-edge/ca.pem"          # extra CA for the receiver's certificate
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::follow::{Credentials, FollowConfig};
use crate::server::tls::TlsFiles;
use crate::telemetry::remote_write::{self, RemoteWriteConfig};
use crate::telemetry::TelemetryConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("reading token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no access token: pass --token, set WASMOPS_TOKEN, or set `token`/`token_file` in the config file")]
    NoToken,
    #[error("{0}")]
    Invalid(String),
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `wasmops-edge serve`; each can also come from a `WASMOPS_*` variable or the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and WASMOPS_* variables override it).
    #[arg(long, env = "WASMOPS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the bound address is printed)
    /// [default: 127.0.0.1:7878].
    #[arg(long, env = "WASMOPS_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Where modules, the telemetry database and logs are kept [default: wasmops-data].
    #[arg(long, env = "WASMOPS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Access token clients send as `Authorization: Bearer <token>`.
    #[arg(
        long,
        env = "WASMOPS_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// Read the access token from this file (first line) instead.
    #[arg(long, env = "WASMOPS_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Browser origin allowed to call the API (repeat, or comma-separate in the variable).
    #[arg(
        long = "allow-origin",
        env = "WASMOPS_ALLOW_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allow_origins: Vec<String>,
    /// Let predict be called without the token.
    #[arg(long, env = "WASMOPS_PUBLIC_PREDICT", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub public_predict: Option<bool>,
    /// Name this device reports [default: wasmops-device].
    #[arg(long, env = "WASMOPS_NAME")]
    pub name: Option<String>,
    /// Largest request body in bytes [default: 8388608].
    #[arg(long, env = "WASMOPS_MAX_BODY", value_name = "BYTES")]
    pub max_body: Option<usize>,
    /// Request bodies held in memory at once, in bytes, across all clients; more wait
    /// [default: 67108864].
    #[arg(long, env = "WASMOPS_MAX_BUFFERED", value_name = "BYTES")]
    pub max_buffered: Option<usize>,
    /// Open connections at most; beyond that a new one replaces the longest-idle one
    /// [default: 512].
    #[arg(long, env = "WASMOPS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request head, also on an idle kept-alive connection
    /// [default: 10].
    #[arg(long, env = "WASMOPS_HEADER_TIMEOUT_S", value_name = "SECONDS")]
    pub header_timeout_s: Option<u64>,
    /// Seconds a client has to send a request body; also how long a connection may sit with
    /// no request running and no byte moving (a client that stopped reading) [default: 30].
    #[arg(long, env = "WASMOPS_BODY_TIMEOUT_S", value_name = "SECONDS")]
    pub body_timeout_s: Option<u64>,
    /// Log format on stderr and in DATA_DIR/logs [default: text].
    #[arg(long, env = "WASMOPS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Serve HTTPS with this certificate chain (PEM, server certificate first); needs
    /// --tls-key.
    #[arg(long, env = "WASMOPS_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the --tls-cert certificate.
    #[arg(long, env = "WASMOPS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Keep telemetry records this many days [default: 7].
    #[arg(long, env = "WASMOPS_TELEMETRY_MAX_AGE_DAYS", value_name = "DAYS")]
    pub telemetry_max_age_days: Option<u64>,
    /// Keep at most this many telemetry records [default: 1000000].
    #[arg(long, env = "WASMOPS_TELEMETRY_MAX_RECORDS", value_name = "N")]
    pub telemetry_max_records: Option<u64>,
    /// Run only modules signed by one of the public keys (`*.pem`, P-256) in this directory:
    /// pushed modules need the `wasmops-signature` header, pulled ones their `model.wasm.sig`.
    /// Without it any module is accepted.
    #[arg(long, env = "WASMOPS_TRUSTED_KEYS", value_name = "DIR")]
    pub trusted_keys: Option<PathBuf>,
    /// Follow a registry alias on this MLflow tracking URI (needs --model and --alias): the
    /// device polls it and runs the version the alias points at.
    #[arg(long, env = "WASMOPS_FOLLOW", value_name = "TRACKING_URI")]
    pub follow: Option<String>,
    /// The registered model to follow (with --follow).
    #[arg(long, env = "WASMOPS_MODEL", value_name = "NAME")]
    pub model: Option<String>,
    /// The alias of --model to follow, e.g. `champion` or `canary`.
    #[arg(long, env = "WASMOPS_ALIAS", value_name = "ALIAS")]
    pub alias: Option<String>,
    /// Seconds between two polls of the alias, jittered by +-20 % [default: 30].
    #[arg(long, env = "WASMOPS_FOLLOW_INTERVAL", value_name = "SECONDS")]
    pub follow_interval: Option<u64>,
    /// File with MLflow credentials: `user:password` (basic auth) or `Bearer <token>`.
    #[arg(long, env = "WASMOPS_FOLLOW_CREDENTIALS", value_name = "FILE")]
    pub follow_credentials: Option<PathBuf>,
    /// CA certificates (PEM) that an https tracking URI's certificate must chain to; the
    /// device has no built-in root store (pass the system bundle for a public CA).
    #[arg(long, env = "WASMOPS_FOLLOW_CA", value_name = "FILE")]
    pub follow_ca: Option<PathBuf>,
    /// A label `key=value` (repeat, or comma-separate in the variable), e.g. `group=canary`:
    /// shown in /v1/info and on the follow metrics.
    #[arg(
        long = "label",
        env = "WASMOPS_LABELS",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub labels: Vec<String>,
    /// Push metrics to this Prometheus remote-write URL (e.g.
    /// http://prometheus:9090/api/v1/write), for devices Prometheus cannot scrape.
    #[arg(long, env = "WASMOPS_REMOTE_WRITE", value_name = "URL")]
    pub remote_write: Option<String>,
    /// Seconds between two pushes [default: 15].
    #[arg(long, env = "WASMOPS_REMOTE_WRITE_INTERVAL", value_name = "SECONDS")]
    pub remote_write_interval: Option<u64>,
    /// Send `Authorization: Bearer <first line of FILE>` with every push.
    #[arg(long, env = "WASMOPS_REMOTE_WRITE_BEARER_FILE", value_name = "FILE")]
    pub remote_write_bearer_file: Option<PathBuf>,
    /// Send basic auth with every push; FILE holds `user:password` on its first line.
    #[arg(
        long,
        env = "WASMOPS_REMOTE_WRITE_BASIC_AUTH_FILE",
        value_name = "FILE"
    )]
    pub remote_write_basic_auth_file: Option<PathBuf>,
    /// Also trust the CA certificates (PEM) in FILE for an HTTPS remote-write URL.
    #[arg(long, env = "WASMOPS_REMOTE_WRITE_CA", value_name = "FILE")]
    pub remote_write_ca: Option<PathBuf>,
}

/// The config file's shape (every key optional; unknown keys are an error).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_origins: Vec<String>,
    pub public_predict: Option<bool>,
    pub name: Option<String>,
    pub max_body: Option<usize>,
    pub max_buffered: Option<usize>,
    pub max_connections: Option<usize>,
    pub header_timeout_s: Option<u64>,
    pub body_timeout_s: Option<u64>,
    pub log_format: Option<LogFormat>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub telemetry: FileTelemetry,
    pub trusted_keys: Option<PathBuf>,
    pub follow: Option<String>,
    pub model: Option<String>,
    pub alias: Option<String>,
    pub follow_interval_s: Option<u64>,
    pub follow_credentials: Option<PathBuf>,
    pub follow_ca: Option<PathBuf>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub remote_write: FileRemoteWrite,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRemoteWrite {
    pub url: Option<String>,
    pub interval_s: Option<u64>,
    pub bearer_file: Option<PathBuf>,
    pub basic_auth_file: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTelemetry {
    pub max_age_days: Option<u64>,
    pub max_records: Option<u64>,
    pub synchronous: Option<String>,
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub token: String,
    pub allow_origins: Vec<String>,
    pub public_predict: bool,
    pub name: String,
    pub max_body: usize,
    pub max_buffered: usize,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub log_format: LogFormat,
    /// HTTPS instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    pub telemetry: TelemetryConfig,
    /// The directory of trusted public keys (loaded by [`crate::trust::load_dir`] at start).
    pub trusted_keys: Option<PathBuf>,
    /// The alias to follow, if any (credentials and CA already read).
    pub follow: Option<FollowConfig>,
    /// `--label` pairs.
    pub labels: BTreeMap<String, String>,
    /// Push metrics to a remote-write receiver.
    pub remote_write: Option<RemoteWriteConfig>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

impl ServeConfig {
    /// Merges flags/variables (already merged by clap) over the file over defaults.
    pub fn resolve(args: ServeArgs) -> Result<ServeConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let token = match (args.token, args.token_file, file.token, file.token_file) {
            (Some(t), ..) => t,
            (None, Some(p), ..) | (None, None, None, Some(p)) => read_token(&p)?,
            (None, None, Some(t), _) => t,
            (None, None, None, None) => return Err(ConfigError::NoToken),
        };
        if token.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "the access token must not be empty".into(),
            ));
        }
        let sync_full = match file.telemetry.synchronous.as_deref() {
            None | Some("normal") => false,
            Some("full") => true,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "telemetry.synchronous must be \"normal\" or \"full\", not {other:?}"
                )))
            }
        };
        let defaults = TelemetryConfig::default();
        let max_age_days = args.telemetry_max_age_days.or(file.telemetry.max_age_days);
        let max_body = args.max_body.or(file.max_body).unwrap_or(8 << 20);
        if max_body == 0 {
            return Err(ConfigError::Invalid("max_body must be positive".into()));
        }
        let max_buffered = args.max_buffered.or(file.max_buffered).unwrap_or(64 << 20);
        if max_buffered < max_body {
            return Err(ConfigError::Invalid(format!(
                "max_buffered ({max_buffered}) must be at least max_body ({max_body}): otherwise no body of the largest size could ever be read"
            )));
        }
        let max_connections = args.max_connections.or(file.max_connections).unwrap_or(512);
        if max_connections < 2 {
            return Err(ConfigError::Invalid(
                "max_connections must be at least 2".into(),
            ));
        }
        let seconds = |value: Option<u64>, default: u64, what: &str| match value.unwrap_or(default)
        {
            0 => Err(ConfigError::Invalid(format!(
                "{what} must be at least 1 second"
            ))),
            s => Ok(Duration::from_secs(s)),
        };
        let header_timeout = seconds(
            args.header_timeout_s.or(file.header_timeout_s),
            10,
            "header_timeout_s",
        )?;
        let body_timeout = seconds(
            args.body_timeout_s.or(file.body_timeout_s),
            30,
            "body_timeout_s",
        )?;
        let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "a TLS certificate was given without its key: set both tls_cert and tls_key (--tls-cert/--tls-key, WASMOPS_TLS_CERT/WASMOPS_TLS_KEY) or neither".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "a TLS key was given without its certificate: set both tls_cert and tls_key (--tls-cert/--tls-key, WASMOPS_TLS_CERT/WASMOPS_TLS_KEY) or neither".into(),
                ))
            }
        };
        let labels = if args.labels.is_empty() {
            file.labels
        } else {
            args.labels
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
                    None => Err(ConfigError::Invalid(format!(
                        "--label {}: write it as key=value, e.g. group=canary",
                        wasmops_shared::quote::bounded(l)
                    ))),
                })
                .collect::<Result<_, _>>()?
        };
        for (k, v) in &labels {
            check_label(k, v)?;
        }
        let follow = resolve_follow(
            args.follow.or(file.follow),
            args.model.or(file.model),
            args.alias.or(file.alias),
            seconds(
                args.follow_interval.or(file.follow_interval_s),
                30,
                "follow_interval_s",
            )?,
            args.follow_credentials.or(file.follow_credentials),
            args.follow_ca.or(file.follow_ca),
        )?;
        let name = args
            .name
            .or(file.name)
            .unwrap_or_else(|| "wasmops-device".into());
        let rw = file.remote_write;
        let remote_write = match args.remote_write.or(rw.url) {
            None => None,
            Some(url) => {
                let interval_s = args
                    .remote_write_interval
                    .or(rw.interval_s)
                    .unwrap_or(remote_write::DEFAULT_INTERVAL.as_secs());
                if interval_s == 0 {
                    return Err(ConfigError::Invalid(
                        "remote_write interval must be at least 1 second".into(),
                    ));
                }
                let bearer = args.remote_write_bearer_file.or(rw.bearer_file);
                let basic = args.remote_write_basic_auth_file.or(rw.basic_auth_file);
                let auth = match (bearer, basic) {
                    (Some(_), Some(_)) => {
                        return Err(ConfigError::Invalid(
                            "remote write takes a bearer file or a basic-auth file, not both"
                                .into(),
                        ))
                    }
                    (Some(path), None) => Some(remote_write::Auth::Bearer(read_secret(&path)?)),
                    (None, Some(path)) => {
                        let line = read_secret(&path)?;
                        let (user, password) = line.split_once(':').ok_or_else(|| {
                            ConfigError::Invalid(format!(
                                "basic-auth file {} must hold `user:password`",
                                path.display()
                            ))
                        })?;
                        Some(remote_write::Auth::Basic {
                            user: user.to_string(),
                            password: password.to_string(),
                        })
                    }
                    (None, None) => None,
                };
                Some(RemoteWriteConfig {
                    url,
                    interval: Duration::from_secs(interval_s),
                    auth,
                    ca: args.remote_write_ca.or(rw.ca),
                    job: "wasmops-edge".into(),
                    instance: name.clone(),
                })
            }
        };
        Ok(ServeConfig {
            trusted_keys: args.trusted_keys.or(file.trusted_keys),
            follow,
            labels,
            remote_write,
            tls,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:7878".parse().expect("valid address")),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("wasmops-data")),
            token,
            allow_origins: if args.allow_origins.is_empty() {
                file.allow_origins
            } else {
                args.allow_origins
            },
            public_predict: args.public_predict.or(file.public_predict).unwrap_or(false),
            name,
            max_body,
            max_buffered,
            max_connections,
            header_timeout,
            body_timeout,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            telemetry: TelemetryConfig {
                max_age: max_age_days
                    .map(|d| Duration::from_secs(d * 24 * 3600))
                    .unwrap_or(defaults.max_age),
                max_records: args
                    .telemetry_max_records
                    .or(file.telemetry.max_records)
                    .unwrap_or(defaults.max_records),
                sync_full,
                retention_every: defaults.retention_every,
            },
        })
    }
}

/// Label names as Prometheus allows them, none of the names the follow metrics use themselves.
fn check_label(key: &str, value: &str) -> Result<(), ConfigError> {
    const RESERVED: &[&str] = &[
        "model",
        "alias",
        "desired_version",
        "running_version",
        "state",
        "reason",
        "hash",
        "kind",
        "le",
        "job",
        "instance",
    ];
    let valid = key
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if key.is_empty() || key.len() > 64 || !valid || key.starts_with("__") {
        return Err(ConfigError::Invalid(format!(
            "label name {}: use letters, digits and `_` (not first a digit, not `__` first), at most 64",
            wasmops_shared::quote::bounded(key)
        )));
    }
    if RESERVED.contains(&key) {
        return Err(ConfigError::Invalid(format!(
            "label name `{key}` is taken by the device's own metric labels; choose another (e.g. `group`)"
        )));
    }
    if value.is_empty() || value.len() > 128 || value.chars().any(char::is_control) {
        return Err(ConfigError::Invalid(format!(
            "label `{key}`: its value must be 1 to 128 characters without control characters"
        )));
    }
    Ok(())
}

/// `--follow` with its model and alias, all or none; the credentials and CA files are read
/// here so a bad file stops the start with its name.
fn resolve_follow(
    uri: Option<String>,
    model: Option<String>,
    alias: Option<String>,
    interval: Duration,
    credentials: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<FollowConfig>, ConfigError> {
    let Some(uri) = uri else {
        if model.is_some() || alias.is_some() || credentials.is_some() || ca.is_some() {
            return Err(ConfigError::Invalid(
                "model, alias, follow_credentials and follow_ca only mean something with follow (--follow <MLflow tracking URI>)".into(),
            ));
        }
        return Ok(None);
    };
    let (Some(model), Some(alias)) = (model, alias) else {
        return Err(ConfigError::Invalid(
            "--follow needs the registered model and its alias: --model NAME --alias ALIAS (WASMOPS_MODEL, WASMOPS_ALIAS, or `model`/`alias` in the file)".into(),
        ));
    };
    for (what, v) in [("model", &model), ("alias", &alias)] {
        if v.trim().is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
            return Err(ConfigError::Invalid(format!(
                "the {what} to follow must be 1 to 256 characters without control characters"
            )));
        }
    }
    let credentials = credentials
        .map(|path| Credentials::read(&path).map_err(ConfigError::Invalid))
        .transpose()?;
    let ca_pem = match ca {
        Some(path) => Some(crate::follow::read_ca(&path).map_err(ConfigError::Invalid)?),
        None => None,
    };
    let config = FollowConfig::new(uri, model, alias, interval, credentials, ca_pem)
        .map_err(ConfigError::Invalid)?;
    Ok(Some(config))
}

/// The first line of a credentials file, which must not be empty.
fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let secret = read_token(path)?;
    if secret.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "credentials file {} is empty",
            path.display()
        )));
    }
    Ok(secret)
}

fn read_token(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("wasmops-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("edge.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\nname = \"from-file\"\ntoken = \"file-token\"\n[telemetry]\nmax_records = 5\nsynchronous = \"full\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            name: Some("from-flag".into()),
            ..ServeArgs::default()
        };
        let c = ServeConfig::resolve(args).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.name, "from-flag");
        assert_eq!(c.token, "file-token");
        assert_eq!(c.telemetry.max_records, 5);
        assert!(c.telemetry.sync_full);
        assert_eq!(c.max_body, 8 << 20);

        std::fs::write(&path, "lisen = \"0.0.0.0:9000\"\n").unwrap();
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `lisen`"), "{err}");
        assert!(matches!(
            ServeConfig::resolve(ServeArgs::default()),
            Err(ConfigError::NoToken)
        ));

        // TLS: both files or neither; a flag overrides the file's entry.
        std::fs::write(
            &path,
            "token = \"t\"\ntls_cert = \"file-cert.pem\"\ntls_key = \"file-key.pem\"\n",
        )
        .unwrap();
        let c = ServeConfig::resolve(ServeArgs {
            config: Some(path.clone()),
            tls_key: Some("flag-key.pem".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: "file-cert.pem".into(),
                key: "flag-key.pem".into()
            })
        );
        let err = ServeConfig::resolve(ServeArgs {
            token: Some("t".into()),
            tls_cert: Some("cert.pem".into()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("without its key"), "{err}");
        let err = ServeConfig::resolve(ServeArgs {
            token: Some("t".into()),
            tls_key: Some("key.pem".into()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("without its certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn follow_trusted_keys_and_labels_come_from_the_file_and_flags_win() {
        let dir =
            std::env::temp_dir().join(format!("wasmops-config-follow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("edge.toml");
        let creds = dir.join("creds");
        std::fs::write(&creds, "admin:pw\n").unwrap();
        std::fs::write(
            &path,
            format!(
                "token = \"t\"\ntrusted_keys = \"/keys\"\nfollow = \"http://mlflow:5000/\"\nmodel = \"iris\"\nalias = \"champion\"\nfollow_interval_s = 7\nfollow_credentials = {:?}\nlabels = {{ group = \"canary\", site = \"north\" }}\n",
                creds.display().to_string()
            ),
        )
        .unwrap();
        let c = ServeConfig::resolve(ServeArgs {
            config: Some(path.clone()),
            alias: Some("canary".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(c.trusted_keys, Some(PathBuf::from("/keys")));
        let f = c.follow.unwrap();
        assert_eq!(f.tracking_uri, "http://mlflow:5000");
        assert_eq!((f.model.as_str(), f.alias.as_str()), ("iris", "canary"));
        assert_eq!(f.interval, Duration::from_secs(7));
        assert!(f.credentials.is_some());
        assert_eq!(c.labels.get("site").map(String::as_str), Some("north"));
        // Flags replace the file's labels as a whole.
        let c = ServeConfig::resolve(ServeArgs {
            config: Some(path.clone()),
            labels: vec!["group=fleet".into()],
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(
            c.labels,
            BTreeMap::from([("group".to_string(), "fleet".to_string())])
        );
    }

    #[test]
    fn remote_write_comes_from_flags_or_the_file_with_its_credentials() {
        let dir = std::env::temp_dir().join(format!("wasmops-config-rw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("edge.toml");
        let bearer = dir.join("bearer");
        let basic = dir.join("basic");
        std::fs::write(&bearer, "rw-token\n").unwrap();
        std::fs::write(&basic, "push:pa:ss\n").unwrap();
        std::fs::write(
            &path,
            format!(
                "token = \"t\"\nname = \"gw-7\"\n[remote_write]\nurl = \"http://prom:9090/api/v1/write\"\ninterval_s = 30\nbearer_file = {:?}\n",
                bearer.display().to_string()
            ),
        )
        .unwrap();
        let from_file = |args: ServeArgs| {
            ServeConfig::resolve(ServeArgs {
                config: Some(path.clone()),
                ..args
            })
        };
        let rw = from_file(ServeArgs::default())
            .unwrap()
            .remote_write
            .unwrap();
        assert_eq!(rw.url, "http://prom:9090/api/v1/write");
        assert_eq!(rw.interval, Duration::from_secs(30));
        assert_eq!(rw.auth, Some(remote_write::Auth::Bearer("rw-token".into())));
        assert_eq!(
            (rw.job.as_str(), rw.instance.as_str()),
            ("wasmops-edge", "gw-7")
        );
        // Flags win; the default interval is 15 s; basic auth splits at the first colon.
        std::fs::write(&path, "token = \"t\"\n").unwrap();
        assert!(from_file(ServeArgs::default())
            .unwrap()
            .remote_write
            .is_none());
        let rw = from_file(ServeArgs {
            remote_write: Some("https://x/api/v1/write".into()),
            remote_write_basic_auth_file: Some(basic.clone()),
            ..ServeArgs::default()
        })
        .unwrap()
        .remote_write
        .unwrap();
        assert_eq!(rw.interval, remote_write::DEFAULT_INTERVAL);
        assert_eq!(
            rw.auth,
            Some(remote_write::Auth::Basic {
                user: "push".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(rw.instance, "wasmops-device");
        let err = from_file(ServeArgs {
            remote_write: Some("http://x/".into()),
            remote_write_bearer_file: Some(bearer.clone()),
            remote_write_basic_auth_file: Some(basic.clone()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let err = from_file(ServeArgs {
            remote_write: Some("http://x/".into()),
            remote_write_interval: Some(0),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("at least 1 second"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
