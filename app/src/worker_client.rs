//! Page side of the training worker: start it, wait for `Ready`, send one request, stream
//! progress to a callback, and stop it (terminate) on cancel or when done.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker};

use crate::protocol::{Envelope, TrainRequest, WorkerMessage};
use crate::run::Run;

/// The loader script trunk generates for the `train_worker` binary.
const WORKER_URL: &str = "./train_worker_loader.js";

/// Where the job's single result goes; taken by whichever comes first (result, crash, cancel).
type ResultSlot = Rc<RefCell<Option<oneshot::Sender<Result<Run, String>>>>>;

/// A training job in a dedicated worker. Dropping it does not stop it; call [`TrainJob::cancel`].
#[derive(Clone)]
pub struct TrainJob {
    worker: Worker,
    done: ResultSlot,
}

impl TrainJob {
    /// Starts a worker and sends it `req` once it is ready. The returned receiver yields the
    /// finished run or an error; `on_progress(stage, fraction)` is called in between.
    pub fn start(
        req: TrainRequest,
        on_progress: impl Fn(String, f64) + 'static,
    ) -> Result<(TrainJob, oneshot::Receiver<Result<Run, String>>), String> {
        let worker = Worker::new(WORKER_URL)
            .map_err(|e| format!("could not start the training worker: {e:?}"))?;
        let (tx, rx) = oneshot::channel();
        let done = Rc::new(RefCell::new(Some(tx)));
        let job = TrainJob {
            worker: worker.clone(),
            done: done.clone(),
        };
        let request = req.into_envelope()?;
        let w = worker.clone();
        let finish = move |result: Result<Run, String>| {
            if let Some(tx) = done.borrow_mut().take() {
                let _ = tx.send(result);
            }
            w.terminate();
        };
        let worker_for_ready = worker.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let message = Envelope::from_js(&event.data()).and_then(WorkerMessage::from_envelope);
            match message {
                Ok(WorkerMessage::Ready) => {
                    let (message, transfer) = request.to_js();
                    if let Err(e) = worker_for_ready.post_message_with_transfer(&message, &transfer)
                    {
                        finish(Err(format!("could not send the training request: {e:?}")));
                    }
                }
                Ok(WorkerMessage::Progress { stage, fraction }) => on_progress(stage, fraction),
                Ok(WorkerMessage::Done { run }) => finish(Ok(*run)),
                Ok(WorkerMessage::Failed { error }) => finish(Err(error)),
                Err(e) => finish(Err(e)),
            }
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        let done_on_error = job.done.clone();
        let w = worker.clone();
        let on_error =
            Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |e: web_sys::ErrorEvent| {
                if let Some(tx) = done_on_error.borrow_mut().take() {
                    let _ = tx.send(Err(format!("the training worker crashed: {}", e.message())));
                }
                w.terminate();
            });
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
        Ok((job, rx))
    }

    /// Stops training now; the pending result resolves to a "cancelled" error.
    pub fn cancel(&self) {
        self.worker.terminate();
        if let Some(tx) = self.done.borrow_mut().take() {
            let _ = tx.send(Err("cancelled".into()));
        }
    }
}
