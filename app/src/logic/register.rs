//! The rules of registering a compiled module as a model version.

use crate::registry::ModelVersion;
use crate::state::CompiledModule;

/// The name the Register form offers: the dataset and the algorithm as trained (ridge is not
/// "linear regression"), in lowercase words joined by `-`.
pub fn default_model_name(dataset: &str, algorithm_label: &str) -> String {
    let algorithm = algorithm_label.to_lowercase().replace(' ', "-");
    format!("{dataset}-{algorithm}").replace('_', "-")
}

/// Refuses a name that is empty or has a `/` (MLflow and the registry's keys use it), and a
/// module whose metric in this browser is not the trained model's, bit for bit.
pub fn check(name: &str, m: &CompiledModule) -> Result<(), String> {
    if name.is_empty() || name.contains('/') {
        return Err(format!(
            "model name must be non-empty and without `/`, got `{name}`"
        ));
    }
    if m.module_metric.to_bits() != m.trained_metric.to_bits() {
        return Err(format!(
            "not registered: the module's {} in this browser ({}) differs from the trained model's ({})",
            m.metric, m.module_metric, m.trained_metric
        ));
    }
    Ok(())
}

/// The next version number of `name`: one more than its highest (versions count up from 1,
/// per name).
pub fn next_version(existing: &[ModelVersion], name: &str) -> u32 {
    existing
        .iter()
        .filter(|v| v.model == name)
        .map(|v| v.version)
        .max()
        .unwrap_or(0)
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(module_metric: f64, trained_metric: f64) -> CompiledModule {
        CompiledModule {
            run_id: "run-1".into(),
            hash: "ab".repeat(32),
            bytes: vec![0, 97, 115, 109],
            n_outputs: 1,
            test_outputs: vec![],
            metric: "accuracy",
            module_metric,
            trained_metric,
            conformance_rows: 8,
            compiled_at_ms: 0.0,
        }
    }

    #[test]
    fn default_names_are_lowercase_words_joined_by_dashes() {
        assert_eq!(
            default_model_name("iris", "Decision tree"),
            "iris-decision-tree"
        );
        assert_eq!(
            default_model_name("wine_quality", "Ridge regression"),
            "wine-quality-ridge-regression"
        );
    }

    #[test]
    fn a_name_needs_text_and_no_slash() {
        let m = module(0.9, 0.9);
        assert_eq!(check("iris-tree", &m), Ok(()));
        assert!(check("", &m).unwrap_err().contains("non-empty"));
        assert!(check("team/iris", &m)
            .unwrap_err()
            .contains("got `team/iris`"));
    }

    #[test]
    fn a_module_that_differs_from_its_training_by_one_bit_is_refused() {
        let trained = 0.9333333333333333_f64;
        let off = f64::from_bits(trained.to_bits() + 1);
        let err = check("iris", &module(off, trained)).unwrap_err();
        assert!(
            err.starts_with("not registered: the module's accuracy"),
            "{err}"
        );
        // NaN equals itself bit for bit (a metric neither side could compute).
        assert_eq!(check("iris", &module(f64::NAN, f64::NAN)), Ok(()));
    }

    #[test]
    fn versions_count_up_per_name() {
        let v = |model: &str, version: u32| {
            let mut v: ModelVersion =
                serde_json::from_value(crate::logic::tests::version_json()).unwrap();
            v.model = model.into();
            v.version = version;
            v
        };
        let all = [v("iris", 1), v("iris", 3), v("wine", 7)];
        assert_eq!(next_version(&all, "iris"), 4);
        assert_eq!(next_version(&all, "wine"), 8);
        assert_eq!(next_version(&all, "new"), 1);
    }
}
