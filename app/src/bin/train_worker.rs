//! The training worker: a second wasm binary that trunk loads as a classic Web Worker.
//!
//! It announces `Ready` once its wasm is loaded (a message posted earlier would be lost), then
//! trains one request per message. Training is synchronous inside the worker, so the page
//! stays responsive; cancelling is `Worker::terminate()` on the page side. The page keeps the
//! worker between jobs; the worker keeps the last imported dataset it received, and a request
//! without its dataset means that one (the page knows what it sent).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasmops_app::protocol::{Envelope, KMeansRun, TrainRequest, WorkerMessage};
use wasmops_shared::dataset::Dataset;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

thread_local! {
    /// The last imported dataset received: (`csv:<hash>`, its rows).
    static DATASET: RefCell<Option<(String, Rc<Dataset>)>> = const { RefCell::new(None) };
}

/// The request's dataset: the one it carries (then kept), the kept one (`true`), or `None` for
/// a built-in.
fn dataset_of(req: &mut TrainRequest) -> Result<(Option<Rc<Dataset>>, bool), String> {
    if let Some(data) = req.data.take() {
        let data = Rc::new(data);
        if req.dataset.starts_with("csv:") {
            DATASET.with(|d| *d.borrow_mut() = Some((req.dataset.clone(), data.clone())));
        }
        return Ok((Some(data), false));
    }
    if !req.dataset.starts_with("csv:") {
        return Ok((None, false));
    }
    DATASET.with(|d| match &*d.borrow() {
        Some((name, data)) if *name == req.dataset => Ok((Some(data.clone()), true)),
        _ => Err(format!(
            "the training worker does not hold the dataset {}: train again",
            req.dataset
        )),
    })
}

/// A part of a job on the request's dataset (`data`, else the built-in named `dataset`).
fn part(
    data: &Option<Rc<Dataset>>,
    dataset: &str,
    work: impl FnOnce(&Dataset) -> Result<WorkerMessage, String>,
) -> WorkerMessage {
    let result = match data {
        Some(d) => work(d),
        None => wasmops_trainer::datasets::builtin(dataset).and_then(|d| work(&d)),
    };
    result.unwrap_or_else(|error| WorkerMessage::Failed { error })
}

fn main() {
    console_error_panic_hook::set_once();
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let post_scope = scope.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let post = |msg: WorkerMessage| {
            let (message, transfer) = msg.into_envelope().to_js();
            let _ = post_scope.post_message_with_transfer(&message, &transfer);
        };
        let mut req = match Envelope::from_js(&event.data()).and_then(TrainRequest::from_envelope) {
            Ok(r) => r,
            Err(error) => return post(WorkerMessage::Failed { error }),
        };
        let (data, kept) = match dataset_of(&mut req) {
            Ok(d) => d,
            Err(error) => return post(WorkerMessage::Failed { error }),
        };
        // A part of a k-means job: only the runs asked for.
        if let Some(runs) = req.kmeans_runs.clone() {
            return post(part(&data, &req.dataset, |data| {
                let fits = wasmops_trainer::kmeans_runs(data, &req.spec, &runs)
                    .map_err(|e| e.to_string())?;
                Ok(WorkerMessage::KMeansRuns {
                    runs: fits.iter().map(|(r, f)| KMeansRun::of(*r, f)).collect(),
                })
            }));
        }
        let result = wasmops_app::training::train(
            &req,
            data.as_deref(),
            kept,
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
