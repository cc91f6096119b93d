//! The built-in datasets (shipped inside `linfa-datasets`), as wasmops datasets.

use wasmops_shared::dataset::Dataset;

/// Names of the built-in datasets, with what they are for.
pub const BUILTIN: [(&str, &str); 4] = [
    ("iris", "iris: 150 rows, 4 features, 3 classes"),
    (
        "winequality",
        "wine quality (red): 1599 rows, 11 features, 6 quality classes",
    ),
    ("diabetes", "diabetes: 441 rows, 10 features, regression"),
    (
        "linnerud",
        "linnerud: 20 rows, 3 features, regression (weight)",
    ),
];

/// Loads a built-in dataset by name.
pub fn builtin(name: &str) -> Result<Dataset, String> {
    match name {
        "iris" => {
            let ds = linfa_datasets::iris();
            Ok(classification(
                "iris",
                ds.feature_names().to_vec(),
                "species",
                ds,
                Some(&["setosa", "versicolor", "virginica"]),
            ))
        }
        "winequality" => {
            let ds = linfa_datasets::winequality();
            Ok(classification(
                "winequality",
                ds.feature_names().to_vec(),
                "quality",
                ds,
                None,
            ))
        }
        "diabetes" => {
            let ds = linfa_datasets::diabetes();
            Ok(Dataset {
                name: "diabetes".into(),
                feature_names: ds.feature_names().to_vec(),
                target_name: "disease progression".into(),
                class_names: Vec::new(),
                x: ds.records().iter().copied().collect(),
                y: ds.targets().iter().copied().collect(),
            })
        }
        "linnerud" => {
            let ds = linfa_datasets::linnerud();
            Ok(Dataset {
                name: "linnerud".into(),
                feature_names: ds.feature_names().to_vec(),
                target_name: "Weight".into(),
                class_names: Vec::new(),
                x: ds.records().iter().copied().collect(),
                y: ds.targets().column(0).iter().copied().collect(),
            })
        }
        other => Err(format!(
            "unknown built-in dataset `{other}` (available: {})",
            BUILTIN.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Maps arbitrary class labels to indices 0..k in label order.
fn classification(
    name: &str,
    feature_names: Vec<String>,
    target: &str,
    ds: linfa::Dataset<f64, usize, ndarray::Ix1>,
    class_names: Option<&[&str]>,
) -> Dataset {
    let mut labels: Vec<usize> = ds.targets().iter().copied().collect();
    labels.sort_unstable();
    labels.dedup();
    let index = |l: usize| labels.binary_search(&l).unwrap_or(0) as f64;
    Dataset {
        name: name.into(),
        feature_names,
        target_name: target.into(),
        class_names: match class_names {
            Some(n) => n.iter().map(|s| s.to_string()).collect(),
            None => labels.iter().map(|l| l.to_string()).collect(),
        },
        x: ds.records().iter().copied().collect(),
        y: ds.targets().iter().map(|l| index(*l)).collect(),
    }
}
