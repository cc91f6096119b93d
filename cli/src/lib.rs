//! wasmops-cli: the headless `wasmops` command, on the dashboard's own code.
//!
//! # Layout
//! - [`train`]: `wasmops train`: a spec (or a run exported by the dashboard) and a CSV file in,
//!   `run.json` and `model.wasm` out, through `wasmops_trainer::run` exactly as the tab's
//!   worker trains and its Compile button compiles.
//! - [`gate`]: `wasmops gate`: two modules run in the device's sandbox on the same held-out
//!   rows, their metrics (`wasmops_shared::metrics`) judged by `wasmops_shared::gate`.
//! - [`keys`]: `wasmops sign` and `wasmops pubkey` (`wasmops_shared::signature`).
//! - [`registry`]: `wasmops register` and `wasmops alias` through `wasmops_shared::mlflow`
//!   over reqwest.
//! - [`controller`]: `wasmops controller`: the unattended loop (rules, gate, rollout) as a
//!   long-running process; its decisions are `wasmops_shared::automation`'s.
//!
//! Nothing here decides anything the dashboard decides differently: every rule, record and
//! byte comes from `wasmops-trainer` and `wasmops-shared`; this crate reads files and flags,
//! prints, and maps outcomes to exit statuses ([`Failure`]).

pub mod controller;
pub mod gate;
pub mod keys;
pub mod registry;
pub mod train;

use std::path::Path;

/// How a command ends when it does not succeed: exit status 1 for a gate that failed, 2 for
/// anything that stopped a command (bad flags, unreadable input, a server's refusal).
#[derive(Debug)]
pub enum Failure {
    /// The gate ran and at least one rule failed (exit status 1).
    GateFailed,
    /// `wasmops rollout` ran and its plan rolled the version back (exit status 1).
    RolledBack,
    /// Exit status 2, with what went wrong and where.
    Error(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Error(e.into())
    }
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::GateFailed | Failure::RolledBack => 1,
            Failure::Error(_) => 2,
        }
    }
}

/// A file's bytes, the error naming the file.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A text file as the dashboard reads a picked file (`Blob.text()`): UTF-8 with invalid bytes
/// replaced by U+FFFD and a leading byte-order mark dropped.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.strip_prefix('\u{FEFF}').unwrap_or(&text).to_string())
}

/// Writes a file, the error naming it.
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// The name a browser gives a picked file: its last path component.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Up to ten bad rows of a CSV file, one per line with the file's name, and how many more.
pub fn list_problems(file: &str, problems: &[wasmops_trainer::csv_import::RowProblem]) -> String {
    let mut text: Vec<String> = problems
        .iter()
        .take(10)
        .map(|p| format!("  {file}: {p}"))
        .collect();
    if problems.len() > 10 {
        text.push(format!("  ... and {} more", problems.len() - 10));
    }
    text.join("\n")
}
