//! The training worker: a second wasm binary that trunk loads as a classic Web Worker.
//!
//! It announces `Ready` once its wasm is loaded (a message posted earlier would be lost), then
//! trains one request per message. Training is synchronous inside the worker, so the page
//! stays responsive; cancelling is `Worker::terminate()` on the page side.

use wasm_bindgen::prelude::*;
use wasmops_app::protocol::{TrainRequest, WorkerMessage};
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

fn main() {
    console_error_panic_hook::set_once();
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let post_scope = scope.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let post = |msg: &WorkerMessage| {
            let text = serde_json::to_string(msg).expect("worker messages serialize");
            let _ = post_scope.post_message(&JsValue::from_str(&text));
        };
        let Some(text) = event.data().as_string() else {
            post(&WorkerMessage::Failed {
                error: "worker received a non-text message".into(),
            });
            return;
        };
        let req: TrainRequest = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                post(&WorkerMessage::Failed {
                    error: format!("malformed training request: {e}"),
                });
                return;
            }
        };
        let result = wasmops_app::training::train(
            &req,
            |stage, fraction| {
                post(&WorkerMessage::Progress {
                    stage: stage.to_string(),
                    fraction,
                })
            },
            js_sys::Date::now,
        );
        match result {
            Ok(run) => post(&WorkerMessage::Done { run: Box::new(run) }),
            Err(error) => post(&WorkerMessage::Failed { error }),
        }
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    let ready = serde_json::to_string(&WorkerMessage::Ready).expect("worker messages serialize");
    let _ = scope.post_message(&JsValue::from_str(&ready));
}
