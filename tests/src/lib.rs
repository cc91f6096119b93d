//! Harness for the end-to-end tests: the built dashboard served on 127.0.0.1, real
//! `wasmops-edge` processes, and headless Chromium driven over WebDriver (chromedriver).
//!
//! `cargo xtask test` builds what these need and passes it in environment variables:
//! `WASMOPS_DIST` (trunk's output), `WASMOPS_EDGE_BIN`, `CHROMEDRIVER`, `CHROMIUM`,
//! `WASMOPS_SCREENSHOTS` (where screenshots go), `WASMOPS_MLFLOW` and `WASMOPS_PROMETHEUS`.

pub mod pages;
pub mod registry;

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// An environment variable the harness cannot run without.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through `cargo xtask test`, which builds and passes it")
    })
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("wasmops-e2e-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// An HTTP client that never reuses a connection idle for 1 s or more: MLflow's uvicorn closes
/// idle connections after 5 s and a device after 10 s, and a request sent as that happens fails
/// with "error sending request" (it failed CI once).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .expect("http client")
}

/// Serves a directory of static files on a free 127.0.0.1 port until stopped or dropped.
///
/// It runs on a runtime of its own so that [`StaticSite::stop`] really takes the site down,
/// keep-alive connections included (as a server that went away would).
pub struct StaticSite {
    pub origin: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl StaticSite {
    pub fn serve(dir: &Path) -> StaticSite {
        assert!(
            dir.join("index.html").exists(),
            "{} has no index.html: build the dashboard first",
            dir.display()
        );
        let listener = StdListener::bind("127.0.0.1:0").expect("bind static site");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let origin = format!("http://{}", listener.local_addr().expect("local addr"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("static site runtime");
        let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let _ = axum::serve(listener, app).await;
        });
        StaticSite {
            origin,
            runtime: Some(runtime),
        }
    }

    /// Serves the built dashboard (`$WASMOPS_DIST`).
    pub fn dashboard() -> StaticSite {
        StaticSite::serve(&PathBuf::from(required_env("WASMOPS_DIST")))
    }

    /// Takes the site down: the listener and every open connection.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for StaticSite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real `mlflow server` (the pinned MLflow `cargo xtask test` installs, `$WASMOPS_MLFLOW`)
/// on 127.0.0.1: SQLite backend and local artifact root in `dir`, the artifact proxy on. It
/// answers CORS for localhost origins by default, so the dashboard talks to it directly.
/// Killed when dropped; restarted on the same port and store (a server that came back).
pub struct MlflowServer {
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
    /// The admin password of MLflow's basic-auth app, when it runs with it (user `admin`).
    pub password: Option<String>,
}

impl MlflowServer {
    /// Starts a server on a free port (call [`MlflowServer::ready`] before using it).
    pub fn start(dir: &Path) -> MlflowServer {
        Self::start_on(dir, free_port())
    }

    pub fn start_on(dir: &Path, port: u16) -> MlflowServer {
        Self::start_with(dir, port, None)
    }

    /// With MLflow's own auth app (`--app-name basic-auth`): user `admin`, this password.
    pub fn start_with(dir: &Path, port: u16, password: Option<&str>) -> MlflowServer {
        let mut server = MlflowServer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            dir: dir.to_path_buf(),
            child: None,
            http: client(),
            password: password.map(str::to_string),
        };
        server.spawn();
        server
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.password {
            Some(p) => r.basic_auth("admin", Some(p)),
            None => r,
        }
    }

    /// A port nothing listens on yet, for a server that is "down" until [`MlflowServer::start_on`].
    pub fn unused_port() -> u16 {
        free_port()
    }

    fn spawn(&mut self) {
        let bin = required_env("WASMOPS_MLFLOW");
        std::fs::create_dir_all(self.dir.join("artifacts")).expect("artifact dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("server log");
        let mut command = Command::new(&bin);
        if let Some(password) = &self.password {
            command
                .args(["server", "--app-name", "basic-auth"])
                .env("MLFLOW_AUTH_ADMIN_PASSWORD", password)
                .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "wasmops-e2e");
        } else {
            command.arg("server");
        }
        let child = command
            // No background job runner (a dozen worker processes the tests do not use).
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .args(["--host", "127.0.0.1", "--workers", "1", "--port"])
            .arg(self.port.to_string())
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                self.dir.join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(self.dir.join("artifacts"))
            .current_dir(&self.dir)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            // Its own process group: killing it takes its workers along.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        self.child = Some(child);
    }

    /// Waits (up to 3 min: the first start creates the database) until `/health` answers.
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(r) = self.http.get(format!("{}/health", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!(
                    "mlflow server on {} did not become ready; its log:\n{log}",
                    self.url
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `kill -9` of the server and its workers.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.ready().await;
    }

    /// GET on the REST API (`path` after `/api/2.0/mlflow/`), answer as JSON.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let r = self
            .request(
                reqwest::Method::GET,
                format!("{}/api/2.0/mlflow/{path}", self.url),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    /// POST on the REST API, answer as JSON.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = self
            .request(
                reqwest::Method::POST,
                format!("{}/api/2.0/mlflow/{path}", self.url),
            )
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status();
        let answer: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path}: {status} {answer}");
        answer
    }

    /// Raw bytes through the artifact proxy.
    pub async fn artifact(&self, path: &str) -> Vec<u8> {
        let r = self
            .request(
                reqwest::Method::GET,
                format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", self.url),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET artifact {path}: {e}"));
        assert!(r.status().is_success(), "artifact {path}: {}", r.status());
        r.bytes().await.expect("artifact bytes").to_vec()
    }

    pub async fn put_artifact(&self, path: &str, bytes: Vec<u8>) {
        let r = self
            .request(
                reqwest::Method::PUT,
                format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", self.url),
            )
            .body(bytes)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT artifact {path}: {e}"));
        assert!(
            r.status().is_success(),
            "PUT artifact {path}: {}",
            r.status()
        );
    }

    /// How many requests the server's access log shows with `text` in them (`POST /api/...`):
    /// a cheap way to watch a sync under way.
    pub fn logged(&self, text: &str) -> usize {
        std::fs::read_to_string(self.dir.join("server.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }

    /// Every run of an experiment (all lifecycle stages), as MLflow returns them.
    pub async fn runs(&self, experiment_id: &str) -> Vec<serde_json::Value> {
        let r = self
            .post(
                "runs/search",
                serde_json::json!({"experiment_ids": [experiment_id], "run_view_type": "ALL", "max_results": 1000}),
            )
            .await;
        r["runs"].as_array().cloned().unwrap_or_default()
    }

    pub async fn experiment_id(&self, name: &str) -> String {
        let r = self
            .get(&format!("experiments/get-by-name?experiment_name={name}"))
            .await;
        r["experiment"]["experiment_id"]
            .as_str()
            .expect("experiment id")
            .to_string()
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real Prometheus (the Debian package `cargo xtask test` installs, `$WASMOPS_PROMETHEUS`)
/// on a free 127.0.0.1 port: a temporary config and TSDB in `dir`, scraping `targets`
/// (`host:port` of devices, with their bearer token) every second, the remote-write receiver
/// on (`/api/v1/write`), and CORS open to any origin so the dashboard can query it. Killed
/// when dropped.
pub struct PrometheusServer {
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
}

impl PrometheusServer {
    /// Starts it (call [`PrometheusServer::ready`] before querying). Every target is scraped
    /// in job `wasmops-edge` at `/metrics` with `Authorization: Bearer <token>`.
    pub fn start(dir: &Path, targets: &[String], token: &str) -> PrometheusServer {
        let bin = required_env("WASMOPS_PROMETHEUS");
        let port = free_port();
        std::fs::create_dir_all(dir.join("tsdb")).expect("tsdb dir");
        let token_file = dir.join("device-token");
        std::fs::write(&token_file, token).expect("token file");
        let targets = targets
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: wasmops-edge
    authorization:
      credentials_file: {}
    static_configs:
      - targets: [{targets}]
",
            token_file.display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus config");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
        let child = Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--web.cors.origin=.*")
            .current_dir(dir)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        PrometheusServer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            dir: dir.to_path_buf(),
            child: Some(child),
            http: client(),
        }
    }

    /// Where devices push: `--remote-write <this>`.
    pub fn remote_write_url(&self) -> String {
        format!("{}/api/v1/write", self.url)
    }

    /// Waits (up to 30 s) until `/-/ready` answers 200.
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(format!("{}/-/ready", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "prometheus on {} did not become ready; its log:\n{}",
                    self.url,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Prometheus's own log (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query (`/api/v1/query`): `data.result`, an array of `{metric, value}`.
    pub async fn query(&self, promql: &str) -> serde_json::Value {
        let r = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("query {promql}: {e}"));
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(
            status.is_success() && body["status"] == "success",
            "query {promql}: {status} {body}"
        );
        body["data"]["result"].clone()
    }

    /// Queries every 250 ms until `accept` takes the result (returned) or `timeout` passes
    /// (panics with the last result and Prometheus's log).
    pub async fn query_until(
        &self,
        promql: &str,
        timeout: Duration,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(promql).await;
            if accept(&result) {
                return result;
            }
            if Instant::now() > deadline {
                panic!(
                    "query {promql} still gives {result} after {timeout:?}; prometheus log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of one sample of a query result (`value: [time, "text"]`) as a number.
pub fn sample_value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {sample}"))
}

/// A `wasmops-edge serve` child process on a free 127.0.0.1 port. Killed when dropped.
pub struct EdgeProcess {
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
    child: Child,
}

impl EdgeProcess {
    pub fn start(data_dir: &Path, token: &str, allow_origin: &str) -> EdgeProcess {
        Self::start_on(data_dir, token, allow_origin, "127.0.0.1:0")
    }

    pub fn start_on(data_dir: &Path, token: &str, allow_origin: &str, listen: &str) -> EdgeProcess {
        Self::start_with(data_dir, token, allow_origin, listen, "e2e-device", &[])
    }

    /// With its own `--name` and further `serve` flags (`--follow ...`, `--trusted-keys ...`,
    /// `--remote-write URL`).
    pub fn start_with(
        data_dir: &Path,
        token: &str,
        allow_origin: &str,
        listen: &str,
        name: &str,
        extra: &[String],
    ) -> EdgeProcess {
        let bin = required_env("WASMOPS_EDGE_BIN");
        let mut child = Command::new(&bin)
            .args([
                "serve",
                "--listen",
                listen,
                "--token",
                token,
                "--allow-origin",
                allow_origin,
                "--name",
                name,
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read device stdout");
        let url = line
            .trim()
            .strip_prefix("wasmops-edge listening on ")
            .unwrap_or_else(|| panic!("device did not report its address, said: {line:?}"))
            .to_string();
        EdgeProcess {
            url,
            token: token.to_string(),
            data_dir: data_dir.to_path_buf(),
            child,
        }
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `POST /v1/predict` with the device's token; panics unless it answers 2xx.
    pub async fn predict(&self, rows: Vec<Vec<f64>>) -> wasmops_shared::wire::PredictResponse {
        use wasmops_shared::wire;
        reqwest::Client::new()
            .post(format!("{}{}", self.url, wire::paths::PREDICT))
            .bearer_auth(&self.token)
            .json(&wire::PredictRequest { rows })
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("predict on {}: {e}", self.url))
            .json()
            .await
            .unwrap_or_else(|e| panic!("predict answer from {}: {e}", self.url))
    }

    /// The process id (for its memory in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("url has a port")
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a benchmark's async body on a two-thread runtime (benchmarks have `harness = false`).
pub fn run_bench<F: std::future::Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(body)
}

/// The median of some measurements (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Headless Chromium under chromedriver.
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Browser {
    pub async fn start() -> Browser {
        let chromedriver = required_env("CHROMEDRIVER");
        let chromium = required_env("CHROMIUM");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
        let profile = temp_dir("chromium-profile");
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1300",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        };
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&webdriver)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("could not start a Chromium session through {chromedriver}: {e}"),
            }
        };
        Browser {
            client,
            driver,
            profile,
        }
    }

    /// Navigates to `url`.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Waits until the element matching `css` has text satisfying `pred`; returns the text.
    pub async fn wait_text(&self, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = el.text().await {
                    if pred(&text) {
                        return text;
                    }
                    last = Some(text);
                }
            }
            if Instant::now() > deadline {
                let page = self.client.find(Locator::Css("body")).await.ok();
                let body = match page {
                    Some(b) => b.text().await.unwrap_or_default(),
                    None => String::new(),
                };
                panic!("timed out waiting for {what} in `{css}` (last text: {last:?})\npage text:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        // Wait until it exists and is enabled (buttons are disabled while work is running).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if el.is_enabled().await.unwrap_or(false) {
                    // The page may draw the element again between finding and clicking it
                    // (a pull updates an alert): find it again.
                    match el.click().await {
                        Ok(_) => return,
                        Err(e)
                            if e.to_string().contains("stale element")
                                && Instant::now() < deadline => {}
                        Err(e) => panic!("click {css}: {e}"),
                    }
                }
            }
            assert!(Instant::now() < deadline, "`{css}` never became clickable");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.element(css).await;
        el.clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        el.send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Waits (up to 60 s) for an element to exist: the app mounts after its wasm loads, which is
    /// after the page's load event.
    pub async fn element(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(el) => return el,
                Err(e) if Instant::now() > deadline => panic!("`{css}` never appeared: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The outer HTML of the element matching `css` (waits for it to appear). The page may draw
    /// the element again between finding and reading it (the runs table redraws when a run
    /// lands): then it is found again.
    pub async fn html(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.element(css).await.html(false).await {
                Ok(html) => return html,
                Err(e) if e.to_string().contains("stale element") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("html of {css}: {e}"),
            }
        }
    }

    /// The element's text now, if it exists (no waiting).
    pub async fn current_text(&self, css: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.text().await.ok()
    }

    /// Compiles the newest run in the Lab and waits for its module (not the one shown before)
    /// to pass its checks in the browser; returns the module hash.
    pub async fn compile_newest_run(&self) -> String {
        let previous = self.current_text("[data-testid=module-hash]").await;
        self.runs().compile(1).await;
        let hash = self
            .wait_text("[data-testid=module-hash]", "the new module's hash", |t| {
                t.len() == 64 && Some(t) != previous.as_deref()
            })
            .await;
        let check = self
            .wait_text("[data-testid=module-check]", "the module check", |t| {
                t.contains("bit-identical")
            })
            .await;
        assert!(check.contains("matches the trained model"), "{check}");
        hash
    }

    /// Clicks Train and waits (up to 60 s) for the newest run's metric; returns it.
    pub async fn train_and_wait(&self) -> f64 {
        self.click("#train").await;
        self.wait_text("[data-testid=run-metric]", "a finished run", |t| {
            t.parse::<f64>().is_ok()
        })
        .await
        .parse()
        .expect("a number")
    }

    /// Exports the shown runs ("Export shown runs") and returns the bundle as JSON.
    pub async fn export_runs(&self) -> serde_json::Value {
        self.click("#runs-export").await;
        self.wait_text("#runs-download", "the download link", |t| {
            t.contains("wasmops-runs.json")
        })
        .await;
        let text = self
            .eval_async(
                "const done = arguments[arguments.length - 1];
                 fetch(document.querySelector('#runs-download').href).then(r => r.text()).then(done, e => done(String(e)));",
            )
            .await;
        serde_json::from_str(text.as_str().expect("text")).expect("the export is JSON")
    }

    /// Accepts the confirmation dialog the page opened (waits up to 10 s for it).
    pub async fn accept_dialog(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.client.accept_alert().await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("no dialog to accept: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Accepts the confirmation dialog the page opened (waits up to 10 s) and returns its text.
    pub async fn accept_dialog_text(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.client.get_alert_text().await {
                Ok(text) => {
                    self.accept_dialog().await;
                    return text;
                }
                Err(e) if Instant::now() > deadline => panic!("no dialog opened: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The text of the option chosen in the `<select>` matching `css`, as the user sees it.
    pub async fn selected_text(&self, css: &str) -> String {
        self.element(css).await;
        let text = self
            .client
            .execute(
                "const s = document.querySelector(arguments[0]); return s.selectedOptions[0] ? s.selectedOptions[0].textContent : '';",
                vec![serde_json::json!(css)],
            )
            .await
            .unwrap_or_else(|e| panic!("selected option of {css}: {e}"));
        text.as_str().unwrap_or_default().to_string()
    }

    /// The values of the options of the `<select>` matching `css`, in order.
    pub async fn option_values(&self, css: &str) -> Vec<String> {
        self.element(css).await;
        let values = self
            .client
            .execute(
                "return Array.from(document.querySelector(arguments[0]).options).map(o => o.value + '\t' + o.textContent);",
                vec![serde_json::json!(css)],
            )
            .await
            .unwrap_or_else(|e| panic!("options of {css}: {e}"));
        values
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Chooses `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let el = self.element(css).await;
        el.select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    /// Gives a local file to the `<input type=file>` matching `css`.
    pub async fn upload(&self, css: &str, path: &Path) {
        let el = self.element(css).await;
        el.send_keys(&path.display().to_string())
            .await
            .unwrap_or_else(|e| panic!("choose {} in {css}: {e}", path.display()));
    }

    /// Runs an async script whose last argument is its callback; returns what it passed.
    pub async fn eval_async(&self, script: &str) -> serde_json::Value {
        self.client
            .execute_async(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Makes `tab` (a window of this browser) the one later commands go to.
    pub async fn switch_to(&self, tab: &fantoccini::wd::WindowHandle) {
        self.client
            .switch_to_window(tab.clone())
            .await
            .unwrap_or_else(|e| panic!("switch to a tab: {e}"));
    }

    /// Scrolls the first element matching `css` into view (for a screenshot of it).
    pub async fn scroll_to(&self, css: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView()",
                vec![serde_json::json!(css)],
            )
            .await
            .unwrap_or_else(|e| panic!("scroll to {css}: {e}"));
    }

    /// Saves a PNG screenshot to `$WASMOPS_SCREENSHOTS/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(required_env("WASMOPS_SCREENSHOTS"));
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop stops chromedriver and removes the profile.
    }
}

/// A test that fails never reaches [`Browser::close`]: chromedriver is stopped here, so a
/// failed run leaves no driver behind.
impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
