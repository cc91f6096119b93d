//! The automation's log: every decision, newest first, with its reasons (which rule fired and
//! why, the gate's figures rule by rule, each check's values, what each device said).

use leptos::prelude::*;
use wasmops_shared::automation::LogEntry;

use crate::automation::use_automation;
use crate::panels::registry::clock;

/// Entries shown (the newest).
const SHOWN: usize = 100;

/// Gate figures, one line per rule, when the entry carries a gate report.
fn gate_lines(e: &LogEntry) -> Vec<String> {
    let Some(results) = e.figures.get("results").and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    let num = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |v| format!("{v:.4}"));
    results
        .iter()
        .map(|r| {
            format!(
                "{} {}: candidate {}, champion {}, required {}, margin {}",
                if r["passed"].as_bool() == Some(true) {
                    "pass"
                } else {
                    "FAIL"
                },
                r["rule"].as_str().unwrap_or_default(),
                num(&r["candidate"]),
                num(&r["baseline"]),
                num(&r["required"]),
                r["margin"]
                    .as_f64()
                    .map_or("-".into(), |m| format!("{m:+.4}")),
            )
        })
        .collect()
}

#[component]
pub fn LogPanel() -> impl IntoView {
    let auto = use_automation();
    view! {
        <section class="panel" id="automation-log-panel">
            <h2>"Automation log"</h2>
            <p class="muted">"Every decision with its reasons, newest first. The same entries as the controller's decision log."</p>
            <ol class="automation-log" data-testid="automation-log">
                {move || {
                    let log = auto.log.get();
                    if log.is_empty() {
                        return view! { <li class="muted">"Nothing decided yet."</li> }.into_any();
                    }
                    log.iter().rev().take(SHOWN).map(|e| {
                        let gate = gate_lines(e);
                        let class = if e.event == "error" || e.what.contains("FAILED") || e.what.contains("rolled back") || e.reasons.iter().any(|r| r.starts_with("FAIL")) {
                            "log-entry bad"
                        } else {
                            "log-entry"
                        };
                        view! {
                            <li class=class data-event=e.event.clone()>
                                <span class="muted mono">{clock(e.at_ms as f64)}</span>" "
                                <span class="event">{e.event.replace('_', " ")}</span>" "
                                <span class="what">{e.what.clone()}</span>
                                {(!(e.reasons.is_empty() && gate.is_empty())).then(|| view! {
                                    <ul class="reasons">
                                        {e.reasons.iter().chain(&gate).map(|r| view! { <li>{r.clone()}</li> }).collect_view()}
                                    </ul>
                                })}
                            </li>
                        }
                    }).collect_view().into_any()
                }}
            </ol>
        </section>
    }
}
