//! The dashboard's panels, one file each.

pub mod data;
pub mod device;
pub mod runs;
pub mod train;
