//! Retraining rules: their list (with pause and resume, and when each last fired) and their
//! editor (trigger, the run whose spec is retrained, cooldown, daily cap, gate, plan).

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::automation::{Rule, RuleSetup, Trigger};

use crate::automation::use_automation;
use crate::panels::registry::clock;
use crate::state::use_app_state;

const DEFAULT_GATE: &str = "accuracy >= 0.8\naccuracy min_absolute_change 0.0";

fn trigger_text(t: &Trigger) -> String {
    let group = |g: &Option<String>| {
        g.as_ref()
            .map_or("any device".into(), |g| format!("group {g}"))
    };
    match t {
        Trigger::Drift { group: g } => format!("drift alert on {}", group(g)),
        Trigger::ConceptDrift { group: g } => format!("DDM concept drift on {}", group(g)),
        Trigger::NewDataset => "a new dataset version".into(),
        Trigger::Schedule { every_s } => format!("every {every_s} s"),
    }
}

#[component]
pub fn RulesPanel() -> impl IntoView {
    let app = use_app_state();
    let auto = use_automation();
    let name = RwSignal::new("drift-on-canary".to_string());
    let trigger = RwSignal::new("drift".to_string());
    let group = RwSignal::new("canary".to_string());
    let every = RwSignal::new("86400".to_string());
    let run = RwSignal::new(String::new());
    let model = RwSignal::new(String::new());
    let cooldown = RwSignal::new("3600".to_string());
    let cap = RwSignal::new("4".to_string());
    let gate = RwSignal::new(DEFAULT_GATE.to_string());
    let plan = RwSignal::new(String::new());
    let message = RwSignal::new(None::<(bool, String)>);
    // Finished runs, newest first: a rule retrains one of them.
    let runs = Memo::new(move |_| {
        app.runs.with(|r| {
            let mut v: Vec<_> = r.iter().filter(|r| r.is_finished()).cloned().collect();
            v.sort_by(|a, b| b.started_at_ms.total_cmp(&a.started_at_ms));
            v
        })
    });
    // Defaults once there is something to choose: the newest run, the first plan, a model
    // with a champion.
    Effect::new(move |_| {
        if run.get_untracked().is_empty() {
            if let Some(r) = runs.get().first() {
                run.set(r.id.clone());
            }
        }
        if plan.get_untracked().is_empty() {
            if let Some(p) = auto.setup.get().plans.first() {
                plan.set(p.name.clone());
            }
        }
        if model.get_untracked().is_empty() {
            if let Some(a) = app.aliases.get().iter().find(|a| a.alias == "champion") {
                model.set(a.model.clone());
            }
        }
    });
    let chosen_dataset = move || {
        let id = run.get();
        runs.with(|r| {
            r.iter()
                .find(|r| r.id == id)
                .map(|r| r.dataset.name.clone())
        })
    };
    let edit = move |r: RuleSetup| {
        name.set(r.rule.name.clone());
        match &r.rule.trigger {
            Trigger::Drift { group: g } => {
                trigger.set("drift".into());
                group.set(g.clone().unwrap_or_default());
            }
            Trigger::ConceptDrift { group: g } => {
                trigger.set("concept_drift".into());
                group.set(g.clone().unwrap_or_default());
            }
            Trigger::NewDataset => trigger.set("new_dataset".into()),
            Trigger::Schedule { every_s } => {
                trigger.set("schedule".into());
                every.set(every_s.to_string());
            }
        }
        run.set(r.run_id.clone());
        model.set(r.model.clone());
        cooldown.set(r.rule.cooldown_s.to_string());
        cap.set(r.rule.daily_cap.to_string());
        gate.set(r.gate.join("\n"));
        plan.set(r.plan.clone());
        message.set(None);
    };
    let save = move |_| {
        let draft = async move {
            let n = name.get_untracked().trim().to_string();
            let num = |what: &str, text: String| {
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{what}: a whole number, not `{}`", text.trim()))
            };
            let g = group.get_untracked().trim().to_string();
            let g = (!g.is_empty()).then_some(g);
            let trigger = match trigger.get_untracked().as_str() {
                "drift" => Trigger::Drift { group: g },
                "concept_drift" => Trigger::ConceptDrift { group: g },
                "new_dataset" => Trigger::NewDataset,
                _ => Trigger::Schedule {
                    every_s: num("every", every.get_untracked())?,
                },
            };
            let id = run.get_untracked();
            let summary = runs
                .get_untracked()
                .into_iter()
                .find(|r| r.id == id)
                .ok_or("choose the run whose spec the rule retrains")?;
            let spec = wasmops_trainer::run::spec_of_params(&summary.params)
                .map_err(|e| format!("run {}: {e}", summary.name))?;
            let cap = num("daily cap", cap.get_untracked())?;
            let r = RuleSetup {
                rule: Rule {
                    name: n.clone(),
                    trigger,
                    cooldown_s: num("cooldown", cooldown.get_untracked())?,
                    daily_cap: u32::try_from(cap)
                        .map_err(|_| "daily cap: too large".to_string())?,
                },
                run_id: summary.id.clone(),
                spec: serde_json::to_value(&spec).map_err(|e| e.to_string())?,
                dataset: summary.dataset.name.clone(),
                model: model.get_untracked().trim().to_string(),
                gate: gate
                    .get_untracked()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
                plan: plan.get_untracked(),
                paused: false,
            };
            let mut setup = auto.setup.get_untracked();
            match setup.rules.iter_mut().find(|x| x.rule.name == n) {
                Some(x) => {
                    let paused = x.paused;
                    *x = RuleSetup { paused, ..r };
                }
                None => setup.rules.push(r),
            }
            crate::automation::save_setup(auto, setup).await?;
            Ok::<_, String>(n)
        };
        spawn_local(async move {
            match draft.await {
                Ok(n) => message.set(Some((true, format!("Rule `{n}` saved: it is watching.")))),
                Err(e) => message.set(Some((false, e))),
            }
        });
    };
    let change = move |n: String, delete: bool| {
        spawn_local(async move {
            let mut setup = auto.setup.get_untracked();
            if delete {
                setup.rules.retain(|r| r.rule.name != n);
            } else if let Some(r) = setup.rules.iter_mut().find(|r| r.rule.name == n) {
                r.paused = !r.paused;
            }
            if let Err(e) = crate::automation::save_setup(auto, setup).await {
                message.set(Some((false, format!("rule `{n}` not changed: {e}"))));
            }
        });
    };
    view! {
        <section class="panel" id="rules-panel">
            <h2>"Retraining rules"</h2>
            <table class="runs" data-testid="rules">
                <thead><tr><th>"Rule"</th><th>"Trigger"</th><th>"Retrains"</th><th>"Gate"</th><th>"Plan"</th><th>"Limits"</th><th>"Last fired"</th><th></th></tr></thead>
                <tbody>
                    {move || auto.setup.get().rules.into_iter().map(|r| {
                        let fired = auto.state.with(|s| s.rules.get(&r.rule.name).and_then(|s| s.fired_ms.last().copied()));
                        let (n1, n2, r1) = (r.rule.name.clone(), r.rule.name.clone(), r.clone());
                        let run_name = app.runs.with(|runs| runs.iter().find(|x| x.id == r.run_id).map(|x| x.name.clone()).unwrap_or_else(|| r.run_id.clone()));
                        view! {
                            <tr data-rule=r.rule.name.clone() class:paused=r.paused>
                                <td>{r.rule.name.clone()}{r.paused.then(|| view! { <span class="muted" data-testid="rule-paused">" (paused)"</span> })}</td>
                                <td>{trigger_text(&r.rule.trigger)}</td>
                                <td>{format!("{run_name}'s spec on the newest {}, as {}", r.dataset, r.model)}</td>
                                <td class="mono">{r.gate.join("; ")}</td>
                                <td>{r.plan.clone()}</td>
                                <td>{format!("cooldown {} s, at most {} a day", r.rule.cooldown_s, r.rule.daily_cap)}</td>
                                <td>{fired.map(|t| clock(t as f64)).unwrap_or_else(|| "never".into())}</td>
                                <td>
                                    <button class="secondary rule-pause" on:click=move |_| change(n1.clone(), false)>{if r.paused { "Resume" } else { "Pause" }}</button>
                                    <button class="secondary rule-edit" on:click=move |_| edit(r1.clone())>"Edit"</button>
                                    <button class="danger rule-delete" on:click=move |_| change(n2.clone(), true)>"Delete"</button>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <h3>"Rule editor"</h3>
            <div class="form inline-form">
                <label>"Name"<input id="rule-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) /></label>
                <label>"Trigger"
                    <select id="rule-trigger" prop:value=move || trigger.get() on:change=move |ev| trigger.set(event_target_value(&ev))>
                        <option value="drift">"drift alert (2 of the last 3 windows)"</option>
                        <option value="concept_drift">"DDM concept drift on labels"</option>
                        <option value="new_dataset">"new dataset version"</option>
                        <option value="schedule">"schedule"</option>
                    </select>
                </label>
                <Show when=move || matches!(trigger.get().as_str(), "drift" | "concept_drift")>
                    <label>"On device group (empty: any)"<input id="rule-group" prop:value=move || group.get() on:input=move |ev| group.set(event_target_value(&ev)) /></label>
                </Show>
                <Show when=move || trigger.get() == "schedule">
                    <label>"Every (s)"<input id="rule-every" prop:value=move || every.get() on:input=move |ev| every.set(event_target_value(&ev)) /></label>
                </Show>
                <label>"Retrain the spec of run"
                    <select id="rule-run" prop:value=move || run.get() on:change=move |ev| run.set(event_target_value(&ev))>
                        {move || runs.get().into_iter().map(|r| {
                            let id = r.id.clone();
                            view! {
                                <option value=r.id.clone() selected=move || run.get() == id>{format!("{} · {}", r.name, r.dataset.name)}</option>
                            }
                        }).collect_view()}
                    </select>
                </label>
                <label>"Register as model"<input id="rule-model" prop:value=move || model.get() on:input=move |ev| model.set(event_target_value(&ev)) /></label>
                <label>"Cooldown (s)"<input id="rule-cooldown" prop:value=move || cooldown.get() on:input=move |ev| cooldown.set(event_target_value(&ev)) /></label>
                <label>"Daily cap"<input id="rule-cap" prop:value=move || cap.get() on:input=move |ev| cap.set(event_target_value(&ev)) /></label>
                <label>"Roll out by plan"
                    <select id="rule-plan" prop:value=move || plan.get() on:change=move |ev| plan.set(event_target_value(&ev))>
                        {move || auto.setup.get().plans.into_iter().map(|p| {
                            let name = p.name.clone();
                            view! { <option value=p.name.clone() selected=move || plan.get() == name>{p.name.clone()}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <label class="wide">"Gate against the champion (one rule a line, MLflow's MetricThreshold)"
                    <textarea id="rule-gate" rows="3" prop:value=move || gate.get() on:input=move |ev| gate.set(event_target_value(&ev))></textarea>
                </label>
            </div>
            <p class="muted" data-testid="rule-dataset">{move || chosen_dataset().map(|d| format!("Retrains on the newest version of {d} stored here."))}</p>
            <div class="actions">
                <button id="rule-save" on:click=save>"Save rule"</button>
                {move || message.get().map(|(ok, t)| view! { <span class=if ok { "ok" } else { "error" } data-testid="rule-message">{t}</span> })}
            </div>
        </section>
    }
}
