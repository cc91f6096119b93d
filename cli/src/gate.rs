//! `wasmops gate`: a candidate module against a baseline module on the same held-out rows.
//!
//! Both modules run in the device's own sandbox (`wasmops_edge::sandbox`: static checks, the
//! conformance vectors reproduced, then the rows), so the figures are what the modules compute
//! on a device; the metrics are `wasmops_shared::metrics` on those outputs and the rules
//! `wasmops_shared::gate` (MLflow's `MetricThreshold`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use wasmops_edge::sandbox::{Limits, LoadedModule, Sandbox};
use wasmops_shared::gate::{self, Check, GateReport};
use wasmops_trainer::csv_import;

/// Modules through the device's sandbox, in batches within its row limit.
pub struct Runner {
    sandbox: Sandbox,
    max_rows: usize,
}

impl Runner {
    pub fn new() -> anyhow::Result<Runner> {
        let limits = Limits {
            max_concurrent_calls: 1,
            max_concurrent_loads: 1,
            ..Limits::default()
        };
        Ok(Runner {
            sandbox: Sandbox::new(limits)?,
            max_rows: limits.max_rows,
        })
    }

    /// Checks, compiles and conformance-tests a module.
    pub fn load(&self, bytes: &[u8]) -> anyhow::Result<LoadedModule> {
        Ok(self.sandbox.load(bytes)?)
    }

    /// Outputs for row-major `rows`, in order.
    pub fn predict(&self, m: &LoadedModule, rows: &[f64]) -> anyhow::Result<Vec<f64>> {
        let d = m.n_features().max(1);
        let mut out = Vec::with_capacity(rows.len() / d * m.n_outputs());
        for chunk in rows.chunks(self.max_rows * d) {
            out.extend(self.sandbox.predict(m, chunk)?);
        }
        Ok(out)
    }
}

/// `wasmops gate`'s flags.
#[derive(Debug, Clone)]
pub struct GateOptions {
    pub candidate: PathBuf,
    pub baseline: PathBuf,
    pub data: PathBuf,
    pub rules: Vec<String>,
    pub skip_bad_rows: bool,
}

/// What the gate found, with where the figures came from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GateOutcome {
    pub candidate: ModuleSummary,
    pub baseline: ModuleSummary,
    pub data: String,
    #[serde(flatten)]
    pub report: GateReport,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModuleSummary {
    pub path: String,
    pub sha256: String,
    pub kind: String,
    /// Held-out rows the module was evaluated on.
    pub rows: usize,
}

/// Parses the rules first (a bad rule is a usage error before any work), then evaluates both
/// modules on the held-out file.
pub fn run(o: &GateOptions) -> anyhow::Result<GateOutcome> {
    let (rules, thresholds) = gate::parse_rules(&o.rules)?;
    let file = crate::file_name(&o.data);
    let text = crate::read_text(&o.data)?;
    let table = csv_import::read(&file, &text).map_err(|e| anyhow!("{}: {e}", o.data.display()))?;
    let runner = Runner::new()?;
    let (candidate, c_metrics) = evaluate(&runner, &o.candidate, &table, &o.data, o.skip_bad_rows)?;
    let (baseline, b_metrics) = evaluate(&runner, &o.baseline, &table, &o.data, o.skip_bad_rows)?;
    // A metric neither model has is a typo, not a failed gate.
    for t in &thresholds {
        if !c_metrics.contains_key(&t.metric) && !b_metrics.contains_key(&t.metric) {
            let known: Vec<&str> = c_metrics.keys().map(String::as_str).collect();
            bail!(
                "no model has a metric `{}` (the candidate's: {})",
                t.metric,
                known.join(", ")
            );
        }
    }
    let report = gate::evaluate(&rules, &thresholds, &c_metrics, &b_metrics);
    Ok(GateOutcome {
        candidate,
        baseline,
        data: o.data.display().to_string(),
        report,
    })
}

fn evaluate(
    runner: &Runner,
    path: &Path,
    table: &csv_import::CsvTable,
    data: &Path,
    skip_bad_rows: bool,
) -> anyhow::Result<(ModuleSummary, BTreeMap<String, f64>)> {
    let at = path.display();
    let bytes = crate::read(path)?;
    let loaded = runner.load(&bytes).map_err(|e| anyhow!("{at}: {e}"))?;
    let card = &loaded.info.card;
    let csv_import::ModelRows { x, y, problems } = table
        .rows_for(&card.feature_names, &card.target_name, &card.classes)
        .map_err(|e| anyhow!("{}: for {at}: {e}", data.display()))?;
    if !problems.is_empty() && !skip_bad_rows {
        bail!(
            "{}: {} rows cannot be evaluated by {at} (pass --skip-bad-rows to leave them out):\n{}",
            data.display(),
            problems.len(),
            crate::list_problems(&crate::file_name(data), &problems)
        );
    }
    let outputs = runner
        .predict(&loaded, &x)
        .map_err(|e| anyhow!("{at}: {e}"))?;
    let metrics = wasmops_shared::metrics::evaluate_card(card, &outputs, &y).ok_or_else(|| {
        anyhow!(
            "{at}: a {} module has no labels to be judged by (gates take classifiers and \
             regressions)",
            card.kind
        )
    })?;
    let summary = ModuleSummary {
        path: at.to_string(),
        sha256: loaded.info.hash.clone(),
        kind: card.kind.clone(),
        rows: y.len(),
    };
    Ok((summary, metrics))
}

/// The report as text: one line per rule with both values and the margin, then the verdict.
pub fn render(o: &GateOutcome) -> String {
    let mut s = String::new();
    let short = |h: &str| h[..12.min(h.len())].to_string();
    let _ = writeln!(
        s,
        "candidate {} ({}, sha256 {}), baseline {} ({}, sha256 {}), on {} held-out rows of {}",
        o.candidate.path,
        o.candidate.kind,
        short(&o.candidate.sha256),
        o.baseline.path,
        o.baseline.kind,
        short(&o.baseline.sha256),
        o.candidate.rows,
        o.data
    );
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
    for r in &o.report.results {
        let verdict = if r.passed { "PASS" } else { "FAIL" };
        let margin = match (r.check, r.margin) {
            (Check::MinRelativeChange(_), Some(m)) => format!("{:+.4}%", m * 100.0),
            (_, Some(m)) => format!("{m:+.6}"),
            (_, None) => "-".into(),
        };
        let required = match r.check {
            Check::MinRelativeChange(_) => r
                .required
                .map_or("-".into(), |v| format!("change >= {:.4}%", v * 100.0)),
            _ => {
                let op = if r.greater_is_better { ">=" } else { "<=" };
                r.required.map_or("-".into(), |v| format!("{op} {v:.6}"))
            }
        };
        let _ = writeln!(
            s,
            "{verdict}  {:<40} candidate {}  baseline {}  required {required}  margin {margin}",
            r.rule,
            num(r.candidate),
            num(r.baseline)
        );
        if !r.passed {
            let _ = writeln!(s, "      {}", r.reason);
        }
    }
    let failed = o.report.results.iter().filter(|r| !r.passed).count();
    if o.report.passed {
        let _ = writeln!(s, "gate passed: {} rules", o.report.results.len());
    } else {
        let _ = writeln!(
            s,
            "gate FAILED: {failed} of {} rules",
            o.report.results.len()
        );
    }
    s
}
