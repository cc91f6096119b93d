//! `wasmops train`: the tab's Import, Train and Compile, one after the other, without a tab.
//!
//! - Import: the CSV file is read as a browser reads a picked file and goes through
//!   `csv_import::read` and `prepare_as` with the same defaults as the Data panel (last column
//!   as target, text columns left out, the task guessed), so the dataset's content hash is the
//!   tab's. Bad rows stop the command unless `--skip-bad-rows` (the tab shows them and imports
//!   the rest).
//! - Train: `wasmops_trainer::run::train`, the worker's own function.
//! - Compile: `Run::compile`, the Compile button's own function, then the module is loaded in
//!   the device's sandbox (conformance vectors must reproduce) and run on the held-out split,
//!   whose primary metric must equal the trained one (the tab checks the same in the browser).
//!
//! The module is a pure function of the run's pipeline, card, profile and held-out rows, and
//! the card holds only what the spec, the data and the code version decide, plus the dataset's
//! display name (the file's name in the tab, unless renamed there): given the dashboard's
//! export of a run as `--spec`, its name, target and columns are taken from the run.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use wasmops_shared::digest::content_hash;
use wasmops_trainer::catalog::Task;
use wasmops_trainer::csv_import;
use wasmops_trainer::run::{spec_of_params, Bundle, Run, RunStart, CODE_VERSION};
use wasmops_trainer::TrainSpec;

/// What `--spec` held: a spec, and the run it came from when it was a run.
#[derive(Debug, Clone)]
pub struct SpecSource {
    pub spec: TrainSpec,
    pub run: Option<Run>,
}

/// Reads `--spec`: a `TrainSpec` (`{"algorithm": {"algorithm": "ridge", "alpha": 1}, "scale":
/// true, "test_fraction": 0.2, "seed": 42}`), a run's flat params as the dashboard shows and
/// MLflow logs them (`{"algorithm": "ridge", "alpha": 1, "scale": true, ...}`), one run record
/// (`run.json`, or a run as the dashboard exports it), or the dashboard's runs export
/// (`wasmops-runs.json`: its only run, or the one `run_id` names).
pub fn load_spec(path: &Path, run_id: Option<&str>) -> anyhow::Result<SpecSource> {
    let at = path.display();
    let text = crate::read_text(path)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow!("{at}: not JSON: {e}"))?;
    let run = if value.get("format").is_some() {
        let bundle = Bundle::parse(&text).map_err(|e| anyhow!("{at}: {e}"))?;
        let ids: Vec<&str> = bundle.runs.iter().map(|r| r.id.as_str()).collect();
        let chosen = match run_id {
            Some(id) => bundle.runs.iter().find(|r| r.id == id).ok_or_else(|| {
                anyhow!(
                    "{at}: no run `{id}` among its {} runs ({})",
                    ids.len(),
                    ids.join(", ")
                )
            })?,
            None if bundle.runs.len() == 1 => &bundle.runs[0],
            None => bail!(
                "{at}: holds {} runs ({}); choose one with --run-id",
                ids.len(),
                ids.join(", ")
            ),
        };
        Some(chosen.clone())
    } else if value.get("pipeline").is_some() {
        let run: Run = serde_json::from_value(value.clone())
            .map_err(|e| anyhow!("{at}: not a run record: {e}"))?;
        run.check().map_err(|e| anyhow!("{at}: {e}"))?;
        Some(run)
    } else {
        None
    };
    if let Some(run) = run {
        let spec = run
            .spec()
            .map_err(|e| anyhow!("{at}: run `{}`: {e}", run.id))?;
        return Ok(SpecSource {
            spec,
            run: Some(run),
        });
    }
    if run_id.is_some() {
        bail!("{at}: --run-id chooses a run of a runs export; this file is a spec");
    }
    let spec = match value.get("algorithm") {
        Some(serde_json::Value::String(_)) => {
            let params = value
                .as_object()
                .map(|o| o.clone().into_iter().collect())
                .unwrap_or_default();
            spec_of_params(&params).map_err(|e| anyhow!("{at}: {e}"))?
        }
        Some(_) => serde_json::from_value(value).map_err(|e| anyhow!("{at}: not a spec: {e}"))?,
        None => bail!(
            "{at}: neither a spec (no `algorithm`), a run record (no `pipeline`) nor a runs \
             export (no `format`)"
        ),
    };
    Ok(SpecSource { spec, run: None })
}

/// `wasmops train`'s flags.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub spec: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    /// The run to take from a runs export.
    pub run_id: Option<String>,
    pub target: Option<String>,
    pub task: Option<Task>,
    pub ignore: Vec<String>,
    pub dataset_name: Option<String>,
    pub skip_bad_rows: bool,
    pub name: Option<String>,
}

/// What `train` produced.
#[derive(Debug, Clone)]
pub struct Trained {
    pub run: Run,
    pub module: Vec<u8>,
    pub module_hash: String,
    /// Remarks for the user (printed to stderr): how this run relates to a given run record.
    pub notes: Vec<String>,
}

/// Imports, trains, compiles and checks; writes `run.json` and `model.wasm` into `out`.
pub fn train(o: &TrainOptions) -> anyhow::Result<Trained> {
    let source = load_spec(&o.spec, o.run_id.as_deref())?;
    let from = source.run.as_ref();
    let mut notes = Vec::new();

    // Import, as the Data panel does (or as the given run was imported).
    let file = crate::file_name(&o.data);
    let text = crate::read_text(&o.data)?;
    let table = csv_import::read(&file, &text).map_err(|e| anyhow!("{}: {e}", o.data.display()))?;
    let target = match (&o.target, from) {
        (Some(t), _) => t.clone(),
        (None, Some(run)) => run.target_name.clone(),
        (None, None) => table
            .default_target()
            .ok_or_else(|| anyhow!("{}: no columns", o.data.display()))?
            .to_string(),
    };
    let ignored: Vec<String> = match (o.ignore.is_empty(), from) {
        (false, _) => o.ignore.clone(),
        // The run's features and target: every other column was left out.
        (true, Some(run)) => table
            .columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|c| *c != target && !run.feature_names.contains(c))
            .collect(),
        (true, None) => table
            .text_columns(&target)
            .into_iter()
            .map(|c| c.0)
            .collect(),
    };
    let task = o.task.or_else(|| {
        from.map(|_| {
            if source.spec.algorithm.is_regression() {
                Task::Regression
            } else {
                Task::Classification
            }
        })
    });
    let prepared = table
        .prepare_as(&target, task, &ignored)
        .map_err(|e| anyhow!("{}: {e}", o.data.display()))?;
    if !prepared.problems.is_empty() {
        let list = crate::list_problems(&file, &prepared.problems);
        if !o.skip_bad_rows {
            bail!(
                "{}: {} bad rows (the dashboard would skip them; pass --skip-bad-rows to do \
                 the same):\n{list}",
                o.data.display(),
                prepared.problems.len()
            );
        }
        notes.push(format!(
            "skipped {} bad rows:\n{list}",
            prepared.problems.len()
        ));
    }
    let mut data = prepared.dataset;
    if let Some(name) = o
        .dataset_name
        .clone()
        .or_else(|| from.map(|r| r.dataset.name.clone()))
    {
        data.name = name;
    }
    let dataset_hash = data.content_hash();
    if let Some(run) = from {
        if run.dataset.hash != dataset_hash {
            notes.push(format!(
                "the data differs from run `{}`'s dataset (content hash {} there, {} here): \
                 training its spec on this data",
                run.id, run.dataset.hash, dataset_hash
            ));
        }
        if run.feature_names != data.feature_names {
            notes.push(format!(
                "features differ from run `{}`'s: [{}] there, [{}] here",
                run.id,
                run.feature_names.join(", "),
                data.feature_names.join(", ")
            ));
        }
        if run.code_version != CODE_VERSION {
            notes.push(format!(
                "run `{}` was trained by code version {}, this is {CODE_VERSION}: the card (and \
                 so the module's bytes) records this one",
                run.id, run.code_version
            ));
        }
    }

    // Train, as the worker does.
    let clock = std::time::SystemTime::now();
    let started_at_ms = clock
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0);
    let algorithm = serde_json::to_value(&source.spec.algorithm)
        .ok()
        .and_then(|v| v["algorithm"].as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default();
    let start = RunStart {
        id: format!(
            "cli-{}-{}",
            started_at_ms as u64,
            &dataset_hash[..8.min(dataset_hash.len())]
        ),
        name: o
            .name
            .clone()
            .unwrap_or_else(|| format!("{algorithm} (cli)")),
        started_at_ms,
        code_version: CODE_VERSION.to_string(),
        dataset_hash,
    };
    let log = vec![wasmops_trainer::run::RunLogLine {
        t_ms: 0.0,
        message: format!(
            "wasmops train has the dataset `{}`: {} rows x {} features (imported from {})",
            data.name,
            data.n_rows(),
            data.n_features(),
            o.data.display()
        ),
    }];
    let now = || {
        started_at_ms
            + clock
                .elapsed()
                .map(|d| d.as_secs_f64() * 1e3)
                .unwrap_or(0.0)
    };
    let run = wasmops_trainer::run::train(start, &data, &source.spec, log, |_, _| {}, now)
        .map_err(|e| anyhow!("training failed: {e}"))?;

    // Compile, as the Compile button does, and check the module as the tab does.
    let module = run.compile().context("compile failed")?;
    check_module(&run, &module)?;
    let module_hash = content_hash(&module);

    std::fs::create_dir_all(&o.out).map_err(|e| anyhow!("{}: {e}", o.out.display()))?;
    let json = serde_json::to_string_pretty(&run).context("encoding the run")?;
    crate::write(&o.out.join(RUN_FILE), json.as_bytes())?;
    crate::write(&o.out.join(MODULE_FILE), &module)?;
    Ok(Trained {
        run,
        module,
        module_hash,
        notes,
    })
}

/// The run record in a run directory.
pub const RUN_FILE: &str = "run.json";
/// The module in a run directory.
pub const MODULE_FILE: &str = "model.wasm";

/// Loads the module in the device's sandbox (its conformance vectors must reproduce) and runs
/// it on the run's held-out rows: the primary metric must be the trained one, bit for bit.
pub fn check_module(run: &Run, module: &[u8]) -> anyhow::Result<()> {
    let runner = crate::gate::Runner::new()?;
    let loaded = runner
        .load(module)
        .context("the compiled module failed its own checks")?;
    let outputs = runner.predict(&loaded, &run.test_x)?;
    let metrics =
        wasmops_shared::metrics::evaluate(&run.pipeline, &run.test_x, &outputs, &run.test_y);
    let (name, trained) = run.primary_metric();
    let through_module = metrics.get(name).copied();
    let same = match (trained, through_module) {
        (Some(a), Some(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
        (a, b) => a.is_none() && b.is_none(),
    };
    if !same {
        bail!(
            "the module's {name} on the held-out rows is {through_module:?}, the trained model's \
             {trained:?}: not registering a module that differs from its run"
        );
    }
    Ok(())
}

/// Reads a run directory: `run.json` and `model.wasm`, checked to belong together (the module
/// is the run compiled, byte for byte).
pub fn read_run_dir(dir: &Path) -> anyhow::Result<(Run, Vec<u8>)> {
    let run_path = dir.join(RUN_FILE);
    let run: Run = serde_json::from_str(&crate::read_text(&run_path)?)
        .map_err(|e| anyhow!("{}: not a run record: {e}", run_path.display()))?;
    run.check()
        .map_err(|e| anyhow!("{}: {e}", run_path.display()))?;
    let module = crate::read(&dir.join(MODULE_FILE))?;
    let compiled = run
        .compile()
        .map_err(|e| anyhow!("{}: compile failed: {e}", run_path.display()))?;
    if compiled != module {
        bail!(
            "{}: not the module of {} (that run compiles to sha256 {}, the file is {})",
            dir.join(MODULE_FILE).display(),
            run_path.display(),
            content_hash(&compiled),
            content_hash(&module)
        );
    }
    Ok((run, module))
}
