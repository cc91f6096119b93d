//! HTTPS: the API over TLS with a certificate the client trusts, plain HTTP refused on the TLS
//! port, and every bad certificate/key setup stopping the start with a message naming the file.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use wasmops_edge::server::tls::{self, TlsError, TlsFiles};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn files(cert: &str, key: &str) -> TlsFiles {
    TlsFiles {
        cert: fixture(cert),
        key: fixture(key),
    }
}

/// A client that trusts only the fixtures' test CA.
fn trusting_client() -> reqwest::Client {
    let ca = std::fs::read(fixture("ca.pem")).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_api_answers_over_https_and_refuses_plain_http_on_that_port() {
    let dir = temp_dir("tls");
    let device = Device::open("tls-device".into(), &dir, sandbox()).expect("device opens");
    let acceptor = tls::acceptor(&files("cert.pem", "key.pem")).expect("fixtures load");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = HttpConfig {
        max_body: 1 << 20,
        ..HttpConfig::new(TOKEN)
    };
    let task = tokio::spawn(server::run_tls(
        listener,
        acceptor,
        Arc::new(device),
        http,
        async {
            let _ = stopped.await;
        },
    ));

    // Plain HTTP to the TLS port gets no HTTP answer (before and after a good client, so a
    // failed handshake does not take the listener down).
    let plain = reqwest::Client::new();
    let refused = plain.get(format!("http://{addr}/v1/health")).send().await;
    assert!(refused.is_err(), "plain HTTP got an answer: {refused:?}");

    let client = trusting_client();
    let base = format!("https://{addr}");
    let health: wire::Health = ok_json(client.get(format!("{base}/v1/health"))).await;
    assert_eq!(health.status, "ok");
    // The whole API is there: deploy and predict over TLS.
    let up: wire::UploadResponse = ok_json(
        client
            .post(format!("{base}/v1/modules"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/wasm")
            .body(build(&iris_like(), &[])),
    )
    .await;
    let _: wire::ActivateResponse = ok_json(
        client
            .post(format!("{base}{}", wire::paths::activate(&up.hash)))
            .bearer_auth(TOKEN),
    )
    .await;
    let p = iris_like();
    let row = vec![5.1, 3.5, 1.4, 0.2];
    let answer: wire::PredictResponse = ok_json(
        client
            .post(format!("{base}/v1/predict"))
            .bearer_auth(TOKEN)
            .json(&wire::PredictRequest {
                rows: vec![row.clone()],
            }),
    )
    .await;
    assert_eq!(
        bits(&answer.outputs[0]),
        bits(&reference::predict(&p, &row))
    );
    // Without the token the TLS layer is no way around authorization.
    let r = client.get(format!("{base}/v1/info")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let refused = plain.get(format!("http://{addr}/v1/health")).send().await;
    assert!(refused.is_err(), "plain HTTP got an answer: {refused:?}");
    // A client that does not trust the certificate does not get through either.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let err = untrusting
        .get(format!("{base}/v1/health"))
        .send()
        .await
        .expect_err("an untrusted certificate is refused by the client");
    assert!(err.is_connect(), "{err:?}");

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_tls_files_are_startup_errors_naming_the_file() {
    let dir = temp_dir("tls-bad");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM at all\n").unwrap();
    let bad_base64 = dir.join("bad-base64.pem");
    std::fs::write(
        &bad_base64,
        "-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.join("missing.pem");
    let err = |cert: &Path, key: &Path| {
        let e = tls::acceptor(&TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
        .err()
        .unwrap_or_else(|| panic!("{} + {} were accepted", cert.display(), key.display()));
        (e.to_string(), e)
    };
    let (cert, key, other_key) = (
        fixture("cert.pem"),
        fixture("key.pem"),
        fixture("other-key.pem"),
    );

    let (msg, e) = err(&missing, &key);
    assert!(
        matches!(
            e,
            TlsError::Read {
                what: "certificate",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("missing.pem"), "{msg}");
    let (msg, e) = err(&cert, &missing);
    assert!(matches!(e, TlsError::Read { what: "key", .. }), "{msg}");
    assert!(msg.contains("missing.pem"), "{msg}");

    let (msg, e) = err(&garbage, &key);
    assert!(matches!(e, TlsError::NoCert { .. }), "{msg}");
    assert!(
        msg.contains("garbage.pem") && msg.contains("no `CERTIFICATE`"),
        "{msg}"
    );
    let (msg, e) = err(&bad_base64, &key);
    assert!(matches!(e, TlsError::CertPem { .. }), "{msg}");
    assert!(
        msg.contains("bad-base64.pem") && msg.contains("not valid PEM"),
        "{msg}"
    );

    // A certificate where the key should be, and garbage as the key.
    let (msg, e) = err(&cert, &cert);
    assert!(matches!(e, TlsError::Key { .. }), "{msg}");
    assert!(
        msg.contains("key file") && msg.contains("cert.pem"),
        "{msg}"
    );
    let (msg, e) = err(&cert, &garbage);
    assert!(matches!(e, TlsError::Key { .. }), "{msg}");
    assert!(msg.contains("garbage.pem"), "{msg}");

    // A valid key that belongs to another certificate.
    let (msg, e) = err(&cert, &other_key);
    assert!(matches!(e, TlsError::Mismatch { .. }), "{msg}");
    assert!(
        msg.contains("other-key.pem")
            && msg.contains("cert.pem")
            && msg.contains("the key belongs to another certificate"),
        "{msg}"
    );

    assert!(tls::acceptor(&TlsFiles { cert, key }).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A daemon child process, killed when dropped (also when an assertion fails first).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `wasmops-edge serve` with these extra arguments and variables; returns its first
/// stdout line, or its exit status and stderr when it stopped before printing one.
fn serve_binary(
    data: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<(Running, String), String> {
    use std::io::{BufRead, Read};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmops-edge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--data-dir",
        ])
        .arg(data)
        .args(args)
        .env_remove("WASMOPS_TLS_CERT")
        .env_remove("WASMOPS_TLS_KEY")
        .env_remove("WASMOPS_CONFIG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        return Err(format!("{status}: {stderr}"));
    }
    Ok((Running(child), line.trim_end().to_string()))
}

#[tokio::test]
async fn the_binary_serves_https_from_flags_or_variables_and_refuses_half_a_setup() {
    let dir = temp_dir("tls-bin");
    let data = dir.join("data");
    let (cert, key) = (fixture("cert.pem"), fixture("key.pem"));
    let (data2, cert2, key2) = (data.clone(), cert.clone(), key.clone());
    let (daemon, line) = tokio::task::spawn_blocking(move || {
        serve_binary(
            &data2,
            &[],
            &[
                ("WASMOPS_TLS_CERT", cert2.as_os_str()),
                ("WASMOPS_TLS_KEY", key2.as_os_str()),
            ],
        )
    })
    .await
    .unwrap()
    .expect("starts with TLS from the environment");
    let base = line
        .strip_prefix("wasmops-edge listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(base.starts_with("https://127.0.0.1:"), "{line}");
    let health: wire::Health = ok_json(trusting_client().get(format!("{base}/v1/health"))).await;
    assert_eq!(health.status, "ok");
    drop(daemon);

    let other_key = fixture("other-key.pem");
    let failures: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            vec!["--tls-cert".as_ref(), cert.as_os_str()],
            "without its key",
        ),
        (
            vec!["--tls-key".as_ref(), key.as_os_str()],
            "without its certificate",
        ),
        (
            vec![
                "--tls-cert".as_ref(),
                cert.as_os_str(),
                "--tls-key".as_ref(),
                other_key.as_os_str(),
            ],
            "other-key.pem does not fit certificate file",
        ),
        (
            vec![
                "--tls-cert".as_ref(),
                "no-such-cert.pem".as_ref(),
                "--tls-key".as_ref(),
                key.as_os_str(),
            ],
            "reading TLS certificate file no-such-cert.pem",
        ),
    ];
    for (args, says) in failures {
        let data = data.clone();
        let args: Vec<std::ffi::OsString> = args.iter().map(|a| a.to_os_string()).collect();
        let result = tokio::task::spawn_blocking(move || {
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            serve_binary(&data, &args, &[])
        })
        .await
        .unwrap();
        match result {
            Ok((daemon, line)) => {
                drop(daemon);
                panic!("started ({line}) where it should fail with {says:?}");
            }
            Err(e) => {
                assert!(!e.starts_with("exit status: 0"), "{e}");
                assert!(e.contains(says), "expected {says:?} in {e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
