//! The commands that work without a server: `run` (batch predictions from a CSV file) and
//! `inspect` (what is inside a module). Both use the same sandbox, limits and conformance
//! check as the daemon, so a module that works here works on a device.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use wasmops_shared::module::ModuleInfo;

use crate::input;
use crate::sandbox::{Limits, Sandbox, SandboxError};

/// Rows per call into the module.
const CHUNK_ROWS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("writing output: {0}")]
    Write(#[from] std::io::Error),
    #[error("{path}: {source}")]
    Module { path: String, source: SandboxError },
    #[error("{path}: {source}")]
    Input {
        path: String,
        source: input::InputError,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, OfflineError> {
    std::fs::read(path).map_err(|source| OfflineError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Predicts every row of `input` (CSV, header optional) and writes a CSV with the card's
/// output names as header to `out`. Returns the number of rows.
pub fn run(
    module: &Path,
    input_csv: &Path,
    out: &mut dyn std::io::Write,
) -> Result<usize, OfflineError> {
    let sandbox = Sandbox::new(Limits::default()).map_err(|source| OfflineError::Module {
        path: module.display().to_string(),
        source,
    })?;
    let loaded = sandbox
        .load(&read(module)?)
        .map_err(|source| OfflineError::Module {
            path: module.display().to_string(),
            source,
        })?;
    let batch =
        input::from_csv(&read(input_csv)?, &loaded.info.card.feature_names).map_err(|source| {
            OfflineError::Input {
                path: input_csv.display().to_string(),
                source,
            }
        })?;
    let mut w = std::io::BufWriter::new(out);
    writeln!(w, "{}", loaded.info.card.outputs.join(","))?;
    let d = loaded.n_features();
    for chunk in batch.values.chunks(CHUNK_ROWS * d) {
        let outputs = sandbox
            .predict(&loaded, chunk)
            .map_err(|source| OfflineError::Module {
                path: module.display().to_string(),
                source,
            })?;
        for row in outputs.chunks(loaded.n_outputs()) {
            let line: Vec<String> = row.iter().map(f64::to_string).collect();
            writeln!(w, "{}", line.join(","))?;
        }
    }
    w.flush()?;
    Ok(batch.rows)
}

/// A readable report on a module: hash, sizes, card, profile, and whether its conformance
/// vectors reproduce in this runtime.
pub fn inspect(module: &Path) -> Result<String, OfflineError> {
    let bytes = read(module)?;
    let to_err = |source: SandboxError| OfflineError::Module {
        path: module.display().to_string(),
        source,
    };
    let info = ModuleInfo::parse(&bytes).map_err(|e| to_err(e.into()))?;
    let verdict = match Sandbox::new(Limits::default())
        .map_err(to_err)?
        .load(&bytes)
    {
        Ok(_) => format!("all {} rows reproduce bit for bit", info.conformance.n_rows),
        Err(e) => format!("FAILS: {e}"),
    };
    let card = &info.card;
    let mut s = String::new();
    let _ = writeln!(s, "module      {}", module.display());
    let _ = writeln!(s, "hash        {}", info.hash);
    let _ = writeln!(s, "size        {} bytes", info.size);
    for (name, size) in sections(&bytes) {
        let _ = writeln!(s, "  section   {name:<22} {size:>8} bytes");
    }
    let _ = writeln!(s, "abi         {}", card.abi_version);
    let _ = writeln!(s, "kind        {}", card.kind);
    let _ = writeln!(s, "features    {}", card.feature_names.join(", "));
    let _ = writeln!(s, "target      {}", card.target_name);
    let _ = writeln!(s, "classes     {}", card.classes.join(", "));
    let _ = writeln!(s, "outputs     {}", card.outputs.join(", "));
    let _ = writeln!(
        s,
        "dataset     {} ({} rows, {})",
        card.dataset.name, card.dataset.n_rows, card.dataset.hash
    );
    let _ = writeln!(s, "code        {}", card.code_version);
    for (k, v) in &card.params {
        let _ = writeln!(s, "param       {k} = {v}");
    }
    for (k, v) in &card.metrics {
        let _ = writeln!(s, "metric      {k} = {v}");
    }
    let _ = writeln!(s, "profile     {} training rows", info.profile.n_rows);
    for f in &info.profile.features {
        let _ = writeln!(
            s,
            "  {:<16} mean {:<12.6} std {:<12.6} min {:<12.6} max {:.6}",
            f.name,
            f.mean,
            f.std,
            f.edges.first().copied().unwrap_or(f64::NAN),
            f.edges.last().copied().unwrap_or(f64::NAN)
        );
    }
    let _ = writeln!(s, "conformance {verdict}");
    Ok(s)
}

/// Names and sizes of the module's sections, from the binary's section headers.
fn sections(bytes: &[u8]) -> Vec<(String, u64)> {
    const NAMES: [&str; 13] = [
        "custom",
        "type",
        "import",
        "function",
        "table",
        "memory",
        "global",
        "export",
        "start",
        "element",
        "code",
        "data",
        "datacount",
    ];
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let Some((size, n)) = leb128(&bytes[pos..]) else {
            break;
        };
        pos += n;
        let end = pos.saturating_add(size as usize).min(bytes.len());
        let name = if id == 0 {
            leb128(&bytes[pos..end])
                .and_then(|(len, n)| bytes.get(pos + n..pos + n + len as usize))
                .map(|b| format!("custom `{}`", String::from_utf8_lossy(b)))
                .unwrap_or_else(|| "custom".into())
        } else {
            NAMES.get(id as usize).unwrap_or(&"unknown").to_string()
        };
        out.push((name, size));
        pos = end;
    }
    out
}

fn leb128(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}
