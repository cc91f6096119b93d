//! The runs table's columns: how it sorts and what its filter language sees of a run.

use wasmops_shared::run_filter::Value as FilterValue;

use crate::run::RunSummary;

/// Columns the runs table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Started,
    Name,
    Dataset,
    Model,
    Metric,
    Duration,
}

impl SortBy {
    /// Orders two runs by this column (runs without the metric sort below every value).
    pub fn compare(self, a: &RunSummary, b: &RunSummary) -> std::cmp::Ordering {
        let num = |x: f64, y: f64| x.total_cmp(&y);
        match self {
            SortBy::Started => num(a.started_at_ms, b.started_at_ms),
            SortBy::Name => a.name.cmp(&b.name),
            SortBy::Dataset => a.dataset.name.cmp(&b.dataset.name),
            SortBy::Model => a.model.cmp(&b.model),
            // Inertia, accuracy and R2 are not one scale: runs are grouped by their metric
            // (runs without one, failed or cancelled, form a group of their own, below every
            // metric: first ascending, last descending) and ordered by value within it.
            SortBy::Metric => {
                let key = |r: &RunSummary| (r.metric_value().is_some(), r.metric.clone());
                key(a).cmp(&key(b)).then_with(|| {
                    num(
                        a.metric_value().unwrap_or(f64::NEG_INFINITY),
                        b.metric_value().unwrap_or(f64::NEG_INFINITY),
                    )
                })
            }
            SortBy::Duration => num(a.duration_ms, b.duration_ms),
        }
    }
}

/// What the filter language sees of a run.
pub fn run_field(r: &RunSummary, field: &str) -> Option<FilterValue> {
    let text = |s: &str| Some(FilterValue::Text(s.to_string()));
    match field {
        "name" => text(&r.name),
        "dataset" => text(&r.dataset.name),
        "model" => text(&r.model),
        "code" => text(&r.code_version),
        "duration_ms" => Some(FilterValue::Num(r.duration_ms)),
        "tags" => Some(FilterValue::List(r.tags.clone())),
        "notes" => text(&r.notes),
        "archived" => text(if r.archived { "true" } else { "false" }),
        "status" => text(r.status.as_str()),
        "error" => r.error.as_deref().and_then(text),
        _ => {
            if let Some(m) = field.strip_prefix("metrics.") {
                return r.metrics.get(m).map(|v| FilterValue::Num(*v));
            }
            match r.params.get(field.strip_prefix("params.")?)? {
                serde_json::Value::Number(n) => n.as_f64().map(FilterValue::Num),
                serde_json::Value::String(s) => text(s),
                other => text(&other.to_string()),
            }
        }
    }
}

/// Indexes of the runs the table shows, in its order: archived runs only when asked for, those
/// the filter keeps, sorted by a column (ascending or not).
pub fn visible(
    runs: &[RunSummary],
    filter: Option<&wasmops_shared::run_filter::Filter>,
    show_archived: bool,
    by: SortBy,
    ascending: bool,
) -> Vec<usize> {
    let mut shown: Vec<usize> = (0..runs.len())
        .filter(|&i| {
            let r = &runs[i];
            (show_archived || !r.archived) && filter.is_none_or(|f| f.matches(&|k| run_field(r, k)))
        })
        .collect();
    // Ties (an imported copy starts when its original did) go by id: the order never depends
    // on the order runs were read in, so rows do not swap when the rest of the runs arrive
    // after the first screen (read newest first from an index whose ties go by id too).
    shown.sort_by(|&a, &b| {
        let o = by
            .compare(&runs[a], &runs[b])
            .then_with(|| runs[a].id.cmp(&runs[b].id));
        if ascending {
            o
        } else {
            o.reverse()
        }
    });
    shown
}

/// The rows on screen and a margin around them: `(rows above, rows below, the indexes drawn)`,
/// for a table scrolled to `scroll_top` pixels with rows of `row_px`.
pub fn screen(
    shown: usize,
    scroll_top: f64,
    row_px: f64,
    screen_rows: usize,
    margin_rows: usize,
) -> (usize, usize, std::ops::Range<usize>) {
    let first = ((scroll_top.max(0.0) / row_px) as usize)
        .saturating_sub(margin_rows)
        .min(shown);
    let last = (first + screen_rows + 2 * margin_rows).min(shown);
    (first, shown - last, first..last)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::run::Status;
    use wasmops_shared::run_filter::Filter;

    pub fn summary(name: &str, started: f64, metric: &str, value: Option<f64>) -> RunSummary {
        RunSummary {
            id: format!("run-{name}"),
            name: name.to_string(),
            started_at_ms: started,
            duration_ms: 10.0 * started,
            code_version: "abc".into(),
            dataset: wasmops_shared::module::DatasetRef {
                name: "iris".into(),
                hash: "ff".repeat(32),
                n_rows: 150,
            },
            model: "decision_tree".into(),
            metric: metric.to_string(),
            params: [("max_depth".to_string(), serde_json::json!(4))].into(),
            metrics: value.map(|v| (metric.to_string(), v)).into_iter().collect(),
            tags: vec!["baseline".into()],
            notes: String::new(),
            archived: false,
            status: if value.is_some() {
                Status::Finished
            } else {
                Status::Failed
            },
            error: None,
        }
    }

    fn names(runs: &[RunSummary], shown: &[usize]) -> Vec<String> {
        shown.iter().map(|&i| runs[i].name.clone()).collect()
    }

    #[test]
    fn metric_sort_groups_runs_by_metric_and_never_mixes_scales() {
        let runs = vec![
            summary("acc-low", 1.0, "accuracy", Some(0.5)),
            summary("inertia", 2.0, "inertia", Some(80.0)),
            summary("failed", 3.0, "", None),
            summary("acc-high", 4.0, "accuracy", Some(0.9)),
            summary("r2", 5.0, "r2", Some(0.7)),
        ];
        let up = visible(&runs, None, false, SortBy::Metric, true);
        assert_eq!(
            names(&runs, &up),
            ["failed", "acc-low", "acc-high", "inertia", "r2"].map(String::from)
        );
        // Descending (a second click) reverses it: best first within each metric, runs
        // without a metric last.
        let down = visible(&runs, None, false, SortBy::Metric, false);
        assert_eq!(
            names(&runs, &down),
            ["r2", "inertia", "acc-high", "acc-low", "failed"].map(String::from)
        );
    }

    #[test]
    fn other_columns_sort_by_their_value() {
        let mut runs = vec![
            summary("b", 2.0, "accuracy", Some(0.1)),
            summary("a", 3.0, "accuracy", Some(0.2)),
            summary("c", 1.0, "accuracy", Some(0.3)),
        ];
        runs[2].model = "aaa".into();
        let by = |s: SortBy| names(&runs, &visible(&runs, None, false, s, true));
        assert_eq!(by(SortBy::Name), ["a", "b", "c"]);
        assert_eq!(by(SortBy::Started), ["c", "b", "a"]);
        assert_eq!(by(SortBy::Duration), ["c", "b", "a"]);
        assert_eq!(by(SortBy::Model)[0], "c");
    }

    #[test]
    fn ties_go_by_id_whatever_order_the_runs_were_read_in() {
        let original = summary("original", 5.0, "accuracy", Some(0.9));
        let mut copy = original.clone();
        copy.id = "copy-2".into();
        copy.name = "imported copy".into();
        let later = summary("later", 6.0, "accuracy", Some(0.5));
        let a = vec![original.clone(), copy.clone(), later.clone()];
        let b = vec![later, copy, original];
        let order =
            |runs: &[RunSummary]| names(runs, &visible(runs, None, false, SortBy::Started, false));
        assert_eq!(order(&a), ["later", "original", "imported copy"]);
        assert_eq!(order(&a), order(&b));
    }

    #[test]
    fn archived_runs_are_shown_only_when_asked() {
        let mut runs = vec![
            summary("kept", 1.0, "accuracy", Some(0.5)),
            summary("old", 2.0, "accuracy", Some(0.5)),
        ];
        runs[1].archived = true;
        assert_eq!(visible(&runs, None, false, SortBy::Name, true), [0]);
        assert_eq!(visible(&runs, None, true, SortBy::Name, true), [0, 1]);
    }

    #[test]
    fn the_filter_sees_params_metrics_tags_and_status() {
        let runs = vec![
            summary("good", 1.0, "accuracy", Some(0.95)),
            summary("bad", 2.0, "accuracy", Some(0.5)),
            summary("broken", 3.0, "", None),
        ];
        let shown = |q: &str| {
            let f = Filter::parse(q).unwrap().unwrap();
            names(&runs, &visible(&runs, Some(&f), false, SortBy::Name, true))
        };
        assert_eq!(shown("metrics.accuracy > 0.9"), ["good"]);
        assert_eq!(
            shown("params.max_depth = 4 and status = failed"),
            ["broken"]
        );
        assert_eq!(shown("tags = baseline").len(), 3);
        assert_eq!(shown("dataset = iris").len(), 3);
        assert_eq!(run_field(&runs[0], "params.missing"), None);
        assert_eq!(
            run_field(&runs[0], "archived"),
            Some(FilterValue::Text("false".into()))
        );
    }

    #[test]
    fn the_screen_is_the_scrolled_rows_and_a_margin() {
        // At the top: no rows above, one screen and a margin drawn.
        assert_eq!(screen(1000, 0.0, 36.0, 14, 8), (0, 970, 0..30));
        // Scrolled to row 100: the margin above too.
        assert_eq!(screen(1000, 3600.0, 36.0, 14, 8), (92, 878, 92..122));
        // Near the end and with fewer runs than a screen.
        assert_eq!(screen(100, 36.0 * 99.0, 36.0, 14, 8), (91, 0, 91..100));
        assert_eq!(screen(5, 0.0, 36.0, 14, 8), (0, 0, 0..5));
        assert_eq!(screen(0, 500.0, 36.0, 14, 8), (0, 0, 0..0));
    }
}
