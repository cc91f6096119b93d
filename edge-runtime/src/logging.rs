//! Logs: `tracing` to stderr and, for the daemon, to daily-rotated files in
//! `DATA_DIR/logs` (14 kept). Readable text by default, one JSON object per line on request.
//! The filter comes from `WASMOPS_LOG` (default `info`).

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Log files kept before the oldest is deleted.
const KEEP_FILES: usize = 14;

/// Installs the global subscriber. With `log_dir`, lines also go to rotated files there.
pub fn init(format: LogFormat, log_dir: Option<&Path>) -> Result<(), String> {
    let filter = EnvFilter::try_from_env("WASMOPS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut layers = vec![layer(format, ansi, std::io::stderr)];
    if let Some(dir) = log_dir {
        {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let appender = tracing_appender::rolling::RollingFileAppender::builder()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("wasmops-edge")
                .filename_suffix("log")
                .max_log_files(KEEP_FILES)
                .build(dir)
                .map_err(|e| format!("log files in {}: {e}", dir.display()))?;
            layers.push(layer(format, false, appender));
        }
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()
        .map_err(|e| e.to_string())
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

fn layer<W>(format: LogFormat, ansi: bool, writer: W) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
}
