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
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wasmops_shared::automation::{
    Action, Check, Observation, Plan, Rollout, RolloutState, Rule, RuleState, Step, Trigger,
    Verdict,
};
use wasmops_shared::digest::content_hash;
use wasmops_shared::mlflow::{self as api, Client};
use wasmops_shared::monitor::{self, AlertKind};
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
        for r in &self.rules {
            if !matches!(r.trigger, Trigger::Drift { .. } | Trigger::Schedule { .. }) {
                bail!(
                    "rule `{}`: the controller runs drift and schedule triggers",
                    r.name
                );
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
            if !self.devices.iter().any(|d| d.group == group) {
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

/// What survives a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub rules: BTreeMap<String, RuleState>,
    pub rollout: Option<Active>,
}

/// The rollout in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Active {
    pub rule: String,
    pub version: String,
    /// The candidate module's sha256 (the windows' `model`).
    pub module: String,
    pub rollout: Rollout,
    /// Decisions of `rollout.log` already carried out and recorded.
    pub done: usize,
}

impl State {
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

/// One line of the decision log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub at_ms: u64,
    /// The same instant, RFC 3339 UTC.
    pub time: String,
    /// `rule_fired`, `rule_held`, `retrain`, `gate`, `registered`, `rollout`, `error`.
    pub event: String,
    pub what: String,
    /// In words and figures.
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub figures: Value,
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
        })
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
        for rule in self.config.rules.clone() {
            let Some(reasons) = triggered(&rule, &self.config.devices, &windows, &self.state, now)
            else {
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
            self.state.save(&self.config.state_file)?;
            self.record(
                "rule_fired",
                &format!("rule `{}` fired", rule.name),
                reasons.clone(),
                json!({"rule": rule.name, "trigger": rule.trigger}),
            )?;
            if let Err(e) = self.retrain_gate_register(&rule, &reasons).await {
                self.record(
                    "error",
                    &format!("rule `{}`: stopped: {e:#}", rule.name),
                    vec![],
                    Value::Null,
                )?;
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
    ) -> anyhow::Result<()> {
        let c = self.config.clone();
        let data = newest_dataset(&c.datasets)?;
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
            return Ok(());
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
            return Ok(());
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
        });
        self.state.save(&c.state_file)?;
        self.carry_out().await
    }

    /// Judges the rollout in progress on its step's group.
    async fn advance(&mut self, windows: &[Option<WindowsResponse>]) -> anyhow::Result<()> {
        // Decisions not carried out yet (a restart in between) first.
        self.carry_out().await?;
        let now = now_ms();
        let Some(active) = self.state.rollout.as_mut() else {
            return Ok(());
        };
        match active.rollout.state {
            RolloutState::AwaitingApproval => {
                if let Some(f) = &self.config.approve_file {
                    if f.exists() {
                        let _ = std::fs::remove_file(f);
                        active.rollout.approve(&self.plan, now);
                    }
                }
            }
            RolloutState::Running | RolloutState::Paused => {
                let step = active.rollout.step;
                let group = self.config.plan.steps[step]
                    .group
                    .clone()
                    .unwrap_or_else(|| self.config.plan.steps[step].alias.clone());
                let since = active.rollout.step_started_ms;
                let parts: Vec<Observation> = self
                    .config
                    .devices
                    .iter()
                    .zip(windows)
                    .filter(|(d, _)| d.group == group)
                    .filter_map(|(_, w)| w.as_ref())
                    .map(|w| Observation::from_windows(&w.windows, &active.module, since))
                    .collect();
                let obs = Observation::merge(&parts);
                active.rollout.tick(&self.plan, now, &obs);
            }
            RolloutState::RolledBack | RolloutState::Completed => {}
        }
        self.carry_out().await
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
            let reasons: Vec<String> = decision
                .verdicts
                .iter()
                .map(|v| match v {
                    Verdict::Pass { detail } => format!("pass: {detail}"),
                    Verdict::Fail { detail } => format!("FAIL: {detail}"),
                    Verdict::NotEnoughData { detail } => format!("not enough data: {detail}"),
                })
                .collect();
            let state_word = state_word(&active.rollout.state);
            self.record(
                "rollout",
                &format!("version {}: {}", active.version, decision.what),
                reasons.clone(),
                json!({"version": active.version, "step": decision.step,
                       "verdicts": decision.verdicts, "actions": decision.actions,
                       "rollout_state": state_word}),
            )?;
            let last = if reasons.is_empty() {
                decision.what.clone()
            } else {
                format!("{} ({})", decision.what, reasons.join("; "))
            };
            self.tag(&active.version, TAG_ROLLOUT_LAST, &last).await;
            if let Some(a) = self.state.rollout.as_mut() {
                a.done += 1;
            }
            self.state.save(&self.config.state_file)?;
        }
        let active = self.state.rollout.clone().expect("checked above");
        let word = state_word(&active.rollout.state);
        self.tag(&active.version, TAG_ROLLOUT_STATE, word).await;
        if matches!(
            active.rollout.state,
            RolloutState::Completed | RolloutState::RolledBack
        ) {
            self.state.rollout = None;
            self.state.save(&self.config.state_file)?;
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
        let at_ms = now_ms();
        let line = LogLine {
            at_ms,
            time: rfc3339(at_ms),
            event: event.into(),
            what: what.into(),
            reasons,
            figures,
        };
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

fn state_word(s: &RolloutState) -> &'static str {
    match s {
        RolloutState::Running => "running",
        RolloutState::AwaitingApproval => "awaiting_approval",
        RolloutState::Paused => "paused",
        RolloutState::RolledBack => "rolled_back",
        RolloutState::Completed => "completed",
    }
}

/// Whether `rule`'s trigger holds now, and why (`None`: it does not).
fn triggered(
    rule: &Rule,
    devices: &[DeviceConfig],
    windows: &[Option<WindowsResponse>],
    state: &State,
    now: u64,
) -> Option<Vec<String>> {
    match &rule.trigger {
        Trigger::Drift { group } => {
            let mut reasons = Vec::new();
            for (d, w) in devices.iter().zip(windows) {
                if group.as_ref().is_some_and(|g| *g != d.group) {
                    continue;
                }
                let Some(w) = w else { continue };
                // Only the module the device runs now (its newest window's).
                let Some(current) = w.windows.iter().max_by_key(|w| w.start_ms) else {
                    continue;
                };
                let current = current.model.clone();
                for f in monitor::findings(&w.windows, &|_| None) {
                    if f.kind == AlertKind::Drift && Some(&f.model) == current.as_ref() {
                        reasons.push(format!(
                            "drift alert on {} (group {}), module {}: {}",
                            d.url,
                            d.group,
                            &f.model[..12.min(f.model.len())],
                            f.detail
                        ));
                    }
                }
            }
            (!reasons.is_empty()).then_some(reasons)
        }
        Trigger::Schedule { every_s } => {
            let s = state.rules.get(&rule.name).cloned().unwrap_or_default();
            rule.due(&s, now)
                .then(|| vec![format!("schedule: every {every_s} s")])
        }
        _ => None,
    }
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

/// One short line per rule: `accuracy >= 0.8: 0.9667 (champion 0.3667, margin +0.1667)`.
fn gate_summary(r: &wasmops_shared::gate::GateReport, champion: &str) -> String {
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    r.results
        .iter()
        .map(|x| {
            format!(
                "{} {}: candidate {}, champion v{champion} {}, required {}, margin {}",
                if x.passed { "pass" } else { "FAIL" },
                x.rule,
                num(x.candidate),
                num(x.baseline),
                num(x.required),
                x.margin.map_or("-".into(), |m| format!("{m:+.4}"))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `2026-11-28T06:28:42.123Z` for unix milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_761_722_123), "2026-11-27T06:42:02.123Z");
    }

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
                example.replace(
                    "{ kind = \"drift\", group = \"canary\" }",
                    "{ kind = \"new_dataset\" }",
                ),
                "drift and schedule triggers",
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
