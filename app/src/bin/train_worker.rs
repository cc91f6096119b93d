//! The training worker: a second wasm binary that trunk loads as a classic Web Worker.
//!
//! It announces `Ready` once its wasm is loaded (a message posted earlier would be lost), then
//! trains one request per message. Training is synchronous inside the worker, so the page
//! stays responsive; cancelling is `Worker::terminate()` on the page side.

use wasm_bindgen::prelude::*;
use wasmops_app::protocol::{Envelope, TrainRequest, WorkerMessage};
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

fn main() {
    console_error_panic_hook::set_once();
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let post_scope = scope.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let post = |msg: WorkerMessage| {
            let (message, transfer) = msg.into_envelope().to_js();
            let _ = post_scope.post_message_with_transfer(&message, &transfer);
        };
        let req = match Envelope::from_js(&event.data()).and_then(TrainRequest::from_envelope) {
            Ok(r) => r,
            Err(error) => return post(WorkerMessage::Failed { error }),
        };
        let result = wasmops_app::training::train(
            &req,
            |stage, fraction| {
                post(WorkerMessage::Progress {
                    stage: stage.to_string(),
                    fraction,
                })
            },
            js_sys::Date::now,
        );
        match result {
            Ok(run) => post(WorkerMessage::Done { run: Box::new(run) }),
            Err(error) => post(WorkerMessage::Failed { error }),
        }
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    let (ready, transfer) = WorkerMessage::Ready.into_envelope().to_js();
    let _ = scope.post_message_with_transfer(&ready, &transfer);
}
