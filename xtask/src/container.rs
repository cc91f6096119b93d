//! `cargo xtask container`: the device's container image, built with podman from the
//! repository's `Dockerfile` with no network and no base image, then smoke-tested.
//!
//! The binary is built on the host (release profile, glibc); the build context is staged under
//! the target dir with the binary, exactly the shared libraries `ldd` lists for it (copied to
//! the same paths, the dynamic loader among them) and an empty `data/`; the `Dockerfile`
//! assembles them `FROM scratch`. The smoke test runs the image with a published port and
//! checks health, upload, activate and predict over HTTP, then removes the container. A second
//! container follows an alias: a real `mlflow server` on the host, a version trained, signed
//! and registered by the `wasmops` CLI, and the image started with `--follow` and
//! `--trusted-keys` (host networking) must come to run that version.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cargo, install, run_checked, Result, Workspace};

pub const IMAGE: &str = "localhost/wasmops-edge:latest";
const TOKEN: &str = "container-smoke-token";

pub fn container(ws: &Workspace) -> Result {
    let started = Instant::now();
    let podman = install::podman()?;
    run_checked(cargo(ws).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "wasmops-edge",
        "--bin",
        "wasmops-edge",
    ]))?;
    let context = ws.target.join("container");
    let libs = stage(&ws.edge_binary("release"), &context)?;
    println!(
        "xtask container: staged {} with {} shared libraries: {}",
        context.display(),
        libs.len(),
        libs.join(", ")
    );
    let engine = engine_config(ws)?;
    let podman_cmd = || {
        let mut c = Command::new(&podman);
        c.env("CONTAINERS_CONF", &engine);
        c
    };
    run_checked(
        podman_cmd()
            .args(["build", "--tag", IMAGE, "--file"])
            .arg(ws.root.join("Dockerfile"))
            .arg(&context),
    )?;
    let size = output(podman_cmd().args(["image", "inspect", "--format", "{{.Size}}", IMAGE]))?;
    let size: u64 = size
        .trim()
        .parse()
        .map_err(|_| format!("podman reported the image size as {size:?}"))?;
    println!(
        "xtask container: built {IMAGE}, {:.1} MB ({size} bytes)",
        size as f64 / 1e6
    );
    smoke_test(ws, &podman_cmd)?;
    follow_smoke_test(ws, &podman_cmd)?;
    println!(
        "xtask container: image built and smoke-tested in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Stages the build context: `rootfs/wasmops-edge`, its shared libraries at their paths, and
/// an empty `data/`. Returns the libraries' paths.
fn stage(binary: &Path, context: &Path) -> Result<Vec<String>> {
    let _ = fs::remove_dir_all(context);
    let rootfs = context.join("rootfs");
    let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    fs::create_dir_all(&rootfs).map_err(|e| io("creating", &rootfs, e))?;
    let data = context.join("data");
    fs::create_dir_all(&data).map_err(|e| io("creating", &data, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))
            .map_err(|e| io("setting the mode of", &data, e))?;
    }
    let target = rootfs.join("wasmops-edge");
    fs::copy(binary, &target).map_err(|e| io("copying", binary, e))?;
    // The image's copy without symbols (about a fifth of the binary); the build's stays whole.
    if Command::new("strip")
        .arg(&target)
        .status()
        .is_ok_and(|s| s.success())
    {
        println!("xtask container: stripped the image's copy of the binary");
    }
    let listing = output(Command::new("ldd").arg(binary))?;
    let libs = shared_libraries(&listing)?;
    for lib in &libs {
        let to = rootfs.join(lib.trim_start_matches('/'));
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        }
        // fs::copy follows symbolic links: the image gets the library itself.
        fs::copy(lib, &to).map_err(|e| io("copying", Path::new(lib), e))?;
    }
    Ok(libs)
}

/// The absolute paths in `ldd`'s listing (libraries and the dynamic loader; the vDSO has
/// none). A library `ldd` cannot find is an error.
fn shared_libraries(ldd: &str) -> Result<Vec<String>> {
    let mut libs = Vec::new();
    for line in ldd.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            return Err(format!("ldd: a shared library is missing: {line}"));
        }
        if line.contains("statically linked") {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((_, right)) => right.trim(),
            None => line,
        };
        if let Some(path) = path
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            libs.push(path.to_string());
        }
    }
    Ok(libs)
}

/// A containers.conf that works in VMs and CI sandboxes: no default ulimits (raising
/// RLIMIT_NOFILE is refused in some sandboxes), cgroupfs, and runc (crun refuses hosts with
/// cgroups v1 in hybrid mode).
fn engine_config(ws: &Workspace) -> Result<PathBuf> {
    let path = ws.target.join("containers.conf");
    fs::create_dir_all(&ws.target).map_err(|e| format!("{}: {e}", ws.target.display()))?;
    fs::write(
        &path,
        "[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\n",
    )
    .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

fn smoke_test(ws: &Workspace, podman: &dyn Fn() -> Command) -> Result {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let name = format!("wasmops-smoke-{}", std::process::id());
    let id = output(
        podman()
            .args(["run", "--detach", "--name", &name, "--publish"])
            .arg(format!("127.0.0.1:{port}:7878"))
            .args(["--env", &format!("WASMOPS_TOKEN={TOKEN}"), IMAGE]),
    )?;
    println!(
        "xtask container: started {} on 127.0.0.1:{port}",
        id.trim().chars().take(12).collect::<String>()
    );
    let result = smoke_requests(port);
    if result.is_err() {
        if let Ok(logs) = output(podman().args(["logs", &name])) {
            eprintln!("container log:\n{logs}");
        }
    }
    let _ = podman()
        .args(["rm", "--force", &name])
        .stdout(Stdio::null())
        .status();
    result?;
    let _ = ws;
    Ok(())
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// A small two-class CSV (deterministic), for the CLI to train on.
fn smoke_csv() -> String {
    let mut state: u64 = 0x5eed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut csv = String::from("a,b,c,d,label\n");
    for _ in 0..200 {
        let x: Vec<f64> = (0..4).map(|_| next() * 4.0).collect();
        let label = if x[0] + x[1] > 4.0 { "high" } else { "low" };
        csv += &format!("{:.3},{:.3},{:.3},{:.3},{label}\n", x[0], x[1], x[2], x[3]);
    }
    csv
}

/// The image follows an alias: MLflow on the host, a signed version registered by the
/// `wasmops` CLI, the container started with `--follow` and `--trusted-keys`.
fn follow_smoke_test(ws: &Workspace, podman: &dyn Fn() -> Command) -> Result {
    let mlflow = install::mlflow(ws)?;
    run_checked(cargo(ws).args(["build", "-p", "wasmops-cli", "--bin", "wasmops"]))?;
    let cli = ws.target.join("debug").join("wasmops");
    let dir = ws.target.join("container-follow");
    let _ = fs::remove_dir_all(&dir);
    let keys = dir.join("keys");
    fs::create_dir_all(&keys).map_err(|e| format!("{}: {e}", keys.display()))?;
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    fs::write(dir.join("data.csv"), smoke_csv()).map_err(|e| io(&dir, e))?;
    fs::write(
        dir.join("spec.json"),
        r#"{"algorithm":{"algorithm":"gaussian_nb"},"scale":true,"test_fraction":0.25,"seed":7}"#,
    )
    .map_err(|e| io(&dir, e))?;
    let key = ws.root.join("cli/tests/fixtures/signing-key.pem");
    let port = free_port()?;
    let uri = format!("http://127.0.0.1:{port}");
    let log = fs::File::create(dir.join("mlflow.log")).map_err(|e| io(&dir, e))?;
    let mut server = Command::new(&mlflow)
        .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .stdout(log.try_clone().map_err(|e| io(&dir, e))?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", mlflow.display()))?;
    let result = (|| -> Result {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http(addr, "GET", "/health", None, None, &[]), Ok((200, _))) {
            if Instant::now() > deadline {
                return Err("mlflow server never answered /health".into());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let run_dir = dir.join("run");
        run_checked(
            Command::new(&cli)
                .arg("train")
                .arg("--spec")
                .arg(dir.join("spec.json"))
                .arg("--data")
                .arg(dir.join("data.csv"))
                .arg("--out")
                .arg(&run_dir),
        )?;
        run_checked(
            Command::new(&cli)
                .arg("sign")
                .arg("--key")
                .arg(&key)
                .arg(run_dir.join("model.wasm")),
        )?;
        run_checked(
            Command::new(&cli)
                .args([
                    "register",
                    "--tracking-uri",
                    &uri,
                    "--model",
                    "smoke",
                    "--alias",
                    "champion",
                ])
                .arg("--run-dir")
                .arg(&run_dir)
                .arg("--key")
                .arg(&key),
        )?;
        let pem = output(Command::new(&cli).arg("pubkey").arg("--key").arg(&key))?;
        fs::write(keys.join("ci.pem"), pem).map_err(|e| io(&keys, e))?;
        #[cfg(unix)]
        {
            // The container runs as nobody: the keys must be readable by it.
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
            let _ = fs::set_permissions(&keys, fs::Permissions::from_mode(0o755));
            let _ = fs::set_permissions(keys.join("ci.pem"), fs::Permissions::from_mode(0o644));
        }
        let device_port = free_port()?;
        let name = format!("wasmops-follow-smoke-{}", std::process::id());
        output(
            podman()
                .args(["run", "--detach", "--name", &name, "--network", "host"])
                .arg("--volume")
                .arg(format!("{}:/keys:ro", keys.display()))
                .args(["--env", &format!("WASMOPS_TOKEN={TOKEN}"), IMAGE])
                .args(["serve", "--listen", &format!("127.0.0.1:{device_port}")])
                .args(["--follow", &uri, "--model", "smoke", "--alias", "champion"])
                .args(["--trusted-keys", "/keys", "--follow-interval", "1"]),
        )?;
        let device: SocketAddr = ([127, 0, 0, 1], device_port).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        let outcome = loop {
            match http(device, "GET", "/v1/info", Some(TOKEN), None, &[]) {
                Ok((200, body)) if body.contains("\"running_version\":\"1\"") => {
                    println!("xtask container: the container follows smoke@champion and runs version 1 (signed, verified)");
                    break Ok(());
                }
                other if Instant::now() > deadline => {
                    break Err(format!(
                        "the container never ran version 1 of smoke@champion: {other:?}"
                    ))
                }
                _ => std::thread::sleep(Duration::from_millis(300)),
            }
        };
        if outcome.is_err() {
            if let Ok(logs) = output(podman().args(["logs", &name])) {
                eprintln!("container log:\n{logs}");
            }
        }
        let _ = podman()
            .args(["rm", "--force", &name])
            .stdout(Stdio::null())
            .status();
        outcome
    })();
    // The server's workers, then the server.
    let _ = Command::new("pkill")
        .args(["-TERM", "-P", &server.id().to_string()])
        .status();
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// Health, upload, activate and predict through the published port.
fn smoke_requests(port: u16) -> Result {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http(addr, "GET", "/v1/health", None, None, &[]) {
            Ok((200, body)) if body.contains("\"ok\"") => break,
            other if Instant::now() > deadline => {
                return Err(format!(
                    "the container's /v1/health never answered: {other:?}"
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    println!("xtask container: health ok");
    let module = include_bytes!("../../edge-runtime/tests/fixtures/scalar-v1-logistic.wasm");
    let (status, body) = http(
        addr,
        "POST",
        "/v1/modules",
        Some(TOKEN),
        Some("application/wasm"),
        module,
    )?;
    let hash = json_string(&body, "hash")
        .filter(|_| status == 200)
        .ok_or_else(|| format!("upload: {status} {body}"))?;
    let (status, body) = http(
        addr,
        "POST",
        &format!("/v1/modules/{hash}/activate"),
        Some(TOKEN),
        None,
        &[],
    )?;
    if status != 200 {
        return Err(format!("activate: {status} {body}"));
    }
    println!("xtask container: uploaded and activated {hash} (stored in the /data volume)");
    let (status, body) = http(
        addr,
        "POST",
        "/v1/predict",
        Some(TOKEN),
        Some("application/json"),
        br#"{"rows":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]]}"#,
    )?;
    if status != 200 || !body.contains("\"outputs\"") {
        return Err(format!("predict: {status} {body}"));
    }
    println!("xtask container: predict ok: {body}");
    Ok(())
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body as text.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(u16, String)> {
    let fail = |e: std::io::Error| format!("{method} {path}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(fail)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(c) = content_type {
        head.push_str(&format!("Content-Type: {c}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(fail)?;
    stream.write_all(body).map_err(fail)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(fail)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// The string value of `"key":"..."` in a JSON text (enough for a hash).
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = json[start..].find('"')? + start;
    Some(json[start..end].to_string())
}

/// Runs a command and returns its standard output; fails with its standard error.
fn output(command: &mut Command) -> Result<String> {
    let described = crate::describe(command);
    let out = command
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("could not start `{described}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{described}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_library_paths_from_ldd() {
        let listing = "\tlinux-vdso.so.1 (0x00007ffd5b9f6000)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0e)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f0e)\n";
        assert_eq!(
            shared_libraries(listing).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert!(shared_libraries("\tlibfoo.so => not found\n").is_err());
        assert!(shared_libraries("\tstatically linked\n")
            .unwrap()
            .is_empty());
        assert_eq!(
            json_string(r#"{"hash":"abc","x":1}"#, "hash").as_deref(),
            Some("abc")
        );
    }
}
