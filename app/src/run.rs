//! A tracked training run, as stored in IndexedDB. The record itself, its card, module and
//! spec live in `wasmops_trainer::run`, shared with the headless `wasmops` CLI (the same
//! spec, data and code give the same module bytes in both).

pub use wasmops_trainer::run::{
    param_text, Bundle, Run, RunLogLine, RunSummary, BUNDLE_FORMAT, BUNDLE_VERSION, CODE_VERSION,
    FINISHED,
};

/// The number for a new run's default name (`logistic regression #7`): one more than the
/// highest `#n` any run's name ends with, so a delete never makes a name repeat.
pub fn next_run_number<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names
        .into_iter()
        .filter_map(|name| name.rsplit_once(" #")?.1.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1
}
