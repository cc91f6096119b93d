//! `wasmops controller --config FILE`: the unattended loop of issue 13 as a long-running
//! process, with no tab open.
//!
//! Every poll it reads each configured device's telemetry windows and then either advances the
//! rollout in progress or evaluates the retraining rules:
//! - a rule fires (`shared::automation::Rule::may_fire`: trigger, cooldown, daily cap) when
//!   `shared::monitor::findings` raises a drift alert (2 of the last 3 windows) on a device of
//!   its group, for the module the device runs now;
//! - it retrains the spec on the newest dataset (the last `*.csv` by name in the datasets
//!   directory) with `train::train`, gates the candidate against the module `champion` points
//!   at (downloaded as a device downloads it, sha256 checked) with `gate::run` on the
//!   candidate run's held-out split (or a given CSV), and stops there when a rule fails;
//! - otherwise it signs and registers the candidate as `challenger` (`registry::register`) and
//!   starts `shared::automation::Rollout` with the plan, carrying out its actions (alias moves
//!   and removals through MLflow; devices follow the aliases) and feeding each step's
//!   `Observation` from the windows of the step's device group since the step started.
//!
//! **Invariant:** every decision (fire or hold, pass or stop, advance, pause, roll back) is
//! `shared::automation`'s, `shared::monitor`'s or `shared::gate`'s; this file only gathers
//! observations, carries out actions and records them: in the decision log (JSON lines), as
//! tags on the candidate's model version, and in the state file, written atomically after every
//! step, so a restarted controller resumes the rollout it was in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};
pub use wasmops_shared::automation::{gate_summary, rfc3339, Active, LogEntry as LogLine};
use wasmops_shared::automation::{
    observe_group, Action, Check, DeviceFeed, LoopState, Observation, Plan, Rollout, RolloutState,
    Rule, Step, World,
};
use wasmops_shared::digest::content_hash;
use wasmops_shared::mlflow::{self as api, Client};
use wasmops_shared::wire::{self, WindowsResponse};

use crate::registry::{Credentials, Http};

/// Model version tags the controller writes on its candidates.
pub const TAG_RULE: &str = "wasmops.rule";
pub const TAG_GATE: &str = "wasmops.gate";
pub const TAG_ROLLOUT_STATE: &str = "wasmops.rollout.state";
pub const TAG_ROLLOUT_LAST: &str = "wasmops.rollout.last";

/// The config file (TOML). Relative paths are relative to the file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub tracking_uri: String,
    /// `user:password` or `Bearer TOKEN` on its first line (default: MLflow's environment
    /// variables, as `wasmops register`).
    pub credentials: Option<PathBuf>,
    pub model: String,
    #[serde(default = "default_experiment")]
    pub experiment: String,
    /// P-256 private key (PEM) that signs every candidate.
    pub signing_key: PathBuf,
    /// The retraining spec (what `wasmops train --spec` takes).
    pub spec: PathBuf,
    /// Dataset versions: the newest `*.csv` by file name is the one retrained on.
    pub datasets: PathBuf,
    /// Candidates are trained into `work_dir/candidates/<ms>/`.
    pub work_dir: PathBuf,
    /// Rule states and the rollout in progress (JSON).
    pub state_file: PathBuf,
    /// Every decision, one JSON object a line.
    pub decision_log: PathBuf,
    #[serde(default = "default_poll")]
    pub poll_interval_s: f64,
    #[serde(default = "default_champion")]
    pub champion_alias: String,
    #[serde(default = "default_challenger")]
    pub challenger_alias: String,
    /// A step waiting for approval starts when this file exists (it is removed then).
    pub approve_file: Option<PathBuf>,
    /// Leave out bad dataset rows (as the dashboard's import) instead of failing the retrain.
    #[serde(default)]
    pub skip_bad_rows: bool,
    pub gate: GateConfig,
    pub rules: Vec<Rule>,
    pub plan: PlanConfig,
    pub devices: Vec<DeviceConfig>,
}

fn default_experiment() -> String {
    "wasmops".into()
}
fn default_poll() -> f64 {
    10.0
}
fn default_champion() -> String {
    "champion".into()
}
fn default_challenger() -> String {
    "challenger".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// `wasmops gate --rule` texts: `accuracy >= 0.8`, `accuracy min_absolute_change 0.0`.
    pub rules: Vec<String>,
    /// Held-out rows (CSV); default: the candidate run's own held-out split.
    pub held_out: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub max_failed_checks: u32,
    pub steps: Vec<StepConfig>,
    /// Judge the steps through this Prometheus server's HTTP API (devices behind NAT that it
    /// scrapes, or that push to it by remote write) instead of polling the devices.
    pub prometheus: Option<String>,
    /// The device label (`wasmops-edge --label KEY=VALUE`) that names a device's group in
    /// Prometheus.
    #[serde(default = "default_group_label")]
    pub group_label: String,
}

fn default_group_label() -> String {
    "group".into()
}

/// A plan step (`shared::automation::Step`) and the device group whose telemetry judges it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    pub alias: String,
    /// Devices judged (default: the alias's name).
    pub group: Option<String>,
    pub hold_s: u64,
    #[serde(default)]
    pub checks: Vec<Check>,
    #[serde(default)]
    pub approval: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub url: String,
    /// The device's API token, first line.
    pub token_file: Option<PathBuf>,
    pub group: String,
    #[serde(default = "default_window")]
    pub window_s: u64,
    #[serde(default = "default_count")]
    pub count: u64,
}

fn default_window() -> u64 {
    60
}
fn default_count() -> u64 {
    10
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = crate::read_text(path)?;
        let mut c: Config =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for p in [
            &mut c.signing_key,
            &mut c.spec,
            &mut c.datasets,
            &mut c.work_dir,
            &mut c.state_file,
            &mut c.decision_log,
        ] {
            abs(p);
        }
        for p in [
            &mut c.credentials,
            &mut c.approve_file,
            &mut c.gate.held_out,
        ]
        .into_iter()
        .flatten()
        {
            abs(p);
        }
        for d in &mut c.devices {
            if let Some(p) = &mut d.token_file {
                abs(p);
            }
        }
        c.check().map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(c)
    }

    fn check(&self) -> anyhow::Result<()> {
        wasmops_shared::gate::parse_rules(&self.gate.rules)?;
        if self.rules.is_empty() {
            bail!("no [[rules]]");
        }
        let mut names = std::collections::BTreeSet::new();
        for r in &self.rules {
            if !names.insert(&r.name) {
                bail!("two rules are named `{}`", r.name);
            }
        }
        if self.plan.steps.is_empty() {
            bail!("the plan has no steps");
        }
        if self.poll_interval_s.is_nan() || self.poll_interval_s <= 0.0 {
            bail!("poll_interval_s must be positive");
        }
        for s in &self.plan.steps {
            let group = s.group.as_deref().unwrap_or(&s.alias);
            if self.plan.prometheus.is_none() && !self.devices.iter().any(|d| d.group == group) {
                bail!(
                    "plan step `{}`: no device of group `{group}` to judge it",
                    s.alias
                );
            }
        }
        Ok(())
    }

    pub fn plan(&self) -> Plan {
        Plan {
            max_failed_checks: self.plan.max_failed_checks,
            steps: self
                .plan
                .steps
                .iter()
                .map(|s| Step {
                    alias: s.alias.clone(),
                    hold_s: s.hold_s,
                    checks: s.checks.clone(),
                    approval: s.approval,
                })
                .collect(),
        }
    }
}

/// What survives a restart: `shared::automation::LoopState` (rule firings, the rollout in
/// progress).
pub type State = LoopState;

trait StateFile: Sized {
    fn load(path: &Path) -> anyhow::Result<Self>;
    fn save(&self, path: &Path) -> anyhow::Result<()>;
}

impl StateFile for State {
    fn load(path: &Path) -> anyhow::Result<State> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(anyhow!("{}: {e}", path.display())),
        }
    }

    /// Written to a temporary file and renamed over the old one: never half a state.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(self)?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)
                .map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path).map_err(|e| anyhow!("writing {}: {e}", path.display()))
    }
}

pub struct Controller {
    config: Config,
    plan: Plan,
    client: Client<Http>,
    credentials: Credentials,
    http: reqwest::Client,
    tokens: Vec<Option<String>>,
    state: State,
    /// Last hold reason logged per rule (a held rule is logged once, not every poll).
    held: BTreeMap<String, String>,
    /// Last device error logged per device.
    device_errors: BTreeMap<usize, String>,
    /// `wasmops rollout`: the state file is left alone (a controller may be running on it).
    ephemeral: bool,
    /// How the last rollout ended (set when it leaves the state).
    finished: Option<RolloutState>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Controller {
    pub fn new(config: Config) -> anyhow::Result<Controller> {
        let credentials = Credentials::from(config.credentials.as_deref(), |name| {
            std::env::var(name).ok()
        })?;
        let client = Client::new(Http::new(&config.tracking_uri, credentials.clone())?);
        let mut tokens = Vec::new();
        for d in &config.devices {
            tokens.push(match &d.token_file {
                Some(p) => Some(
                    crate::read_text(p)?
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                ),
                None => None,
            });
        }
        crate::keys::signer(&config.signing_key)?;
        std::fs::create_dir_all(config.work_dir.join("candidates"))
            .map_err(|e| anyhow!("{}: {e}", config.work_dir.display()))?;
        let state = State::load(&config.state_file)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(crate::registry::POOL_IDLE)
            .build()?;
        Ok(Controller {
            plan: config.plan(),
            config,
            client,
            credentials,
            http,
            tokens,
            state,
            held: BTreeMap::new(),
            device_errors: BTreeMap::new(),
            ephemeral: false,
            finished: None,
        })
    }

    /// Writes the state file (not for `wasmops rollout`).
    fn persist(&self) -> anyhow::Result<()> {
        if self.ephemeral {
            return Ok(());
        }
        self.state.save(&self.config.state_file)
    }

    /// `wasmops rollout`: runs the plan for one registered version, printing each decision,
    /// until it completes (`Ok(Completed)`) or rolls back (`Ok(RolledBack)`). The controller's
    /// state file is neither read nor written; the decision log and the version's tags are.
    pub async fn rollout_version(&mut self, version: &str) -> anyhow::Result<RolloutState> {
        self.ephemeral = true;
        self.state = State::default();
        let model = self.config.model.clone();
        let mv = self
            .client
            .model_versions(&model)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| anyhow!("model `{model}` has no version {version}"))?;
        let module = mv
            .tag(api::SHA256_TAG)
            .ok_or_else(|| {
                anyhow!(
                    "{model} version {version} has no `{}` tag: not registered by wasmops",
                    api::SHA256_TAG
                )
            })?
            .to_string();
        let aliases: BTreeMap<String, String> = self
            .client
            .registered_model(&model)
            .await?
            .aliases
            .into_iter()
            .map(|a| (a.alias, a.version))
            .collect();
        self.record(
            "rollout",
            &format!(
                "rolling out {model} version {version} (module {}) by the configured plan ({} steps)",
                &module[..12.min(module.len())],
                self.config.plan.steps.len()
            ),
            vec![],
            Value::Null,
        )?;
        self.state.rollout = Some(Active {
            rule: "wasmops rollout".into(),
            version: version.to_string(),
            module,
            rollout: Rollout::start(&self.plan, version, &aliases, now_ms()),
            done: 0,
            plan: String::new(),
            held: false,
        });
        self.carry_out().await?;
        loop {
            if self.state.rollout.is_none() {
                return self
                    .finished
                    .clone()
                    .ok_or_else(|| anyhow!("the rollout ended without an outcome"));
            }
            tokio::time::sleep(Duration::from_secs_f64(self.config.poll_interval_s)).await;
            let windows = self.windows().await;
            self.advance(&windows).await?;
        }
    }

    /// Polls forever.
    pub async fn run(&mut self) -> anyhow::Result<()> {
        if let Some(a) = &self.state.rollout {
            let what = format!(
                "resuming the rollout of version {} ({:?}, step {})",
                a.version,
                a.rollout.state,
                a.rollout.step + 1
            );
            self.record("resume", &what, vec![], Value::Null)?;
        }
        loop {
            if let Err(e) = self.poll().await {
                self.record("error", &format!("{e:#}"), vec![], Value::Null)?;
            }
            tokio::time::sleep(Duration::from_secs_f64(self.config.poll_interval_s)).await;
        }
    }

    /// One round: windows in, then the rollout in progress or the rules.
    pub async fn poll(&mut self) -> anyhow::Result<()> {
        let windows = self.windows().await;
        if self.state.rollout.is_some() {
            return self.advance(&windows).await;
        }
        let now = now_ms();
        let newest = newest_dataset(&self.config.datasets)
            .ok()
            .map(|p| crate::file_name(&p));
        for rule in self.config.rules.clone() {
            let feeds = feeds(&self.config.devices, &windows);
            let world = World {
                devices: &feeds,
                newest_dataset: newest.as_deref(),
            };
            let state = self.state.rules.entry(rule.name.clone()).or_default();
            let before = state.clone();
            let triggered = rule.triggered(state, &world, now);
            if *state != before {
                self.persist()?;
            }
            let Some(reasons) = triggered else {
                self.held.remove(&rule.name);
                continue;
            };
            let state = self.state.rules.entry(rule.name.clone()).or_default();
            if let Err(held) = rule.may_fire(state, now) {
                let why = held.to_string();
                let kind = why.split(':').next().unwrap_or_default().to_string();
                if self.held.get(&rule.name) != Some(&kind) {
                    self.held.insert(rule.name.clone(), kind);
                    self.record(
                        "rule_held",
                        &format!("rule `{}` triggered but held: {why}", rule.name),
                        reasons,
                        Value::Null,
                    )?;
                }
                continue;
            }
            rule.fired(state, now);
            self.held.remove(&rule.name);
            self.persist()?;
            self.record(
                "rule_fired",
                &format!("rule `{}` fired", rule.name),
                reasons.clone(),
                json!({"rule": rule.name, "trigger": rule.trigger}),
            )?;
            match self.retrain_gate_register(&rule, &reasons).await {
                Ok(dataset) => {
                    let state = self.state.rules.entry(rule.name.clone()).or_default();
                    rule.retrained_on(state, &dataset);
                    self.persist()?;
                }
                Err(e) => {
                    // Nothing was trained, so nothing was judged: the firing holds no cooldown
                    // (it counts against the daily cap), and the rule tries again.
                    let state = self.state.rules.entry(rule.name.clone()).or_default();
                    rule.retrain_failed(state, now);
                    self.persist()?;
                    self.record(
                        "error",
                        &format!("rule `{}`: stopped: {e:#}", rule.name),
                        vec![],
                        Value::Null,
                    )?;
                }
            }
            // One rule acts per poll; a rollout it started is judged from the next one.
            break;
        }
        Ok(())
    }

    /// Every device's windows (a device that does not answer is left out, logged once).
    async fn windows(&mut self) -> Vec<Option<WindowsResponse>> {
        let mut out = Vec::new();
        for (i, d) in self.config.devices.clone().iter().enumerate() {
            let url = format!(
                "{}{}?window_s={}&count={}",
                d.url.trim_end_matches('/'),
                wire::paths::TELEMETRY_WINDOWS,
                d.window_s,
                d.count
            );
            let mut r = self.http.get(url);
            if let Some(t) = &self.tokens[i] {
                r = r.bearer_auth(t);
            }
            let answer = async {
                let resp = r
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| e.to_string())?;
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                serde_json::from_slice::<WindowsResponse>(&body).map_err(|e| e.to_string())
            }
            .await;
            match answer {
                Ok(w) => {
                    self.device_errors.remove(&i);
                    out.push(Some(w));
                }
                Err(e) => {
                    let msg = format!("device {}: telemetry windows: {e}", d.url);
                    if self.device_errors.get(&i) != Some(&msg) {
                        self.device_errors.insert(i, msg.clone());
                        let _ = self.record("error", &msg, vec![], Value::Null);
                    }
                    out.push(None);
                }
            }
        }
        out
    }

    async fn retrain_gate_register(
        &mut self,
        rule: &Rule,
        reasons: &[String],
    ) -> anyhow::Result<String> {
        let c = self.config.clone();
        let data = newest_dataset(&c.datasets)?;
        let dataset = crate::file_name(&data);
        let out = c.work_dir.join("candidates").join(now_ms().to_string());
        let trained = crate::train::train(&crate::train::TrainOptions {
            spec: c.spec.clone(),
            data: data.clone(),
            out: out.clone(),
            run_id: None,
            target: None,
            task: None,
            ignore: vec![],
            dataset_name: None,
            skip_bad_rows: c.skip_bad_rows,
            name: Some(format!("retrained by rule {}", rule.name)),
        })?;
        let (metric, value) = trained.run.primary_metric();
        self.record(
            "retrain",
            &format!(
                "retrained {} on {} ({} rows): {metric} {} on its held-out split, module {}",
                trained.run.pipeline.model.kind(),
                data.display(),
                trained.run.dataset.n_rows,
                value.map_or("-".into(), |v| format!("{v:.4}")),
                &trained.module_hash[..12]
            ),
            trained.notes.clone(),
            json!({"dataset": data.display().to_string(), "dataset_hash": trained.run.dataset.hash,
                   "module": trained.module_hash, "metrics": trained.run.metrics}),
        )?;

        // The champion's module, as a device gets it: alias -> version -> source -> bytes.
        let champion = self
            .client
            .model_version_by_alias(&c.model, &c.champion_alias)
            .await
            .with_context(|| format!("reading alias `{}`", c.champion_alias))?;
        let bytes = self
            .client
            .get_artifact(&champion.source, api::MODULE_FILE)
            .await?;
        let hash = content_hash(&bytes);
        if champion.tag(api::SHA256_TAG) != Some(hash.as_str()) {
            bail!(
                "champion version {}: its module's sha256 is {hash}, its `{}` tag says {:?}",
                champion.version,
                api::SHA256_TAG,
                champion.tag(api::SHA256_TAG)
            );
        }
        if hash == trained.module_hash {
            self.record(
                "gate",
                &format!(
                    "the candidate is version {} (the champion) already: nothing to roll out",
                    champion.version
                ),
                vec![],
                Value::Null,
            )?;
            return Ok(dataset);
        }
        let baseline = out.join("champion.wasm");
        crate::write(&baseline, &bytes)?;
        let held_out = match &c.gate.held_out {
            Some(p) => p.clone(),
            None => {
                let p = out.join("held-out.csv");
                crate::write(&p, held_out_csv(&trained.run).as_bytes())?;
                p
            }
        };
        let outcome = crate::gate::run(&crate::gate::GateOptions {
            candidate: out.join(crate::train::MODULE_FILE),
            baseline,
            data: held_out,
            rules: c.gate.rules.clone(),
            skip_bad_rows: c.skip_bad_rows,
        })?;
        let lines: Vec<String> = crate::gate::render(&outcome)
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
        let summary = gate_summary(&outcome.report, &champion.version);
        if !outcome.report.passed {
            self.record(
                "gate",
                &format!(
                    "gate FAILED against champion version {}: {summary}; nothing deployed",
                    champion.version
                ),
                lines,
                serde_json::to_value(&outcome)?,
            )?;
            return Ok(dataset);
        }
        self.record(
            "gate",
            &format!(
                "gate passed against champion version {}: {summary}",
                champion.version
            ),
            lines,
            serde_json::to_value(&outcome)?,
        )?;

        let registered = crate::registry::register(&crate::registry::RegisterOptions {
            tracking_uri: c.tracking_uri.clone(),
            model: c.model.clone(),
            alias: Some(c.challenger_alias.clone()),
            run_dir: out.clone(),
            key: Some(c.signing_key.clone()),
            experiment: c.experiment.clone(),
            credentials: self.credentials.clone(),
        })
        .await?;
        let version = registered.version.clone();
        self.record(
            "registered",
            &format!(
                "registered version {version} (sha256 {}) as `{}`, signed by key {}",
                &registered.sha256[..12],
                c.challenger_alias,
                registered.signed_by.as_deref().unwrap_or("-")
            ),
            vec![],
            serde_json::to_value(&registered)?,
        )?;
        self.tag(
            &version,
            TAG_RULE,
            &format!("{}: {}", rule.name, reasons.join("; ")),
        )
        .await;
        self.tag(
            &version,
            TAG_GATE,
            &format!("passed vs version {}: {summary}", champion.version),
        )
        .await;

        let aliases: BTreeMap<String, String> = self
            .client
            .registered_model(&c.model)
            .await?
            .aliases
            .into_iter()
            .map(|a| (a.alias, a.version))
            .collect();
        let rollout = Rollout::start(&self.plan, &version, &aliases, now_ms());
        self.state.rollout = Some(Active {
            rule: rule.name.clone(),
            version,
            module: registered.sha256,
            rollout,
            done: 0,
            plan: String::new(),
            held: false,
        });
        self.persist()?;
        // The rollout started: a failure carrying out its first step is retried next poll.
        if let Err(e) = self.carry_out().await {
            self.record("error", &format!("{e:#}"), vec![], Value::Null)?;
        }
        Ok(dataset)
    }

    /// Judges the rollout in progress on its step's group.
    async fn advance(&mut self, windows: &[Option<WindowsResponse>]) -> anyhow::Result<()> {
        // Decisions not carried out yet (a restart in between) first.
        self.carry_out().await?;
        let now = now_ms();
        let Some(active) = self.state.rollout.clone() else {
            return Ok(());
        };
        match active.rollout.state {
            RolloutState::AwaitingApproval => {
                if let Some(f) = &self.config.approve_file {
                    if f.exists() {
                        let _ = std::fs::remove_file(f);
                        if let Some(a) = self.state.rollout.as_mut() {
                            a.rollout.approve(&self.plan, now);
                        }
                    }
                }
            }
            RolloutState::Running | RolloutState::Paused => {
                let step = &self.config.plan.steps[active.rollout.step];
                let group = step.group.clone().unwrap_or_else(|| step.alias.clone());
                let since = active.rollout.step_started_ms;
                let obs = match self.config.plan.prometheus.clone() {
                    Some(url) => {
                        let range_s = now.saturating_sub(since).div_ceil(1000);
                        self.observe_prometheus(&url, &group, &active.module, range_s)
                            .await?
                    }
                    None => {
                        let feeds = feeds(&self.config.devices, windows);
                        observe_group(&feeds, &group, &active.module, since)
                    }
                };
                if let Some(a) = self.state.rollout.as_mut() {
                    a.tick(&self.plan, now, &obs);
                }
            }
            RolloutState::RolledBack | RolloutState::Completed => {}
        }
        self.carry_out().await
    }

    /// A step's observation through Prometheus (`shared::prometheus::step_queries`).
    async fn observe_prometheus(
        &self,
        url: &str,
        group: &str,
        module: &str,
        range_s: u64,
    ) -> anyhow::Result<Observation> {
        use wasmops_shared::prometheus as prom;
        let queries = prom::step_queries(&self.config.plan.group_label, group, module, range_s);
        let mut answers: [Vec<prom::Sample>; 6] = Default::default();
        for (q, a) in queries.iter().zip(answers.iter_mut()) {
            let body = self
                .http
                .get(prom::query_url(url, q))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| anyhow!("Prometheus at {url}: {e}"))?
                .text()
                .await
                .map_err(|e| anyhow!("Prometheus at {url}: {e}"))?;
            *a = prom::parse_vector(q, &body)?;
        }
        Ok(prom::step_observation(&answers))
    }

    /// Carries out and records every decision not done yet; ends a finished rollout.
    async fn carry_out(&mut self) -> anyhow::Result<()> {
        loop {
            let Some(active) = self.state.rollout.clone() else {
                return Ok(());
            };
            let Some(decision) = active.rollout.log.get(active.done).cloned() else {
                break;
            };
            for action in &decision.actions {
                match action {
                    Action::MoveAlias { alias, version } => {
                        self.client
                            .set_alias(&self.config.model, alias, version)
                            .await?
                    }
                    Action::DeleteAlias { alias } => {
                        self.client.delete_alias(&self.config.model, alias).await?
                    }
                }
            }
            let entry = LogLine::of_decision(&active, &decision);
            let last = if entry.reasons.is_empty() {
                decision.what.clone()
            } else {
                format!("{} ({})", decision.what, entry.reasons.join("; "))
            };
            // The version's tags first, then the log line: whoever reads a decision in the log
            // finds it on the version too.
            self.tag(&active.version, TAG_ROLLOUT_LAST, &last).await;
            if active.done + 1 == active.rollout.log.len() {
                let word = active.rollout.state.as_str();
                self.tag(&active.version, TAG_ROLLOUT_STATE, word).await;
            }
            self.write_line(entry)?;
            if let Some(a) = self.state.rollout.as_mut() {
                a.done += 1;
            }
            self.persist()?;
        }
        let active = self.state.rollout.clone().expect("checked above");
        if active.rollout.state.finished() {
            self.finished = Some(active.rollout.state.clone());
            self.state.rollout = None;
            self.persist()?;
        }
        Ok(())
    }

    /// A tag on a model version; a failure is logged, never stops the loop.
    async fn tag(&mut self, version: &str, key: &str, value: &str) {
        let value: String = value.chars().take(500).collect();
        if let Err(e) = self
            .client
            .set_model_version_tag(&self.config.model, version, key, &value)
            .await
        {
            let _ = self.record(
                "error",
                &format!("tagging version {version} with {key}: {e}"),
                vec![],
                Value::Null,
            );
        }
    }

    /// Appends a line to the decision log (and prints it).
    fn record(
        &self,
        event: &str,
        what: &str,
        reasons: Vec<String>,
        figures: Value,
    ) -> anyhow::Result<()> {
        self.write_line(LogLine::new(now_ms(), event, what, reasons, figures))
    }

    /// Appends a line to the decision log (and prints it).
    fn write_line(&self, line: LogLine) -> anyhow::Result<()> {
        let event = &line.event;
        let what = &line.what;
        println!("{} {event}: {what}", line.time);
        for r in &line.reasons {
            println!("    {r}");
        }
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.decision_log)
            .map_err(|e| anyhow!("{}: {e}", self.config.decision_log.display()))?;
        let mut text = serde_json::to_string(&line)?;
        text.push('\n');
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| anyhow!("{}: {e}", self.config.decision_log.display()))
    }
}

/// The devices that answered, as the rules and checks see them.
fn feeds<'a>(
    devices: &'a [DeviceConfig],
    windows: &'a [Option<WindowsResponse>],
) -> Vec<DeviceFeed<'a>> {
    devices
        .iter()
        .zip(windows)
        .filter_map(|(d, w)| {
            w.as_ref().map(|w| DeviceFeed {
                name: &d.url,
                group: &d.group,
                windows: &w.windows,
                concept_drift: &w.concept_drift,
            })
        })
        .collect()
}

/// The last `*.csv` in `dir` by file name.
pub fn newest_dataset(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut csvs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")))
        .collect();
    csvs.sort();
    csvs.pop()
        .ok_or_else(|| anyhow!("{}: no *.csv dataset", dir.display()))
}

/// A run's held-out split as a CSV file the gate reads (class names as labels).
pub fn held_out_csv(run: &wasmops_trainer::run::Run) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut header: Vec<String> = run.feature_names.iter().map(|f| quote(f)).collect();
    header.push(quote(&run.target_name));
    let mut s = header.join(",") + "\n";
    let d = run.feature_names.len().max(1);
    for (row, y) in run.test_x.chunks(d).zip(&run.test_y) {
        let mut cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        let label = if run.class_names.is_empty() {
            y.to_string()
        } else {
            run.class_names
                .get(*y as usize)
                .map(|c| quote(c))
                .unwrap_or_else(|| y.to_string())
        };
        cells.push(label);
        s += &cells.join(",");
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wasmops-ctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_newest_dataset_is_the_last_csv_by_name() {
        let d = scratch("datasets");
        let e = newest_dataset(&d).unwrap_err().to_string();
        assert!(e.contains("no *.csv"), "{e}");
        for f in ["2026-01-01.csv", "2026-02-01.CSV", "2026-03-01.txt"] {
            std::fs::write(d.join(f), "a,b\n1,2\n").unwrap();
        }
        assert_eq!(newest_dataset(&d).unwrap(), d.join("2026-02-01.CSV"));
    }

    #[test]
    fn the_held_out_csv_reads_back_as_the_run_s_split() {
        let d = scratch("held-out");
        let iris = wasmops_trainer::datasets::builtin("iris").unwrap();
        let mut csv = iris.feature_names.join(",") + ",\"the, class\"\n";
        for i in 0..iris.n_rows() {
            let row: Vec<String> = iris.row(i).iter().map(f64::to_string).collect();
            csv += &format!(
                "{},{}\n",
                row.join(","),
                iris.class_names[iris.y[i] as usize]
            );
        }
        std::fs::write(d.join("iris.csv"), csv).unwrap();
        std::fs::write(
            d.join("spec.json"),
            r#"{"algorithm": {"algorithm": "gaussian_nb"}, "scale": false, "test_fraction": 0.2, "seed": 3}"#,
        )
        .unwrap();
        let t = crate::train::train(&crate::train::TrainOptions {
            spec: d.join("spec.json"),
            data: d.join("iris.csv"),
            out: d.join("run"),
            run_id: None,
            target: None,
            task: None,
            ignore: vec![],
            dataset_name: None,
            skip_bad_rows: false,
            name: None,
        })
        .unwrap();
        let text = held_out_csv(&t.run);
        let table = wasmops_trainer::csv_import::read("held-out.csv", &text).unwrap();
        let rows = table
            .rows_for(&t.run.feature_names, &t.run.target_name, &t.run.class_names)
            .unwrap();
        assert!(rows.problems.is_empty());
        assert_eq!(rows.y, t.run.test_y);
        assert_eq!(rows.x, t.run.test_x, "every value round-trips exactly");
    }

    #[test]
    fn configs_that_cannot_run_are_refused_at_start() {
        let d = scratch("config");
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/controller.toml"),
        )
        .unwrap();
        let bad = [
            (
                example.replace("group = \"fleet\"\nhold_s", "group = \"nobody\"\nhold_s"),
                "no device of group `nobody`",
            ),
            (
                example.replacen(
                    "[plan]\n",
                    "[[rules]]\nname = \"drift-on-canary\"\ntrigger = { kind = \"new_dataset\" }\ncooldown_s = 1\ndaily_cap = 1\n\n[plan]\n",
                    1,
                ),
                "two rules are named `drift-on-canary`",
            ),
            (
                example.replace("accuracy >= 0.8", "accuracy >== 0.8"),
                "accuracy >== 0.8",
            ),
            (
                example.replace("poll_interval_s = 30", "poll_interval_s = 30\npoll = 1"),
                "poll",
            ),
        ];
        for (i, (text, wanted)) in bad.iter().enumerate() {
            assert_ne!(text, &example, "case {i} changes the example");
            let path = d.join(format!("bad-{i}.toml"));
            std::fs::write(&path, text).unwrap();
            let e = format!("{:#}", Config::load(&path).unwrap_err());
            assert!(e.contains(wanted) && e.contains("bad-"), "case {i}: {e}");
        }
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/controller.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.plan().steps.len(), 2);
        assert!(c.signing_key.is_absolute());
        assert_eq!(c.gate.rules.len(), 2);
    }
}
