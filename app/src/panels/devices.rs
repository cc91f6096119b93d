//! Devices page: alerts, the devices the dashboard knows (health, active version, last seen),
//! pulling their telemetry, rolling back, and per device its deployment history and telemetry
//! charts.
//!
//! One component per file: [`page`] (the page and the pull loop), [`alerts`], [`form`] (add or
//! edit a device), [`row`] (one device in the table), [`detail`] (one device opened),
//! [`usage`] (how to call it), [`telemetry`] (its charts per model version). The words and
//! numbers they show come from [`crate::logic`] (`follow`, `alerts`, `drift`,
//! `prediction_chart`).

pub mod alerts;
pub mod detail;
pub mod form;
pub mod page;
pub mod row;
pub mod telemetry;
pub mod usage;

pub use crate::logic::follow::follow_summary;
pub use page::DevicesPage;
