//! `wasmops register` and `wasmops alias`: a run directory to MLflow as the dashboard's sync
//! puts it there (`wasmops_trainer::run::mlflow_record`, `wasmops_shared::mlflow::sync_run`,
//! `Client::register_module`), over reqwest instead of `fetch`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use wasmops_shared::digest::content_hash;
use wasmops_shared::mlflow::{self as api, sync_run, Client, ModuleRef, Transport};
use wasmops_shared::signature::DetachedSignature;
use wasmops_trainer::run::{mlflow_record, ModuleFile, RunSummary};

/// How requests authenticate, as MLflow's own client does.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    /// MLflow's basic-auth app.
    Basic {
        user: String,
        password: String,
    },
    /// A bearer token (a proxy in front of MLflow, Databricks).
    Bearer(String),
}

// Never printed: a debug line must not leak a password.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "no credentials",
            Credentials::Basic { .. } => "basic credentials",
            Credentials::Bearer(_) => "bearer token",
        })
    }
}

impl Credentials {
    /// From `--credentials FILE` (`user:password` or `Bearer TOKEN` on its first line), else
    /// from `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`, else from
    /// `MLFLOW_TRACKING_TOKEN` (MLflow's client prefers the user and password, too).
    pub fn from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Credentials> {
        if let Some(file) = file {
            let text = crate::read_text(file)?;
            return Credentials::parse(text.lines().next().unwrap_or_default())
                .map_err(|why| anyhow!("{}: line 1: {why}", file.display()));
        }
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        match (
            env("MLFLOW_TRACKING_USERNAME"),
            env("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(user), Some(password)) => return Ok(Credentials::Basic { user, password }),
            (Some(_), None) => {
                bail!("MLFLOW_TRACKING_USERNAME is set but MLFLOW_TRACKING_PASSWORD is not")
            }
            (None, Some(_)) => {
                bail!("MLFLOW_TRACKING_PASSWORD is set but MLFLOW_TRACKING_USERNAME is not")
            }
            (None, None) => {}
        }
        Ok(env("MLFLOW_TRACKING_TOKEN").map_or(Credentials::None, Credentials::Bearer))
    }

    /// `user:password` or `Bearer TOKEN`. The error never repeats the text.
    pub fn parse(line: &str) -> Result<Credentials, String> {
        let line = line.trim();
        if let Some(token) = line.strip_prefix("Bearer ") {
            let token = token.trim();
            if token.is_empty() {
                return Err("`Bearer` without a token".into());
            }
            return Ok(Credentials::Bearer(token.to_string()));
        }
        match line.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                Ok(Credentials::Basic {
                    user: user.to_string(),
                    password: password.to_string(),
                })
            }
            _ => Err("expected `user:password` or `Bearer TOKEN`".into()),
        }
    }
}

/// MLflow over HTTP with reqwest.
pub struct Http {
    base: String,
    client: reqwest::Client,
    credentials: Credentials,
}

/// How long an idle connection may be reused. Servers close idle keep-alive connections
/// (MLflow's uvicorn after 5 s, gunicorn after 2 s, a device after 10 s); a request sent on one
/// just as the server closes it fails with "error sending request". A connection idle for less
/// than the shortest of those windows is never closed under a request.
pub const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

impl Http {
    pub fn new(tracking_uri: &str, credentials: Credentials) -> anyhow::Result<Http> {
        let base = tracking_uri.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--tracking-uri `{base}`: an http:// or https:// URL of an MLflow server");
        }
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .pool_idle_timeout(POOL_IDLE)
            .build()?;
        Ok(Http {
            base,
            client,
            credentials,
        })
    }
}

impl Transport for Http {
    async fn send(&self, r: api::Request) -> Result<api::Response, String> {
        let method = match r.method {
            api::Method::Get => reqwest::Method::GET,
            api::Method::Post => reqwest::Method::POST,
            api::Method::Put => reqwest::Method::PUT,
            api::Method::Delete => reqwest::Method::DELETE,
            api::Method::Patch => reqwest::Method::PATCH,
        };
        let mut b = self
            .client
            .request(method, format!("{}{}", self.base, r.path));
        b = match &self.credentials {
            Credentials::None => b,
            Credentials::Basic { user, password } => b.basic_auth(user, Some(password)),
            Credentials::Bearer(token) => b.bearer_auth(token),
        };
        b = match r.body {
            api::Body::Empty => b,
            api::Body::Json(text) => b.header("Content-Type", "application/json").body(text),
            api::Body::Bytes(bytes) => b
                .header("Content-Type", "application/octet-stream")
                .body(bytes),
        };
        let response = b.send().await.map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| error_chain(&e))?;
        Ok(api::Response {
            status,
            body: body.to_vec(),
        })
    }
}

/// reqwest's error with its causes (`error sending request: ... Connection refused`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// `wasmops register`'s flags.
#[derive(Debug, Clone)]
pub struct RegisterOptions {
    pub tracking_uri: String,
    pub model: String,
    pub alias: Option<String>,
    pub run_dir: PathBuf,
    pub key: Option<PathBuf>,
    pub experiment: String,
    pub credentials: Credentials,
}

/// What was registered, where.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Registered {
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub size: usize,
    pub alias: Option<String>,
    pub experiment_id: String,
    pub run_id: String,
    pub artifact_uri: String,
    /// The key that signed the uploaded `model.wasm.sig`, if one was uploaded.
    pub signed_by: Option<String>,
}

/// Logs the run (idempotent by its id, as the dashboard's sync), uploads the module (and its
/// signature), registers it as a version of `model` (or finds the version that already holds
/// this hash) and moves the alias to it.
pub async fn register(o: &RegisterOptions) -> anyhow::Result<Registered> {
    let (run, module) = crate::train::read_run_dir(&o.run_dir)?;
    let hash = content_hash(&module);
    let module_file = o.run_dir.join(crate::train::MODULE_FILE);
    let signature = match &o.key {
        Some(key) => Some(crate::keys::sign(key, &module_file)?.0),
        None => existing_signature(&module_file, &hash)?,
    };
    check_name("--model", &o.model)?;
    if let Some(alias) = &o.alias {
        check_name("--alias", alias)?;
    }

    let signature_json = signature.as_ref().map(DetachedSignature::to_json);
    let (record, warnings) = mlflow_record(
        &RunSummary::of(&run),
        Some(&run),
        &[ModuleFile {
            hash: &hash,
            bytes: &module,
            signature: signature_json.as_deref(),
        }],
        "wasmops cli",
    );
    for w in warnings {
        eprintln!("wasmops register: {w}");
    }
    let client = Client::new(Http::new(&o.tracking_uri, o.credentials.clone())?);
    let experiment_id = client.ensure_experiment(&o.experiment).await?;
    let found = client
        .runs_by_client_id(&experiment_id, run.started_at_ms as i64)
        .await?;
    let synced = sync_run(
        &client,
        &experiment_id,
        &record,
        None,
        found.get(&run.id).map(|r| &r.info),
    )
    .await
    .map_err(|p| anyhow!("logging run `{}`: {}", run.id, p.error))?;
    let card = run.card();
    let version = client
        .register_module(
            &o.model,
            &synced.run_id,
            &synced.artifact_uri,
            &ModuleRef {
                hash: &hash,
                size: module.len(),
                kind: &card.kind,
            },
        )
        .await?;
    if let Some(alias) = &o.alias {
        client.set_alias(&o.model, alias, &version.version).await?;
    }
    Ok(Registered {
        model: o.model.clone(),
        version: version.version,
        sha256: hash,
        size: module.len(),
        alias: o.alias.clone(),
        experiment_id,
        run_id: synced.run_id,
        artifact_uri: synced.artifact_uri,
        signed_by: signature.map(|s| s.key_id),
    })
}

/// A signature `wasmops sign` left beside the module, if it is this module's.
fn existing_signature(module: &Path, hash: &str) -> anyhow::Result<Option<DetachedSignature>> {
    let path = crate::keys::signature_path(module);
    if !path.exists() {
        return Ok(None);
    }
    let sig = DetachedSignature::parse(&crate::read_text(&path)?)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if sig.module_sha256 != hash {
        bail!(
            "{}: signs module {}, not {} (sign it again, or pass --key)",
            path.display(),
            sig.module_sha256,
            module.display()
        );
    }
    Ok(Some(sig))
}

/// Model and alias names: what MLflow and the dashboard accept (no `/`, not empty).
fn check_name(flag: &str, name: &str) -> anyhow::Result<()> {
    if name.trim().is_empty() || name.contains('/') || name != name.trim() {
        bail!("{flag} `{name}`: must be non-empty, without `/` or surrounding spaces");
    }
    Ok(())
}

/// `wasmops alias`: moves `alias` of `model` to `version` (which must exist).
pub async fn move_alias(
    tracking_uri: &str,
    credentials: Credentials,
    model: &str,
    alias: &str,
    version: &str,
) -> anyhow::Result<Option<String>> {
    check_name("--model", model)?;
    check_name("--alias", alias)?;
    if version.parse::<u64>().is_err() {
        bail!("--version `{version}`: a model version number");
    }
    let client = Client::new(Http::new(tracking_uri, credentials)?);
    let before = client
        .registered_model(model)
        .await?
        .aliases
        .into_iter()
        .find(|a| a.alias == alias)
        .map(|a| a.version);
    client.set_alias(model, alias, version).await?;
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that keeps a connection open after its answer but closes it, unanswered, when
    /// a second request arrives on it: what a request sent just as uvicorn's keep-alive window
    /// ends sees. A client that reuses a connection idle for longer than [`POOL_IDLE`] fails.
    #[tokio::test]
    async fn a_connection_idle_past_the_pool_window_is_not_reused() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    let mut answered = false;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line != "\r\n" {
                            continue;
                        }
                        if answered {
                            return; // closed under the second request
                        }
                        let body = "{}";
                        let _ = write!(
                            writer,
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        answered = true;
                    }
                });
            }
        });
        let http = Http::new(&url, Credentials::None).unwrap();
        let get = || api::Request {
            method: api::Method::Get,
            path: "/api/2.0/mlflow/experiments/search".into(),
            body: api::Body::Empty,
        };
        assert_eq!(http.send(get()).await.unwrap().status, 200);
        tokio::time::sleep(POOL_IDLE + std::time::Duration::from_millis(500)).await;
        let second = http.send(get()).await;
        assert_eq!(
            second.map(|r| r.status),
            Ok(200),
            "the second request went over the first, idle connection"
        );
    }

    #[test]
    fn credentials_lines() {
        assert_eq!(
            Credentials::parse("alice:s3:cret\n").unwrap(),
            Credentials::Basic {
                user: "alice".into(),
                password: "s3:cret".into()
            }
        );
        assert_eq!(
            Credentials::parse("Bearer abc.def").unwrap(),
            Credentials::Bearer("abc.def".into())
        );
        for bad in ["", "alice", ":pw", "alice:", "Bearer  "] {
            assert!(Credentials::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_from_the_environment_as_mlflow_reads_them() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env(&[
            ("MLFLOW_TRACKING_USERNAME", "u"),
            ("MLFLOW_TRACKING_PASSWORD", "p"),
            ("MLFLOW_TRACKING_TOKEN", "t"),
        ]);
        assert_eq!(
            Credentials::from(None, both).unwrap(),
            Credentials::Basic {
                user: "u".into(),
                password: "p".into()
            }
        );
        let token = env(&[("MLFLOW_TRACKING_TOKEN", "t")]);
        assert_eq!(
            Credentials::from(None, token).unwrap(),
            Credentials::Bearer("t".into())
        );
        let half = env(&[("MLFLOW_TRACKING_USERNAME", "u")]);
        let e = Credentials::from(None, half).unwrap_err().to_string();
        assert!(e.contains("MLFLOW_TRACKING_PASSWORD is not"), "{e}");
        assert_eq!(
            Credentials::from(None, env(&[])).unwrap(),
            Credentials::None
        );
        assert!(format!("{:?}", Credentials::Bearer("secret".into())).contains("bearer"));
        assert!(!format!("{:?}", Credentials::Bearer("secret".into())).contains("secret"));
    }
}
