//! The dashboard's log: structured lines (time, level, source, message) from every part of the
//! page, mirrored to the browser console, shown, filtered and exported by the Logs page. Lines
//! at `info` and above are also handed to the persistence the app installs
//! ([`persist_with`]: IndexedDB, the newest [`MAX_LINES`] are kept), so the log survives
//! reloads; `debug` lines (every telemetry pull) live for the session only. This module knows
//! nothing of storage: the line itself is [`crate::logic::log_line`].
//!
//! Sources are short fixed names: `train`, `compile`, `registry`, `deploy`, `telemetry`,
//! `alerts`, `runs`, `data`, `storage`.

use std::cell::RefCell;

use leptos::prelude::*;

pub use crate::logic::log_line::{Level, LogLine};

pub const MAX_LINES: usize = 10_000;

thread_local! {
    static SINK: RefCell<Option<RwSignal<Vec<LogLine>>>> = const { RefCell::new(None) };
    static PERSIST: RefCell<Option<fn(LogLine)>> = const { RefCell::new(None) };
    static SEQ: RefCell<u64> = const { RefCell::new(0) };
}

/// Makes `lines` the log every [`log`] call appends to (done once by the app).
pub fn install(lines: RwSignal<Vec<LogLine>>) {
    SINK.with(|s| *s.borrow_mut() = Some(lines));
}

/// Makes `persist` receive every line at `info` and above (done once by the app, which
/// writes them to IndexedDB).
pub fn persist_with(persist: fn(LogLine)) {
    PERSIST.with(|p| *p.borrow_mut() = Some(persist));
}

/// Puts the stored lines (oldest first) before this session's.
pub fn restore(stored: Vec<LogLine>) {
    SINK.with(|s| {
        if let Some(sig) = *s.borrow() {
            sig.update(|lines| crate::logic::log_line::restore(lines, stored));
        }
    });
}

pub fn log(level: Level, source: &'static str, message: impl Into<String>) {
    let seq = SEQ.with(|s| {
        let mut s = s.borrow_mut();
        *s += 1;
        *s
    });
    let line = LogLine::new(js_sys::Date::now(), seq, level, source, message.into());
    if level >= Level::Info {
        if let Some(persist) = PERSIST.with(|p| *p.borrow()) {
            persist(line.clone());
        }
    }
    match level {
        Level::Error => leptos::logging::error!("{}", line.to_text()),
        Level::Warn => leptos::logging::warn!("{}", line.to_text()),
        _ => leptos::logging::log!("{}", line.to_text()),
    }
    SINK.with(|s| {
        if let Some(sig) = *s.borrow() {
            sig.update(|lines| crate::logic::log_line::append(lines, line, MAX_LINES));
        }
    });
}

pub fn debug(source: &'static str, message: impl Into<String>) {
    log(Level::Debug, source, message)
}

pub fn info(source: &'static str, message: impl Into<String>) {
    log(Level::Info, source, message)
}

pub fn warn(source: &'static str, message: impl Into<String>) {
    log(Level::Warn, source, message)
}

pub fn error(source: &'static str, message: impl Into<String>) {
    log(Level::Error, source, message)
}
