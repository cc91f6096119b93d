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
    /// When it fired, newest last (only the last 24 hours are kept).
    pub fired_ms: Vec<u64>,
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
        state.fired_ms.push(now_ms);
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
}
