//! Runs panel: every tracked run; compile a run into a module and verify it in this browser.
//!
//! One component per file: [`panel`] (the table, its filter, sort, export and import),
//! [`row`] (one table row), [`details`] (a run opened), [`actions`] (rename, tags, archive,
//! delete, rerun), [`module_summary`] (the compiled module and Register), [`stopped`] (a failed
//! or cancelled run), [`sync_line`] (its MLflow state); [`compile`] compiles and verifies in
//! this browser, [`download`] makes download links. The table's sort and filter fields are
//! [`crate::logic::runs_table`].

pub mod actions;
pub mod compile;
pub mod details;
pub mod download;
pub mod module_summary;
pub mod panel;
pub mod row;
pub mod stopped;
pub mod sync_line;

pub use download::bytes_url;
pub use panel::RunsPanel;

/// Height of a row in the runs table, in CSS pixels (the stylesheet fixes it: rows never wrap).
const ROW_PX: f64 = 36.0;
/// Rows the table's scroll area shows at once.
const SCREEN_ROWS: usize = 14;
/// Rows drawn above and below the screen, so scrolling does not show blanks.
const MARGIN_ROWS: usize = 8;
/// How many of the newest runs the page reads before the rest: one screen and its margin.
pub const FIRST_SCREEN: usize = SCREEN_ROWS + MARGIN_ROWS;
