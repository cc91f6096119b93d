//! Which dataset the Train panel trains on: a built-in by name, or an imported version by its
//! content hash. Forms, requests to the worker and the rerun of a run carry it as text: the
//! built-in's name, or `csv:<hash>` (serde writes and reads the same text).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use wasmops_shared::digest::short;
use wasmops_shared::module::DatasetRef;
use wasmops_trainer::catalog::Task;
use wasmops_trainer::datasets::{builtin_task, BUILTIN};

use crate::storage::StoredDataset;

const IMPORTED: &str = "csv:";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatasetChoice {
    /// A built-in dataset (`wasmops_trainer::datasets::BUILTIN`), by name.
    Builtin(String),
    /// An imported dataset version, by content hash.
    Imported(String),
}

impl Default for DatasetChoice {
    /// The first built-in (iris).
    fn default() -> DatasetChoice {
        DatasetChoice::Builtin(BUILTIN[0].0.to_string())
    }
}

impl DatasetChoice {
    /// Reads the text a form or a request carries.
    pub fn parse(text: &str) -> DatasetChoice {
        match text.strip_prefix(IMPORTED) {
            Some(hash) => DatasetChoice::Imported(hash.to_string()),
            None => DatasetChoice::Builtin(text.to_string()),
        }
    }

    pub fn imported(hash: &str) -> DatasetChoice {
        DatasetChoice::Imported(hash.to_string())
    }

    /// The content hash of an imported version.
    pub fn imported_hash(&self) -> Option<&str> {
        match self {
            DatasetChoice::Imported(h) => Some(h),
            DatasetChoice::Builtin(_) => None,
        }
    }

    /// Whether this is the built-in called `name`.
    pub fn is_builtin(&self, name: &str) -> bool {
        matches!(self, DatasetChoice::Builtin(n) if n == name)
    }

    /// The stored version this choice names, if it is an import stored here.
    pub fn stored<'a>(&self, datasets: &'a [StoredDataset]) -> Option<&'a StoredDataset> {
        let hash = self.imported_hash()?;
        datasets.iter().find(|d| d.hash == hash)
    }

    /// The task and class count of the chosen dataset (classification when it is unknown).
    pub fn task(&self, datasets: &[StoredDataset]) -> (Task, usize) {
        match self {
            DatasetChoice::Imported(_) => self
                .stored(datasets)
                .map(|d| (Task::of(&d.dataset), d.dataset.class_names.len())),
            DatasetChoice::Builtin(name) => builtin_task(name),
        }
        .unwrap_or((Task::Classification, 0))
    }

    /// The dataset version a run trained on, to train it again: the stored import with its
    /// hash, else the built-in of its name; an error when neither is in this browser.
    pub fn for_rerun(
        dataset: &DatasetRef,
        datasets: &[StoredDataset],
    ) -> Result<DatasetChoice, String> {
        if datasets.iter().any(|d| d.hash == dataset.hash) {
            Ok(DatasetChoice::imported(&dataset.hash))
        } else if BUILTIN.iter().any(|b| b.0 == dataset.name) {
            Ok(DatasetChoice::Builtin(dataset.name.clone()))
        } else {
            Err(format!(
                "cannot rerun: dataset `{}` version {} is not stored in this browser",
                dataset.name,
                short(&dataset.hash)
            ))
        }
    }
}

impl std::fmt::Display for DatasetChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatasetChoice::Builtin(name) => f.write_str(name),
            DatasetChoice::Imported(hash) => write!(f, "{IMPORTED}{hash}"),
        }
    }
}

impl Serialize for DatasetChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DatasetChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DatasetChoice, D::Error> {
        Ok(DatasetChoice::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmops_shared::dataset::Dataset;

    fn stored(name: &str, hash: &str, classes: &[&str], task: &str) -> StoredDataset {
        serde_json::from_value(serde_json::json!({
            "hash": hash, "task": task, "skipped_rows": 0, "imported_at_ms": 1.0,
            "dataset": Dataset {
                name: name.into(),
                feature_names: vec!["a".into()],
                target_name: "y".into(),
                class_names: classes.iter().map(|c| c.to_string()).collect(),
                x: vec![1.0, 2.0],
                y: vec![0.0, 1.0],
            }
        }))
        .expect("a dataset record as older builds stored it")
    }

    #[test]
    fn choices_read_and_write_the_same_text() {
        for text in ["iris", "diabetes", "csv:abc123"] {
            let c = DatasetChoice::parse(text);
            assert_eq!(c.to_string(), text);
            assert_eq!(serde_json::to_value(&c).unwrap(), serde_json::json!(text));
            let back: DatasetChoice = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(back, c);
        }
        assert_eq!(DatasetChoice::parse("csv:ff").imported_hash(), Some("ff"));
        assert!(DatasetChoice::default().is_builtin("iris"));
    }

    #[test]
    fn stored_datasets_with_the_task_as_a_word_still_load() {
        let d = stored("wine", "aa", &["red", "white"], "classification");
        assert_eq!(d.task, Task::Classification);
        assert_eq!(d.version, 1, "records from before versions are version 1");
        assert_eq!(serde_json::to_value(&d).unwrap()["task"], "classification");
        assert_eq!(
            stored("houses", "bb", &[], "regression").task,
            Task::Regression
        );
    }

    #[test]
    fn the_task_follows_the_chosen_dataset() {
        let all = [
            stored("wine", "aa", &["red", "white"], "classification"),
            stored("houses", "bb", &[], "regression"),
        ];
        assert_eq!(
            DatasetChoice::parse("csv:aa").task(&all),
            (Task::Classification, 2)
        );
        assert_eq!(
            DatasetChoice::parse("csv:bb").task(&all),
            (Task::Regression, 0)
        );
        assert_eq!(
            DatasetChoice::parse("iris").task(&all),
            (Task::Classification, 3)
        );
        assert_eq!(
            DatasetChoice::parse("diabetes").task(&all),
            (Task::Regression, 0)
        );
        // A version no longer stored: classification, no classes known.
        assert_eq!(
            DatasetChoice::parse("csv:gone").task(&all),
            (Task::Classification, 0)
        );
    }

    #[test]
    fn a_rerun_takes_the_stored_version_or_the_builtin_or_says_why_not() {
        let all = [stored("wine", "aa", &["red", "white"], "classification")];
        let run_on = |name: &str, hash: &str| DatasetRef {
            name: name.into(),
            hash: hash.into(),
            n_rows: 2,
        };
        assert_eq!(
            DatasetChoice::for_rerun(&run_on("wine", "aa"), &all),
            Ok(DatasetChoice::imported("aa"))
        );
        assert_eq!(
            DatasetChoice::for_rerun(&run_on("iris", "cc"), &all),
            Ok(DatasetChoice::parse("iris"))
        );
        let err =
            DatasetChoice::for_rerun(&run_on("wine", "dd".repeat(32).as_str()), &all).unwrap_err();
        assert!(err.contains("dataset `wine` version dddd"), "{err}");
        assert!(err.contains("not stored in this browser"), "{err}");
    }
}
