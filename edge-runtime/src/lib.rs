//! wasmops-edge: the device daemon.
//!
//! # Layout
//! - [`sandbox`]: wasmtime engine, module loading (static checks, conformance), bounded calls.
//! - [`device`]: content-addressed module store in the data dir, the active module, counters.
//! - [`server`]: the `/v1` HTTP API (axum); `server::run(listener, ...)` for tests and `main`.
//!
//! `main.rs` only parses flags, sets up logging and calls `server::run`.

pub mod device;
pub mod sandbox;
pub mod server;
