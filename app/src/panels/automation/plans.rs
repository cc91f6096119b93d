//! Rollout plans: their list and their editor (steps over device groups, canary first, a hold
//! per step, checks with thresholds, abort after N failed checks, optional approval).

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasmops_shared::automation::{checks_text, parse_checks, Plan, PlanSetup, Step};

use crate::automation::use_automation;

/// One step as typed.
#[derive(Clone, Copy)]
struct StepDraft {
    alias: RwSignal<String>,
    group: RwSignal<String>,
    hold: RwSignal<String>,
    checks: RwSignal<String>,
    approval: RwSignal<bool>,
}

impl StepDraft {
    fn new(alias: &str, group: &str, hold: u64, checks: &str, approval: bool) -> StepDraft {
        StepDraft {
            alias: RwSignal::new(alias.into()),
            group: RwSignal::new(group.into()),
            hold: RwSignal::new(hold.to_string()),
            checks: RwSignal::new(checks.into()),
            approval: RwSignal::new(approval),
        }
    }

    fn step(&self, i: usize) -> Result<(Step, String), String> {
        let n = i + 1;
        let alias = self.alias.get_untracked().trim().to_string();
        let group = self.group.get_untracked().trim().to_string();
        if alias.is_empty() || group.is_empty() {
            return Err(format!("step {n}: an alias and a device group are needed"));
        }
        let hold = self.hold.get_untracked();
        let hold_s = hold.trim().parse::<u64>().map_err(|_| {
            format!(
                "step {n}: hold is a whole number of seconds, not `{}`",
                hold.trim()
            )
        })?;
        let checks =
            parse_checks(&self.checks.get_untracked()).map_err(|e| format!("step {n}: {e}"))?;
        Ok((
            Step {
                alias,
                hold_s,
                checks,
                approval: self.approval.get_untracked(),
            },
            group,
        ))
    }
}

fn default_steps() -> Vec<StepDraft> {
    vec![
        StepDraft::new(
            "canary",
            "canary",
            60,
            "error_rate <= 0.01 min 20; live_accuracy >= 0.8 min 30",
            false,
        ),
        StepDraft::new("champion", "fleet", 60, "error_rate <= 0.01 min 20", false),
    ]
}

#[component]
pub fn PlansPanel() -> impl IntoView {
    let auto = use_automation();
    let name = RwSignal::new("canary first".to_string());
    let max_failed = RwSignal::new("2".to_string());
    let steps = RwSignal::new(default_steps());
    let message = RwSignal::new(None::<(bool, String)>);
    let edit = move |p: PlanSetup| {
        name.set(p.name.clone());
        max_failed.set(p.plan.max_failed_checks.to_string());
        steps.set(
            p.plan
                .steps
                .iter()
                .zip(&p.groups)
                .map(|(s, g)| {
                    StepDraft::new(&s.alias, g, s.hold_s, &checks_text(&s.checks), s.approval)
                })
                .collect(),
        );
        message.set(None);
    };
    let save = move |_| {
        let draft = async move {
            let n = name.get_untracked().trim().to_string();
            let max = max_failed.get_untracked();
            let max_failed_checks = max
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|m| *m > 0)
                .ok_or_else(|| {
                    format!(
                        "abort after: a whole number of failed checks above 0, not `{}`",
                        max.trim()
                    )
                })?;
            let mut plan = Plan {
                steps: Vec::new(),
                max_failed_checks,
            };
            let mut groups = Vec::new();
            for (i, d) in steps.get_untracked().iter().enumerate() {
                let (s, g) = d.step(i)?;
                plan.steps.push(s);
                groups.push(g);
            }
            let mut setup = auto.setup.get_untracked();
            let new = PlanSetup {
                name: n.clone(),
                plan,
                groups,
            };
            match setup.plans.iter_mut().find(|p| p.name == n) {
                Some(p) => *p = new,
                None => setup.plans.push(new),
            }
            crate::automation::save_setup(auto, setup).await?;
            Ok::<_, String>(n)
        };
        spawn_local(async move {
            match draft.await {
                Ok(n) => message.set(Some((true, format!("Plan `{n}` saved.")))),
                Err(e) => message.set(Some((false, e))),
            }
        });
    };
    let delete = move |n: String| {
        spawn_local(async move {
            let mut setup = auto.setup.get_untracked();
            setup.plans.retain(|p| p.name != n);
            if let Err(e) = crate::automation::save_setup(auto, setup).await {
                message.set(Some((false, format!("plan `{n}` not deleted: {e}"))));
            }
        });
    };
    view! {
        <section class="panel" id="plans-panel">
            <h2>"Rollout plans"</h2>
            <table class="runs" data-testid="plans">
                <thead><tr><th>"Plan"</th><th>"Steps"</th><th>"Abort after"</th><th></th></tr></thead>
                <tbody>
                    {move || auto.setup.get().plans.into_iter().map(|p| {
                        let steps_text = p.plan.steps.iter().zip(&p.groups).enumerate().map(|(i, (s, g))| format!(
                            "{}. {} on group {} for {} s{}{}",
                            i + 1, s.alias, g, s.hold_s,
                            if s.checks.is_empty() { String::new() } else { format!(", checks {}", checks_text(&s.checks)) },
                            if s.approval { ", after approval" } else { "" }
                        )).collect::<Vec<_>>();
                        let (p1, p2) = (p.clone(), p.name.clone());
                        view! {
                            <tr data-plan=p.name.clone()>
                                <td>{p.name.clone()}</td>
                                <td>{steps_text.into_iter().map(|t| view! { <div>{t}</div> }).collect_view()}</td>
                                <td>{format!("{} failed checks", p.plan.max_failed_checks)}</td>
                                <td>
                                    <button class="secondary plan-edit" on:click=move |_| edit(p1.clone())>"Edit"</button>
                                    <button class="danger plan-delete" on:click=move |_| delete(p2.clone())>"Delete"</button>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <h3>"Plan editor"</h3>
            <div class="form inline-form">
                <label>"Name"<input id="plan-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) /></label>
                <label>"Abort (roll back) after failed checks"<input id="plan-max-failed" prop:value=move || max_failed.get() on:input=move |ev| max_failed.set(event_target_value(&ev)) /></label>
            </div>
            <p class="muted">"Checks, separated by `;`: error_rate <= X, p95_latency_ms <= X, live_accuracy >= X, max_psi <= X, each with `min N` samples (requests, or labels for accuracy) needed to judge; fewer pauses the step and says so."</p>
            <div class="plan-steps">
                {move || steps.get().into_iter().enumerate().map(|(i, d)| view! {
                    <div class="plan-step form inline-form" data-step=i>
                        <strong>{format!("Step {}", i + 1)}</strong>
                        <label>"Alias"<input class="step-alias" prop:value=move || d.alias.get() on:input=move |ev| d.alias.set(event_target_value(&ev)) /></label>
                        <label>"Device group"<input class="step-group" prop:value=move || d.group.get() on:input=move |ev| d.group.set(event_target_value(&ev)) /></label>
                        <label>"Hold (s)"<input class="step-hold" prop:value=move || d.hold.get() on:input=move |ev| d.hold.set(event_target_value(&ev)) /></label>
                        <label class="wide">"Checks"<input class="step-checks" prop:value=move || d.checks.get() on:input=move |ev| d.checks.set(event_target_value(&ev)) /></label>
                        <label class="check"><input type="checkbox" class="step-approval" prop:checked=move || d.approval.get() on:change=move |ev| d.approval.set(event_target_checked(&ev)) />"approval first"</label>
                        <button class="secondary step-remove" on:click=move |_| steps.update(|s| { if i < s.len() { s.remove(i); } })>"Remove"</button>
                    </div>
                }).collect_view()}
            </div>
            <div class="actions">
                <button id="plan-add-step" class="secondary" on:click=move |_| steps.update(|s| s.push(StepDraft::new("", "", 60, "error_rate <= 0.01 min 20", false)))>"Add step"</button>
                <button id="plan-save" on:click=save>"Save plan"</button>
                {move || message.get().map(|(ok, t)| view! { <span class=if ok { "ok" } else { "error" } data-testid="plan-message">{t}</span> })}
            </div>
        </section>
    }
}
