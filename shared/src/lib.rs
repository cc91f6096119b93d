//! wasmops-shared: what the dashboard and the device agree on.
//!
//! # Layout
//! - [`pipeline`]: a trained pipeline as plain data (scaler + model).
//! - [`compiler`]: pipeline -> self-contained WebAssembly module (wasm-encoder).
//! - [`reference`] and [`math`]: the plain-Rust computation every module must equal bit for bit.
//! - [`module`]: custom sections (card, profile, conformance) and the loader that checks a
//!   module against the ABI.
//! - [`abi`]: export names, status codes, batch layout (ABI version 1, `docs/module-abi.md`).
//! - [`profile`]: training profiles for drift; [`dataset`]: datasets and their content hash.
//! - [`quote`]: how outside text (names, headers) is shown in messages, escaped and bounded.
//! - [`automation`]: retraining rules (cooldown, daily cap) and rollout plans that judge a
//!   group's telemetry and roll themselves back; pure, for the tab and the headless controller.
//! - [`gate`]: promotion gates, rules over two models' metrics (MLflow's `MetricThreshold`).
//! - [`mlflow`]: MLflow's tracking and registry REST API over a transport each side brings.
//! - [`prometheus`]: the PromQL a fleet summary asks and the HTTP API's answers parsed.
//! - [`signature`]: detached ECDSA P-256 signatures of modules and the keys that check them.
//! - [`wire`]: JSON bodies of the device HTTP API; [`monitor`]: the alert rules over telemetry
//!   windows.
//!
//! This crate builds for wasm32 and native and never depends on leptos, web-sys, tokio, axum
//! or wasmtime.

pub mod abi;
pub mod automation;
pub mod compiler;
pub mod dataset;
pub mod digest;
pub mod gate;
pub mod math;
pub mod metrics;
pub mod mlflow;
pub mod module;
pub mod monitor;
pub mod pipeline;
pub mod profile;
pub mod prometheus;
pub mod quote;
pub mod reference;
pub mod run_filter;
pub mod signature;
pub mod wire;
