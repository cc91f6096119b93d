//! The unattended loop in the tab (issue 13): the same rules, gate and rollout state machine as
//! `wasmops controller` (`wasmops_shared::automation`, `monitor`, `gate`), driven by this page.
//!
//! Every `every_s` seconds it reads the telemetry windows of the devices that are in a group,
//! then either advances the rollout in progress or evaluates the rules. A rule that fires
//! retrains its run's spec on the newest version of its dataset in the training worker,
//! compiles and verifies the module in this browser, gates it against its model's `champion`
//! (both modules run here on the candidate's held-out rows; `shared::metrics` and
//! `shared::gate`), registers it as the next version with `challenger` pointing at it, and
//! starts the plan. Each alias move a decision asks for moves the local alias and deploys the
//! version to the devices of the step's group (checked bit for bit, as the Deploy button
//! does); with an MLflow server connected, the moves are synced to it as well.
//!
//! **Invariant:** this file decides nothing: when a rule fires, whether a candidate passes,
//! how a rollout advances, pauses or rolls back are `shared`'s. It gathers observations,
//! carries out actions and records them: the loop state and the log are one IndexedDB record,
//! written after each decision, so a reload resumes the rollout where it was.
//!
//! **One tab runs it.** With the dashboard open in several tabs, the tab holding the Web Lock
//! `wasmops-automation` runs the loop; the others wait for the lock (the next takes over when
//! that tab closes, from what is stored), show what it stores as it stores it, and pass their
//! Approve and Hold clicks to it ([`crate::tabs`]). Two loops would both retrain and deploy.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wasmops_shared::automation::{
    observe_group, Action, Active, DeviceFeed, LogEntry, LoopState, Rollout, RolloutState,
    RuleSetup, Setup, World,
};
use wasmops_shared::digest::short;
use wasmops_shared::wire::WindowsResponse;

use crate::device_client::DeviceClient;
use crate::registry::{Alias, ModelVersion};
use crate::state::AppState;
use crate::storage::{Storage, StoredDataset};
use crate::tabs::TabMessage;

/// `settings` store keys.
pub const SETUP_KEY: &str = "automation";
pub const STATE_KEY: &str = "automation_state";
/// Log entries kept (oldest dropped first).
pub const MAX_LOG: usize = 500;
/// Windows read from each device per look.
const WINDOWS_PER_LOOK: u64 = 10;

/// The setup as stored: JSON text in the `settings` store (its tagged enums survive exactly).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupRecord {
    pub key: String,
    pub json: String,
}

/// The loop state and the log as stored, in one record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateRecord {
    pub key: String,
    pub json: String,
}

#[derive(Serialize, Deserialize, Default)]
struct StateAndLog {
    state: LoopState,
    log: Vec<LogEntry>,
}

/// The automation's signals (in context).
#[derive(Clone, Copy)]
pub struct Automation {
    pub setup: RwSignal<Setup>,
    pub state: RwSignal<LoopState>,
    /// Oldest first.
    pub log: RwSignal<Vec<LogEntry>>,
    /// What the loop is doing now, when it is doing something that takes a while.
    pub busy: RwSignal<Option<String>>,
    /// The stored setup and state were read.
    pub loaded: RwSignal<bool>,
    /// This tab runs the loop (false: another tab of the dashboard does, and this one shows
    /// what it stores).
    pub leader: RwSignal<bool>,
    /// The last look at the devices: when, and which did not answer.
    pub last_look: RwSignal<Option<(f64, Vec<String>)>>,
    /// A look in progress (looks never overlap).
    running: StoredValue<bool>,
    /// Last hold reason logged per rule (a held rule is logged once, not every look).
    held: StoredValue<BTreeMap<String, String>>,
}

pub fn use_automation() -> Automation {
    expect_context::<Automation>()
}

pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// The Web Lock the tab running the loop holds: one tab of the dashboard runs it, the others
/// show what it stores and pass their clicks to it.
const LEADER_LOCK: &str = "wasmops-automation";

/// Provides the context, reads what is stored and starts the loop, in this tab if no other tab
/// of the dashboard runs it, else as soon as that tab closes.
pub fn start(app: AppState) -> Automation {
    let auto = Automation {
        setup: RwSignal::new(Setup::default()),
        state: RwSignal::new(LoopState::default()),
        log: RwSignal::new(Vec::new()),
        busy: RwSignal::new(None),
        loaded: RwSignal::new(false),
        leader: RwSignal::new(false),
        last_look: RwSignal::new(None),
        running: StoredValue::new(false),
        held: StoredValue::new(BTreeMap::new()),
    };
    provide_context(auto);
    crate::tabs::listen(move |m| from_another_tab(auto, m));
    // The other tabs show what the loop is doing.
    Effect::new(move |_| {
        let what = auto.busy.get();
        if auto.leader.get_untracked() {
            crate::tabs::post(&TabMessage::AutomationBusy { what });
        }
    });
    spawn_local(async move {
        // What is stored, for this page to show while another tab runs the loop.
        if !reload(app, auto).await {
            return;
        }
        crate::tabs::exclusive(LEADER_LOCK, lead(app, auto)).await;
    });
    auto
}

/// Reads the stored setup, loop state and log into the signals. On an error nothing is
/// overwritten and the loop does not start on a state it cannot read (false).
async fn reload(app: AppState, auto: Automation) -> bool {
    let read = async {
        let storage = Storage::open().await.map_err(|e| e.to_string())?;
        let setup = read_setup(&storage).await?;
        let sl = read_state(&storage).await?;
        Ok::<_, String>((setup, sl))
    }
    .await;
    match read {
        Ok((setup, sl)) => {
            auto.setup.set(setup);
            auto.state.set(sl.state);
            auto.log.set(sl.log);
            auto.loaded.set(true);
            true
        }
        Err(e) => {
            crate::logs::error("automation", e.clone());
            app.storage_error.set(Some(e));
            false
        }
    }
}

async fn read_setup(storage: &Storage) -> Result<Setup, String> {
    Ok(
        match storage.automation().await.map_err(|e| e.to_string())? {
            Some(r) => serde_json::from_str::<Setup>(&r.json)
                .map_err(|e| format!("stored automation setup: {e}"))?,
            None => Setup::default(),
        },
    )
}

async fn read_state(storage: &Storage) -> Result<StateAndLog, String> {
    Ok(
        match storage
            .automation_state()
            .await
            .map_err(|e| e.to_string())?
        {
            Some(r) => serde_json::from_str::<StateAndLog>(&r.json)
                .map_err(|e| format!("stored automation state: {e}"))?,
            None => StateAndLog::default(),
        },
    )
}

/// This tab runs the loop (it holds the lock until it closes).
async fn lead(app: AppState, auto: Automation) {
    // The tab that ran the loop before may have changed everything while this one waited.
    if !reload(app, auto).await {
        return;
    }
    auto.leader.set(true);
    // What the other tab was doing when it closed is not going on any more.
    auto.busy.set(None);
    if let Some(a) = auto.state.get_untracked().rollout {
        let what = format!(
            "resuming the rollout of version {} ({}, step {})",
            a.version,
            a.rollout.state.as_str(),
            a.rollout.step + 1
        );
        let _ = record(auto, "resume", &what, vec![], Value::Null).await;
    }
    loop {
        let every = auto.setup.with_untracked(|s| s.every_s).max(1);
        sleep_ms(every as u32 * 1000).await;
        look(app, auto).await;
    }
}

/// What another tab says: read again what it stored, or carry out a click made there.
fn from_another_tab(auto: Automation, message: TabMessage) {
    let leader = auto.leader.get_untracked();
    match message {
        TabMessage::AutomationState if !leader => spawn_local(async move {
            let read = async {
                let storage = Storage::open().await.map_err(|e| e.to_string())?;
                read_state(&storage).await
            }
            .await;
            match read {
                Ok(sl) => {
                    auto.state.set(sl.state);
                    auto.log.set(sl.log);
                }
                Err(e) => crate::logs::warn("automation", e),
            }
        }),
        TabMessage::AutomationSetup => spawn_local(async move {
            let read = async {
                let storage = Storage::open().await.map_err(|e| e.to_string())?;
                read_setup(&storage).await
            }
            .await;
            match read {
                Ok(setup) => auto.setup.set(setup),
                Err(e) => crate::logs::warn("automation", e),
            }
        }),
        TabMessage::AutomationBusy { what } if !leader => auto.busy.set(what),
        TabMessage::AutomationApprove if leader => approve(auto),
        TabMessage::AutomationHold { held } if leader => hold(auto, held),
        _ => {}
    }
}

async fn sleep_ms(ms: u32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}

/// Writes the loop state and the log (one record, one transaction).
async fn save(auto: Automation) -> Result<(), String> {
    let sl = StateAndLog {
        state: auto.state.get_untracked(),
        log: auto.log.get_untracked(),
    };
    let record = StateRecord {
        key: STATE_KEY.into(),
        json: serde_json::to_string(&sl).map_err(|e| e.to_string())?,
    };
    Storage::open()
        .await
        .map_err(|e| e.to_string())?
        .put_automation_state(&record)
        .await
        .map_err(|e| format!("the automation's state was not saved: {e}"))?;
    crate::tabs::post(&TabMessage::AutomationState);
    Ok(())
}

/// Stores a new setup (checked first).
pub async fn save_setup(auto: Automation, setup: Setup) -> Result<(), String> {
    setup.check()?;
    let record = SetupRecord {
        key: SETUP_KEY.into(),
        json: serde_json::to_string(&setup).map_err(|e| e.to_string())?,
    };
    Storage::open()
        .await
        .map_err(|e| e.to_string())?
        .put_automation(&record)
        .await
        .map_err(|e| format!("not saved: {e}"))?;
    auto.setup.set(setup);
    crate::tabs::post(&TabMessage::AutomationSetup);
    Ok(())
}

/// Appends to the log (and the dashboard's log), then saves state and log together.
async fn record(
    auto: Automation,
    event: &str,
    what: &str,
    reasons: Vec<String>,
    figures: Value,
) -> Result<(), String> {
    push(auto, LogEntry::new(now_ms(), event, what, reasons, figures));
    save(auto).await
}

fn push(auto: Automation, entry: LogEntry) {
    let line = if entry.reasons.is_empty() {
        entry.what.clone()
    } else {
        format!("{} ({})", entry.what, entry.reasons.join("; "))
    };
    if entry.event == "error" || entry.what.contains("FAILED") || entry.what.contains("rolled back")
    {
        crate::logs::warn("automation", line);
    } else {
        crate::logs::info("automation", line);
    }
    auto.log.update(|l| {
        l.push(entry);
        if l.len() > MAX_LOG {
            let extra = l.len() - MAX_LOG;
            l.drain(..extra);
        }
    });
}

/// A person approved the step waiting for it. Its alias move is carried out by the next look
/// (one carrier of decisions, so none is carried out twice): the loop's, in whichever tab runs
/// it.
pub fn approve(auto: Automation) {
    if !auto.leader.get_untracked() {
        crate::tabs::post(&TabMessage::AutomationApprove);
        return;
    }
    spawn_local(async move {
        let Some(plan) = active_plan(auto) else {
            return;
        };
        let mut step = None;
        auto.state.update(|s| {
            if let Some(a) = s.rollout.as_mut() {
                if a.rollout.state == RolloutState::AwaitingApproval {
                    step = Some(a.rollout.step + 1);
                    a.rollout.approve(&plan.plan, now_ms());
                }
            }
        });
        if let Some(n) = step {
            let what = format!("a person approved the step: step {n} starts");
            let _ = record(auto, "approved", &what, vec![], Value::Null).await;
        }
    });
}

/// Holds or resumes the rollout in progress (in whichever tab runs the loop).
pub fn hold(auto: Automation, held: bool) {
    if !auto.leader.get_untracked() {
        crate::tabs::post(&TabMessage::AutomationHold { held });
        return;
    }
    spawn_local(async move {
        let mut version = String::new();
        auto.state.update(|s| {
            if let Some(a) = s.rollout.as_mut() {
                a.held = held;
                version = a.version.clone();
            }
        });
        let what = if held {
            format!("the rollout of version {version} is held by a person: nothing is judged or deployed until it is resumed")
        } else {
            format!("the rollout of version {version} resumed")
        };
        let _ = record(
            auto,
            if held { "held" } else { "resumed" },
            &what,
            vec![],
            Value::Null,
        )
        .await;
    });
}

fn active_plan(auto: Automation) -> Option<wasmops_shared::automation::PlanSetup> {
    let name = auto
        .state
        .with_untracked(|s| s.rollout.as_ref().map(|a| a.plan.clone()))?;
    auto.setup.with_untracked(|s| s.plan(&name).cloned())
}

/// One look: the devices' windows, then the rollout in progress or the rules.
async fn look(app: AppState, auto: Automation) {
    if !auto.loaded.get_untracked() || auto.running.get_value() {
        return;
    }
    let setup = auto.setup.get_untracked();
    if setup.groups.is_empty() {
        return;
    }
    auto.running.set_value(true);
    let windows = read_windows(app, auto, &setup).await;
    if auto.state.with_untracked(|s| s.rollout.is_some()) {
        advance(app, auto, &setup, &windows).await;
    } else {
        rules(app, auto, &setup, &windows).await;
    }
    auto.running.set_value(false);
}

/// Each grouped device's windows (device URL, its group, the answer).
async fn read_windows(
    app: AppState,
    auto: Automation,
    setup: &Setup,
) -> Vec<(String, String, WindowsResponse)> {
    let devices = app.devices.get_untracked();
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (url, group) in &setup.groups {
        let Some(device) = devices.iter().find(|d| &d.url == url) else {
            missing.push(format!("{url}: not among this dashboard's devices"));
            continue;
        };
        match (DeviceClient { device })
            .windows(setup.window_s, WINDOWS_PER_LOOK)
            .await
        {
            Ok(w) => out.push((device.name.clone(), group.clone(), w)),
            Err(e) => missing.push(format!("{}: {e}", device.name)),
        }
    }
    auto.last_look.set(Some((js_sys::Date::now(), missing)));
    out
}

fn feeds(windows: &[(String, String, WindowsResponse)]) -> Vec<DeviceFeed<'_>> {
    windows
        .iter()
        .map(|(name, group, w)| DeviceFeed {
            name,
            group,
            windows: &w.windows,
            concept_drift: &w.concept_drift,
        })
        .collect()
}

/// The newest stored version of the dataset named `name`.
pub fn newest_dataset(datasets: &[StoredDataset], name: &str) -> Option<StoredDataset> {
    datasets
        .iter()
        .filter(|d| d.dataset.name == name)
        .max_by_key(|d| d.version)
        .cloned()
}

fn dataset_label(d: &StoredDataset) -> String {
    format!("{} v{} @{}", d.dataset.name, d.version, short(&d.hash))
}

async fn rules(
    app: AppState,
    auto: Automation,
    setup: &Setup,
    windows: &[(String, String, WindowsResponse)],
) {
    let feeds = feeds(windows);
    let now = now_ms();
    let datasets = app.datasets.get_untracked();
    for r in setup.rules.iter().filter(|r| !r.paused) {
        let newest = newest_dataset(&datasets, &r.dataset).map(|d| dataset_label(&d));
        let world = World {
            devices: &feeds,
            newest_dataset: newest.as_deref(),
        };
        let mut rs = auto
            .state
            .with_untracked(|s| s.rules.get(&r.rule.name).cloned().unwrap_or_default());
        let before = rs.clone();
        let triggered = r.rule.triggered(&mut rs, &world, now);
        if rs != before {
            auto.state.update(|s| {
                s.rules.insert(r.rule.name.clone(), rs.clone());
            });
            let _ = save(auto).await;
        }
        let Some(reasons) = triggered else {
            auto.held.update_value(|h| {
                h.remove(&r.rule.name);
            });
            continue;
        };
        if let Err(held) = r.rule.may_fire(&rs, now) {
            let why = held.to_string();
            let kind = why.split(':').next().unwrap_or_default().to_string();
            let new = auto.held.with_value(|h| h.get(&r.rule.name) != Some(&kind));
            if new {
                auto.held.update_value(|h| {
                    h.insert(r.rule.name.clone(), kind);
                });
                let what = format!("rule `{}` triggered but held: {why}", r.rule.name);
                let _ = record(auto, "rule_held", &what, reasons, Value::Null).await;
            }
            continue;
        }
        r.rule.fired(&mut rs, now);
        auto.state.update(|s| {
            s.rules.insert(r.rule.name.clone(), rs.clone());
        });
        auto.held.update_value(|h| {
            h.remove(&r.rule.name);
        });
        let what = format!("rule `{}` fired", r.rule.name);
        let figures = json!({"rule": r.rule.name, "trigger": r.rule.trigger});
        let _ = record(auto, "rule_fired", &what, reasons.clone(), figures).await;
        let outcome = retrain_gate_register(app, auto, setup, r, &reasons).await;
        auto.busy.set(None);
        match outcome {
            Ok(dataset) => {
                auto.state.update(|s| {
                    let st = s.rules.entry(r.rule.name.clone()).or_default();
                    r.rule.retrained_on(st, &dataset);
                });
                let _ = save(auto).await;
                carry_out(app, auto).await;
            }
            Err(e) => {
                // Nothing was trained or judged: the firing holds no cooldown (it counts
                // against the daily cap), and the rule tries again at its next trigger.
                auto.state.update(|s| {
                    let st = s.rules.entry(r.rule.name.clone()).or_default();
                    r.rule.retrain_failed(st, now);
                });
                let what = format!("rule `{}`: stopped: {e}", r.rule.name);
                let _ = record(auto, "error", &what, vec![], Value::Null).await;
            }
        }
        // One rule acts per look; a rollout it started is judged from the next one.
        break;
    }
}

/// Trains the rule's spec on the newest version of its dataset in the worker.
async fn retrain(
    app: AppState,
    auto: Automation,
    r: &RuleSetup,
) -> Result<(crate::run::Run, StoredDataset), String> {
    let datasets = app.datasets.get_untracked();
    let data = newest_dataset(&datasets, &r.dataset).ok_or_else(|| {
        format!(
            "no dataset named `{}` is stored in this browser (import it on the Lab page)",
            r.dataset
        )
    })?;
    let spec: wasmops_trainer::TrainSpec =
        serde_json::from_value(r.spec.clone()).map_err(|e| format!("the rule's spec: {e}"))?;
    let now = js_sys::Date::now();
    let n = app
        .runs
        .with_untracked(|runs| crate::run::next_run_number(runs.iter().map(|r| r.name.as_str())));
    let req = crate::protocol::TrainRequest {
        run_id: format!("run-{}-{n}", now as u64),
        run_name: format!("retrained by rule {} #{n}", r.rule.name),
        dataset: format!("csv:{}", data.hash),
        data: Some(data.dataset.clone()),
        spec,
        started_at_ms: now,
        kmeans_runs: None,
        kmeans_done: Vec::new(),
        log: Vec::new(),
    };
    auto.busy.set(Some(format!(
        "rule `{}`: retraining on {}",
        r.rule.name,
        dataset_label(&data)
    )));
    let (_job, done) = crate::worker_client::TrainJob::start(req, move |stage, f| {
        auto.busy
            .set(Some(format!("retraining: {stage} ({:.0} %)", f * 100.0)));
    })?;
    let run = done
        .await
        .unwrap_or_else(|_| Err("the training worker went away".into()))
        .map_err(|e| format!("retraining failed: {e}"))?;
    let storage = Storage::open().await.map_err(|e| e.to_string())?;
    storage
        .put_run(&run)
        .await
        .map_err(|e| format!("the retrained run was not saved: {e}"))?;
    app.runs
        .update(|runs| runs.insert(0, crate::run::RunSummary::of(&run)));
    crate::mlflow::request_sync(app);
    Ok((run, data))
}

/// The champion's module on the candidate's held-out rows, and both models' metrics.
async fn gate(
    run: &crate::run::Run,
    candidate: &crate::state::CompiledModule,
    champion: &ModelVersion,
    rules: &[String],
) -> Result<wasmops_shared::gate::GateReport, String> {
    let (rules, thresholds) =
        wasmops_shared::gate::parse_rules(rules).map_err(|e| e.to_string())?;
    let storage = Storage::open().await.map_err(|e| e.to_string())?;
    let bytes = storage
        .module_bytes(&champion.hash)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "the champion {}'s module is not stored here",
                champion.label()
            )
        })?;
    let module = crate::module_runner::BrowserModule::instantiate(&bytes).await?;
    let champion_outputs = module.predict(&run.test_x)?;
    // The champion's class indices may differ: labels are matched by name.
    let champion_y: Vec<f64> = if run.class_names.is_empty() {
        run.test_y.clone()
    } else {
        run.test_y
            .iter()
            .map(|y| {
                let name = run
                    .class_names
                    .get(*y as usize)
                    .cloned()
                    .unwrap_or_default();
                champion
                    .card
                    .classes
                    .iter()
                    .position(|c| *c == name)
                    .map(|i| i as f64)
                    .ok_or_else(|| format!("class `{name}` is not one of the champion's classes"))
            })
            .collect::<Result<_, _>>()?
    };
    let of = |card: &wasmops_shared::module::ModelCard, out: &[f64], y: &[f64]| {
        wasmops_shared::metrics::evaluate_card(card, out, y)
            .ok_or_else(|| "gates take classifiers and regressions".to_string())
    };
    let c = of(&run.card(), &candidate.test_outputs, &run.test_y)?;
    let b = of(&champion.card, &champion_outputs, &champion_y)?;
    for t in &thresholds {
        if !c.contains_key(&t.metric) && !b.contains_key(&t.metric) {
            return Err(format!("no model has a metric `{}`", t.metric));
        }
    }
    Ok(wasmops_shared::gate::evaluate(&rules, &thresholds, &c, &b))
}

/// Retrains, gates, registers and starts the rollout. `Ok` with the dataset version retrained
/// on once a candidate was judged (passed or not); `Err` when nothing could be judged.
async fn retrain_gate_register(
    app: AppState,
    auto: Automation,
    setup: &Setup,
    r: &RuleSetup,
    reasons: &[String],
) -> Result<String, String> {
    let (run, data) = retrain(app, auto, r).await?;
    let label = dataset_label(&data);
    auto.busy.set(Some(format!(
        "rule `{}`: compiling and gating",
        r.rule.name
    )));
    let compiled = crate::panels::runs::compile::compile_and_verify(&run).await?;
    let (metric, value) = run.primary_metric();
    let _ = record(
        auto,
        "retrain",
        &format!(
            "retrained {} on {label} ({} rows): {metric} {} on its held-out split, module {}",
            run.pipeline.model.kind(),
            run.dataset.n_rows,
            value.map_or("-".into(), |v| format!("{v:.4}")),
            short(&compiled.hash)
        ),
        vec![],
        json!({"run": run.id, "dataset": label, "dataset_hash": data.hash,
               "module": compiled.hash, "metrics": run.metrics}),
    )
    .await;

    let champion = champion_of(app, &r.model).ok_or_else(|| {
        format!(
            "model `{}` has no `champion` to gate against: register a version and point `champion` at it",
            r.model
        )
    })?;
    if champion.hash == compiled.hash {
        let what = format!(
            "the candidate is {} (the champion) already: nothing to roll out",
            champion.label()
        );
        let _ = record(auto, "gate", &what, vec![], Value::Null).await;
        return Ok(label);
    }
    let report = gate(&run, &compiled, &champion, &r.gate).await?;
    let lines: Vec<String> = report
        .results
        .iter()
        .filter(|x| !x.passed)
        .map(|x| format!("{}: {}", x.rule, x.reason))
        .collect();
    // The log shows each rule's figures from `figures` (panels/automation/log.rs); the words
    // say which rules failed and why.
    let figures = serde_json::to_value(&report).unwrap_or(Value::Null);
    if !report.passed {
        let what = format!(
            "gate FAILED against champion {}: nothing deployed",
            champion.label()
        );
        let _ = record(auto, "gate", &what, lines, figures).await;
        return Ok(label);
    }
    let what = format!("gate passed against champion {}", champion.label());
    let _ = record(auto, "gate", &what, vec![], figures).await;

    let version =
        crate::panels::runs::module_summary::register_version(&run, &compiled, &r.model).await?;
    app.versions.update(|v| v.insert(0, version.clone()));
    move_alias(app, &version, "challenger").await?;
    let _ = record(
        auto,
        "registered",
        &format!(
            "registered {} (sha256 {}) as `challenger`",
            version.label(),
            short(&version.hash)
        ),
        vec![format!("rule {}: {}", r.rule.name, reasons.join("; "))],
        json!({"version": version.version, "sha256": version.hash, "model": version.model}),
    )
    .await;
    let plan = setup
        .plan(&r.plan)
        .ok_or_else(|| format!("no plan named `{}`", r.plan))?;
    let aliases: BTreeMap<String, String> = app.aliases.with_untracked(|all| {
        all.iter()
            .filter(|a| a.model == r.model)
            .map(|a| (a.alias.clone(), a.version.to_string()))
            .collect()
    });
    let v = version.version.to_string();
    auto.state.update(|s| {
        s.rollout = Some(Active {
            rule: r.rule.name.clone(),
            version: v.clone(),
            module: version.hash.clone(),
            rollout: Rollout::start(&plan.plan, &v, &aliases, now_ms()),
            done: 0,
            plan: plan.name.clone(),
            held: false,
        });
    });
    save(auto).await?;
    Ok(label)
}

fn champion_of(app: AppState, model: &str) -> Option<ModelVersion> {
    let hash = app.aliases.with_untracked(|a| {
        a.iter()
            .find(|a| a.model == model && a.alias == "champion")
            .map(|a| a.hash.clone())
    })?;
    app.versions
        .with_untracked(|v| v.iter().find(|v| v.hash == hash).cloned())
}

/// Points `alias` at `version` (kept in the alias's history); synced to MLflow when connected.
async fn move_alias(app: AppState, version: &ModelVersion, alias: &str) -> Result<(), String> {
    let existing = app.aliases.with_untracked(|a| {
        a.iter()
            .find(|a| a.model == version.model && a.alias == alias)
            .cloned()
    });
    if existing.as_ref().is_some_and(|a| a.hash == version.hash) {
        return Ok(());
    }
    let moved = Alias::point(existing.as_ref(), alias, version, js_sys::Date::now());
    Storage::open()
        .await
        .map_err(|e| e.to_string())?
        .put_alias(&moved)
        .await
        .map_err(|e| format!("alias `{alias}` not moved: {e}"))?;
    app.aliases.update(|all| {
        all.retain(|a| a.key != moved.key);
        all.push(moved);
    });
    crate::mlflow::request_sync(app);
    Ok(())
}

/// Judges the rollout in progress on its step's group.
async fn advance(
    app: AppState,
    auto: Automation,
    setup: &Setup,
    windows: &[(String, String, WindowsResponse)],
) {
    // Decisions not carried out yet (a reload in between) first.
    carry_out(app, auto).await;
    let Some(active) = auto.state.get_untracked().rollout else {
        return;
    };
    let Some(plan) = setup.plan(&active.plan) else {
        let what = format!(
            "the rollout of version {} follows plan `{}`, which is gone: it stays where it is",
            active.version, active.plan
        );
        let _ = record(auto, "error", &what, vec![], Value::Null).await;
        return;
    };
    if !matches!(
        active.rollout.state,
        RolloutState::Running | RolloutState::Paused
    ) {
        return;
    }
    let group = plan
        .groups
        .get(active.rollout.step)
        .cloned()
        .unwrap_or_default();
    let feeds = feeds(windows);
    let obs = observe_group(
        &feeds,
        &group,
        &active.module,
        active.rollout.step_started_ms,
    );
    let mut decided = false;
    auto.state.update(|s| {
        if let Some(a) = s.rollout.as_mut() {
            decided = a.tick(&plan.plan, now_ms(), &obs);
        }
    });
    if decided {
        carry_out(app, auto).await;
    }
}

/// Carries out and records every decision not done yet; ends a finished rollout.
async fn carry_out(app: AppState, auto: Automation) {
    loop {
        let Some(active) = auto.state.get_untracked().rollout else {
            return;
        };
        let Some(decision) = active.next_decision().cloned() else {
            break;
        };
        let rule = auto
            .setup
            .with_untracked(|s| s.rules.iter().find(|r| r.rule.name == active.rule).cloned());
        let plan = auto.setup.with_untracked(|s| s.plan(&active.plan).cloned());
        let (Some(rule), Some(plan)) = (rule, plan) else {
            let what = format!(
                "the rollout of version {}: its rule or plan is gone; stopped",
                active.version
            );
            auto.state.update(|s| s.rollout = None);
            let _ = record(auto, "error", &what, vec![], Value::Null).await;
            return;
        };
        let mut results = Vec::new();
        for action in &decision.actions {
            let (alias, version) = match action {
                Action::MoveAlias { alias, version } => (alias.clone(), Some(version.clone())),
                Action::DeleteAlias { alias } => (alias.clone(), None),
            };
            let group = plan
                .plan
                .steps
                .iter()
                .position(|s| s.alias == alias)
                .and_then(|i| plan.groups.get(i).cloned())
                .unwrap_or_default();
            results.extend(
                carry_action(app, auto, &rule.model, &alias, version.as_deref(), &group).await,
            );
        }
        let mut entry = LogEntry::of_decision(&active, &decision);
        entry.reasons.extend(results);
        push(auto, entry);
        auto.state.update(|s| {
            if let Some(a) = s.rollout.as_mut() {
                a.done += 1;
            }
        });
        if let Err(e) = save(auto).await {
            crate::logs::error("automation", e);
        }
    }
    let finished = auto.state.with_untracked(|s| {
        s.rollout
            .as_ref()
            .is_some_and(|a| a.rollout.state.finished())
    });
    if finished {
        auto.state.update(|s| s.rollout = None);
        let _ = save(auto).await;
    }
}

/// One alias move: the local alias, then the group's devices (deployed and checked here, as
/// the Deploy button does). Returns what happened on each device, for the log.
async fn carry_action(
    app: AppState,
    auto: Automation,
    model: &str,
    alias: &str,
    version: Option<&str>,
    group: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(number) = version else {
        // The alias had no version before the rollout: remove it; devices keep what they run.
        let key = format!("{model}/{alias}");
        let r = async { Storage::open().await?.delete_alias(&key).await }.await;
        match r {
            Ok(()) => {
                app.aliases.update(|a| a.retain(|a| a.key != key));
                out.push(format!("alias `{alias}` removed"));
            }
            Err(e) => out.push(format!("alias `{alias}` not removed: {e}")),
        }
        return out;
    };
    let Some(v) = app.versions.with_untracked(|all| {
        all.iter()
            .find(|v| v.model == model && v.version.to_string() == number)
            .cloned()
    }) else {
        out.push(format!(
            "{model} v{number} is not in this browser's registry"
        ));
        return out;
    };
    if let Err(e) = move_alias(app, &v, alias).await {
        out.push(e);
    }
    let storage = match Storage::open().await {
        Ok(s) => s,
        Err(e) => {
            out.push(e.to_string());
            return out;
        }
    };
    let Ok(Some(module)) = storage.module(&v.hash).await else {
        out.push(format!("{}: its module is not stored here", v.label()));
        return out;
    };
    let signature = match module.signature.clone() {
        Some(s) => Some(s),
        None => crate::signing::sign(&storage, &module.bytes).await.ok(),
    };
    let urls: Vec<String> = auto
        .setup
        .with_untracked(|s| s.members(group).map(str::to_string).collect());
    let devices = app.devices.get_untracked();
    for url in urls {
        let Some(device) = devices.iter().find(|d| d.url == url) else {
            continue;
        };
        auto.busy
            .set(Some(format!("deploying {} to {}", v.label(), device.name)));
        let d =
            crate::fleet::deploy(&storage, device, &v, &module.bytes, signature.as_deref()).await;
        out.push(format!(
            "{} {}: {}",
            if d.ok {
                "deployed to"
            } else {
                "NOT deployed to"
            },
            device.name,
            d.message
        ));
    }
    auto.busy.set(None);
    app.pulls.update(|n| *n += 1);
    out
}
