//! A run's step curves grouped into charts: one quantity measured on several row sets shares a
//! chart (gradient boosting's train, validation and test losses), one line per set.

use std::collections::BTreeMap;

/// A run's step curves, one chart each, except that one quantity on several row sets (gradient
/// boosting's `train_log_loss`, `validation_log_loss` and `test_log_loss`) shares a chart named
/// after the quantity, one line per set (train, validation, test). Returns
/// (chart name, [(line name, points)]); a lone curve keeps its own name for both.
#[allow(clippy::type_complexity)]
pub fn curve_groups(
    steps: &BTreeMap<String, Vec<(u64, f64)>>,
) -> Vec<(String, Vec<(String, &Vec<(u64, f64)>)>)> {
    const SETS: [&str; 3] = ["train", "validation", "test"];
    // (chart, [(set index, curve name, points)])
    let mut groups: Vec<(String, Vec<(usize, &String, &Vec<(u64, f64)>)>)> = Vec::new();
    for (name, points) in steps {
        let (set, quantity) = SETS
            .iter()
            .enumerate()
            .find_map(|(i, set)| Some((i, name.strip_prefix(set)?.strip_prefix('_')?)))
            .unwrap_or((SETS.len(), name));
        match groups.iter_mut().find(|g| g.0 == quantity) {
            Some(g) => g.1.push((set, name, points)),
            None => groups.push((quantity.to_string(), vec![(set, name, points)])),
        }
    }
    groups
        .into_iter()
        .map(|(quantity, mut members)| {
            if let [(_, name, points)] = members[..] {
                return (name.clone(), vec![(name.clone(), points)]);
            }
            members.sort_by_key(|m| m.0);
            let lines = members
                .into_iter()
                .map(|(set, name, points)| {
                    (
                        SETS.get(set)
                            .map_or_else(|| name.clone(), |s| s.to_string()),
                        points,
                    )
                })
                .collect();
            (quantity, lines)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(names: &[&str]) -> BTreeMap<String, Vec<(u64, f64)>> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), vec![(0, i as f64)]))
            .collect()
    }

    #[test]
    fn one_quantity_on_several_sets_shares_a_chart_in_set_order() {
        let s = steps(&["validation_log_loss", "test_log_loss", "train_log_loss"]);
        let groups = curve_groups(&s);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].0, "log_loss");
        let lines: Vec<&str> = groups[0].1.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, ["train", "validation", "test"]);
    }

    #[test]
    fn a_lone_curve_keeps_its_own_name() {
        let s = steps(&["train_log_loss", "inertia"]);
        let groups = curve_groups(&s);
        let names: Vec<(&str, Vec<&str>)> = groups
            .iter()
            .map(|(c, l)| (c.as_str(), l.iter().map(|(n, _)| n.as_str()).collect()))
            .collect();
        assert_eq!(
            names,
            [
                ("inertia", vec!["inertia"]),
                ("train_log_loss", vec!["train_log_loss"])
            ]
        );
    }
}
