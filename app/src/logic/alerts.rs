//! Alerts in a few words.

/// The features of a drift alert in a few words: all of them when few, else the worst three
/// (alerts list them worst first) and how many more.
pub fn feature_summary(features: &[String]) -> String {
    const NAMED: usize = 5;
    match features.len() {
        1 => features[0].clone(),
        n if n <= NAMED => format!("{n} features: {}", features.join(", ")),
        n => format!(
            "{n} features, worst {} and {} more",
            features[..3].join(", "),
            n - 3
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::feature_summary;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i}")).collect()
    }

    #[test]
    fn few_features_are_all_named_many_are_cut_to_the_worst_three() {
        assert_eq!(feature_summary(&names(1)), "f0");
        assert_eq!(feature_summary(&names(5)), "5 features: f0, f1, f2, f3, f4");
        assert_eq!(
            feature_summary(&names(45)),
            "45 features, worst f0, f1, f2 and 42 more"
        );
    }
}
