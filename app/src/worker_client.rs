//! Page side of the training workers: start one, send it a request once it is `Ready`, stream
//! progress to a callback, and stop it (terminate) on cancel.
//!
//! Workers are kept between jobs (a small pool, [`warm`] starts one ahead of the first job):
//! a job on a kept worker skips loading the worker's wasm, and a worker keeps the last imported
//! dataset it received, so a job on the same dataset sends only its spec. A cancelled or
//! crashed worker is terminated and never reused.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker};

use wasmops_trainer::Algorithm;

use crate::protocol::{Envelope, KMeansRun, TrainRequest, WorkerMessage};
use crate::run::Run;

/// The loader script trunk generates for the `train_worker` binary.
const WORKER_URL: &str = "./train_worker_loader.js";

/// Idle workers kept at most.
const KEEP: usize = 4;

thread_local! {
    static IDLE: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// Starts a worker now if none is idle, so that the next job finds it loaded.
pub fn warm() {
    if IDLE.with(|idle| idle.borrow().is_empty()) {
        if let Ok(slot) = Slot::start() {
            IDLE.with(|idle| idle.borrow_mut().push(slot));
        }
    }
}

/// A started worker and what the page knows about it.
#[derive(Clone)]
struct Slot {
    worker: Worker,
    state: Rc<RefCell<SlotState>>,
}

type Handler = Box<dyn FnMut(WorkerMessage)>;

#[derive(Default)]
struct SlotState {
    ready: bool,
    /// A request waiting for the worker's `Ready`.
    pending: Option<Envelope>,
    /// The imported dataset (`csv:<hash>`) the worker holds from an earlier request.
    dataset: Option<String>,
    /// Where the current job's messages go.
    handler: Option<Handler>,
    /// Terminated (cancelled or crashed): never reused.
    dead: bool,
}

impl Slot {
    fn start() -> Result<Slot, String> {
        let worker = Worker::new(WORKER_URL)
            .map_err(|e| format!("could not start the training worker: {e:?}"))?;
        let slot = Slot {
            worker: worker.clone(),
            state: Rc::new(RefCell::new(SlotState::default())),
        };
        let s = slot.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let message = Envelope::from_js(&event.data())
                .and_then(WorkerMessage::from_envelope)
                .unwrap_or_else(|error| WorkerMessage::Failed { error });
            if message == WorkerMessage::Ready {
                let pending = {
                    let mut st = s.state.borrow_mut();
                    st.ready = true;
                    st.pending.take()
                };
                if let Some(envelope) = pending {
                    s.post(envelope);
                }
                return;
            }
            s.deliver(message);
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        let s = slot.clone();
        let on_error =
            Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |e: web_sys::ErrorEvent| {
                s.kill();
                s.deliver(WorkerMessage::Failed {
                    error: format!("the training worker crashed: {}", e.message()),
                });
            });
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
        Ok(slot)
    }

    /// An idle worker, else a new one.
    fn take() -> Result<Slot, String> {
        match IDLE.with(|idle| idle.borrow_mut().pop()) {
            Some(slot) => Ok(slot),
            None => Slot::start(),
        }
    }

    /// Back to the idle workers (unless terminated, or enough are kept).
    fn release(self) {
        if self.state.borrow().dead {
            return;
        }
        self.state.borrow_mut().handler = None;
        IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            if idle.len() < KEEP {
                idle.push(self);
            } else {
                self.worker.terminate();
            }
        });
    }

    fn kill(&self) {
        self.state.borrow_mut().dead = true;
        self.worker.terminate();
    }

    /// Posts now if the worker is ready, else when it says so.
    fn post(&self, envelope: Envelope) {
        let mut st = self.state.borrow_mut();
        if !st.ready {
            st.pending = Some(envelope);
            return;
        }
        drop(st);
        let (message, transfer) = envelope.to_js();
        if let Err(e) = self.worker.post_message_with_transfer(&message, &transfer) {
            self.deliver(WorkerMessage::Failed {
                error: format!("could not send the training request: {e:?}"),
            });
        }
    }

    /// Hands a message to the current job (the handler is taken out while it runs: it may
    /// release the slot).
    fn deliver(&self, message: WorkerMessage) {
        let handler = self.state.borrow_mut().handler.take();
        if let Some(mut handler) = handler {
            // A result ends the job: its handler is not put back.
            let last = matches!(
                message,
                WorkerMessage::Done { .. } | WorkerMessage::Failed { .. }
            );
            handler(message);
            let mut st = self.state.borrow_mut();
            if !last && st.handler.is_none() && !st.dead {
                st.handler = Some(handler);
            }
        }
    }

    /// Sends `req` (without its dataset when the worker already holds it) and routes the
    /// worker's answers to `on_message`.
    fn send(&self, mut req: TrainRequest, on_message: Handler) -> Result<(), String> {
        {
            let mut st = self.state.borrow_mut();
            if req.dataset.starts_with("csv:") && req.data.is_some() {
                if st.dataset.as_deref() == Some(req.dataset.as_str()) {
                    req.data = None;
                } else {
                    // The worker keeps what it receives (see the worker's binary).
                    st.dataset = Some(req.dataset.clone());
                }
            }
            st.handler = Some(on_message);
        }
        self.post(req.into_envelope()?);
        Ok(())
    }
}

/// Where the job's single result goes; taken by whichever comes first (result, crash, cancel).
type ResultSlot = Rc<RefCell<Option<oneshot::Sender<Result<Run, String>>>>>;

/// Workers a k-means job's runs are spread over, at most.
const MAX_WORKERS: usize = 4;

/// How many workers `req` is spread over: k-means runs go to one worker per core the browser
/// reports (`navigator.hardwareConcurrency`), up to [`MAX_WORKERS`]; everything else to one.
/// The result does not depend on it (`wasmops_trainer::kmeans::best`).
fn workers_for(req: &TrainRequest) -> usize {
    if !matches!(req.spec.algorithm, Algorithm::KMeans { .. }) {
        return 1;
    }
    let cores = web_sys::window().map_or(1.0, |w| w.navigator().hardware_concurrency());
    (cores as usize).clamp(1, MAX_WORKERS)
}

/// A training job in one or more workers. Dropping it does not stop it; call
/// [`TrainJob::cancel`].
#[derive(Clone)]
pub struct TrainJob {
    /// The workers working for the job now.
    active: Rc<RefCell<Vec<Slot>>>,
    done: ResultSlot,
}

type OnProgress = Rc<dyn Fn(String, f64)>;

/// A k-means job spread over workers.
struct Spread {
    whole: TrainRequest,
    workers: usize,
    on_progress: OnProgress,
    state: RefCell<SpreadState>,
}

#[derive(Default)]
struct SpreadState {
    /// The next run to give out.
    next: usize,
    /// The runs back.
    back: Vec<KMeansRun>,
    /// Lines for the run's log: which worker fitted which run, when.
    log: Vec<crate::run::RunLogLine>,
}

impl Spread {
    /// The job's request for `slot`, without the dataset's values when the worker holds them
    /// (no copy of them on the page either).
    fn request(&self, slot: &Slot) -> TrainRequest {
        let holds = slot.state.borrow().dataset.as_deref() == Some(self.whole.dataset.as_str());
        match &self.whole.data {
            Some(_) if holds => self.whole.clone_without_data(),
            _ => self.whole.clone(),
        }
    }
}

impl TrainJob {
    /// Sends `req` to a worker (a kept one if idle; k-means: its runs to several workers
    /// first). The returned receiver yields the finished run or an error;
    /// `on_progress(stage, fraction)` is called in between.
    pub fn start(
        req: TrainRequest,
        on_progress: impl Fn(String, f64) + 'static,
    ) -> Result<(TrainJob, oneshot::Receiver<Result<Run, String>>), String> {
        let (tx, rx) = oneshot::channel();
        let job = TrainJob {
            active: Rc::new(RefCell::new(Vec::new())),
            done: Rc::new(RefCell::new(Some(tx))),
        };
        let on_progress: OnProgress = Rc::new(on_progress);
        let workers = workers_for(&req);
        let started = if workers > 1 {
            job.spread_kmeans(req, workers, on_progress)
        } else {
            job.run(req, on_progress)
        };
        if let Err(e) = started {
            job.stop();
            return Err(e);
        }
        Ok((job, rx))
    }

    /// Sends the whole job to one worker.
    fn run(&self, req: TrainRequest, on_progress: OnProgress) -> Result<(), String> {
        let slot = Slot::take()?;
        self.active.borrow_mut().push(slot.clone());
        self.run_on(slot, req, on_progress)
    }

    /// Sends the whole job to `slot` (one of the job's active workers).
    fn run_on(&self, slot: Slot, req: TrainRequest, on_progress: OnProgress) -> Result<(), String> {
        let (job, s) = (self.clone(), slot.clone());
        let handler: Handler = Box::new(move |message| match message {
            WorkerMessage::Progress { stage, fraction } => on_progress(stage, fraction),
            WorkerMessage::Done { run } => {
                job.release(&s);
                job.finish(Ok(*run));
            }
            WorkerMessage::Failed { error } => {
                job.release(&s);
                job.finish(Err(error));
            }
            WorkerMessage::Ready | WorkerMessage::KMeansRuns { .. } => {}
        });
        slot.send(req, handler)
    }

    /// k-means: its runs one at a time to `workers` workers, each getting the next run as it
    /// finishes one (runs differ in length); when all are back, the whole job (split, the
    /// winning run, evaluation, record) to one of them, which still holds the dataset.
    fn spread_kmeans(
        &self,
        req: TrainRequest,
        workers: usize,
        on_progress: OnProgress,
    ) -> Result<(), String> {
        let n = workers.min(wasmops_trainer::KMEANS_RUNS);
        on_progress(
            format!(
                "fitting {} k-means runs on {n} workers",
                wasmops_trainer::KMEANS_RUNS
            ),
            0.2,
        );
        let spread = Rc::new(Spread {
            whole: req,
            workers: n,
            on_progress,
            state: RefCell::new(SpreadState::default()),
        });
        for w in 0..n {
            let slot = Slot::take()?;
            self.active.borrow_mut().push(slot.clone());
            self.next_run(slot, w, spread.clone())?;
        }
        Ok(())
    }

    /// Gives worker `w` (`slot`) the next k-means run not given out yet; with none left, lets
    /// the worker go, and the last result back starts the rest of the job.
    fn next_run(&self, slot: Slot, w: usize, spread: Rc<Spread>) -> Result<(), String> {
        let run = {
            let mut st = spread.state.borrow_mut();
            (st.next < wasmops_trainer::KMEANS_RUNS).then(|| {
                st.next += 1;
                st.next - 1
            })
        };
        let Some(run) = run else {
            let all_back = spread.state.borrow().back.len() == wasmops_trainer::KMEANS_RUNS;
            if !(all_back && self.done.borrow().is_some()) {
                self.release(&slot);
                return Ok(());
            }
            // The rest of the job, on this worker (it holds the dataset).
            let mut rest = spread.request(&slot);
            let mut st = spread.state.borrow_mut();
            rest.kmeans_done = std::mem::take(&mut st.back);
            rest.log = std::mem::take(&mut st.log);
            drop(st);
            (spread.on_progress)("k-means runs done".into(), 0.8);
            return self.run_on(slot, rest, spread.on_progress.clone());
        };
        let mut part = spread.request(&slot);
        part.kmeans_runs = Some(vec![run]);
        let (job, s, sp) = (self.clone(), slot.clone(), spread.clone());
        let handler: Handler = Box::new(move |message| match message {
            WorkerMessage::KMeansRuns { runs } => {
                let back = {
                    let mut st = sp.state.borrow_mut();
                    st.back.extend(runs);
                    st.log.push(crate::run::RunLogLine {
                        t_ms: js_sys::Date::now() - sp.whole.started_at_ms,
                        message: format!(
                            "k-means run {run} done (worker {} of {})",
                            w + 1,
                            sp.workers
                        ),
                    });
                    st.back.len()
                };
                (sp.on_progress)(
                    format!(
                        "fitting k-means: {back} of {} runs done",
                        wasmops_trainer::KMEANS_RUNS
                    ),
                    0.2 + 0.6 * back as f64 / wasmops_trainer::KMEANS_RUNS as f64,
                );
                if let Err(e) = job.next_run(s.clone(), w, sp.clone()) {
                    job.finish(Err(e));
                }
            }
            WorkerMessage::Failed { error } => {
                job.release(&s);
                job.finish(Err(error));
            }
            _ => {}
        });
        slot.send(part, handler)
    }

    /// The job no longer needs `slot`: back to the idle workers.
    fn release(&self, slot: &Slot) {
        self.active
            .borrow_mut()
            .retain(|s| !Rc::ptr_eq(&s.state, &slot.state));
        slot.clone().release();
    }

    /// The job's result; a failure stops the workers still working for it.
    fn finish(&self, result: Result<Run, String>) {
        let failed = result.is_err();
        if let Some(tx) = self.done.borrow_mut().take() {
            let _ = tx.send(result);
        }
        if failed {
            self.stop();
        }
    }

    /// Terminates the workers working for the job (and starts one for the next job).
    fn stop(&self) {
        let active = std::mem::take(&mut *self.active.borrow_mut());
        if !active.is_empty() {
            for slot in active {
                slot.kill();
            }
            warm();
        }
    }

    /// Stops training now; the pending result resolves to a "cancelled" error.
    pub fn cancel(&self) {
        self.finish(Err("cancelled".into()));
        self.stop();
    }
}
