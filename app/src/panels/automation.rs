//! The Automation page: the unattended loop of [`crate::automation`] as a person sees and
//! steers it. The rollout in progress with its Approve and Hold buttons, the device groups the
//! plans deploy to, the plan and rule editors, and the automation's log (every decision with
//! its reasons and figures).

mod groups;
mod log;
mod plans;
mod rules;

use leptos::prelude::*;

use crate::automation::{use_automation, Automation};
use crate::panels::registry::clock;
use wasmops_shared::automation::RolloutState;

#[component]
pub fn AutomationPage() -> impl IntoView {
    view! {
        <section class="panel" id="automation-panel">
            <h2>"Automation"</h2>
            <p class="muted">
                "Rules watch what the devices report (drift, DDM concept drift on their labels), new dataset versions, or a clock. When one fires, its run's spec is retrained on the newest version of its dataset in this tab, gated against the model's "
                <code>"champion"</code>
                ", registered as "
                <code>"challenger"</code>
                " and rolled out by its plan: step by step over device groups, canary first, each step judged on the group's telemetry and rolled back on its own when its checks fail. It runs while this tab is open; "
                <code>"wasmops controller"</code>
                " runs the same rules without a tab."
            </p>
            <LoopStatus />
        </section>
        <RolloutPanel />
        <groups::GroupsPanel />
        <plans::PlansPanel />
        <rules::RulesPanel />
        <log::LogPanel />
    }
}

#[component]
fn LoopStatus() -> impl IntoView {
    let auto = use_automation();
    view! {
        <p data-testid="automation-status">
            {move || {
                let s = auto.setup.get();
                let active = s.rules.iter().filter(|r| !r.paused).count();
                let elsewhere = if auto.loaded.get() && !auto.leader.get() {
                    "The loop runs in another tab of this dashboard (this tab takes over when that one closes). "
                } else {
                    ""
                };
                let what = match auto.busy.get() {
                    Some(b) => format!("Working: {b}."),
                    None if s.groups.is_empty() => "Idle: put devices into groups below to start watching them.".to_string(),
                    None => format!(
                        "Watching {} devices every {} s (windows of {} s); {active} of {} rules active.",
                        s.groups.len(), s.every_s, s.window_s, s.rules.len()
                    ),
                };
                format!("{elsewhere}{what}")
            }}
            {move || auto.last_look.get().map(|(at, missing)| view! {
                <span class="muted">{format!(" Last look {}.", clock(at))}</span>
                {(!missing.is_empty()).then(|| view! {
                    <span class="error" data-testid="automation-unreachable">{format!(" Not read: {}.", missing.join("; "))}</span>
                })}
            })}
        </p>
    }
}

/// The rollout in progress: where it is, why, and the buttons that steer it.
#[component]
fn RolloutPanel() -> impl IntoView {
    let auto: Automation = use_automation();
    view! {
        <section class="panel" id="rollout-panel" data-testid="rollout">
            <h2>"Rollout in progress"</h2>
            {move || match auto.state.get().rollout {
                None => view! { <p class="muted" data-testid="rollout-state">"None: a rule that fires and passes its gate starts one."</p> }.into_any(),
                Some(a) => {
                    let plan = auto.setup.with(|s| s.plan(&a.plan).cloned());
                    let steps = plan.as_ref().map(|p| p.plan.steps.len()).unwrap_or(0);
                    let step_text = plan.as_ref().and_then(|p| {
                        let s = p.plan.steps.get(a.rollout.step)?;
                        Some(format!("step {} of {steps}: `{}` on group `{}`, {} s hold", a.rollout.step + 1, s.alias, p.groups.get(a.rollout.step).cloned().unwrap_or_default(), s.hold_s))
                    }).unwrap_or_else(|| "every step done".into());
                    let waiting = a.rollout.state == RolloutState::AwaitingApproval;
                    let state_word = if a.held { "held".to_string() } else { a.rollout.state.as_str().replace('_', " ") };
                    let last = a.rollout.log.last().cloned();
                    let held = a.held;
                    view! {
                        <p>
                            <strong data-testid="rollout-version">{format!("version {} ", a.version)}</strong>
                            {format!("(module {}) by rule `{}`, plan `{}`: ", wasmops_shared::digest::short(&a.module), a.rule, a.plan)}
                            <span data-testid="rollout-step">{step_text}</span>
                            " · "
                            <strong data-testid="rollout-state" class=if waiting { "error" } else { "" }>{state_word}</strong>
                            {format!(" · failed checks {}", a.rollout.failed_checks)}
                        </p>
                        <div class="actions">
                            {waiting.then(|| view! {
                                <button id="rollout-approve" on:click=move |_| crate::automation::approve(auto)>"Approve this step"</button>
                            })}
                            <button id="rollout-hold" class="secondary" on:click=move |_| crate::automation::hold(auto, !held)>
                                {if held { "Resume" } else { "Hold" }}
                            </button>
                        </div>
                        {last.map(|d| view! {
                            <p class="muted" data-testid="rollout-last">{format!("Last decision: {}", d.what)}</p>
                            <ul class="reasons">
                                {d.verdicts.iter().map(|v| view! { <li>{v.reason()}</li> }).collect_view()}
                            </ul>
                        })}
                    }.into_any()
                }
            }}
        </section>
    }
}
