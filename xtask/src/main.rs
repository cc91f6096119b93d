//! `cargo xtask`: the developer workflows of wasmops, in plain Rust with no dependencies.
//!
//! Commands (run from anywhere inside the repository):
//!
//! - `cargo xtask install`: make sure every tool the other commands need is present, installing
//!   only what is missing or at the wrong version (see [`install`]). Fast when all is in place.
//! - `cargo xtask run`: install, build the device daemon (`wasmops-edge`, release), start it on
//!   `127.0.0.1:7878` and serve the dashboard with `trunk serve` on `127.0.0.1:8080`. Prints the
//!   URL to open, which carries the device address and token in its fragment. Ctrl-C stops both.
//! - `cargo xtask test`: install (including Chromium and chromedriver), then run every test suite
//!   in order, stopping at the first failure: native tests (the app crate's unit tests
//!   included), the dashboard build, the app's browser unit tests (when it has any) and the
//!   end-to-end tests against a real device and a headless browser.
//! - `cargo xtask bench`: every benchmark (release builds; figures go in docs/benchmarks.md).
//! - `cargo xtask fuzz [CASES]`: the property-based fuzz targets of the device (module loader,
//!   JSON and CSV predict parsers) for CASES cases each (default 20,000) instead of the few the
//!   test suite runs; the debug profile, so arithmetic overflow is caught too.
//! - `cargo xtask container`: the device's container image (`Dockerfile`, podman, no base
//!   image) and a smoke test of it (see [`container`]). Not part of `test`: it needs a release
//!   build of the device (minutes cold) and root or a working rootless podman.
//!
//! Build output goes to `CARGO_TARGET_DIR` if it is set, else to `<workspace>/target`; xtask keeps
//! its own state there too (`tools/binaryen`, `wasmops-dev/`, `screenshots/`).

mod container;
mod install;

use std::collections::hash_map::RandomState;
use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::hash::BuildHasher;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command, ExitCode, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use install::{Browser, Tools};

/// Every failure is reported as one message naming what failed and why.
type Result<T = ()> = std::result::Result<T, String>;

const USAGE: &str = "\
Usage: cargo xtask <COMMAND>

Commands:
  install  Install the tools the other commands need (idempotent; fast when all are present):
           the wasm32-unknown-unknown target, wasm-bindgen-cli at the version Cargo.lock pins,
           trunk 0.22.1, wasm-opt (npm binaryen 132), Chromium + chromedriver and Prometheus
  run      Start a local device on 127.0.0.1:7878 and serve the dashboard on 127.0.0.1:8080
           (trunk serve --release); prints the URL to open. Ctrl-C stops both
  test     Run all tests: native tests (with the app crate's unit tests), the dashboard
           build, browser unit tests of the app crate and the end-to-end tests (headless
           Chromium). Stops at the first failure
  bench    Run the benchmarks (module vs native throughput, ...)
  fuzz     Run the device's fuzz targets (module loader, JSON and CSV predict parsers) longer:
           `cargo xtask fuzz [CASES]`, CASES per target (default 20000)
  container
           Build the device's container image with podman (host-built release binary and its
           shared libraries on an empty image, no base image pulled) and smoke-test it:
           health, upload, activate, predict. Installs podman and runc when missing (root)

Options:
  -h, --help  Print this help

Build output goes to $CARGO_TARGET_DIR, or <workspace>/target when it is unset.";

const DEVICE_LISTEN: &str = "127.0.0.1:7878";
const DASHBOARD_ADDRESS: &str = "127.0.0.1";
const DASHBOARD_PORT: &str = "8080";

enum Task {
    Install,
    Run,
    Test,
    Bench,
    Fuzz(u32),
    Container,
    Help,
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = match parse_args(&args) {
        Ok(task) => task,
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match execute(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: &[String]) -> Result<Task> {
    let task = match args.first().map(String::as_str) {
        None => return Err("no command given".to_owned()),
        Some("-h" | "--help" | "help") => return Ok(Task::Help),
        Some("install") => Task::Install,
        Some("run") => Task::Run,
        Some("test") => Task::Test,
        Some("bench") => Task::Bench,
        Some("container") => Task::Container,
        Some("fuzz") => {
            return match &args[1..] {
                [] => Ok(Task::Fuzz(FUZZ_CASES)),
                [flag] if flag == "-h" || flag == "--help" => Ok(Task::Help),
                [cases] => cases
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Task::Fuzz)
                    .ok_or_else(|| format!("`{cases}` is not a number of cases")),
                [_, extra, ..] => Err(format!("unexpected argument `{extra}`")),
            }
        }
        Some(other) => return Err(format!("unknown command `{other}`")),
    };
    match &args[1..] {
        [] => Ok(task),
        [flag] if flag == "-h" || flag == "--help" => Ok(Task::Help),
        [extra, ..] => Err(format!("unexpected argument `{extra}`")),
    }
}

fn execute(task: Task) -> Result {
    match task {
        Task::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Task::Install => {
            let ws = Workspace::locate()?;
            install::toolchain(&ws)?;
            install::browser()?;
            install::prometheus()?;
            println!("xtask install: everything is in place");
            Ok(())
        }
        Task::Run => run(&Workspace::locate()?),
        Task::Test => test(&Workspace::locate()?),
        Task::Bench => bench(&Workspace::locate()?),
        Task::Fuzz(cases) => fuzz(&Workspace::locate()?, cases),
        Task::Container => container::container(&Workspace::locate()?),
    }
}

/// Cases per fuzz target for `cargo xtask fuzz` without a number.
const FUZZ_CASES: u32 = 20_000;

/// The fuzz targets are proptest tests in `edge-runtime/tests/edge/fuzz.rs`; the env var sets
/// how many cases each runs. Same packages and profile as the native tests: no second build.
fn fuzz(ws: &Workspace, cases: u32) -> Result {
    run_checked(
        cargo(ws)
            .args([
                "test",
                "--workspace",
                "--exclude",
                "wasmops-app",
                "--exclude",
                "wasmops-e2e",
                "--test",
                "edge",
                "--",
                "fuzz::",
            ])
            .env("WASMOPS_FUZZ_CASES", cases.to_string()),
    )
}

/// Where the repository and the build output are.
pub struct Workspace {
    /// The workspace root: the directory holding the top-level `Cargo.toml` and `Trunk.toml`.
    pub root: PathBuf,
    /// Cargo's target directory, also home to the tools and state xtask manages.
    pub target: PathBuf,
}

impl Workspace {
    fn locate() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .ok_or_else(|| format!("{} has no parent directory", manifest_dir.display()))?
            .to_path_buf();
        let target = match env::var_os("CARGO_TARGET_DIR") {
            // Cargo resolves a relative CARGO_TARGET_DIR against the current directory: so do we.
            Some(dir) if !dir.is_empty() => env::current_dir()
                .map_err(|e| format!("cannot read the current directory: {e}"))?
                .join(dir),
            _ => root.join("target"),
        };
        Ok(Workspace { root, target })
    }

    /// The device binary as cargo builds it for `profile` ("debug" or "release").
    fn edge_binary(&self, profile: &str) -> PathBuf {
        self.target
            .join(profile)
            .join(format!("wasmops-edge{}", env::consts::EXE_SUFFIX))
    }

    /// The headless `wasmops` command (package `wasmops-cli`).
    fn cli_binary(&self, profile: &str) -> PathBuf {
        self.target
            .join(profile)
            .join(format!("wasmops{}", env::consts::EXE_SUFFIX))
    }
}

// ---------------------------------------------------------------------------------------------
// cargo xtask run

/// Serves the dashboard next to a local device, until Ctrl-C or until either one exits.
///
/// Stopping: both are plain children of this process, in its process group. Ctrl-C in a terminal
/// sends SIGINT to the whole foreground process group, so the device and trunk receive it
/// directly and stop on their own; no signal handling is needed here (and no signal crate). In
/// addition this process watches both children: when one of them exits by itself (trunk failing
/// to build, the device failing to bind its port), the other one is stopped too, so nothing is
/// left running in the background.
fn run(ws: &Workspace) -> Result {
    let tools = install::toolchain(ws)?;
    run_checked(cargo(ws).args(["build", "-p", "wasmops-edge", "--release"]))?;

    let dev_dir = ws.target.join("wasmops-dev");
    let token = dev_token(&dev_dir)?;
    let data_dir = dev_dir.join("device");
    fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;

    let device_url = format!("http://{DEVICE_LISTEN}");
    let dashboard_url = format!("http://{DASHBOARD_ADDRESS}:{DASHBOARD_PORT}");
    let device = Supervised::spawn(
        "the device (wasmops-edge)",
        Command::new(ws.edge_binary("release"))
            .arg("serve")
            .args(["--listen", DEVICE_LISTEN])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--token", &token])
            .args(["--allow-origin", &dashboard_url])
            .args(["--name", "local-device"])
            .current_dir(&ws.root),
    )?;
    let trunk = Supervised::spawn(
        "trunk serve",
        trunk(ws, &tools).args([
            "serve",
            "--release",
            "--address",
            DASHBOARD_ADDRESS,
            "--port",
            DASHBOARD_PORT,
        ]),
    )?;

    println!();
    println!("xtask run: building the dashboard; its URL follows once it answers");
    println!();
    // Printed last, once both answer: trunk's own (fragment-less) URLs and ~45 s of build
    // output come first, so this is the line left on screen.
    let announce = format!(
        "\nxtask run: the dashboard and the device answer; open\n\
         xtask run:   {dashboard_url}/#device={device_url}&token={token}\n\
         xtask run: the dashboard remembers the device. Ctrl-C stops the dashboard and the device.\n"
    );
    let dashboard = format!("{DASHBOARD_ADDRESS}:{DASHBOARD_PORT}");
    supervise(
        device,
        trunk,
        &|| answers(&dashboard, "/") && answers(DEVICE_LISTEN, "/v1/health"),
        &announce,
    )
}

/// Whether `GET path` on `address` (host:port) answers 200 within a second.
fn answers(address: &str, path: &str) -> bool {
    use std::io::{Read, Write};
    let Some(addr) = std::net::ToSocketAddrs::to_socket_addrs(address)
        .ok()
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let head = String::from_utf8_lossy(&head[..read]);
    head.starts_with("HTTP/1.") && head.get(9..12) == Some("200")
}

/// Waits until either child exits; the other one is then stopped when it is dropped. Prints
/// `announce` once `ready` holds (checked about once a second).
fn supervise(
    mut device: Supervised,
    mut trunk: Supervised,
    ready: &dyn Fn() -> bool,
    announce: &str,
) -> Result {
    let mut announced = false;
    let mut next_check = Instant::now();
    loop {
        if !announced && Instant::now() >= next_check {
            if ready() {
                println!("{announce}");
                announced = true;
            }
            next_check = Instant::now() + Duration::from_secs(1);
        }
        if let Some(status) = trunk.try_wait()? {
            return if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "trunk serve exited ({status}); the device was stopped"
                ))
            };
        }
        if let Some(status) = device.try_wait()? {
            return Err(format!(
                "the device exited ({status}); trunk was stopped. Is {DEVICE_LISTEN} already in use?"
            ));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Reads the local device's access token, creating one on first use.
///
/// The token only guards a device listening on loopback during development, so std's randomly
/// keyed SipHash over the time and pid is random enough, and needs no dependency.
fn dev_token(dev_dir: &Path) -> Result<String> {
    let path = dev_dir.join("token");
    match fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let token = new_token();
    fs::create_dir_all(dev_dir).map_err(|e| format!("cannot create {}: {e}", dev_dir.display()))?;
    write_private(&path, &token).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("xtask run: created a device token in {}", path.display());
    Ok(token)
}

/// 128 bits as 32 hex digits.
fn new_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let pid = process::id();
    (0u8..2)
        .map(|half| {
            // RandomState keys its SipHash with the operating system's randomness.
            format!("{:016x}", RandomState::new().hash_one((nanos, pid, half)))
        })
        .collect()
}

/// Writes a file only its owner can read (on Unix).
fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    io::Write::write_all(&mut options.open(path)?, contents.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// cargo xtask test

/// One command of the test sequence.
struct Step {
    what: &'static str,
    command: Command,
}

fn test(ws: &Workspace) -> Result {
    let tools = install::toolchain(ws)?;
    let browser = install::browser()?;
    let steps = test_steps(ws, &tools, &browser)?;
    let total = steps.len();
    for (index, mut step) in steps.into_iter().enumerate() {
        let number = index + 1;
        println!("xtask test: [{number}/{total}] {}", step.what);
        run_checked(&mut step.command).map_err(|e| {
            format!(
                "xtask test stopped at step {number}/{total} ({}): {e}",
                step.what
            )
        })?;
    }
    println!("xtask test: all {total} steps passed");
    Ok(())
}

fn test_steps(ws: &Workspace, tools: &Tools, browser: &Browser) -> Result<Vec<Step>> {
    let mut steps = Vec::new();

    // The native packages: all but the app crate (its unit tests are a step of their own, below)
    // and the end-to-end tests (they need dist/, built below). The device binary is built with the same packages and targets
    // as the tests, in the same (debug) profile: with `cargo build -p wasmops-edge` alone, the
    // dev-dependencies of the tests would not be part of the feature resolution, and features
    // they add (syn's, via proc-macros) would make cargo compile wasmtime a second time.
    const NATIVE: [&str; 5] = [
        "--workspace",
        "--exclude",
        "wasmops-app",
        "--exclude",
        "wasmops-e2e",
    ];
    let mut command = cargo(ws);
    command
        .arg("build")
        .args(NATIVE)
        .args(["--bins", "--tests"]);
    steps.push(Step {
        what: "build the device binary (wasmops-edge, debug), the wasmops CLI and the native tests",
        command,
    });

    let mut command = cargo(ws);
    command.arg("test").args(NATIVE);
    steps.push(Step {
        what: "native unit and integration tests",
        command,
    });

    // The app crate's unit tests (its pure logic, `app/src/logic/`, and record formats) run on
    // the host: the crate builds natively, and nothing they call touches the browser. Apart
    // from the step above, so the app's features (getrandom's `js`, ...) stay out of the
    // device's feature resolution.
    let mut command = cargo(ws);
    command.args(["test", "-p", "wasmops-app", "--lib"]);
    steps.push(Step {
        what: "native unit tests of the app crate",
        command,
    });

    let mut command = trunk(ws, tools);
    command.args(["build", "--release"]);
    steps.push(Step {
        what: "build the dashboard into dist/ (trunk build --release)",
        command,
    });

    if app_has_browser_tests(&ws.root.join("app"))? {
        // The runner is wasm-bindgen-test-runner (.cargo/config.toml); it drives chromedriver.
        let mut command = cargo(ws);
        command
            .args([
                "test",
                "-p",
                "wasmops-app",
                "--target",
                "wasm32-unknown-unknown",
            ])
            .env("CHROMEDRIVER", &browser.chromedriver)
            .env("WASM_BINDGEN_TEST_TIMEOUT", "120");
        steps.push(Step {
            what: "browser unit tests of the app crate",
            command,
        });
    } else {
        println!(
            "xtask test: browser unit tests of the app crate: skipped, there are none \
             (no app/tests/ and no wasm_bindgen_test in app/src/)"
        );
    }

    let screenshots = ws.target.join("screenshots");
    fs::create_dir_all(&screenshots)
        .map_err(|e| format!("cannot create {}: {e}", screenshots.display()))?;
    let mut command = cargo(ws);
    command
        .args(["test", "-p", "wasmops-e2e"])
        .env("WASMOPS_DIST", ws.root.join("dist"))
        .env("WASMOPS_EDGE_BIN", ws.edge_binary("debug"))
        .env("WASMOPS_CLI_BIN", ws.cli_binary("debug"))
        .env("WASMOPS_MLFLOW", install::mlflow(ws)?)
        .env("WASMOPS_PROMETHEUS", install::prometheus()?)
        .env("CHROMEDRIVER", &browser.chromedriver)
        .env("CHROMIUM", &browser.chromium)
        .env("WASMOPS_SCREENSHOTS", &screenshots);
    steps.push(Step {
        what: "end-to-end tests (device + dashboard in headless Chromium)",
        command,
    });

    Ok(steps)
}

/// Whether the app crate has any wasm-bindgen tests: an `app/tests/` directory, or a
/// `wasm_bindgen_test` anywhere in `app/src/`.
fn app_has_browser_tests(app_dir: &Path) -> Result<bool> {
    if app_dir.join("tests").is_dir() {
        return Ok(true);
    }
    any_rust_file_mentions(&app_dir.join("src"), "wasm_bindgen_test")
}

fn any_rust_file_mentions(dir: &Path, needle: &str) -> Result<bool> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            if any_rust_file_mentions(&path, needle)? {
                return Ok(true);
            }
        } else if path.extension() == Some(OsStr::new("rs")) {
            let text = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if text.contains(needle) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// `cargo` in the workspace root: the same cargo that runs xtask, when it is known.
pub fn cargo(ws: &Workspace) -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(program);
    command.current_dir(&ws.root);
    command
}

/// `trunk` in the workspace root, seeing the pinned wasm-opt first on PATH and never asking the
/// registry for a newer trunk (Trunk.toml sets `offline = true` for the tools themselves).
fn trunk(ws: &Workspace, tools: &Tools) -> Command {
    let mut command = Command::new("trunk");
    command
        .current_dir(&ws.root)
        .env("PATH", &tools.path)
        .env("TRUNK_SKIP_VERSION_CHECK", "true")
        // Size over speed for the dashboard's wasm (see `[profile.wasm-release]`).
        .env("TRUNK_BUILD_CARGO_PROFILE", "wasm-release");
    command
}

/// Runs a command with inherited stdio (cargo's test output is what CI reads), and fails with a
/// message naming the command and its exit status unless it succeeds.
pub fn run_checked(command: &mut Command) -> Result {
    println!("$ {}", describe(command));
    let status = command
        .status()
        .map_err(|e| format!("could not start `{}`: {e}", describe(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(command)))
    }
}

/// The command line as a shell would read it, with the variables xtask sets (except PATH).
pub fn describe(command: &Command) -> String {
    let vars = command.get_envs().filter_map(|(key, value)| match value {
        Some(value) if key != "PATH" => Some(format!("{}={}", key.to_string_lossy(), quote(value))),
        _ => None,
    });
    let words = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(quote);
    vars.chain(words).collect::<Vec<_>>().join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A long-running child that is stopped when dropped, whatever path leaves [`run`].
struct Supervised {
    name: &'static str,
    child: Child,
}

impl Supervised {
    fn spawn(name: &'static str, command: &mut Command) -> Result<Self> {
        println!("$ {}", describe(command));
        let child = command
            .spawn()
            .map_err(|e| format!("could not start {name} (`{}`): {e}", describe(command)))?;
        Ok(Supervised { name, child })
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .map_err(|e| format!("cannot check on {}: {e}", self.name))
    }
}

impl Drop for Supervised {
    /// Asks the child to stop (SIGTERM through `kill`, so trunk can stop its own cargo build),
    /// then kills it if it is still running a few seconds later.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        if cfg!(unix) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        eprintln!("xtask: killing {}", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(name: &'static str, script: &str) -> Supervised {
        Supervised::spawn(name, Command::new("sh").args(["-c", script])).expect("spawn sh")
    }

    fn is_running(pid: u32) -> bool {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    #[test]
    fn when_trunk_exits_the_device_is_stopped() {
        let device = sh("device", "exec sleep 30");
        let device_pid = device.child.id();
        let trunk = sh("trunk", "exit 0");
        assert_eq!(supervise(device, trunk, &|| false, ""), Ok(()));
        assert!(!is_running(device_pid));
    }

    #[test]
    fn when_the_device_exits_trunk_is_stopped_and_it_is_an_error() {
        let device = sh("device", "exit 1");
        let trunk = sh("trunk", "exec sleep 30");
        let trunk_pid = trunk.child.id();
        let error = supervise(device, trunk, &|| false, "").unwrap_err();
        assert!(error.contains("the device exited"), "{error}");
        assert!(!is_running(trunk_pid));
    }

    #[test]
    fn the_dev_token_is_created_once_then_reused() {
        let dir = env::temp_dir().join(format!("xtask-token-test-{}", process::id()));
        let first = dev_token(&dir).unwrap();
        assert_eq!(first.len(), 32);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(dev_token(&dir).unwrap(), first);
        assert_ne!(new_token(), first);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fuzz_takes_an_optional_number_of_cases() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(matches!(args(&["fuzz"]), Ok(Task::Fuzz(FUZZ_CASES))));
        assert!(matches!(args(&["fuzz", "500"]), Ok(Task::Fuzz(500))));
        assert!(args(&["fuzz", "0"]).is_err());
        assert!(args(&["fuzz", "many"]).is_err());
        assert!(args(&["fuzz", "5", "6"]).is_err());
    }

    #[test]
    fn describes_commands_as_a_shell_would_read_them() {
        let mut command = Command::new("cargo");
        command
            .args(["test", "a b"])
            .env("CHROMIUM", "/usr/bin/chromium");
        assert_eq!(
            describe(&command),
            "CHROMIUM=/usr/bin/chromium cargo test 'a b'"
        );
    }
}

/// Benchmarks, one `cargo bench` target each (release build, same package set every time).
const BENCHES: &[(&str, &str)] = &[
    ("wasmops-shared", "modules"),
    ("wasmops-edge", "http"),
    ("wasmops-trainer", "fit"),
];

fn bench(ws: &Workspace) -> Result {
    for (package, target) in BENCHES {
        run_checked(cargo(ws).args(["bench", "-p", package, "--bench", target]))?;
    }
    // The dashboard benchmarks drive the release build of the dashboard and of the device in
    // headless Chromium.
    let tools = install::toolchain(ws)?;
    let browser = install::browser()?;
    run_checked(trunk(ws, &tools).args(["build", "--release"]))?;
    run_checked(cargo(ws).args([
        "build",
        "--release",
        "-p",
        "wasmops-edge",
        "--bin",
        "wasmops-edge",
    ]))?;
    let screenshots = ws.target.join("screenshots");
    fs::create_dir_all(&screenshots)
        .map_err(|e| format!("cannot create {}: {e}", screenshots.display()))?;
    for target in BROWSER_BENCHES {
        run_checked(
            cargo(ws)
                .args(["bench", "-p", "wasmops-e2e", "--bench", target])
                .env("WASMOPS_DIST", ws.root.join("dist"))
                .env("WASMOPS_EDGE_BIN", ws.edge_binary("release"))
                .env("WASMOPS_MLFLOW", install::mlflow(ws)?)
                .env("CHROMEDRIVER", &browser.chromedriver)
                .env("CHROMIUM", &browser.chromium)
                .env("WASMOPS_SCREENSHOTS", &screenshots),
        )?;
    }
    Ok(())
}

/// Benchmarks of the dashboard in Chromium (package `wasmops-e2e`).
const BROWSER_BENCHES: &[&str] = &[
    "dashboard_load",
    "runs_table",
    "telemetry_pull",
    "training",
    "mlflow_sync",
    "follow_scale",
];

#[cfg(test)]
mod announce_tests {
    use super::answers;

    /// A server that answers one request with `status`, on a free port.
    fn serve_once(status: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                );
            }
        });
        address
    }

    #[test]
    fn the_url_is_announced_only_once_the_server_answers_200() {
        assert!(answers(&serve_once("200 OK"), "/"));
        assert!(!answers(&serve_once("404 Not Found"), "/"));
        // Nothing listening.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        assert!(!answers(&free, "/"));
    }
}
