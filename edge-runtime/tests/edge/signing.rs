//! Issue 12 on the real binary: `--trusted-keys` (only signed modules run, on push and after a
//! restart; key rotation; startup errors that name the file) and `--follow` without MLflow
//! (manual activation refused with 409, errors reported in `/v1/info` and `/metrics`, the
//! custom CA for an https tracking URI). The whole pull loop against a real MLflow is
//! `tests/tests/pull.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmops_shared::signature::{ModuleSigner, HEADER};

use super::*;

const BIN: &str = env!("CARGO_BIN_EXE_wasmops-edge");
const TOKEN: &str = "signing-token";

fn signer(name: &str) -> ModuleSigner {
    let pem = match name {
        "a" => include_str!("../fixtures/keys/a.key.pem"),
        _ => include_str!("../fixtures/keys/b.key.pem"),
    };
    ModuleSigner::from_pem(name, pem).unwrap()
}

/// A trusted-keys directory holding the public keys of `names`.
fn keys_dir(dir: &Path, tag: &str, names: &[&str]) -> PathBuf {
    let keys = dir.join(tag);
    let _ = std::fs::remove_dir_all(&keys);
    std::fs::create_dir_all(&keys).unwrap();
    for n in names {
        std::fs::write(keys.join(format!("{n}.pem")), signer(n).public_key_pem()).unwrap();
    }
    keys
}

/// A `wasmops-edge serve` child with its stderr in a file; killed when dropped.
struct Edge {
    child: Child,
    base: String,
    stderr: PathBuf,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on `dir/data` with `args`; `Err(stderr)` if it exits instead.
fn start(dir: &Path, args: &[&str]) -> Result<Edge, String> {
    use std::io::BufRead;
    static N: AtomicUsize = AtomicUsize::new(0);
    let stderr = dir.join(format!("stderr-{}.log", N.fetch_add(1, Ordering::Relaxed)));
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--token", TOKEN])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("the binary starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().strip_prefix("wasmops-edge listening on ") {
        Some(base) => Ok(Edge {
            base: base.to_string(),
            child,
            stderr,
        }),
        None => {
            let status = child.wait().unwrap();
            assert!(!status.success(), "exited 0 without serving");
            Err(std::fs::read_to_string(&stderr).unwrap())
        }
    }
}

impl Edge {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// `POST /v1/modules`, with the signature header when given: (status, body).
    async fn upload(&self, module: &[u8], signature: Option<&str>) -> (u16, String) {
        let mut r = self
            .client()
            .post(format!("{}/v1/modules", self.base))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/wasm")
            .body(module.to_vec());
        if let Some(s) = signature {
            r = r.header(HEADER, s);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str) -> (u16, String) {
        let r = self
            .client()
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn info(&self) -> wire::DeviceInfo {
        self.client()
            .get(format!("{}/v1/info", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        self.client()
            .get(format!("{}/metrics", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Polls `/v1/info` until `pred` holds (30 s at most).
    async fn info_until(
        &self,
        what: &str,
        pred: impl Fn(&wire::DeviceInfo) -> bool,
    ) -> wire::DeviceInfo {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = self.info().await;
            if pred(&info) {
                return info;
            }
            assert!(Instant::now() < deadline, "{what}: never; last {info:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One character of the base64 signature changed: still 64 bytes, no longer a signature.
fn tampered(doc: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(doc).unwrap();
    let sig = v["signature"].as_str().unwrap().to_string();
    let mut chars: Vec<char> = sig.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    v["signature"] = chars.into_iter().collect::<String>().into();
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trusted_keys_only_signed_modules_are_accepted() {
    let dir = temp_dir("signing");
    let only_a = keys_dir(&dir, "keys-a", &["a"]);
    let (a, b) = (signer("a"), signer("b"));
    let good = build(&iris_like(), &[5.1, 3.5, 1.4, 0.2]);
    let other = build(&iris_like(), &[6.0, 2.9, 4.5, 1.5]);
    assert_ne!(good, other);
    let sig_good = a.sign(&good).to_json();
    let edge = start(&dir, &["--trusted-keys", only_a.to_str().unwrap()]).unwrap();
    assert!(
        edge.log().contains("signatures required") && edge.log().contains(a.key_id()),
        "the start says signatures are required and by which key: {}",
        edge.log()
    );
    assert_eq!(edge.info().await.trusted_keys, vec![a.key_id().to_string()]);
    let metrics = edge.metrics().await;
    assert!(
        metrics.contains("wasmops_signatures_required 1"),
        "{metrics}"
    );

    // Unsigned: refused before compiling (bytes that are not even wasm say "unsigned").
    for module in [&good[..], b"\0asm not a module at all"] {
        let (status, body) = edge.upload(module, None).await;
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("module_rejected"), "{body}");
        assert!(body.contains("the module is unsigned"), "{body}");
    }
    // Signed by the trusted key: accepted, and it runs.
    let (status, body) = edge.upload(&good, Some(&sig_good)).await;
    assert_eq!(status, 200, "{body}");
    let hash = wasmops_shared::digest::content_hash(&good);
    let (status, body) = edge.post(&format!("/v1/modules/{hash}/activate")).await;
    assert_eq!(status, 200, "{body}");
    // Every other way to fail, each with its reason.
    let cases: Vec<(&str, Vec<u8>, String, &str)> = vec![
        (
            "a signature altered",
            good.clone(),
            tampered(&sig_good),
            "does not verify with trusted key",
        ),
        (
            "a module altered",
            other.clone(),
            sig_good.clone(),
            "the signature is for module",
        ),
        (
            "the other key's signature",
            other.clone(),
            b.sign(&other).to_json(),
            "which this device does not trust",
        ),
        (
            "not a signature document",
            other.clone(),
            "hello".to_string(),
            "the signature is malformed",
        ),
    ];
    for (name, module, sig, says) in cases {
        let (status, body) = edge.upload(&module, Some(&sig)).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(body.contains(says), "{name}: wanted {says:?} in {body}");
    }
    let info = edge.info().await;
    assert_eq!(
        info.modules,
        vec![hash.clone()],
        "nothing refused was stored"
    );
    assert!(
        dir.join("data/modules")
            .join(format!("{hash}.wasm.sig"))
            .exists(),
        "the signature is stored beside the module"
    );
    drop(edge);

    // Restart trusting only b: the active module (signed by a) is not activated.
    let only_b = keys_dir(&dir, "keys-b", &["b"]);
    let edge = start(&dir, &["--trusted-keys", only_b.to_str().unwrap()]).unwrap();
    let info = edge.info().await;
    assert!(info.active.is_none(), "{info:?}");
    assert!(
        edge.log().contains("not signed by a trusted key"),
        "{}",
        edge.log()
    );
    let (status, body) = edge.post(&format!("/v1/modules/{hash}/activate")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("does not trust"), "{body}");
    drop(edge);

    // Rotation: both keys trusted; the module signed by a comes back, one signed by b is
    // accepted too.
    let both = keys_dir(&dir, "keys-ab", &["a", "b"]);
    let edge = start(&dir, &["--trusted-keys", both.to_str().unwrap()]).unwrap();
    let info = edge.info().await;
    assert_eq!(info.active.map(|m| m.hash), Some(hash.clone()));
    assert_eq!(info.trusted_keys.len(), 2);
    let (status, body) = edge.upload(&other, Some(&b.sign(&other).to_json())).await;
    assert_eq!(status, 200, "{body}");
    drop(edge);

    // No keys: as before issue 12, and the start says so.
    let edge = start(&dir, &[]).unwrap();
    assert!(
        edge.log().contains("any module is accepted"),
        "{}",
        edge.log()
    );
    let unsigned = build(&linear_4(), &[1.0, 2.0, 3.0, 4.0]);
    let (status, body) = edge.upload(&unsigned, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(edge.info().await.trusted_keys.is_empty());
    assert!(edge
        .metrics()
        .await
        .contains("wasmops_signatures_required 0"));
    drop(edge);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_settings_stop_the_start_and_say_what_and_where() {
    let dir = temp_dir("signing-startup");
    let keys = keys_dir(&dir, "keys", &["a"]);
    std::fs::write(
        keys.join("zz-broken.pem"),
        "-----BEGIN PUBLIC KEY-----\nnope\n",
    )
    .unwrap();
    let empty = keys_dir(&dir, "empty", &[]);
    let creds = dir.join("creds");
    std::fs::write(&creds, "no-colon-here\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--trusted-keys", keys.to_str().unwrap()],
            "zz-broken.pem",
        ),
        (
            vec!["--trusted-keys", empty.to_str().unwrap()],
            "no `*.pem` public key",
        ),
        (
            vec!["--follow", "http://127.0.0.1:9", "--model", "iris"],
            "--model NAME --alias ALIAS",
        ),
        (vec!["--model", "iris"], "only mean something with follow"),
        (
            vec![
                "--follow",
                "https://127.0.0.1:9",
                "--model",
                "m",
                "--alias",
                "a",
            ],
            "needs --follow-ca",
        ),
        (
            vec![
                "--follow",
                "http://admin:pw@127.0.0.1:9",
                "--model",
                "m",
                "--alias",
                "a",
            ],
            "--follow-credentials FILE",
        ),
        (
            vec![
                "--follow",
                "http://127.0.0.1:9",
                "--model",
                "m",
                "--alias",
                "a",
                "--follow-credentials",
                creds.to_str().unwrap(),
            ],
            "`user:password` (basic auth) or `Bearer <token>`",
        ),
        (vec!["--label", "group"], "key=value"),
        (
            vec!["--label", "model=x"],
            "taken by the device's own metric labels",
        ),
    ];
    for (args, says) in cases {
        let err = start(&dir, &args)
            .err()
            .unwrap_or_else(|| panic!("{args:?} started"));
        assert!(err.contains(says), "{args:?}: wanted {says:?} in {err}");
        assert!(
            !err.contains("no-colon-here"),
            "credentials never printed: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_device_refuses_manual_activation_and_reports_why_it_cannot_follow() {
    let dir = temp_dir("follow-refuse");
    // A port nothing listens on: MLflow is "down".
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", down.local_addr().unwrap());
    drop(down);
    let edge = start(
        &dir,
        &[
            "--follow",
            &uri,
            "--model",
            "iris",
            "--alias",
            "champion",
            "--follow-interval",
            "1",
            "--label",
            "group=canary",
        ],
    )
    .unwrap();
    let module = build(&iris_like(), &[5.1, 3.5, 1.4, 0.2]);
    let (status, body) = edge.upload(&module, None).await;
    assert_eq!(status, 200, "uploads are still taken: {body}");
    let hash = wasmops_shared::digest::content_hash(&module);
    for path in [
        format!("/v1/modules/{hash}/activate"),
        "/v1/rollback".into(),
    ] {
        let (status, body) = edge.post(&path).await;
        assert_eq!(status, 409, "{path}: {body}");
        assert!(
            body.contains("follows alias `champion` of model `iris`")
                && body.contains("move the alias"),
            "{path}: {body}"
        );
    }
    let info = edge
        .info_until("the failed check is reported", |i| {
            i.follow
                .as_ref()
                .is_some_and(|f| f.state == wire::FollowState::Error)
        })
        .await;
    let follow = info.follow.unwrap();
    assert_eq!(follow.tracking_uri, uri);
    assert!(follow.last_check.is_some());
    let error = follow.last_error.unwrap();
    assert!(
        error.contains("asking for the alias") && error.contains("did not answer"),
        "{error}"
    );
    assert!(info.active.is_none(), "nothing activated itself");
    assert_eq!(
        info.labels,
        BTreeMap::from([("group".to_string(), "canary".to_string())])
    );
    let metrics = edge.metrics().await;
    assert!(
        metrics.contains(
            "wasmops_follow_info{model=\"iris\",alias=\"champion\",desired_version=\"\",running_version=\"\",state=\"error\",group=\"canary\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmops_follow_refused_total{reason=\"signature\",group=\"canary\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmops_device_labels{group=\"canary\"} 1"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The follower trusts the CA of `--follow-ca` for an https tracking URI: here the "MLflow"
/// is another device serving HTTPS with the test certificate, which answers the alias request
/// with its own 404. Getting that answer at all means the handshake verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_tracking_uris_are_verified_with_the_follow_ca() {
    let dir = temp_dir("follow-tls");
    let tls = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let server_dir = dir.join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server = start(
        &server_dir,
        &[
            "--tls-cert",
            tls.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            tls.join("key.pem").to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(server.base.starts_with("https://"));
    let creds = dir.join("creds");
    std::fs::write(&creds, "Bearer secret-follow-token\n").unwrap();
    let edge = start(
        &dir,
        &[
            "--follow",
            &server.base,
            "--model",
            "iris",
            "--alias",
            "champion",
            "--follow-interval",
            "1",
            "--follow-ca",
            tls.join("ca.pem").to_str().unwrap(),
            "--follow-credentials",
            creds.to_str().unwrap(),
        ],
    )
    .unwrap();
    let info = edge
        .info_until("an answer over TLS", |i| {
            i.follow.as_ref().is_some_and(|f| f.last_error.is_some())
        })
        .await;
    let error = info.follow.unwrap().last_error.unwrap();
    assert!(error.contains("HTTP 404"), "{error}");
    assert!(!error.contains("certificate"), "{error}");
    assert!(
        !edge.log().contains("secret-follow-token"),
        "{}",
        edge.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
