//! `wasmops-edge`: serve model modules on a device.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasmops_edge::device::Device;
use wasmops_edge::sandbox::{Limits, Sandbox};
use wasmops_edge::server::{self, HttpConfig};

#[derive(Parser)]
#[command(
    name = "wasmops-edge",
    version,
    about = "Runs wasmops model modules on a device and serves predictions over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the device API.
    Serve {
        /// Address to listen on (port 0 picks a free port; the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
        /// Where modules and device state are kept.
        #[arg(long, default_value = "wasmops-data")]
        data_dir: PathBuf,
        /// Access token clients must send as `Authorization: Bearer <token>`.
        #[arg(long, env = "WASMOPS_TOKEN", hide_env_values = true)]
        token: String,
        /// Browser origins allowed to call the API (repeat the flag for several).
        #[arg(long = "allow-origin")]
        allow_origins: Vec<String>,
        /// Let predict be called without the token.
        #[arg(long)]
        public_predict: bool,
        /// Name this device reports.
        #[arg(long, default_value = "wasmops-device")]
        name: String,
        /// Largest request body, in bytes.
        #[arg(long, default_value_t = 8 << 20)]
        max_body: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASMOPS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve {
            listen,
            data_dir,
            token,
            allow_origins,
            public_predict,
            name,
            max_body,
        } => {
            anyhow::ensure!(!token.is_empty(), "--token must not be empty");
            let sandbox = Sandbox::new(Limits::default()).context("starting the wasm engine")?;
            let device = Device::open(name, &data_dir, sandbox)
                .with_context(|| format!("opening data dir {}", data_dir.display()))?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, data_dir = %data_dir.display(), "serving");
            // Tests and scripts read this line to learn the port.
            println!("wasmops-edge listening on http://{addr}");
            let http = HttpConfig {
                token,
                predict_requires_token: !public_predict,
                allowed_origins: allow_origins,
                max_body,
            };
            server::run(listener, Arc::new(device), http, shutdown_signal()).await?;
            tracing::info!("stopped");
            Ok(())
        }
    }
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
