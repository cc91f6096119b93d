//! The install step shared by `run` and `test`: checks each tool and installs only what is
//! missing or at the wrong version. Each check prints one line saying what it found or did.
//!
//! Pins and why (see /work/shared/TOOLCHAIN.md):
//! - wasm-bindgen-cli must match the `wasm-bindgen` library exactly, so its version is read
//!   from Cargo.lock rather than written here. It is installed without `--locked`: its own lock
//!   file names a dependency version that is no longer in the registry.
//! - trunk 0.22.1 declares rust 1.96.1 but works on our 1.95, hence `--ignore-rust-version`.
//! - wasm-opt comes from npm's binaryen 132, kept in the target directory and put first on PATH
//!   for trunk. Debian's binaryen (108) silently corrupts wasm-bindgen's externref table export.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, run_checked, Result, Workspace};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const TRUNK_VERSION: &str = "0.22.1";
const BINARYEN_NPM_PACKAGE: &str = "binaryen@132.0.0";
/// What `wasm-opt --version` reports for [`BINARYEN_NPM_PACKAGE`].
const WASM_OPT_VERSION: &str = "132";
/// The MLflow the end-to-end tests run as a real tracking server (PyPI, in a venv of its own
/// under the target directory).
pub const MLFLOW_VERSION: &str = "3.17.2";

/// What later commands need from the install step.
pub struct Tools {
    /// PATH for trunk: the pinned wasm-opt first, then the inherited PATH.
    pub path: OsString,
}

/// The browser the tests drive.
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

/// Everything `run` needs: the wasm target, wasm-bindgen-cli, trunk and wasm-opt.
pub fn toolchain(ws: &Workspace) -> Result<Tools> {
    wasm_target()?;
    wasm_bindgen_cli(ws)?;
    trunk(ws)?;
    let wasm_opt_dir = binaryen(ws)?;
    Ok(Tools {
        path: prepend_to_path(&wasm_opt_dir)?,
    })
}

fn wasm_target() -> Result {
    let list = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("could not start `rustup target list --installed`: {e}"))?;
    if !list.status.success() {
        return Err(format!(
            "`rustup target list --installed` failed ({})",
            list.status
        ));
    }
    if String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|line| line.trim() == WASM_TARGET)
    {
        say(&format!("rust target {WASM_TARGET}: installed"));
        return Ok(());
    }
    say(&format!("rust target {WASM_TARGET}: missing, adding it"));
    run_checked(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn wasm_bindgen_cli(ws: &Workspace) -> Result {
    let lock_path = ws.root.join("Cargo.lock");
    let lock = fs::read_to_string(&lock_path)
        .map_err(|e| format!("cannot read {}: {e}", lock_path.display()))?;
    let version = locked_version(&lock, "wasm-bindgen").ok_or_else(|| {
        format!(
            "{} has no `wasm-bindgen` package to take the version from",
            lock_path.display()
        )
    })?;
    let label = format!("wasm-bindgen-cli {version} (the version Cargo.lock pins)");
    // The crate installs both; the test runner is what `cargo test --target wasm32-...` uses.
    let found = ["wasm-bindgen", "wasm-bindgen-test-runner"]
        .map(|program| reported_version(Command::new(program).arg("--version")));
    if found.iter().all(|report| mentions(report, &version)) {
        say(&format!("{label}: installed"));
        return Ok(());
    }
    say(&format!(
        "{label}: {}, installing",
        describe_found(&found[0])
    ));
    run_checked(cargo(ws).args(["install", "wasm-bindgen-cli", "--version", &version]))?;
    expect_version(Command::new("wasm-bindgen").arg("--version"), &version)
}

fn trunk(ws: &Workspace) -> Result {
    let label = format!("trunk {TRUNK_VERSION}");
    let found = reported_version(Command::new("trunk").arg("--version"));
    if mentions(&found, TRUNK_VERSION) {
        say(&format!("{label}: installed"));
        return Ok(());
    }
    say(&format!(
        "{label}: {}, installing (takes a while)",
        describe_found(&found)
    ));
    run_checked(cargo(ws).args([
        "install",
        "--locked",
        "trunk",
        "--version",
        TRUNK_VERSION,
        "--ignore-rust-version",
    ]))?;
    expect_version(Command::new("trunk").arg("--version"), TRUNK_VERSION)
}

/// Installs npm's binaryen under the target directory; returns the directory holding wasm-opt.
fn binaryen(ws: &Workspace) -> Result<PathBuf> {
    let prefix = ws.target.join("tools").join("binaryen");
    let bin_dir = prefix.join("node_modules").join(".bin");
    let wasm_opt = bin_dir.join("wasm-opt");
    let label = format!("wasm-opt {WASM_OPT_VERSION} (npm {BINARYEN_NPM_PACKAGE})");
    let found = reported_version(Command::new(&wasm_opt).arg("--version"));
    if mentions(&found, WASM_OPT_VERSION) {
        say(&format!("{label}: installed in {}", bin_dir.display()));
        return Ok(bin_dir);
    }
    say(&format!(
        "{label}: {}, installing into {}",
        describe_found(&found),
        prefix.display()
    ));
    fs::create_dir_all(&prefix).map_err(|e| format!("cannot create {}: {e}", prefix.display()))?;
    run_checked(
        Command::new("npm")
            .arg("install")
            .arg("--prefix")
            .arg(&prefix)
            .args(["--no-audit", "--no-fund", BINARYEN_NPM_PACKAGE]),
    )?;
    expect_version(Command::new(&wasm_opt).arg("--version"), WASM_OPT_VERSION)?;
    Ok(bin_dir)
}

/// Chromium and chromedriver for the browser tests, from Debian's packages when missing.
pub fn browser() -> Result<Browser> {
    const INSTALL: &str = "apt-get update && apt-get install -y chromium chromium-driver";
    if let Some(browser) = find_browser() {
        say(&format!(
            "chromium + chromedriver: found {} and {}",
            browser.chromium.display(),
            browser.chromedriver.display()
        ));
        return Ok(browser);
    }
    if !is_root() {
        return Err(format!(
            "the browser tests need `chromium` and `chromedriver` on PATH; install them as root \
             with: {INSTALL}"
        ));
    }
    say(&format!(
        "chromium + chromedriver: missing, running {INSTALL}"
    ));
    run_checked(Command::new("apt-get").arg("update"))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "chromium", "chromium-driver"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    find_browser().ok_or_else(|| {
        format!("`{INSTALL}` succeeded but `chromium` or `chromedriver` is still not on PATH")
    })
}

/// A pinned MLflow in a venv under the target directory, for the tests' real `mlflow server`;
/// returns the `mlflow` executable. Debian's `python3-venv` is installed when missing.
pub fn mlflow(ws: &Workspace) -> Result<PathBuf> {
    let label = format!("mlflow {MLFLOW_VERSION}");
    let venv = ws
        .target
        .join("tools")
        .join(format!("mlflow-{MLFLOW_VERSION}"));
    let bin = venv.join("bin");
    let mlflow = bin.join("mlflow");
    // The `auth` extra: the tests also run MLflow's basic-auth app.
    let with_auth = Command::new(bin.join("python"))
        .args(["-c", "import flask_wtf"])
        .output()
        .is_ok_and(|o| o.status.success());
    if with_auth
        && mentions(
            &reported_version(Command::new(&mlflow).arg("--version")),
            MLFLOW_VERSION,
        )
    {
        say(&format!("{label}: installed in {}", venv.display()));
        return Ok(mlflow);
    }
    let has_venv = Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_venv {
        if !is_root() {
            return Err(
                "the MLflow tests need python3 with venv; install it as root with: apt-get install -y python3-venv"
                    .into(),
            );
        }
        say("python3-venv: missing, installing it with apt-get");
        run_checked(Command::new("apt-get").arg("update"))?;
        run_checked(
            Command::new("apt-get")
                .args(["install", "-y", "python3-venv"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    say(&format!(
        "{label}: installing into {} (once)",
        venv.display()
    ));
    let _ = fs::remove_dir_all(&venv);
    run_checked(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run_checked(
        Command::new(bin.join("pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(format!("mlflow[auth]=={MLFLOW_VERSION}")),
    )?;
    expect_version(Command::new(&mlflow).arg("--version"), MLFLOW_VERSION)?;
    Ok(mlflow)
}

/// Prometheus for the fleet-telemetry tests (scrapes devices, receives remote write), from
/// Debian's package when missing (2.42 in bookworm: `--web.enable-remote-write-receiver` and
/// `--web.cors.origin`); returns the `prometheus` executable.
pub fn prometheus() -> Result<PathBuf> {
    apt_program("prometheus", "prometheus", &["prometheus"])
}

/// Podman for `cargo xtask container`, with runc: Debian's default runtime, crun, refuses to
/// start containers on a host with cgroups v1 in hybrid mode, runc runs them. Returns the
/// `podman` executable.
pub fn podman() -> Result<PathBuf> {
    let podman = apt_program("podman", "podman", &["podman"])?;
    apt_program("runc", "runc", &["runc"])?;
    Ok(podman)
}

/// A program from a Debian package: found on PATH, or installed with apt-get when running as
/// root (otherwise the error says what to install).
fn apt_program(program: &str, label: &str, packages: &[&str]) -> Result<PathBuf> {
    let install = format!(
        "apt-get update && apt-get install -y {}",
        packages.join(" ")
    );
    if let Some(path) = find_on_path(program) {
        say(&format!("{label}: found {}", path.display()));
        return Ok(path);
    }
    if !is_root() {
        return Err(format!(
            "`{program}` is missing; install it as root with: {install}"
        ));
    }
    say(&format!("{label}: missing, running {install}"));
    run_checked(Command::new("apt-get").arg("update"))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    find_on_path(program)
        .ok_or_else(|| format!("`{install}` succeeded but `{program}` is still not on PATH"))
}

fn find_browser() -> Option<Browser> {
    Some(Browser {
        chromium: find_on_path("chromium")?,
        chromedriver: find_on_path("chromedriver")?,
    })
}

fn is_root() -> bool {
    reported_version(Command::new("id").arg("-u")).is_some_and(|uid| uid == "0")
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn say(line: &str) {
    println!("xtask install: {line}");
}

/// The version of `name` in a Cargo.lock (the first, if several are locked).
pub fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut in_wanted_package = false;
    for line in lock.lines().map(str::trim) {
        if line == "[[package]]" {
            in_wanted_package = false;
        } else if line == wanted {
            in_wanted_package = true;
        } else if in_wanted_package {
            if let Some(version) = line.strip_prefix("version = \"") {
                return version.strip_suffix('"').map(str::to_owned);
            }
        }
    }
    None
}

/// The first line a `--version` command prints, or `None` if it is missing or fails.
fn reported_version(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().next().map(|line| line.trim().to_owned())
}

/// Whether a version report such as `trunk 0.22.1` or `wasm-opt version 132 (version_132)`
/// names exactly `version` as one of its words.
fn mentions(report: &Option<String>, version: &str) -> bool {
    report
        .as_deref()
        .is_some_and(|report| report.split_whitespace().any(|word| word == version))
}

fn describe_found(report: &Option<String>) -> String {
    match report {
        Some(report) => format!("found `{report}`"),
        None => "not found".to_owned(),
    }
}

/// After an install: fails unless the tool now reports `version` (e.g. if ~/.cargo/bin is not
/// on PATH, or an older copy earlier on PATH shadows the new one).
fn expect_version(command: &mut Command, version: &str) -> Result {
    let shown = crate::describe(command);
    let found = reported_version(command);
    match found {
        _ if mentions(&found, version) => Ok(()),
        Some(report) => Err(format!(
            "installed, but `{shown}` still prints `{report}`, not {version}; check PATH"
        )),
        None => Err(format!(
            "installed, but `{shown}` does not run; is the install directory on PATH?"
        )),
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(format!("{program}{}", env::consts::EXE_SUFFIX)))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

fn prepend_to_path(dir: &Path) -> Result<OsString> {
    let inherited = env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_path_buf()).chain(env::split_paths(&inherited));
    env::join_paths(dirs).map_err(|e| format!("cannot add {} to PATH: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
[[package]]
name = "wasm-bindgen-futures"
version = "0.4.50"

[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;

    #[test]
    fn reads_the_locked_version_of_the_exact_package() {
        assert_eq!(
            locked_version(LOCK, "wasm-bindgen").as_deref(),
            Some("0.2.130")
        );
        assert_eq!(
            locked_version(LOCK, "wasm-bindgen-futures").as_deref(),
            Some("0.4.50")
        );
        assert_eq!(locked_version(LOCK, "trunk"), None);
    }

    #[test]
    fn matches_whole_version_words_only() {
        let report = |s: &str| Some(s.to_owned());
        assert!(mentions(
            &report("wasm-opt version 132 (version_132)"),
            "132"
        ));
        assert!(!mentions(
            &report("wasm-opt version 1320 (version_1320)"),
            "132"
        ));
        assert!(mentions(&report("trunk 0.22.1"), "0.22.1"));
        assert!(!mentions(&report("trunk 0.22.10"), "0.22.1"));
        assert!(!mentions(&None, "0.22.1"));
    }
}
