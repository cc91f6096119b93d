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

/// The task and class count of each built-in dataset, known without loading it (the page
/// offers algorithms from this; it never links the datasets themselves).
pub fn builtin_task(name: &str) -> Option<(crate::catalog::Task, usize)> {
    use crate::catalog::Task;
    match name {
        "iris" => Some((Task::Classification, 3)),
        "winequality" => Some((Task::Classification, 6)),
        "diabetes" | "linnerud" => Some((Task::Regression, 0)),
        _ => None,
    }
}

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

/// splitmix64: a fixed, seedable stream (a synthetic dataset is the same on every machine).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Box-Muller.
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// A synthetic 3-class problem for benchmarks: `features` columns (at least 1), the first half
/// informative (class means at -1, 0, 1 times 0.6, 1.2 or 1.8), the rest pure noise; unit
/// normal noise everywhere, values at 5 decimals (as the benchmark's CSV holds them).
pub fn synthetic(rows: usize, features: usize, seed: u64) -> Dataset {
    let mut s = SplitMix(seed);
    let informative = features.div_ceil(2);
    let mut x = Vec::with_capacity(rows * features);
    let mut y = Vec::with_capacity(rows);
    for _ in 0..rows {
        let class = (s.next() % 3) as usize;
        for j in 0..features {
            let mean = if j < informative {
                (class as f64 - 1.0) * 0.6 * ((j % 3) as f64 + 1.0)
            } else {
                0.0
            };
            // Through the same text a CSV holds, so an import of it gives the same bits.
            let v: f64 = format!("{:.5}", mean + s.normal()).parse().unwrap_or(0.0);
            x.push(v);
        }
        y.push(class as f64);
    }
    Dataset {
        name: format!("synthetic-{rows}x{features}"),
        feature_names: (0..features).map(|j| format!("f{j}")).collect(),
        target_name: "label".into(),
        class_names: vec!["a".into(), "b".into(), "c".into()],
        x,
        y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Task;

    #[test]
    fn builtin_tasks_agree_with_the_datasets() {
        for (name, _) in BUILTIN {
            let ds = builtin(name).unwrap();
            assert_eq!(
                builtin_task(name),
                Some((Task::of(&ds), ds.class_names.len())),
                "{name}"
            );
        }
    }
}
