//! Several tabs of the dashboard open at once (they share one IndexedDB): which one does a job
//! that must run once (a Web Lock), and how the others learn what it stored (a
//! `BroadcastChannel`).
//!
//! Messages carry no data, only what to read again: the stored record is the truth, and a tab
//! that missed a message still reads the right thing at its next reload.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::{closure::Closure, JsCast, JsValue};

/// The channel every tab of this dashboard (one origin) listens on.
const CHANNEL: &str = "wasmops-tabs";

/// What one tab tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TabMessage {
    /// The automation's loop state and log were saved: read them again.
    AutomationState,
    /// The automation's setup (groups, plans, rules) was saved: read it again.
    AutomationSetup,
    /// What the tab running the loop is doing (`None`: waiting for its next look).
    AutomationBusy { what: Option<String> },
    /// A person in another tab approved the step waiting for approval.
    AutomationApprove,
    /// A person in another tab held or resumed the rollout.
    AutomationHold { held: bool },
    /// A dataset was imported, renamed or deleted.
    Datasets,
    /// A device was added or changed.
    Devices,
}

thread_local! {
    static CHANNEL_HANDLE: RefCell<Option<web_sys::BroadcastChannel>> = const { RefCell::new(None) };
}

fn channel() -> Option<web_sys::BroadcastChannel> {
    CHANNEL_HANDLE.with(|c| {
        if c.borrow().is_none() {
            *c.borrow_mut() = web_sys::BroadcastChannel::new(CHANNEL).ok();
        }
        c.borrow().clone()
    })
}

/// Tells every other tab (a tab does not hear its own messages). Without `BroadcastChannel`
/// the other tabs see the change at their next reload.
pub fn post(message: &TabMessage) {
    let (Some(channel), Ok(text)) = (channel(), serde_json::to_string(message)) else {
        return;
    };
    let _ = channel.post_message(&JsValue::from_str(&text));
}

/// Calls `handler` with each message another tab posts, for the page's lifetime.
pub fn listen(handler: impl Fn(TabMessage) + 'static) {
    let Some(channel) = channel() else {
        return;
    };
    let on_message =
        Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
            let message = e
                .data()
                .as_string()
                .and_then(|t| serde_json::from_str::<TabMessage>(&t).ok());
            if let Some(m) = message {
                handler(m);
            }
        });
    channel
        .add_event_listener_with_callback("message", on_message.as_ref().unchecked_ref())
        .ok();
    // Listens as long as the page lives.
    on_message.forget();
}

/// Runs `job` holding the browser-wide Web Lock `name`: of all the dashboard's tabs, one at a
/// time runs it, the others wait in line (the lock is freed when the job ends or its tab
/// closes). A browser without Web Locks just runs it. `None` if the lock was lost before the
/// job started.
pub async fn exclusive<T: 'static>(
    name: &str,
    job: impl std::future::Future<Output = T> + 'static,
) -> Option<T> {
    let locks = web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w.navigator(), &"locks".into()).ok())
        .filter(|l| l.is_object());
    let request = locks.as_ref().and_then(|l| {
        js_sys::Reflect::get(l, &"request".into())
            .ok()
            .and_then(|r| r.dyn_into::<js_sys::Function>().ok())
    });
    let (Some(locks), Some(request)) = (locks, request) else {
        return Some(job.await);
    };
    let job = Rc::new(RefCell::new(Some(job)));
    let out = Rc::new(RefCell::new(None));
    let (job2, out2) = (job.clone(), out.clone());
    let callback = Closure::once(move |_lock: JsValue| -> js_sys::Promise {
        let job = job2.borrow_mut().take();
        wasm_bindgen_futures::future_to_promise(async move {
            if let Some(job) = job {
                *out2.borrow_mut() = Some(job.await);
            }
            Ok(JsValue::UNDEFINED)
        })
    });
    if let Ok(p) = request.call2(&locks, &name.into(), callback.as_ref().unchecked_ref()) {
        let _ = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(p)).await;
    }
    drop(callback);
    let done = out.borrow_mut().take();
    if done.is_some() {
        return done;
    }
    // The lock could not be taken: run it without, if it has not started.
    let pending = job.borrow_mut().take();
    match pending {
        Some(job) => Some(job.await),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Other tabs (perhaps of another build, during an update) parse what this one posts.
    #[test]
    fn messages_keep_their_json() {
        for (m, json) in [
            (
                TabMessage::AutomationState,
                r#"{"kind":"automation_state"}"#,
            ),
            (
                TabMessage::AutomationBusy {
                    what: Some("retraining".into()),
                },
                r#"{"kind":"automation_busy","what":"retraining"}"#,
            ),
            (
                TabMessage::AutomationHold { held: true },
                r#"{"kind":"automation_hold","held":true}"#,
            ),
            (TabMessage::Datasets, r#"{"kind":"datasets"}"#),
        ] {
            assert_eq!(serde_json::to_string(&m).unwrap(), json);
            assert_eq!(serde_json::from_str::<TabMessage>(json).unwrap(), m);
        }
    }
}
