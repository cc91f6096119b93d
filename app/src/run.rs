//! A tracked training run, as stored in IndexedDB. The record itself, its card, module and
//! spec live in `wasmops_trainer::run`, shared with the headless `wasmops` CLI (the same
//! spec, data and code give the same module bytes in both).

pub use wasmops_trainer::run::{
    param_text, Bundle, Run, RunLogLine, RunSummary, Status, BUNDLE_FORMAT, BUNDLE_VERSION,
    CODE_VERSION,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_numbers_never_repeat_after_a_delete() {
        assert_eq!(next_run_number([]), 1);
        // #2 was deleted: the next is 4, not 3 (count + 1), which #3 already has.
        assert_eq!(next_run_number(["tree #1", "tree #3"]), 4);
        // Renamed runs and names without a number do not count.
        assert_eq!(next_run_number(["mine", "tree #x", "forest #7 (rerun)"]), 1);
        assert_eq!(next_run_number(["forest #7", "tree #2"]), 8);
    }

    /// A summary as IndexedDB holds it (written by older builds: `status` as a word, or no
    /// status at all before failed runs were tracked).
    fn stored_summary(status: Option<&str>) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": "run-1", "name": "tree #1", "started_at_ms": 1.0, "duration_ms": 2.0,
            "code_version": "abc", "dataset": {"name": "iris", "hash": "00", "n_rows": 150},
            "model": "decision_tree", "metric": "accuracy", "params": {"max_depth": 4},
            "metrics": {"accuracy": 0.9}, "tags": [], "notes": "", "archived": false
        });
        if let Some(s) = status {
            v["status"] = serde_json::json!(s);
            v["error"] = serde_json::Value::Null;
        }
        v
    }

    #[test]
    fn stored_run_statuses_load_as_the_enum_and_keep_their_words() {
        let old: RunSummary = serde_json::from_value(stored_summary(None)).unwrap();
        assert_eq!(old.status, Status::Finished);
        assert!(old.is_finished());
        for (word, status) in [
            ("finished", Status::Finished),
            ("failed", Status::Failed),
            ("cancelled", Status::Cancelled),
        ] {
            let s: RunSummary = serde_json::from_value(stored_summary(Some(word))).unwrap();
            assert_eq!(s.status, status);
            assert_eq!(s.status.to_string(), word);
            // Written back with the same word.
            assert_eq!(
                serde_json::to_value(&s).unwrap(),
                stored_summary(Some(word))
            );
        }
        assert!(serde_json::from_value::<RunSummary>(stored_summary(Some("exploded"))).is_err());
    }
}
