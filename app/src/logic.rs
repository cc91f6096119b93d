//! The dashboard's pure logic, apart from its views: no leptos, no `web_sys`, no IndexedDB.
//! Each view file keeps the reactive wiring and markup; what it computes (how the runs table
//! sorts, what a chart bins, what a form accepts, which windows a pull asks for) lives here,
//! where `cargo test -p wasmops-app` tests it natively.

pub mod alerts;
pub mod dataset_choice;
pub mod datasets;
pub mod device_form;
pub mod drift;
pub mod follow;
pub mod log_line;
pub mod prediction_chart;
pub mod pull;
pub mod register;
pub mod run_edit;
pub mod runs_table;
pub mod usage;

#[cfg(test)]
pub(crate) mod tests {
    //! Values the tests of several modules build.

    use wasmops_shared::wire::Window;

    /// An empty window starting at `start_ms`.
    pub fn window(start_ms: u64) -> Window {
        Window {
            start_ms,
            end_ms: start_ms + 60_000,
            model: None,
            requests: 0,
            rows: 0,
            errors: Default::default(),
            latency_us_buckets: Vec::new(),
            latency_us_counts: Vec::new(),
            latency_p50_us: 0,
            latency_p95_us: 0,
            latency_p99_us: 0,
            predictions: Default::default(),
            drift: Vec::new(),
            dataset_drift: false,
            labeled: 0,
            correct: 0,
            accuracy: None,
        }
    }

    /// A model version as IndexedDB holds it, written by a build before MLflow (no `mlflow`,
    /// no `pulled`): a classifier of iris with two held-out rows.
    pub fn version_json() -> serde_json::Value {
        serde_json::json!({
            "hash": "ab".repeat(32), "model": "iris-tree", "version": 1, "size": 900,
            "registered_at_ms": 1.0, "run_id": "run-1", "run_name": "tree #1",
            "dataset": {"name": "iris", "hash": "cd".repeat(32), "n_rows": 150},
            "code_version": "abc",
            "card": {
                "abi_version": 1, "kind": "decision_tree",
                "feature_names": ["sepal_length", "sepal_width"], "target_name": "species",
                "classes": ["setosa", "versicolor", "virginica"], "outputs": ["class"],
                "dataset": {"name": "iris", "hash": "cd".repeat(32), "n_rows": 150},
                "params": {"max_depth": 4}, "metrics": {"accuracy": 0.9}, "code_version": "abc"
            },
            "profile": {"n_rows": 120, "features": []},
            "conformance_rows": 8, "metric": "accuracy", "module_metric": 0.9,
            "trained_metric": 0.9, "check_rows": [5.1, 3.5, 6.2, 2.9],
            "check_outputs": [0.0, 2.0]
        })
    }

    #[test]
    fn stored_versions_from_before_mlflow_still_load() {
        let v: crate::registry::ModelVersion = serde_json::from_value(version_json()).unwrap();
        assert!(v.mlflow.is_none() && v.pulled.is_none());
        assert_eq!(v.label(), "iris-tree v1");
        assert_eq!(v.held_out_accuracy(), Some(0.9));
        assert_eq!(v.reference_predictions(), [0.0, 2.0]);
    }

    #[test]
    fn stored_device_statuses_with_concept_drift_words_still_load() {
        use wasmops_shared::wire::ConceptState;
        let json = serde_json::json!({
            "url": "http://127.0.0.1:7878", "last_seen_ms": 5.0, "last_info": null,
            "last_error": null, "cursors": {"60": 120000},
            "concept_drift": [
                {"model": "ab", "samples": 12, "error_rate": 0.5, "state": "warming_up"},
                {"model": "cd", "samples": 90, "error_rate": 0.3, "state": "drift"}
            ]
        });
        let s: crate::registry::DeviceStatus = serde_json::from_value(json.clone()).unwrap();
        let states: Vec<ConceptState> = s.concept_drift.iter().map(|c| c.state).collect();
        assert_eq!(states, [ConceptState::WarmingUp, ConceptState::Drift]);
        assert_eq!(s.concept_drift[0].state.words(), "warming up");
        assert_eq!(serde_json::to_value(&s).unwrap(), json);
    }
}
