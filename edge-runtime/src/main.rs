//! `wasmops-edge`: serve model modules on a device, or run and inspect them offline.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasmops_edge::config::{LogFormat, ServeArgs, ServeConfig};
use wasmops_edge::device::Device;
use wasmops_edge::sandbox::{Limits, Sandbox};
use wasmops_edge::server::conn::ConnLimits;
use wasmops_edge::server::{self, HttpConfig};
use wasmops_edge::telemetry::prometheus::{self, ConstLabels};
use wasmops_edge::telemetry::remote_write;
use wasmops_edge::{logging, offline};

#[derive(Parser)]
#[command(
    name = "wasmops-edge",
    version,
    about = "Runs wasmops model modules on a device: serves predictions over HTTP, keeps durable telemetry, runs and inspects modules offline",
    after_help = "Examples:\n  wasmops-edge serve --data-dir /var/lib/wasmops-edge --token-file /etc/wasmops-edge/token\n  wasmops-edge serve --token-file token --tls-cert cert.pem --tls-key key.pem\n  wasmops-edge run --module model.wasm --input rows.csv --output predictions.csv\n  wasmops-edge inspect model.wasm\n\nAPI reference: docs/device-api.md. Log filter: WASMOPS_LOG (e.g. debug)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the device API (settings: flags > WASMOPS_* variables > --config file > defaults).
    Serve(Box<ServeArgs>),
    /// Predict every row of a CSV file (header optional) with a module, without a server.
    Run {
        /// The model module (.wasm); its conformance vectors are checked first.
        #[arg(long, value_name = "FILE")]
        module: PathBuf,
        /// Input rows as CSV, one row per line, features in the model's order (or named in a
        /// header line).
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Write predictions here (CSV with the card's output names) instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Show what a module holds: hash, sizes, model card, training profile, conformance.
    Inspect {
        /// The model module (.wasm).
        module: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => {
            let config = ServeConfig::resolve(*args)?;
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
            logging::init(config.log_format, Some(&config.data_dir.join("logs")))
                .map_err(anyhow::Error::msg)
                .context("setting up logging")?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(config))
        }
        Command::Run {
            module,
            input,
            output,
        } => {
            logging::init(LogFormat::Text, None).map_err(anyhow::Error::msg)?;
            let rows = match &output {
                Some(path) => {
                    let mut file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    offline::run(&module, &input, &mut file)?
                }
                None => offline::run(&module, &input, &mut std::io::stdout().lock())?,
            };
            eprintln!("predicted {rows} rows");
            Ok(())
        }
        Command::Inspect { module } => {
            print!("{}", offline::inspect(&module)?);
            Ok(())
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let sandbox = Sandbox::new(Limits::default()).context("starting the wasm engine")?;
    // Keys first: the stored active module is verified under them when the device opens.
    let trusted = match &config.trusted_keys {
        Some(dir) => wasmops_edge::trust::load_dir(dir).map_err(anyhow::Error::msg)?,
        None => Default::default(),
    };
    if trusted.is_empty() {
        tracing::warn!("no trusted keys (--trusted-keys): any module is accepted, signed or not");
    } else {
        tracing::info!(keys = %trusted, "signatures required: only modules signed by a trusted key are accepted");
    }
    let data_dir = config.data_dir.clone();
    let device = tokio::task::spawn_blocking(move || {
        Device::open_trusting(
            config.name.clone(),
            &data_dir,
            sandbox,
            config.telemetry.clone(),
            trusted,
        )
        .map(|d| (d, config))
    })
    .await?;
    let (mut device, config) = device.with_context(|| "opening the data dir".to_string())?;
    device.set_labels(config.labels.clone());
    // Bad TLS files stop the start here, before the port is bound.
    let tls = config.tls.as_ref().map(server::tls::acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
    // Tests and scripts read this line to learn the port.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("wasmops-edge listening on {scheme}://{addr}");
    let http = HttpConfig {
        token: config.token,
        predict_requires_token: !config.public_predict,
        allowed_origins: config.allow_origins,
        max_body: config.max_body,
        max_buffered: config.max_buffered,
        body_timeout: config.body_timeout,
        conn: ConnLimits {
            max_connections: config.max_connections,
            header_timeout: config.header_timeout,
            // The same patience as for a request body: bytes must keep moving.
            stall_timeout: config.body_timeout,
        },
        // The device's `--label` pairs, on every series (so Prometheus can group by them).
        metric_labels: ConstLabels::new(config.labels.clone().into_iter().collect())
            .map_err(|e| anyhow::anyhow!("--label: {e}"))?,
        unauthorized: Arc::new(AtomicU64::new(0)),
    };
    let device = Arc::new(device);
    if let Some(follow) = config.follow.clone() {
        let follow = wasmops_edge::follow::FollowConfig {
            max_module_bytes: config.max_body,
            ..follow
        };
        wasmops_edge::follow::start(device.clone(), follow).context("starting the follower")?;
    }
    if let Some(rw) = config.remote_write.clone() {
        let pusher = remote_write::Pusher::new(rw.clone()).map_err(anyhow::Error::msg)?;
        tracing::info!(url = %rw.url, interval_s = rw.interval.as_secs(), instance = %rw.instance, "pushing metrics by remote write");
        let (device, unauthorized) = (device.clone(), http.unauthorized.clone());
        let collect = move || {
            device
                .metrics(unauthorized.load(Ordering::Relaxed))
                .map(|inputs| prometheus::collect(&inputs))
                .map_err(|e| e.to_string())
        };
        tokio::spawn(remote_write::run(
            pusher,
            http.metric_labels.clone(),
            collect,
            shutdown_signal(),
        ));
    }
    match tls {
        Some(acceptor) => {
            server::run_tls(listener, acceptor, device, http, shutdown_signal()).await?
        }
        None => server::run(listener, device, http, shutdown_signal()).await?,
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
