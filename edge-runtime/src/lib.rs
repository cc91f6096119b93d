//! wasmops-edge: the device daemon.
//!
//! # Layout
//! - [`sandbox`]: wasmtime engine, module loading (static checks, conformance), bounded calls.
//! - [`device`]: content-addressed module store in the data dir, the active module, its
//!   activation history (rollback), and the telemetry store.
//! - [`telemetry`]: durable telemetry in SQLite (group-committed writer thread), windows with
//!   drift, Prometheus text.
//! - [`input`]: predict bodies (JSON, CSV) checked against the active model's features.
//! - [`server`]: the `/v1` HTTP API (axum); `server::run(listener, ...)` for tests and `main`.
//! - [`config`]: `serve` settings from flags, `WASMOPS_*` variables and a TOML file.
//! - [`offline`]: `run` (batch predictions from CSV) and `inspect` (what is in a module).
//! - [`trust`]: `--trusted-keys DIR`, the public keys whose signatures the device accepts.
//! - [`follow`]: `--follow`, polling an MLflow alias and running the version it points at.
//!
//! `main.rs` only parses flags, sets up logging and calls into these.

pub mod config;
pub mod device;
pub mod follow;
pub mod input;
pub mod logging;
pub mod offline;
pub mod sandbox;
pub mod server;
pub mod telemetry;
pub mod trust;
