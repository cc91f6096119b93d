//! Which device is in which group (plans deploy to groups, drift rules watch them), and how the
//! loop reads telemetry.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::automation::use_automation;
use crate::state::use_app_state;

#[component]
pub fn GroupsPanel() -> impl IntoView {
    let app = use_app_state();
    let auto = use_automation();
    // Per device URL, the group typed (empty: not watched).
    let typed = RwSignal::new(BTreeMap::<String, String>::new());
    let window_s = RwSignal::new(String::new());
    let every_s = RwSignal::new(String::new());
    let message = RwSignal::new(None::<(bool, String)>);
    Effect::new(move |_| {
        if auto.loaded.get() {
            let s = auto.setup.get_untracked();
            typed.set(s.groups.clone());
            window_s.set(s.window_s.to_string());
            every_s.set(s.every_s.to_string());
        }
    });
    let save = move |_| {
        let mut setup = auto.setup.get_untracked();
        let parse = |what: &str, text: String| {
            text.trim()
                .parse::<u64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| {
                    format!(
                        "{what}: a whole number of seconds above 0, not `{}`",
                        text.trim()
                    )
                })
        };
        let parsed = parse("window", window_s.get_untracked())
            .and_then(|w| Ok((w, parse("every", every_s.get_untracked())?)));
        let (w, e) = match parsed {
            Ok(x) => x,
            Err(e) => return message.set(Some((false, e))),
        };
        setup.window_s = w;
        setup.every_s = e;
        setup.groups = typed
            .get_untracked()
            .into_iter()
            .map(|(u, g)| (u, g.trim().to_string()))
            .filter(|(_, g)| !g.is_empty())
            .collect();
        spawn_local(async move {
            let n = setup.groups.len();
            match crate::automation::save_setup(auto, setup).await {
                Ok(()) => message.set(Some((true, format!("Saved: {n} devices watched.")))),
                Err(e) => message.set(Some((false, e))),
            }
        });
    };
    view! {
        <section class="panel" id="groups-panel">
            <h2>"Device groups"</h2>
            <p class="muted">"A plan's step deploys to a group and is judged on its devices' telemetry; a drift rule can watch one group. Devices are added on the Devices page."</p>
            <table class="runs">
                <thead><tr><th>"Device"</th><th>"URL"</th><th>"Group"</th></tr></thead>
                <tbody>
                    {move || app.devices.get().into_iter().map(|d| {
                        let url = d.url.clone();
                        let url2 = d.url.clone();
                        view! {
                            <tr data-device=d.url.clone()>
                                <td>{d.name.clone()}</td>
                                <td class="mono">{d.url.clone()}</td>
                                <td><input class="device-group" data-device=d.url.clone() placeholder="not watched"
                                    prop:value=move || typed.with(|t| t.get(&url).cloned().unwrap_or_default())
                                    on:input=move |ev| { let v = event_target_value(&ev); typed.update(|t| { t.insert(url2.clone(), v); }); } /></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <div class="form inline-form">
                <label>"Telemetry window (s)"<input id="auto-window" prop:value=move || window_s.get() on:input=move |ev| window_s.set(event_target_value(&ev)) /></label>
                <label>"Look every (s)"<input id="auto-every" prop:value=move || every_s.get() on:input=move |ev| every_s.set(event_target_value(&ev)) /></label>
            </div>
            <div class="actions">
                <button id="groups-save" on:click=save>"Save groups"</button>
                {move || message.get().map(|(ok, t)| view! { <span class=if ok { "ok" } else { "error" } data-testid="groups-message">{t}</span> })}
            </div>
        </section>
    }
}
