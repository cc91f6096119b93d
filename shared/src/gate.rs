//! Promotion gates: rules over a candidate's and a baseline's metrics with MLflow's
//! `MetricThreshold` semantics (`mlflow.models.MetricThreshold`, MLflow 3.17), written as text:
//!
//! - `accuracy >= 0.9`, `rmse <= 3.5`: a threshold. The candidate must be at least (greater is
//!   better) or at most (lower is better) the value; the comparison must point the metric's way.
//! - `accuracy min_absolute_change 0.01`: candidate >= baseline + 0.01 (greater is better),
//!   candidate <= baseline - 0.01 (lower is better).
//! - `r2 min_relative_change 0.05`: (candidate - baseline) / |baseline| >= 0.05 (greater is
//!   better; the other way round for lower); a baseline of exactly 0 falls back to "better than
//!   the baseline by 1e-10", as MLflow does.
//! - `my_metric greater_is_better false`: the metric's direction, for a metric without a
//!   default (accuracy, precision, recall, f1, roc_auc and r2 are greater-is-better; rmse, mse,
//!   mae and inertia lower-is-better).
//!
//! Where we differ from MLflow: `min_absolute_change 0` is allowed and means "no worse than the
//! baseline" (MLflow insists on a positive number, which leaves no way to say that).
//!
//! Only the rules are here; the metrics come from [`crate::metrics`] on module outputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One rule as written, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's text, as given.
    pub text: String,
    pub metric: String,
    pub check: Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Check {
    Threshold(f64),
    MinAbsoluteChange(f64),
    MinRelativeChange(f64),
    GreaterIsBetter(bool),
}

impl Check {
    fn word(&self) -> &'static str {
        match self {
            Check::Threshold(_) => "threshold",
            Check::MinAbsoluteChange(_) => "min_absolute_change",
            Check::MinRelativeChange(_) => "min_relative_change",
            Check::GreaterIsBetter(_) => "greater_is_better",
        }
    }
}

/// Why a rule cannot be used, naming it (its position and text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index} `{text}`: {reason}")]
pub struct RuleError {
    /// 1-based position among the rules given.
    pub index: usize,
    pub text: String,
    pub reason: String,
}

/// Whether greater is better for a metric, when the name says so.
pub fn default_greater_is_better(metric: &str) -> Option<bool> {
    const GREATER: [&str; 6] = ["accuracy", "precision", "recall", "f1", "roc_auc", "r2"];
    const LOWER: [&str; 7] = ["rmse", "mse", "mae", "inertia", "loss", "error", "log_loss"];
    let base = metric.split('_').next().unwrap_or(metric);
    if GREATER.contains(&metric) || GREATER.contains(&base) || metric.starts_with("roc_auc") {
        Some(true)
    } else if LOWER.contains(&metric) || LOWER.contains(&base) || metric.ends_with("_loss") {
        Some(false)
    } else {
        None
    }
}

/// The rules for one metric, combined: MLflow's `MetricThreshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricThreshold {
    pub metric: String,
    pub greater_is_better: bool,
    pub threshold: Option<f64>,
    pub min_absolute_change: Option<f64>,
    pub min_relative_change: Option<f64>,
}

/// Parses every rule and combines them per metric, in the order metrics first appear. Each
/// metric needs a direction (its default or a `greater_is_better` rule) and at least one
/// check; a check given twice for one metric is refused, as is a threshold written against
/// the metric's direction (`accuracy <= 0.9`).
pub fn parse_rules(texts: &[String]) -> Result<(Vec<Rule>, Vec<MetricThreshold>), RuleError> {
    let rules: Vec<Rule> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| parse_rule(t).map_err(|reason| err(i, t, reason)))
        .collect::<Result<_, _>>()?;
    if rules.is_empty() {
        return Err(RuleError {
            index: 0,
            text: String::new(),
            reason: "no rules: give at least one, e.g. `accuracy >= 0.9`".into(),
        });
    }
    let mut order: Vec<String> = Vec::new();
    let mut by_metric: BTreeMap<&str, Vec<(usize, &Rule)>> = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        if !order.contains(&r.metric) {
            order.push(r.metric.clone());
        }
        by_metric.entry(&r.metric).or_default().push((i, r));
    }
    let mut thresholds = Vec::new();
    for metric in &order {
        let mine = &by_metric[metric.as_str()];
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, r) in mine {
            if let Some(first) = seen.insert(r.check.word(), *i) {
                return Err(err(
                    *i,
                    &r.text,
                    format!(
                        "{metric} has a {} rule already (rule {} `{}`)",
                        r.check.word(),
                        first + 1,
                        rules[first].text
                    ),
                ));
            }
        }
        let explicit = mine.iter().find_map(|(_, r)| match r.check {
            Check::GreaterIsBetter(g) => Some(g),
            _ => None,
        });
        let (last_i, last) = mine[mine.len() - 1];
        let Some(greater) = explicit.or_else(|| default_greater_is_better(metric)) else {
            return Err(err(
                last_i,
                &last.text,
                format!(
                    "no known direction for `{metric}`: add `{metric} greater_is_better true` \
                     (or false)"
                ),
            ));
        };
        let mut t = MetricThreshold {
            metric: metric.clone(),
            greater_is_better: greater,
            threshold: None,
            min_absolute_change: None,
            min_relative_change: None,
        };
        for (i, r) in mine {
            match r.check {
                Check::Threshold(v) => {
                    let written_greater = r.text.contains(">=");
                    if written_greater != greater {
                        let (way, op) = if greater {
                            ("greater", ">=")
                        } else {
                            ("lower", "<=")
                        };
                        return Err(err(
                            *i,
                            &r.text,
                            format!(
                                "{way} is better for {metric}, so its threshold is \
                                 `{metric} {op} VALUE`"
                            ),
                        ));
                    }
                    t.threshold = Some(v);
                }
                Check::MinAbsoluteChange(v) => t.min_absolute_change = Some(v),
                Check::MinRelativeChange(v) => t.min_relative_change = Some(v),
                Check::GreaterIsBetter(_) => {}
            }
        }
        if t.threshold.is_none()
            && t.min_absolute_change.is_none()
            && t.min_relative_change.is_none()
        {
            return Err(err(
                last_i,
                &last.text,
                format!("{metric} has a direction but nothing to check (no threshold or change)"),
            ));
        }
        thresholds.push(t);
    }
    Ok((rules, thresholds))
}

fn err(i: usize, text: &str, reason: String) -> RuleError {
    RuleError {
        index: i + 1,
        text: text.to_string(),
        reason,
    }
}

/// One rule: `METRIC >= X`, `METRIC <= X`, `METRIC min_absolute_change X`,
/// `METRIC min_relative_change X` or `METRIC greater_is_better true|false`.
pub fn parse_rule(text: &str) -> Result<Rule, String> {
    const FORMS: &str = "expected `METRIC >= X`, `METRIC <= X`, `METRIC min_absolute_change X`, \
                         `METRIC min_relative_change X` or `METRIC greater_is_better true|false`";
    let spaced = text.replace(">=", " >= ").replace("<=", " <= ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let [metric, op, value] = words[..] else {
        return Err(FORMS.into());
    };
    let valid_name = metric
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if !valid_name || metric.starts_with(['>', '<', '=']) {
        return Err(format!(
            "`{metric}` is not a metric name (letters, digits, `_`, `-`, `.`, `/`); {FORMS}"
        ));
    }
    let number = || -> Result<f64, String> {
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("`{value}` is not a finite number"))
    };
    let check = match op {
        ">=" | "<=" => Check::Threshold(number()?),
        ">" | "<" | "==" | "=" => {
            return Err(format!(
                "`{op}`: thresholds are inclusive, as MLflow's: write `>=` or `<=`"
            ))
        }
        "min_absolute_change" => {
            let v = number()?;
            if v < 0.0 {
                return Err(format!("min_absolute_change must be 0 or more, got {v}"));
            }
            Check::MinAbsoluteChange(v)
        }
        "min_relative_change" => {
            let v = number()?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "min_relative_change must be between 0 and 1 (a fraction of the baseline), got {v}"
                ));
            }
            Check::MinRelativeChange(v)
        }
        "greater_is_better" => match value {
            "true" => Check::GreaterIsBetter(true),
            "false" => Check::GreaterIsBetter(false),
            other => {
                return Err(format!(
                    "greater_is_better is `true` or `false`, got `{other}`"
                ))
            }
        },
        other => return Err(format!("unknown check `{other}`; {FORMS}")),
    };
    Ok(Rule {
        text: text.trim().to_string(),
        metric: metric.to_string(),
        check,
    })
}

/// What one rule found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    pub rule: String,
    pub metric: String,
    pub check: Check,
    pub greater_is_better: bool,
    pub candidate: Option<f64>,
    pub baseline: Option<f64>,
    /// What the candidate had to reach: the threshold, the baseline moved by the absolute
    /// change, or (relative change) the minimum relative change itself.
    pub required: Option<f64>,
    /// The candidate's own figure compared with `required`: its value, or its relative change.
    pub achieved: Option<f64>,
    /// How far `achieved` is past `required` in the metric's better direction: positive or
    /// zero passes, negative fails by that much.
    pub margin: Option<f64>,
    pub passed: bool,
    /// Why it failed, in words (empty when it passed).
    pub reason: String,
}

/// The gate's verdict: every rule's result, the metrics it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub passed: bool,
    pub results: Vec<RuleResult>,
    pub candidate_metrics: BTreeMap<String, f64>,
    pub baseline_metrics: BTreeMap<String, f64>,
}

/// Evaluates rules (parsed by [`parse_rules`]) on both models' metrics. A metric missing from
/// the candidate fails its rules; one missing from the baseline fails its change rules
/// (MLflow's `missing_candidate` / `missing_baseline`).
pub fn evaluate(
    rules: &[Rule],
    thresholds: &[MetricThreshold],
    candidate: &BTreeMap<String, f64>,
    baseline: &BTreeMap<String, f64>,
) -> GateReport {
    let results: Vec<RuleResult> = rules
        .iter()
        .filter(|r| !matches!(r.check, Check::GreaterIsBetter(_)))
        .map(|r| {
            let t = thresholds
                .iter()
                .find(|t| t.metric == r.metric)
                .expect("parse_rules made a threshold for every rule's metric");
            evaluate_rule(r, t.greater_is_better, candidate, baseline)
        })
        .collect();
    GateReport {
        passed: results.iter().all(|r| r.passed),
        results,
        candidate_metrics: candidate.clone(),
        baseline_metrics: baseline.clone(),
    }
}

fn evaluate_rule(
    rule: &Rule,
    greater: bool,
    candidate: &BTreeMap<String, f64>,
    baseline: &BTreeMap<String, f64>,
) -> RuleResult {
    let metric = &rule.metric;
    let c = candidate.get(metric).copied();
    let b = baseline.get(metric).copied();
    let mut result = RuleResult {
        rule: rule.text.clone(),
        metric: metric.clone(),
        check: rule.check,
        greater_is_better: greater,
        candidate: c,
        baseline: b,
        required: None,
        achieved: None,
        margin: None,
        passed: false,
        reason: String::new(),
    };
    let Some(c) = c else {
        result.reason = format!("the candidate has no {metric}");
        return result;
    };
    // MLflow's comparator: >= when greater is better, <= otherwise (NaN never passes).
    let better_or_equal = |x: f64, bound: f64| if greater { x >= bound } else { x <= bound };
    let past = |x: f64, bound: f64| if greater { x - bound } else { bound - x };
    let (required, achieved) = match rule.check {
        Check::Threshold(t) => (t, c),
        Check::MinAbsoluteChange(d) => {
            let Some(b) = b else {
                result.reason = format!("the baseline has no {metric} to compare with");
                return result;
            };
            (if greater { b + d } else { b - d }, c)
        }
        Check::MinRelativeChange(rel) => {
            let Some(b) = b else {
                result.reason = format!("the baseline has no {metric} to compare with");
                return result;
            };
            if b == 0.0 {
                // MLflow's fallback: better than the baseline by 1e-10.
                (if greater { b + 1e-10 } else { b - 1e-10 }, c)
            } else {
                let change = (if greater { c - b } else { b - c }) / b.abs();
                result.required = Some(rel);
                result.achieved = Some(change);
                result.margin = Some(change - rel);
                result.passed = change >= rel;
                if !result.passed {
                    result.reason = format!(
                        "{metric} changed by {} of the baseline's magnitude ({c} against {b}); \
                         at least {} is required",
                        percent(change),
                        percent(rel)
                    );
                }
                return result;
            }
        }
        Check::GreaterIsBetter(_) => unreachable!("direction rules are not evaluated"),
    };
    result.required = Some(required);
    result.achieved = Some(achieved);
    result.margin = Some(past(achieved, required));
    result.passed = better_or_equal(achieved, required);
    if !result.passed {
        let (op, word) = if greater {
            (">=", "below")
        } else {
            ("<=", "above")
        };
        let what = match rule.check {
            Check::Threshold(_) => "the threshold".to_string(),
            _ => format!(
                "the baseline's {} moved by the required change",
                figure(b.unwrap_or(f64::NAN))
            ),
        };
        result.reason = format!(
            "{metric} {} is not {op} {} ({what}): {} {word} it",
            figure(c),
            figure(required),
            figure((c - required).abs())
        );
    }
    result
}

/// A figure as people read it: at most 4 decimals, no trailing zeros (`0.2667`, `0.9`).
fn figure(x: f64) -> String {
    let s = format!("{x:.4}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn percent(x: f64) -> String {
    format!("{:.4}%", x * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(texts: &[&str]) -> Result<(Vec<Rule>, Vec<MetricThreshold>), RuleError> {
        parse_rules(&texts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn metrics(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn gate(texts: &[&str], c: &[(&str, f64)], b: &[(&str, f64)]) -> GateReport {
        let (r, t) = rules(texts).unwrap();
        evaluate(&r, &t, &metrics(c), &metrics(b))
    }

    #[test]
    fn rules_parse_with_or_without_spaces() {
        let r = parse_rule("accuracy>=0.9").unwrap();
        assert_eq!(
            (r.metric.as_str(), r.check),
            ("accuracy", Check::Threshold(0.9))
        );
        let r = parse_rule("  rmse <= 3 ").unwrap();
        assert_eq!(r.check, Check::Threshold(3.0));
        assert_eq!(r.text, "rmse <= 3");
        assert_eq!(
            parse_rule("accuracy min_absolute_change 0.0")
                .unwrap()
                .check,
            Check::MinAbsoluteChange(0.0)
        );
        assert_eq!(
            parse_rule("r2 min_relative_change 0.05").unwrap().check,
            Check::MinRelativeChange(0.05)
        );
        assert_eq!(
            parse_rule("lift greater_is_better true").unwrap().check,
            Check::GreaterIsBetter(true)
        );
    }

    #[test]
    fn malformed_rules_say_what_is_wrong() {
        let cases = [
            ("accuracy", "expected `METRIC >= X`"),
            ("accuracy >= 0.9 please", "expected `METRIC >= X`"),
            ("accuracy > 0.9", "thresholds are inclusive"),
            ("accuracy >= high", "`high` is not a finite number"),
            ("accuracy >= NaN", "`NaN` is not a finite number"),
            ("accuracy min_absolute_change -0.1", "must be 0 or more"),
            ("accuracy min_relative_change 1.5", "between 0 and 1"),
            ("accuracy greater_is_better yes", "`true` or `false`"),
            ("accuracy at_least 0.9", "unknown check `at_least`"),
            ("acc(uracy) >= 0.9", "is not a metric name"),
        ];
        for (text, expected) in cases {
            let e = rules(&[text]).unwrap_err();
            assert_eq!(e.index, 1, "{text}");
            assert!(e.to_string().contains(expected), "{text}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("rule 1 `{}`", text.trim())),
                "{e}"
            );
        }
    }

    #[test]
    fn rules_that_contradict_each_other_or_the_metric_are_refused() {
        let e = rules(&["accuracy >= 0.8", "accuracy <= 0.9"]).unwrap_err();
        assert_eq!(e.index, 2);
        assert!(
            e.reason.contains("has a threshold rule already (rule 1"),
            "{e}"
        );
        let e = rules(&["accuracy <= 0.9"]).unwrap_err();
        assert!(e.reason.contains("greater is better for accuracy"), "{e}");
        let e = rules(&["rmse >= 1"]).unwrap_err();
        assert!(e.reason.contains("lower is better for rmse"), "{e}");
        let e = rules(&["lift >= 1.2"]).unwrap_err();
        assert!(e.reason.contains("no known direction for `lift`"), "{e}");
        let e = rules(&["lift greater_is_better true"]).unwrap_err();
        assert!(e.reason.contains("nothing to check"), "{e}");
        assert!(rules(&[]).unwrap_err().reason.contains("no rules"));
        // An explicit direction wins over the default.
        let (_, t) = rules(&["rmse greater_is_better true", "rmse >= 1"]).unwrap();
        assert!(t[0].greater_is_better);
    }

    #[test]
    fn default_directions() {
        for m in [
            "accuracy",
            "f1_macro",
            "precision_macro",
            "recall_macro",
            "roc_auc",
            "r2",
        ] {
            assert_eq!(default_greater_is_better(m), Some(true), "{m}");
        }
        for m in ["rmse", "mse", "mae", "inertia", "log_loss"] {
            assert_eq!(default_greater_is_better(m), Some(false), "{m}");
        }
        assert_eq!(default_greater_is_better("lift"), None);
    }

    #[test]
    fn threshold_is_inclusive_and_follows_the_direction() {
        let r = gate(&["accuracy >= 0.9"], &[("accuracy", 0.9)], &[]);
        assert!(r.passed);
        assert_eq!(r.results[0].margin, Some(0.0));
        let r = gate(&["accuracy >= 0.9"], &[("accuracy", 0.85)], &[]);
        assert!(!r.passed);
        let m = r.results[0].margin.unwrap();
        assert!((m + 0.05).abs() < 1e-12, "{m}");
        assert!(
            r.results[0]
                .reason
                .contains("is not >= 0.9 (the threshold)"),
            "{}",
            r.results[0].reason
        );
        // Figures as people read them, not 17 digits.
        let r = gate(&["accuracy >= 0.8"], &[("accuracy", 4.0 / 15.0)], &[]);
        assert_eq!(
            r.results[0].reason,
            "accuracy 0.2667 is not >= 0.8 (the threshold): 0.5333 below it"
        );
        assert!(gate(&["rmse <= 2"], &[("rmse", 1.5)], &[]).passed);
        assert!(!gate(&["rmse <= 2"], &[("rmse", 2.5)], &[]).passed);
        assert!(!gate(&["accuracy >= 0.1"], &[("accuracy", f64::NAN)], &[]).passed);
    }

    #[test]
    fn absolute_change_against_the_baseline() {
        let rule = ["accuracy min_absolute_change 0.0"];
        assert!(gate(&rule, &[("accuracy", 0.9)], &[("accuracy", 0.9)]).passed);
        let r = gate(&rule, &[("accuracy", 0.89)], &[("accuracy", 0.9)]);
        assert!(!r.passed);
        assert_eq!(r.results[0].required, Some(0.9));
        assert!(
            gate(
                &["accuracy min_absolute_change 0.05"],
                &[("accuracy", 0.96)],
                &[("accuracy", 0.9)]
            )
            .passed
        );
        assert!(
            !gate(
                &["accuracy min_absolute_change 0.05"],
                &[("accuracy", 0.94)],
                &[("accuracy", 0.9)]
            )
            .passed
        );
        // Lower is better: the candidate must be at most baseline - change.
        assert!(
            gate(
                &["rmse min_absolute_change 0.5"],
                &[("rmse", 2.5)],
                &[("rmse", 3.0)]
            )
            .passed
        );
        let r = gate(
            &["rmse min_absolute_change 0.5"],
            &[("rmse", 2.6)],
            &[("rmse", 3.0)],
        );
        assert!(!r.passed);
        assert!(r.results[0].margin.unwrap() < 0.0);
    }

    #[test]
    fn relative_change_uses_the_baseline_magnitude_and_falls_back_at_zero() {
        let rule = ["r2 min_relative_change 0.1"];
        assert!(gate(&rule, &[("r2", 0.55)], &[("r2", 0.5)]).passed);
        assert!(!gate(&rule, &[("r2", 0.54)], &[("r2", 0.5)]).passed);
        // A negative baseline: improving from -1.0 to -0.85 is a 15% improvement.
        assert!(gate(&rule, &[("r2", -0.85)], &[("r2", -1.0)]).passed);
        assert!(!gate(&rule, &[("r2", -0.95)], &[("r2", -1.0)]).passed);
        // Lower is better.
        assert!(
            gate(
                &["mae min_relative_change 0.1"],
                &[("mae", 0.75)],
                &[("mae", 1.0)]
            )
            .passed
        );
        assert!(
            !gate(
                &["mae min_relative_change 0.1"],
                &[("mae", 0.95)],
                &[("mae", 1.0)]
            )
            .passed
        );
        // Baseline 0: the candidate must be better by 1e-10.
        assert!(gate(&rule, &[("r2", 1e-9)], &[("r2", 0.0)]).passed);
        assert!(!gate(&rule, &[("r2", 0.0)], &[("r2", 0.0)]).passed);
    }

    #[test]
    fn missing_metrics_fail_their_rules() {
        let r = gate(&["roc_auc >= 0.8"], &[("accuracy", 1.0)], &[]);
        assert!(!r.passed);
        assert_eq!(r.results[0].reason, "the candidate has no roc_auc");
        let r = gate(&["roc_auc min_absolute_change 0"], &[("roc_auc", 0.9)], &[]);
        assert!(!r.passed);
        assert!(r.results[0].reason.contains("the baseline has no roc_auc"));
        // A threshold alone needs no baseline.
        assert!(gate(&["roc_auc >= 0.8"], &[("roc_auc", 0.9)], &[]).passed);
    }

    #[test]
    fn every_rule_is_reported_and_all_must_pass() {
        let r = gate(
            &[
                "accuracy >= 0.8",
                "accuracy min_absolute_change 0.0",
                "f1_macro >= 0.99",
            ],
            &[("accuracy", 0.9), ("f1_macro", 0.9)],
            &[("accuracy", 0.85), ("f1_macro", 0.8)],
        );
        assert_eq!(r.results.len(), 3);
        assert_eq!(
            r.results.iter().map(|x| x.passed).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert!(!r.passed);
    }
}
