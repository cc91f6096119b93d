//! Logs page: the dashboard's log lines, filtered by level and text, exported as a text file.

use leptos::prelude::*;

use crate::logs::{Level, LogLine};
use crate::state::use_app_state;

#[component]
pub fn LogsPage() -> impl IntoView {
    let state = use_app_state();
    let level = RwSignal::new(Level::Info);
    let text = RwSignal::new(String::new());
    let shown = Memo::new(move |_| {
        let min = level.get();
        let needle = text.get().to_lowercase();
        state.logs.with(|lines| {
            lines
                .iter()
                .rev()
                .filter(|l| l.level >= min)
                .filter(|l| {
                    needle.is_empty()
                        || l.message.to_lowercase().contains(&needle)
                        || l.source.contains(needle.as_str())
                })
                .cloned()
                .collect::<Vec<LogLine>>()
        })
    });
    let export_url = RwSignal::new(None::<String>);
    // How much of the browser's storage the dashboard uses (refreshed when the page opens).
    let usage = LocalResource::new(move || {
        let shown = state.page.get() == crate::state::Page::Logs;
        async move {
            if shown {
                crate::storage::usage().await
            } else {
                None
            }
        }
    });
    let export = move |_| {
        let body: String =
            shown.with_untracked(|lines| lines.iter().rev().map(|l| l.to_text() + "\n").collect());
        match crate::panels::runs::bytes_url(body.as_bytes(), "text/plain") {
            Ok(url) => export_url.set(Some(url)),
            Err(e) => crate::logs::error("logs", format!("export failed: {e}")),
        }
    };
    view! {
        <section class="panel" id="logs-panel">
            <h2>"Logs"</h2>
            <div class="actions logs-filter">
                <label class="inline">"Level at least "
                    <select id="log-level" on:change=move |ev| level.set(Level::parse(&event_target_value(&ev)))>
                        {Level::ALL.into_iter().map(|l| view! {
                            <option value=l.as_str() selected=l == Level::Info>{l.as_str()}</option>
                        }).collect_view()}
                    </select>
                </label>
                <input id="log-filter" class="filter" placeholder="text or source, e.g. deploy"
                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev)) />
                <button id="log-export" class="secondary" on:click=export>"Export shown lines"</button>
                {move || export_url.get().map(|url| view! { <a id="log-download" href=url download="wasmops-log.txt">"download wasmops-log.txt"</a> })}
            </div>
            {move || usage.get().flatten().map(|(used, quota)| view! {
                <p class="count" data-testid="storage-usage">{format!(
                    "browser storage: {} of {} used ({:.1}%)",
                    crate::storage::megabytes(used), crate::storage::megabytes(quota), 100.0 * used / quota.max(1.0)
                )}</p>
            })}
            <p class="count" data-testid="log-count">{move || format!("{} of {} lines (newest first; info and above are kept across reloads)", shown.with(Vec::len), state.logs.with(Vec::len))}</p>
            <table class="runs logs" data-testid="logs">
                <thead><tr><th>"Time"</th><th>"Level"</th><th>"Source"</th><th>"Message"</th></tr></thead>
                <tbody>
                    <For each=move || shown.get() key=|l| l.id.clone() let:l>
                        <tr class=format!("log-{}", l.level.as_str())>
                            <td class="mono">{clock_ms(l.ts_ms)}</td>
                            <td class="level">{l.level.as_str()}</td>
                            <td class="mono">{l.source.clone()}</td>
                            <td>{l.message.clone()}</td>
                        </tr>
                    </For>
                </tbody>
            </table>
        </section>
    }
}

/// Local clock time with milliseconds.
fn clock_ms(ms: f64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms));
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds(),
        d.get_milliseconds()
    )
}
