//! Add or edit a device: URL, token, name and telemetry window.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::logic::device_form;
use crate::state::use_app_state;
use crate::storage::{Storage, DEFAULT_WINDOW_S};

#[component]
pub fn DeviceForm() -> impl IntoView {
    let state = use_app_state();
    let name = RwSignal::new(String::new());
    let url = RwSignal::new(String::new());
    let token = RwSignal::new(String::new());
    let window = RwSignal::new(DEFAULT_WINDOW_S.to_string());
    let error = RwSignal::new(None::<String>);
    // Editing a device: its settings fill the form.
    Effect::new(move |_| {
        if let Some(sel) = state.selected_device.get() {
            if let Some(d) = state
                .devices
                .with_untracked(|all| all.iter().find(|d| d.url == sel).cloned())
            {
                name.set(d.name);
                url.set(d.url);
                token.set(d.token);
                window.set(d.window_s.to_string());
            }
        }
    });
    let save = move |_| {
        let typed = device_form::DeviceForm {
            name: name.get_untracked(),
            url: url.get_untracked(),
            token: token.get_untracked(),
            window: window.get_untracked(),
        };
        let entry = match state
            .devices
            .with_untracked(|all| typed.entry(all, js_sys::Date::now()))
        {
            Ok(entry) => entry,
            Err(e) => return error.set(Some(e)),
        };
        error.set(None);
        spawn_local(async move {
            match async { Storage::open().await?.put_device(&entry).await }.await {
                Ok(()) => {
                    crate::tabs::post(&crate::tabs::TabMessage::Devices);
                    state
                        .devices
                        .update(|all| match all.iter_mut().find(|d| d.url == entry.url) {
                            Some(d) => *d = entry.clone(),
                            None => all.push(entry.clone()),
                        });
                    state.selected_device.set(Some(entry.url.clone()));
                }
                Err(e) => error.set(Some(format!("device not saved: {e}"))),
            }
        });
    };
    view! {
        <div class="form device-form">
            <label>"Name" <input id="device-name" placeholder="gateway-1" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) /></label>
            <label>"URL" <input id="device-url" placeholder="http://127.0.0.1:7878" prop:value=move || url.get() on:input=move |ev| url.set(event_target_value(&ev)) /></label>
            <label>"Token" <input id="device-token" type="password" prop:value=move || token.get() on:input=move |ev| token.set(event_target_value(&ev)) /></label>
            <label>"Telemetry window (s)" <input id="device-window" prop:value=move || window.get() on:input=move |ev| window.set(event_target_value(&ev)) /></label>
        </div>
        <div class="actions">
            <button id="device-save" on:click=save>"Save device"</button>
        </div>
        {move || error.get().map(|e| view! { <p class="error" data-testid="device-form-error">{e}</p> })}
    }
}
