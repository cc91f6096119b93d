//! The unattended loop's decisions, the same in the tab and in the headless controller: when a
//! retraining rule may fire (cooldown, daily cap), and how a rollout plan advances over device
//! groups, judged by what the devices report, rolling itself back when its checks fail.
//!
//! Pure: the caller brings the clock, the observations (from devices' telemetry or from
//! Prometheus) and carries out the [`Action`]s (moving MLflow aliases; devices follow them).
//! Every decision is logged with its reasons, in words and figures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// What makes a retraining rule fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// A drift alert (2 of the last 3 windows, `monitor`) on a device of this group (any
    /// device when `None`).
    Drift { group: Option<String> },
    /// DDM concept drift on the labels a device received.
    ConceptDrift { group: Option<String> },
    /// A newer version of the rule's dataset.
    NewDataset,
    /// Every `every_s` seconds.
    Schedule { every_s: u64 },
}

/// A retraining rule: its trigger, and how often it may act.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub trigger: Trigger,
    /// Seconds after firing during which it does not fire again.
    pub cooldown_s: u64,
    /// Firings allowed in any 24 hours.
    pub daily_cap: u32,
}

/// What a rule remembers of its firings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// When it fired and its retrain went through, newest last (only the last 24 hours are
    /// kept). The cooldown runs from the newest.
    pub fired_ms: Vec<u64>,
    /// When it fired and its retrain failed (no candidate): these count against the daily cap,
    /// never the cooldown, so the rule tries again at the next trigger.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_ms: Vec<u64>,
    /// The dataset version it last retrained on, or the newest one when it was first seen
    /// (a `new_dataset` rule fires on a newer one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_on: Option<String>,
}

/// Why a triggered rule did not fire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Held {
    #[error("cooling down: it fired {ago_s} s ago and waits {cooldown_s} s between firings")]
    Cooldown { ago_s: u64, cooldown_s: u64 },
    #[error("daily cap reached: it fired {count} times in the last 24 hours (cap {cap})")]
    Cap { count: usize, cap: u32 },
}

impl Rule {
    /// Whether the rule, triggered now, may fire.
    pub fn may_fire(&self, state: &RuleState, now_ms: u64) -> Result<(), Held> {
        if let Some(&last) = state.fired_ms.last() {
            let ago_ms = now_ms.saturating_sub(last);
            if ago_ms < self.cooldown_s * 1000 {
                return Err(Held::Cooldown {
                    ago_s: ago_ms / 1000,
                    cooldown_s: self.cooldown_s,
                });
            }
        }
        let count = state
            .fired_ms
            .iter()
            .chain(&state.failed_ms)
            .filter(|&&t| now_ms.saturating_sub(t) < DAY_MS)
            .count();
        if count >= self.daily_cap as usize {
            return Err(Held::Cap {
                count,
                cap: self.daily_cap,
            });
        }
        Ok(())
    }

    /// Records a firing at `now_ms`.
    pub fn fired(&self, state: &mut RuleState, now_ms: u64) {
        state
            .fired_ms
            .retain(|&t| now_ms.saturating_sub(t) < DAY_MS);
        state
            .failed_ms
            .retain(|&t| now_ms.saturating_sub(t) < DAY_MS);
        state.fired_ms.push(now_ms);
    }

    /// The retrain of the firing at `fired_at_ms` failed (nothing was trained, so nothing was
    /// judged): the firing no longer holds the cooldown, and counts against the daily cap only.
    pub fn retrain_failed(&self, state: &mut RuleState, fired_at_ms: u64) {
        if let Some(i) = state.fired_ms.iter().rposition(|&t| t == fired_at_ms) {
            state.fired_ms.remove(i);
        }
        state.failed_ms.push(fired_at_ms);
    }

    /// The rule retrained on `dataset` (a `new_dataset` rule waits for a newer one).
    pub fn retrained_on(&self, state: &mut RuleState, dataset: &str) {
        state.trained_on = Some(dataset.to_string());
    }

    /// Whether the rule's trigger holds now, and why, in words and figures (`None`: it does
    /// not). A `new_dataset` rule seeing datasets for the first time takes the newest as the
    /// one it was trained on (it fires on a *newer* version), so `state` may change.
    pub fn triggered(
        &self,
        state: &mut RuleState,
        world: &World<'_>,
        now_ms: u64,
    ) -> Option<Vec<String>> {
        let in_group = |d: &DeviceFeed<'_>, group: &Option<String>| {
            group.as_ref().is_none_or(|g| g == d.group)
        };
        match &self.trigger {
            Trigger::Drift { group } => {
                let mut reasons = Vec::new();
                for d in world.devices.iter().filter(|d| in_group(d, group)) {
                    // Only the module the device runs now (its newest window's).
                    let Some(current) = d.current_module() else {
                        continue;
                    };
                    for f in crate::monitor::findings(d.windows, &|_| None) {
                        if f.kind == crate::monitor::AlertKind::Drift && f.model == current {
                            reasons.push(format!(
                                "drift alert on {} (group {}), module {}: {}",
                                d.name,
                                d.group,
                                crate::digest::short(&f.model),
                                f.detail
                            ));
                        }
                    }
                }
                (!reasons.is_empty()).then_some(reasons)
            }
            Trigger::ConceptDrift { group } => {
                let mut reasons = Vec::new();
                for d in world.devices.iter().filter(|d| in_group(d, group)) {
                    let current = d.current_module();
                    for c in d.concept_drift {
                        let running = current.is_none_or(|m| m == c.model);
                        if c.state == crate::wire::ConceptState::Drift && running {
                            reasons.push(format!(
                                "DDM concept drift on {} (group {}), module {}: error rate {:.4} over {} labelled predictions",
                                d.name,
                                d.group,
                                crate::digest::short(&c.model),
                                c.error_rate,
                                c.samples
                            ));
                        }
                    }
                }
                (!reasons.is_empty()).then_some(reasons)
            }
            Trigger::NewDataset => {
                let newest = world.newest_dataset?;
                match &state.trained_on {
                    None => {
                        state.trained_on = Some(newest.to_string());
                        None
                    }
                    Some(old) if old != newest => Some(vec![format!(
                        "new dataset version {newest} (last retrained on {old})"
                    )]),
                    Some(_) => None,
                }
            }
            Trigger::Schedule { every_s } => self
                .due(state, now_ms)
                .then(|| vec![format!("schedule: every {every_s} s")]),
        }
    }

    /// Whether a schedule rule is due (other triggers are events, not times).
    pub fn due(&self, state: &RuleState, now_ms: u64) -> bool {
        match self.trigger {
            Trigger::Schedule { every_s } => state
                .fired_ms
                .last()
                .is_none_or(|&last| now_ms.saturating_sub(last) >= every_s * 1000),
            _ => false,
        }
    }
}

/// One device as the automation sees it: its group and what it reported (telemetry windows,
/// oldest or newest first, and its DDM states).
#[derive(Debug, Clone, Copy)]
pub struct DeviceFeed<'a> {
    pub name: &'a str,
    pub group: &'a str,
    pub windows: &'a [crate::wire::Window],
    pub concept_drift: &'a [crate::wire::ConceptDrift],
}

impl DeviceFeed<'_> {
    /// The module the device runs now: its newest window's.
    pub fn current_module(&self) -> Option<&str> {
        self.windows
            .iter()
            .max_by_key(|w| w.start_ms)
            .and_then(|w| w.model.as_deref())
    }
}

/// What the rules look at: the devices, and the newest version of the retraining dataset
/// (its name and version, or hash: anything that changes when a new version arrives).
#[derive(Debug, Clone, Copy, Default)]
pub struct World<'a> {
    pub devices: &'a [DeviceFeed<'a>],
    pub newest_dataset: Option<&'a str>,
}

/// What a group's devices running `module` reported since `since_ms`, merged.
pub fn observe_group(
    devices: &[DeviceFeed<'_>],
    group: &str,
    module: &str,
    since_ms: u64,
) -> Observation {
    let parts: Vec<Observation> = devices
        .iter()
        .filter(|d| d.group == group)
        .map(|d| Observation::from_windows(d.windows, module, since_ms))
        .collect();
    Observation::merge(&parts)
}

/// A figure a rollout check reads from a group's devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckMetric {
    /// Errors per predict request (lower is better).
    ErrorRate,
    /// 95th percentile latency in milliseconds (lower is better).
    P95LatencyMs,
    /// Live accuracy on the labels received (higher is better).
    LiveAccuracy,
    /// The largest PSI of any feature (lower is better).
    MaxPsi,
}

impl CheckMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckMetric::ErrorRate => "error_rate",
            CheckMetric::P95LatencyMs => "p95_latency_ms",
            CheckMetric::LiveAccuracy => "live_accuracy",
            CheckMetric::MaxPsi => "max_psi",
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(self, CheckMetric::LiveAccuracy)
    }
}

/// One check of a rollout step: the metric must stay at or below (or, for accuracy, at or
/// above) `threshold`, judged only on at least `min_samples` requests (labels, for accuracy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub metric: CheckMetric,
    pub threshold: f64,
    pub min_samples: u64,
}

/// What a group's devices running the candidate reported over a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub requests: u64,
    pub labels: u64,
    pub error_rate: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub live_accuracy: Option<f64>,
    pub max_psi: Option<f64>,
}

impl Observation {
    fn value(&self, m: CheckMetric) -> Option<f64> {
        match m {
            CheckMetric::ErrorRate => self.error_rate,
            CheckMetric::P95LatencyMs => self.p95_latency_ms,
            CheckMetric::LiveAccuracy => self.live_accuracy,
            CheckMetric::MaxPsi => self.max_psi,
        }
    }

    fn samples(&self, m: CheckMetric) -> u64 {
        match m {
            CheckMetric::LiveAccuracy => self.labels,
            _ => self.requests,
        }
    }
}

impl Observation {
    /// What devices reported in their telemetry windows for one module (by hash) from
    /// `since_ms` on: windows that started earlier are left out (they mix in the previous
    /// module's traffic). Rates are over all those windows together; the latency is the 95th
    /// percentile of the merged histogram (its bucket's upper bound, as the device computes it).
    pub fn from_windows<'a>(
        windows: impl IntoIterator<Item = &'a crate::wire::Window>,
        module: &str,
        since_ms: u64,
    ) -> Observation {
        let mut o = Observation::default();
        let (mut errors, mut correct) = (0u64, 0u64);
        let mut buckets: Vec<u64> = Vec::new();
        let mut counts: Vec<u64> = Vec::new();
        for w in windows {
            if w.model.as_deref() != Some(module) || w.start_ms < since_ms {
                continue;
            }
            o.requests += w.requests;
            errors += w.errors.values().sum::<u64>();
            o.labels += w.labeled;
            correct += w.correct;
            if buckets.is_empty() {
                buckets = w.latency_us_buckets.clone();
                counts = vec![0; buckets.len()];
            }
            if w.latency_us_buckets == buckets {
                for (c, n) in counts.iter_mut().zip(&w.latency_us_counts) {
                    *c += n;
                }
            }
            let psi = w
                .drift
                .iter()
                .map(|d| d.psi)
                .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))));
            o.max_psi = match (o.max_psi, psi) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        if o.requests > 0 {
            o.error_rate = Some(errors as f64 / o.requests as f64);
        }
        if o.labels > 0 {
            o.live_accuracy = Some(correct as f64 / o.labels as f64);
        }
        let total: u64 = counts.iter().sum();
        if total > 0 {
            let rank = (total as f64 * 0.95).ceil() as u64;
            let mut seen = 0;
            for (bound, c) in buckets.iter().zip(&counts) {
                seen += c;
                if seen >= rank {
                    o.p95_latency_ms = Some(*bound as f64 / 1000.0);
                    break;
                }
            }
        }
        o
    }

    /// Observations of several devices (a group) together; its p95 is its worst device's.
    pub fn merge(parts: &[Observation]) -> Observation {
        let mut o = Observation::default();
        let (mut errors, mut correct) = (0.0, 0.0);
        for p in parts {
            o.requests += p.requests;
            o.labels += p.labels;
            errors += p.error_rate.unwrap_or(0.0) * p.requests as f64;
            correct += p.live_accuracy.unwrap_or(0.0) * p.labels as f64;
            o.p95_latency_ms = match (o.p95_latency_ms, p.p95_latency_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            o.max_psi = match (o.max_psi, p.max_psi) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        if o.requests > 0 {
            o.error_rate = Some(errors / o.requests as f64);
        }
        if o.labels > 0 {
            o.live_accuracy = Some(correct / o.labels as f64);
        }
        o
    }
}

/// A check's outcome, with its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Pass { detail: String },
    Fail { detail: String },
    NotEnoughData { detail: String },
}

impl Check {
    pub fn judge(&self, obs: &Observation) -> Verdict {
        let name = self.metric.as_str();
        let samples = obs.samples(self.metric);
        let what = if self.metric == CheckMetric::LiveAccuracy {
            "labels"
        } else {
            "requests"
        };
        let value = match obs.value(self.metric) {
            Some(v) if v.is_finite() && samples >= self.min_samples => v,
            _ => {
                return Verdict::NotEnoughData {
                    detail: format!(
                        "{name}: {samples} {what}, {} needed to judge",
                        self.min_samples
                    ),
                }
            }
        };
        let (ok, op) = if self.metric.higher_is_better() {
            (value >= self.threshold, ">=")
        } else {
            (value <= self.threshold, "<=")
        };
        let detail = format!(
            "{name} {value:.4} (on {samples} {what}) {} {op} {}",
            if ok { "is" } else { "is not" },
            self.threshold
        );
        if ok {
            Verdict::Pass { detail }
        } else {
            Verdict::Fail { detail }
        }
    }
}

/// One step of a plan: point the group's alias at the candidate, hold, then judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The alias the step's device group follows (`canary`, `champion`).
    pub alias: String,
    /// Seconds the candidate runs on the group before the checks are judged.
    pub hold_s: u64,
    pub checks: Vec<Check>,
    /// A person approves before the step starts.
    #[serde(default)]
    pub approval: bool,
}

/// A rollout plan: steps over groups, canary first; aborted after `max_failed_checks` failed
/// judgements (each failing judgement of a step counts once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub max_failed_checks: u32,
}

/// Something the caller must do: MLflow alias moves (devices follow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    MoveAlias {
        alias: String,
        version: String,
    },
    /// The alias had no version before the rollout: remove it.
    DeleteAlias {
        alias: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Holding the current step, or about to judge it.
    Running,
    /// Waiting for a person to approve the current step.
    AwaitingApproval,
    /// Not enough data to judge: waits, and says why; judged again on the next tick.
    Paused,
    /// Checks failed: every alias it moved was moved back.
    RolledBack,
    /// Every step passed.
    Completed,
}

/// One logged decision, with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at_ms: u64,
    pub step: usize,
    pub what: String,
    pub verdicts: Vec<Verdict>,
    pub actions: Vec<Action>,
}

/// A rollout in progress (serialisable, so a controller restart picks it up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub candidate: String,
    /// Each alias's version before the rollout moved it (`None`: it had none).
    pub previous: BTreeMap<String, Option<String>>,
    pub step: usize,
    pub step_started_ms: u64,
    pub failed_checks: u32,
    pub state: RolloutState,
    pub log: Vec<Decision>,
}

impl Rollout {
    /// Starts a rollout of `candidate`; `aliases` gives each alias's current version.
    pub fn start(
        plan: &Plan,
        candidate: &str,
        aliases: &BTreeMap<String, String>,
        now_ms: u64,
    ) -> Rollout {
        let previous = plan
            .steps
            .iter()
            .map(|s| (s.alias.clone(), aliases.get(&s.alias).cloned()))
            .collect();
        let mut r = Rollout {
            candidate: candidate.to_string(),
            previous,
            step: 0,
            step_started_ms: now_ms,
            failed_checks: 0,
            state: RolloutState::Running,
            log: Vec::new(),
        };
        r.enter_step(plan, now_ms);
        r
    }

    fn enter_step(&mut self, plan: &Plan, now_ms: u64) {
        let Some(step) = plan.steps.get(self.step) else {
            self.state = RolloutState::Completed;
            self.note(
                now_ms,
                "every step passed: the rollout is complete",
                vec![],
                vec![],
            );
            return;
        };
        if step.approval && self.state != RolloutState::AwaitingApproval {
            self.state = RolloutState::AwaitingApproval;
            let what = format!("step {} ({}) waits for approval", self.step + 1, step.alias);
            self.note(now_ms, &what, vec![], vec![]);
            return;
        }
        self.state = RolloutState::Running;
        self.step_started_ms = now_ms;
        let action = Action::MoveAlias {
            alias: step.alias.clone(),
            version: self.candidate.clone(),
        };
        let what = format!(
            "step {}: {} -> version {} for {} s",
            self.step + 1,
            step.alias,
            self.candidate,
            step.hold_s
        );
        self.note(now_ms, &what, vec![], vec![action]);
    }

    fn note(&mut self, at_ms: u64, what: &str, verdicts: Vec<Verdict>, actions: Vec<Action>) {
        self.log.push(Decision {
            at_ms,
            step: self.step,
            what: what.to_string(),
            verdicts,
            actions,
        });
    }

    /// The actions of the newest decision (what the caller must carry out now).
    pub fn pending_actions(&self) -> &[Action] {
        self.log.last().map(|d| d.actions.as_slice()).unwrap_or(&[])
    }

    /// A person approved the step waiting for it.
    pub fn approve(&mut self, plan: &Plan, now_ms: u64) {
        if self.state == RolloutState::AwaitingApproval {
            self.enter_step(plan, now_ms);
        }
    }

    /// Judges the current step on what its group reported, once its hold has passed. Returns
    /// whether anything was decided (then its actions are [`Rollout::pending_actions`]).
    pub fn tick(&mut self, plan: &Plan, now_ms: u64, obs: &Observation) -> bool {
        if !matches!(self.state, RolloutState::Running | RolloutState::Paused) {
            return false;
        }
        let Some(step) = plan.steps.get(self.step) else {
            return false;
        };
        if now_ms.saturating_sub(self.step_started_ms) < step.hold_s * 1000 {
            return false;
        }
        let verdicts: Vec<Verdict> = step.checks.iter().map(|c| c.judge(obs)).collect();
        let failed = verdicts.iter().any(|v| matches!(v, Verdict::Fail { .. }));
        let missing = verdicts
            .iter()
            .any(|v| matches!(v, Verdict::NotEnoughData { .. }));
        if failed {
            self.failed_checks += 1;
            if self.failed_checks >= plan.max_failed_checks.max(1) {
                let actions = self.rollback_actions();
                self.state = RolloutState::RolledBack;
                let what = format!(
                    "step {} ({}) failed its checks {} times: rolled back",
                    self.step + 1,
                    step.alias,
                    self.failed_checks
                );
                self.note(now_ms, &what, verdicts, actions);
            } else {
                // Judged again after another hold.
                self.step_started_ms = now_ms;
                let what = format!(
                    "step {} ({}) failed its checks ({} of {} allowed): holding again",
                    self.step + 1,
                    step.alias,
                    self.failed_checks,
                    plan.max_failed_checks
                );
                self.note(now_ms, &what, verdicts, vec![]);
            }
            return true;
        }
        if missing {
            if self.state == RolloutState::Paused {
                return false;
            }
            self.state = RolloutState::Paused;
            let what = format!(
                "step {} ({}) paused: not enough data to judge",
                self.step + 1,
                step.alias
            );
            self.note(now_ms, &what, verdicts, vec![]);
            return true;
        }
        let what = format!("step {} ({}) passed its checks", self.step + 1, step.alias);
        self.note(now_ms, &what, verdicts, vec![]);
        self.step += 1;
        self.state = RolloutState::Running;
        self.enter_step(plan, now_ms);
        true
    }

    /// Moves back every alias the rollout moved, newest first.
    fn rollback_actions(&self) -> Vec<Action> {
        let moved: Vec<&String> = self
            .log
            .iter()
            .flat_map(|d| &d.actions)
            .filter_map(|a| match a {
                Action::MoveAlias { alias, version } if *version == self.candidate => Some(alias),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for alias in moved.into_iter().rev() {
            let action = match self.previous.get(alias).cloned().flatten() {
                Some(version) => Action::MoveAlias {
                    alias: alias.clone(),
                    version,
                },
                None => Action::DeleteAlias {
                    alias: alias.clone(),
                },
            };
            if !out.contains(&action) {
                out.push(action);
            }
        }
        out
    }
}

impl CheckMetric {
    pub const ALL: [CheckMetric; 4] = [
        CheckMetric::ErrorRate,
        CheckMetric::P95LatencyMs,
        CheckMetric::LiveAccuracy,
        CheckMetric::MaxPsi,
    ];

    pub fn parse(text: &str) -> Option<CheckMetric> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl std::fmt::Display for Check {
    /// `live_accuracy >= 0.8 min 30` (the form [`Check::parse`] reads).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.metric.higher_is_better() {
            ">="
        } else {
            "<="
        };
        write!(
            f,
            "{} {op} {} min {}",
            self.metric.as_str(),
            self.threshold,
            self.min_samples
        )
    }
}

impl Check {
    /// Reads `error_rate <= 0.01 min 20` (`min N`, the samples needed to judge, is optional:
    /// 1). The operator must be the metric's direction, so a typo cannot invert a check.
    pub fn parse(text: &str) -> Result<Check, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let shown = crate::quote::bounded(text.trim());
        let (metric, op, threshold, rest) = match words.as_slice() {
            [m, op, t, rest @ ..] => (m, op, t, rest),
            _ => {
                return Err(format!(
                    "check {shown}: expected `METRIC <= or >= THRESHOLD [min SAMPLES]`"
                ))
            }
        };
        let metric = CheckMetric::parse(metric).ok_or_else(|| {
            let known: Vec<&str> = CheckMetric::ALL.iter().map(|m| m.as_str()).collect();
            format!(
                "check {shown}: unknown metric {} (one of {})",
                crate::quote::bounded(metric),
                known.join(", ")
            )
        })?;
        let wanted = if metric.higher_is_better() {
            ">="
        } else {
            "<="
        };
        if *op != wanted {
            return Err(format!(
                "check {shown}: {} is judged with `{wanted}`, not {}",
                metric.as_str(),
                crate::quote::bounded(op)
            ));
        }
        let threshold: f64 = threshold
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite())
            .ok_or_else(|| {
                format!(
                    "check {shown}: threshold {} is not a number",
                    crate::quote::bounded(threshold)
                )
            })?;
        let min_samples = match rest {
            [] => 1,
            ["min", n] => n.parse().map_err(|_| {
                format!(
                    "check {shown}: `min` takes a whole number of samples, not {}",
                    crate::quote::bounded(n)
                )
            })?,
            _ => {
                return Err(format!(
                    "check {shown}: after the threshold only `min SAMPLES`"
                ))
            }
        };
        Ok(Check {
            metric,
            threshold,
            min_samples,
        })
    }
}

/// Checks written one after another, separated by `;` or new lines (see [`Check::parse`]).
pub fn parse_checks(text: &str) -> Result<Vec<Check>, String> {
    text.split([';', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Check::parse)
        .collect()
}

/// Checks as [`parse_checks`] reads them.
pub fn checks_text(checks: &[Check]) -> String {
    checks
        .iter()
        .map(Check::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Verdict {
    /// `pass: ...`, `FAIL: ...`, `not enough data: ...`: the verdict in the log's words.
    pub fn reason(&self) -> String {
        match self {
            Verdict::Pass { detail } => format!("pass: {detail}"),
            Verdict::Fail { detail } => format!("FAIL: {detail}"),
            Verdict::NotEnoughData { detail } => format!("not enough data: {detail}"),
        }
    }
}

impl RolloutState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::AwaitingApproval => "awaiting_approval",
            RolloutState::Paused => "paused",
            RolloutState::RolledBack => "rolled_back",
            RolloutState::Completed => "completed",
        }
    }

    pub fn finished(&self) -> bool {
        matches!(self, RolloutState::RolledBack | RolloutState::Completed)
    }
}

/// A rollout in progress with what the loop knows of it: the rule that started it, the
/// candidate's version and module, and how many of its decisions were carried out. What the
/// controller's state file and the tab's IndexedDB keep, so a restart resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Active {
    pub rule: String,
    pub version: String,
    /// The candidate module's sha256 (the windows' `model`).
    pub module: String,
    pub rollout: Rollout,
    /// Decisions of `rollout.log` already carried out and recorded.
    pub done: usize,
    /// The plan it follows (the tab names its plans; the controller has one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plan: String,
    /// Held by a person: not judged, no step entered, until resumed.
    #[serde(default)]
    pub held: bool,
}

impl Active {
    /// The next decision to carry out, if any.
    pub fn next_decision(&self) -> Option<&Decision> {
        self.rollout.log.get(self.done)
    }

    /// Judges the current step, unless held by a person (then nothing is decided).
    pub fn tick(&mut self, plan: &Plan, now_ms: u64, obs: &Observation) -> bool {
        !self.held && self.rollout.tick(plan, now_ms, obs)
    }
}

/// What the loop keeps between polls: each rule's firings and the rollout in progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    pub rules: BTreeMap<String, RuleState>,
    pub rollout: Option<Active>,
}

/// One entry of the automation's log: what was decided, and why in words and figures. The
/// controller writes these as JSON lines; the tab keeps them in IndexedDB and shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub at_ms: u64,
    /// The same instant, RFC 3339 UTC.
    pub time: String,
    /// `rule_fired`, `rule_held`, `retrain`, `gate`, `registered`, `rollout`, `resume`,
    /// `error`.
    pub event: String,
    pub what: String,
    /// In words and figures.
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub figures: serde_json::Value,
}

impl LogEntry {
    pub fn new(
        at_ms: u64,
        event: &str,
        what: &str,
        reasons: Vec<String>,
        figures: serde_json::Value,
    ) -> LogEntry {
        LogEntry {
            at_ms,
            time: rfc3339(at_ms),
            event: event.into(),
            what: what.into(),
            reasons,
            figures,
        }
    }

    /// The log entry of a rollout decision of `active`.
    pub fn of_decision(active: &Active, d: &Decision) -> LogEntry {
        LogEntry::new(
            d.at_ms,
            "rollout",
            &format!("version {}: {}", active.version, d.what),
            d.verdicts.iter().map(Verdict::reason).collect(),
            serde_json::json!({"version": active.version, "step": d.step,
                   "verdicts": d.verdicts, "actions": d.actions,
                   "rollout_state": active.rollout.state.as_str()}),
        )
    }
}

/// One short line per gate rule: `pass accuracy >= 0.8: candidate 0.9667, champion v1
/// 0.3667, required 0.8000, margin +0.1667`.
pub fn gate_summary(r: &crate::gate::GateReport, champion: &str) -> String {
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

/// A retraining rule as the tab keeps it: the rule, what it retrains (a run's spec, on the
/// newest version of a dataset), the model it registers, the gate and the plan it rolls out by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSetup {
    pub rule: Rule,
    /// The run whose spec is retrained (its id, for the record) and the spec itself (the JSON
    /// `wasmops train --spec` takes).
    pub run_id: String,
    pub spec: serde_json::Value,
    /// The dataset's name: its newest version is retrained on.
    pub dataset: String,
    /// The registered model the candidate becomes a version of; its `champion` is the baseline.
    pub model: String,
    /// Gate rules (`wasmops gate --rule` texts).
    pub gate: Vec<String>,
    /// The plan (by name) a candidate that passed rolls out by.
    pub plan: String,
    #[serde(default)]
    pub paused: bool,
}

/// A rollout plan as the tab keeps it: its steps and the device group each step's alias
/// stands for (devices of that group get the version and judge it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSetup {
    pub name: String,
    pub plan: Plan,
    /// One per step: the device group it deploys to and judges on.
    pub groups: Vec<String>,
}

/// Everything the tab's automation is told: rules, plans, which device is in which group,
/// and how it reads telemetry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    pub rules: Vec<RuleSetup>,
    pub plans: Vec<PlanSetup>,
    /// Device URL -> group.
    pub groups: BTreeMap<String, String>,
    /// Telemetry window length the rules and checks read, in seconds.
    #[serde(default = "default_window_s")]
    pub window_s: u64,
    /// Seconds between two looks at the devices.
    #[serde(default = "default_every_s")]
    pub every_s: u64,
}

fn default_window_s() -> u64 {
    60
}
fn default_every_s() -> u64 {
    5
}

impl Setup {
    /// What would stop the loop from running, named: a plan step without devices, a rule with
    /// an unknown plan or a bad gate rule, two rules or plans with one name.
    pub fn check(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for p in &self.plans {
            if p.name.trim().is_empty() {
                return Err("a plan needs a name".into());
            }
            if !names.insert(p.name.as_str()) {
                return Err(format!("two plans are named `{}`", p.name));
            }
            if p.plan.steps.is_empty() {
                return Err(format!("plan `{}` has no steps", p.name));
            }
            if p.groups.len() != p.plan.steps.len() {
                return Err(format!(
                    "plan `{}`: every step needs a device group",
                    p.name
                ));
            }
            for (i, g) in p.groups.iter().enumerate() {
                if !self.groups.values().any(|x| x == g) {
                    return Err(format!(
                        "plan `{}` step {} ({}): no device is in group `{g}`",
                        p.name,
                        i + 1,
                        p.plan.steps[i].alias
                    ));
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for r in &self.rules {
            let n = &r.rule.name;
            if n.trim().is_empty() {
                return Err("a rule needs a name".into());
            }
            if !names.insert(n.as_str()) {
                return Err(format!("two rules are named `{n}`"));
            }
            if !self.plans.iter().any(|p| p.name == r.plan) {
                return Err(format!("rule `{n}`: no plan named `{}`", r.plan));
            }
            crate::gate::parse_rules(&r.gate).map_err(|e| format!("rule `{n}`: gate: {e}"))?;
            if r.model.is_empty() || r.model.contains('/') {
                return Err(format!(
                    "rule `{n}`: the model name must be non-empty and without `/`"
                ));
            }
            if let Trigger::Schedule { every_s: 0 } = r.rule.trigger {
                return Err(format!("rule `{n}`: a schedule needs a period above 0 s"));
            }
        }
        if self.window_s == 0 || self.every_s == 0 {
            return Err("the telemetry window and the poll period must be above 0 s".into());
        }
        Ok(())
    }

    pub fn plan(&self, name: &str) -> Option<&PlanSetup> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// The devices of `group`, by URL.
    pub fn members<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.groups
            .iter()
            .filter(move |(_, g)| *g == group)
            .map(|(u, _)| u.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let checks = vec![
            Check {
                metric: CheckMetric::ErrorRate,
                threshold: 0.01,
                min_samples: 100,
            },
            Check {
                metric: CheckMetric::LiveAccuracy,
                threshold: 0.8,
                min_samples: 20,
            },
        ];
        Plan {
            steps: vec![
                Step {
                    alias: "canary".into(),
                    hold_s: 60,
                    checks: checks.clone(),
                    approval: false,
                },
                Step {
                    alias: "champion".into(),
                    hold_s: 60,
                    checks,
                    approval: true,
                },
            ],
            max_failed_checks: 2,
        }
    }

    fn good() -> Observation {
        Observation {
            requests: 500,
            labels: 50,
            error_rate: Some(0.0),
            live_accuracy: Some(0.95),
            ..Observation::default()
        }
    }

    fn aliases() -> BTreeMap<String, String> {
        [("champion".to_string(), "3".to_string())].into()
    }

    #[test]
    fn rules_keep_their_cooldown_and_daily_cap() {
        let rule = Rule {
            name: "drift".into(),
            trigger: Trigger::Drift { group: None },
            cooldown_s: 600,
            daily_cap: 2,
        };
        let mut s = RuleState::default();
        rule.may_fire(&s, 0).unwrap();
        rule.fired(&mut s, 0);
        assert!(matches!(
            rule.may_fire(&s, 599_000),
            Err(Held::Cooldown { ago_s: 599, .. })
        ));
        rule.fired(&mut s, 600_000);
        assert!(matches!(
            rule.may_fire(&s, 1_300_000),
            Err(Held::Cap { count: 2, cap: 2 })
        ));
        // A day after the first firing, one slot is free again.
        rule.may_fire(&s, DAY_MS + 1).unwrap();
        let sched = Rule {
            trigger: Trigger::Schedule { every_s: 3600 },
            ..rule
        };
        assert!(sched.due(&RuleState::default(), 5));
        assert!(!sched.due(&s, 600_000 + 3_599_000));
        assert!(sched.due(&s, 600_000 + 3_600_000));
    }

    #[test]
    fn a_good_candidate_goes_canary_then_waits_for_approval_then_champion() {
        let p = plan();
        let mut r = Rollout::start(&p, "4", &aliases(), 0);
        assert_eq!(
            r.pending_actions(),
            [Action::MoveAlias {
                alias: "canary".into(),
                version: "4".into()
            }]
        );
        assert!(
            !r.tick(&p, 59_000, &good()),
            "nothing is judged before the hold passed"
        );
        assert!(r.tick(&p, 60_000, &good()));
        assert_eq!(r.state, RolloutState::AwaitingApproval);
        assert!(r.pending_actions().is_empty());
        r.approve(&p, 70_000);
        assert_eq!(
            r.pending_actions(),
            [Action::MoveAlias {
                alias: "champion".into(),
                version: "4".into()
            }]
        );
        assert!(r.tick(&p, 130_000, &good()));
        assert_eq!(r.state, RolloutState::Completed);
    }

    #[test]
    fn failing_checks_roll_back_every_alias_moved_and_say_by_how_much() {
        let p = Plan {
            steps: p_no_approval(),
            max_failed_checks: 2,
        };
        let mut r = Rollout::start(&p, "4", &aliases(), 0);
        assert!(r.tick(&p, 60_000, &good()));
        assert_eq!(
            r.pending_actions(),
            [Action::MoveAlias {
                alias: "champion".into(),
                version: "4".into()
            }]
        );
        let bad = Observation {
            live_accuracy: Some(0.4),
            ..good()
        };
        assert!(r.tick(&p, 120_000, &bad));
        assert_eq!(r.state, RolloutState::Running, "one failure of two allowed");
        assert!(
            !r.tick(&p, 150_000, &bad),
            "judged again only after another hold"
        );
        assert!(r.tick(&p, 180_000, &bad));
        assert_eq!(r.state, RolloutState::RolledBack);
        assert_eq!(
            r.pending_actions(),
            [
                Action::MoveAlias {
                    alias: "champion".into(),
                    version: "3".into()
                },
                Action::DeleteAlias {
                    alias: "canary".into()
                },
            ]
        );
        let last = r.log.last().unwrap();
        assert!(last.verdicts.iter().any(|v| matches!(v, Verdict::Fail { detail } if detail.contains("0.4000") && detail.contains(">= 0.8"))));
    }

    fn p_no_approval() -> Vec<Step> {
        plan()
            .steps
            .into_iter()
            .map(|s| Step {
                approval: false,
                ..s
            })
            .collect()
    }

    fn window(
        start_ms: u64,
        model: &str,
        requests: u64,
        errors: u64,
        labeled: u64,
        correct: u64,
        psi: f64,
    ) -> crate::wire::Window {
        serde_json::from_value(serde_json::json!({
            "start_ms": start_ms, "end_ms": start_ms + 1000, "model": model,
            "requests": requests, "rows": requests, "errors": {"timeout": errors},
            "latency_us_buckets": [100, 1000, 10000], "latency_us_counts": [requests - requests / 10, requests / 10, 0],
            "latency_p50_us": 100, "latency_p95_us": 1000, "latency_p99_us": 1000,
            "predictions": {}, "drift": [{"feature": "x", "counts": [], "psi": psi, "js": 0.0, "level": "ok"}],
            "dataset_drift": false, "labeled": labeled, "correct": correct, "accuracy": null
        }))
        .unwrap()
    }

    #[test]
    fn windows_of_the_candidate_since_the_step_make_the_observation() {
        let ws = [
            window(0, "new", 1000, 1000, 10, 0, 9.0), // before the step: left out
            window(5000, "old", 1000, 1000, 10, 0, 9.0), // another module: left out
            window(5000, "new", 100, 1, 10, 9, 0.05),
            window(6000, "new", 100, 3, 10, 7, 0.2),
        ];
        let o = Observation::from_windows(&ws, "new", 5000);
        assert_eq!((o.requests, o.labels), (200, 20));
        assert_eq!(o.error_rate, Some(0.02));
        assert_eq!(o.live_accuracy, Some(0.8));
        assert_eq!(o.max_psi, Some(0.2));
        // 90 % of requests in the 100 us bucket, 10 % in the 1 ms one: p95 is 1 ms.
        assert_eq!(o.p95_latency_ms, Some(1.0));
        let none = Observation::from_windows(&ws, "new", 10_000);
        assert_eq!(
            (none.requests, none.error_rate, none.p95_latency_ms),
            (0, None, None)
        );
        let g = Observation::merge(&[
            o.clone(),
            Observation {
                requests: 200,
                error_rate: Some(0.0),
                ..Observation::default()
            },
        ]);
        assert_eq!(g.requests, 400);
        assert_eq!(g.error_rate, Some(0.01));
        assert_eq!(g.live_accuracy, Some(0.8));
    }

    #[test]
    fn too_little_data_pauses_and_resumes_when_it_arrives() {
        let p = plan();
        let mut r = Rollout::start(&p, "4", &aliases(), 0);
        let quiet = Observation {
            requests: 3,
            labels: 0,
            error_rate: Some(0.0),
            ..Observation::default()
        };
        assert!(r.tick(&p, 60_000, &quiet));
        assert_eq!(r.state, RolloutState::Paused);
        let why = &r.log.last().unwrap().verdicts;
        assert!(why.iter().any(|v| matches!(v, Verdict::NotEnoughData { detail } if detail.contains("3 requests, 100 needed"))));
        assert!(!r.tick(&p, 70_000, &quiet), "a pause is logged once");
        assert!(r.tick(&p, 80_000, &good()));
        assert_eq!(r.state, RolloutState::AwaitingApproval);
    }

    fn feed<'a>(
        name: &'a str,
        group: &'a str,
        windows: &'a [crate::wire::Window],
        ddm: &'a [crate::wire::ConceptDrift],
    ) -> DeviceFeed<'a> {
        DeviceFeed {
            name,
            group,
            windows,
            concept_drift: ddm,
        }
    }

    fn drifting(start_ms: u64, model: &str, level: &str) -> crate::wire::Window {
        let mut w = window(start_ms, model, 200, 0, 0, 0, 0.6);
        for d in &mut w.drift {
            d.level = serde_json::from_value(serde_json::json!(level)).unwrap();
        }
        w
    }

    fn rule(trigger: Trigger) -> Rule {
        Rule {
            name: "r".into(),
            trigger,
            cooldown_s: 600,
            daily_cap: 3,
        }
    }

    #[test]
    fn a_drift_rule_fires_on_its_group_for_the_module_running_now() {
        let alerting: Vec<_> = (0..3).map(|i| drifting(i * 1000, "m2", "alert")).collect();
        let quiet: Vec<_> = (0..3).map(|i| drifting(i * 1000, "m2", "ok")).collect();
        // Drift of an older module, then the device moved on to m3.
        let mut moved_on: Vec<_> = (0..3).map(|i| drifting(i * 1000, "m2", "alert")).collect();
        moved_on.push(drifting(5000, "m3", "ok"));
        let r = rule(Trigger::Drift {
            group: Some("canary".into()),
        });
        let mut s = RuleState::default();
        let devices = [feed("fleet-1", "fleet", &alerting, &[])];
        assert_eq!(
            r.triggered(
                &mut s,
                &World {
                    devices: &devices,
                    newest_dataset: None
                },
                0
            ),
            None,
            "another group"
        );
        let devices = [
            feed("canary-1", "canary", &quiet, &[]),
            feed("fleet-1", "fleet", &alerting, &[]),
        ];
        assert_eq!(
            r.triggered(
                &mut s,
                &World {
                    devices: &devices,
                    newest_dataset: None
                },
                0
            ),
            None
        );
        let devices = [feed("canary-1", "canary", &moved_on, &[])];
        assert_eq!(
            r.triggered(
                &mut s,
                &World {
                    devices: &devices,
                    newest_dataset: None
                },
                0
            ),
            None,
            "not the module it runs now"
        );
        let devices = [feed("canary-1", "canary", &alerting, &[])];
        let why = r
            .triggered(
                &mut s,
                &World {
                    devices: &devices,
                    newest_dataset: None,
                },
                0,
            )
            .unwrap();
        assert!(
            why[0].contains("drift alert on canary-1 (group canary)"),
            "{why:?}"
        );
        assert!(why[0].contains("PSI"), "{why:?}");
    }

    #[test]
    fn a_ddm_rule_fires_on_concept_drift_of_the_running_module_only() {
        let ws = [window(0, "m2", 100, 0, 50, 20, 0.0)];
        let ddm = |model: &str, state: &str| crate::wire::ConceptDrift {
            model: model.into(),
            samples: 120,
            error_rate: 0.6,
            state: serde_json::from_value(serde_json::json!(state)).unwrap(),
        };
        let r = rule(Trigger::ConceptDrift { group: None });
        let mut s = RuleState::default();
        for (d, fires) in [
            (ddm("m2", "warning"), false),
            (ddm("m1", "drift"), false),
            (ddm("m2", "drift"), true),
        ] {
            let list = [d];
            let devices = [feed("c", "canary", &ws, &list)];
            let got = r.triggered(
                &mut s,
                &World {
                    devices: &devices,
                    newest_dataset: None,
                },
                0,
            );
            assert_eq!(got.is_some(), fires, "{list:?}: {got:?}");
            if let Some(why) = got {
                assert!(
                    why[0].contains("DDM concept drift on c")
                        && why[0].contains("error rate 0.6000 over 120"),
                    "{why:?}"
                );
            }
        }
    }

    #[test]
    fn a_new_dataset_rule_fires_on_a_newer_version_than_it_last_saw_or_trained_on() {
        let r = rule(Trigger::NewDataset);
        let mut s = RuleState::default();
        fn world(d: Option<&str>) -> World<'_> {
            World {
                devices: &[],
                newest_dataset: d,
            }
        }
        assert_eq!(r.triggered(&mut s, &world(None), 0), None);
        assert_eq!(
            r.triggered(&mut s, &world(Some("iris.csv v1")), 0),
            None,
            "the first version seen is the baseline"
        );
        assert_eq!(s.trained_on.as_deref(), Some("iris.csv v1"));
        let why = r.triggered(&mut s, &world(Some("iris.csv v2")), 0).unwrap();
        assert_eq!(
            why,
            ["new dataset version iris.csv v2 (last retrained on iris.csv v1)"]
        );
        r.retrained_on(&mut s, "iris.csv v2");
        assert_eq!(r.triggered(&mut s, &world(Some("iris.csv v2")), 0), None);
    }

    #[test]
    fn a_schedule_rule_fires_when_due() {
        let r = rule(Trigger::Schedule { every_s: 60 });
        let mut s = RuleState::default();
        let w = World::default();
        assert_eq!(
            r.triggered(&mut s, &w, 1_000).unwrap(),
            ["schedule: every 60 s"]
        );
        r.fired(&mut s, 1_000);
        assert_eq!(r.triggered(&mut s, &w, 60_999), None);
        assert!(r.triggered(&mut s, &w, 61_000).is_some());
    }

    #[test]
    fn a_failed_retrain_keeps_no_cooldown_but_counts_against_the_cap() {
        let r = rule(Trigger::Schedule { every_s: 1 });
        let mut s = RuleState::default();
        r.may_fire(&s, 0).unwrap();
        r.fired(&mut s, 0);
        r.retrain_failed(&mut s, 0);
        // Triggered again a second later: not cooling down.
        r.may_fire(&s, 1_000).unwrap();
        r.fired(&mut s, 1_000);
        r.retrain_failed(&mut s, 1_000);
        r.fired(&mut s, 2_000);
        assert!(
            matches!(r.may_fire(&s, 3_000), Err(Held::Cooldown { .. })),
            "a retrain that went through holds the cooldown"
        );
        assert!(
            matches!(r.may_fire(&s, 700_000), Err(Held::Cap { count: 3, cap: 3 })),
            "failures count against the cap"
        );
    }

    #[test]
    fn checks_read_and_print_as_text() {
        let c = Check::parse("live_accuracy >= 0.8 min 30").unwrap();
        assert_eq!(
            c,
            Check {
                metric: CheckMetric::LiveAccuracy,
                threshold: 0.8,
                min_samples: 30
            }
        );
        assert_eq!(Check::parse(&c.to_string()).unwrap(), c);
        assert_eq!(Check::parse("error_rate <= 0.01").unwrap().min_samples, 1);
        let two =
            parse_checks("error_rate <= 0.01 min 20;\n live_accuracy >= 0.8 min 30;").unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(parse_checks(&checks_text(&two)).unwrap(), two);
        assert!(parse_checks("error_rate <= 0.01; p95 <= 3")
            .unwrap_err()
            .contains("`p95`"));
        for (bad, says) in [
            ("error_rate >= 0.01", "judged with `<=`"),
            ("accuracy >= 0.8", "unknown metric `accuracy`"),
            ("max_psi <= x", "not a number"),
            ("max_psi <= 0.2 min -1", "whole number"),
            ("max_psi", "expected"),
        ] {
            let e = Check::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_held_rollout_decides_nothing_until_resumed() {
        let p = Plan {
            steps: p_no_approval(),
            max_failed_checks: 1,
        };
        let mut a = Active {
            rule: "r".into(),
            version: "4".into(),
            module: "new".into(),
            rollout: Rollout::start(&p, "4", &aliases(), 0),
            done: 1,
            plan: "p".into(),
            held: true,
        };
        assert!(!a.tick(&p, 120_000, &good()));
        assert!(a.next_decision().is_none());
        a.held = false;
        assert!(a.tick(&p, 120_000, &good()));
        let d = a.next_decision().unwrap().clone();
        let e = LogEntry::of_decision(&a, &d);
        assert!(
            e.what.starts_with("version 4: step 1 (canary) passed"),
            "{e:?}"
        );
        assert!(e.reasons[0].starts_with("pass: error_rate"), "{e:?}");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_761_722_123), "2026-11-27T06:42:02.123Z");
    }

    #[test]
    fn a_setup_that_cannot_run_is_refused_with_its_reason() {
        let plan = PlanSetup {
            name: "canary first".into(),
            plan: plan(),
            groups: vec!["canary".into(), "fleet".into()],
        };
        let rule = RuleSetup {
            rule: rule(Trigger::Drift {
                group: Some("canary".into()),
            }),
            run_id: "run-1".into(),
            spec: serde_json::json!({}),
            dataset: "iris.csv".into(),
            model: "iris".into(),
            gate: vec!["accuracy >= 0.8".into()],
            plan: "canary first".into(),
            paused: false,
        };
        let ok = Setup {
            rules: vec![rule.clone()],
            plans: vec![plan.clone()],
            groups: [
                ("http://a".to_string(), "canary".to_string()),
                ("http://b".to_string(), "fleet".to_string()),
            ]
            .into(),
            window_s: 2,
            every_s: 1,
        };
        ok.check().unwrap();
        assert_eq!(ok.members("fleet").collect::<Vec<_>>(), ["http://b"]);
        let back: Setup = serde_json::from_value(serde_json::to_value(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
        let mut no_fleet = ok.clone();
        no_fleet.groups.remove("http://b");
        assert!(no_fleet
            .check()
            .unwrap_err()
            .contains("step 2 (champion): no device is in group `fleet`"));
        let mut bad_gate = ok.clone();
        bad_gate.rules[0].gate = vec!["accuracy >== 0.8".into()];
        assert!(bad_gate.check().unwrap_err().contains("rule `r`: gate"));
        let mut no_plan = ok.clone();
        no_plan.rules[0].plan = "other".into();
        assert!(no_plan
            .check()
            .unwrap_err()
            .contains("no plan named `other`"));
        let mut twice = ok;
        twice.rules.push(rule);
        assert!(twice
            .check()
            .unwrap_err()
            .contains("two rules are named `r`"));
    }
}
