//! Imported datasets: renaming a lineage, and what deleting a version would leave behind.

use crate::registry::ModelVersion;
use crate::run::RunSummary;
use crate::storage::StoredDataset;

/// Every version named `old`, renamed to `new` (its lineage stays one): `None` when there is
/// nothing to do (no name, or the same), an error when another dataset has the name already.
pub fn renamed(
    all: &[StoredDataset],
    old: &str,
    new: &str,
) -> Result<Option<Vec<StoredDataset>>, String> {
    let new = new.trim();
    if new.is_empty() || new == old {
        return Ok(None);
    }
    if all.iter().any(|d| d.dataset.name == new) {
        return Err(format!("a dataset named {new} exists already"));
    }
    Ok(Some(
        all.iter()
            .filter(|d| d.dataset.name == old)
            .cloned()
            .map(|mut d| {
                d.dataset.name = new.to_string();
                d
            })
            .collect(),
    ))
}

/// The confirmation a delete asks, naming what was made from the version: runs trained on
/// it, versions registered from it, later versions that name it as parent.
pub fn delete_question(
    d: &StoredDataset,
    runs: &[RunSummary],
    versions: &[ModelVersion],
    all: &[StoredDataset],
) -> String {
    let hash = d.hash.as_str();
    let runs = runs.iter().filter(|r| r.dataset.hash == hash).count();
    let versions: Vec<String> = versions
        .iter()
        .filter(|v| v.dataset.hash == hash)
        .map(|v| v.label())
        .collect();
    let children = all
        .iter()
        .filter(|x| x.parent.as_deref() == Some(hash))
        .count();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut uses = Vec::new();
    if runs > 0 {
        uses.push(format!("{runs} run{} trained on it", plural(runs)));
    }
    if !versions.is_empty() {
        uses.push(format!("registered model {}", versions.join(", ")));
    }
    if children > 0 {
        uses.push(format!(
            "{children} later version{} name it as parent",
            plural(children)
        ));
    }
    format!(
        "Delete dataset {} v{} ({} rows)?{} This cannot be undone.",
        d.dataset.name,
        d.version,
        d.dataset.n_rows(),
        if uses.is_empty() {
            " Nothing was made from it.".to_string()
        } else {
            format!(
                " {}: they stay, but cannot be rerun on it.",
                uses.join("; ")
            )
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(name: &str, hash: &str, version: u32, parent: Option<&str>) -> StoredDataset {
        serde_json::from_value(serde_json::json!({
            "hash": hash, "task": "classification", "skipped_rows": 0, "imported_at_ms": 1.0,
            "version": version, "parent": parent,
            "dataset": {
                "name": name, "feature_names": ["a"], "target_name": "y",
                "class_names": ["no", "yes"], "x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 1.0]
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_rename_takes_every_version_of_the_name() {
        let all = [
            stored("wine", "a", 1, None),
            stored("wine", "b", 2, Some("a")),
            stored("iris2", "c", 1, None),
        ];
        let renamed = renamed(&all, "wine", " vinho ").unwrap().unwrap();
        assert_eq!(renamed.len(), 2);
        assert!(renamed.iter().all(|d| d.dataset.name == "vinho"));
        assert_eq!(renamed[1].parent.as_deref(), Some("a"), "the lineage stays");
        assert_eq!(super::renamed(&all, "wine", "  "), Ok(None));
        assert_eq!(super::renamed(&all, "wine", "wine"), Ok(None));
        assert_eq!(
            super::renamed(&all, "wine", "iris2"),
            Err("a dataset named iris2 exists already".into())
        );
    }

    #[test]
    fn a_delete_names_what_was_made_from_the_version() {
        let all = [
            stored("wine", "a", 1, None),
            stored("wine", "b", 2, Some("a")),
        ];
        let mut run = crate::logic::runs_table::tests::summary("r", 1.0, "accuracy", Some(0.5));
        run.dataset.hash = "a".into();
        let mut version: ModelVersion =
            serde_json::from_value(crate::logic::tests::version_json()).unwrap();
        version.dataset.hash = "a".into();
        let q = delete_question(&all[0], &[run.clone(), run], &[version], &all);
        assert_eq!(
            q,
            "Delete dataset wine v1 (3 rows)? 2 runs trained on it; registered model iris-tree v1; \
             1 later version name it as parent: they stay, but cannot be rerun on it. This cannot be undone."
        );
        assert_eq!(
            delete_question(&all[1], &[], &[], &all),
            "Delete dataset wine v2 (3 rows)? Nothing was made from it. This cannot be undone."
        );
    }
}
