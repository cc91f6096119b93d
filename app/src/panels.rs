//! The dashboard's panels and pages, one file each.

pub mod automation;
pub mod compare;
pub mod data;
pub mod devices;
pub mod fleet;
pub mod logs;
pub mod registry;
pub mod runs;
pub mod settings;
pub mod train;
