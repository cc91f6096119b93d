//! The dashboard's log: structured lines (time, level, source, message) from every part of the
//! page, kept for this session (the newest [`MAX_LINES`]), mirrored to the browser console, and
//! shown, filtered and exported by the Logs page.
//!
//! Sources are short fixed names: `train`, `compile`, `registry`, `deploy`, `telemetry`,
//! `alerts`, `runs`, `data`, `storage`.

use std::cell::RefCell;

use leptos::prelude::*;

pub const MAX_LINES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Level {
        match s {
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            _ => Level::Debug,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Sequence number in this session (keys the table rows).
    pub seq: u64,
    pub ts_ms: f64,
    pub level: Level,
    pub source: &'static str,
    pub message: String,
}

impl LogLine {
    /// `2026-11-26T10:21:24.123Z WARN telemetry: message`, as exported.
    pub fn to_text(&self) -> String {
        let iso: String = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(self.ts_ms))
            .to_iso_string()
            .into();
        format!(
            "{iso} {} {}: {}",
            self.level.as_str().to_uppercase(),
            self.source,
            self.message
        )
    }
}

thread_local! {
    static SINK: RefCell<Option<RwSignal<Vec<LogLine>>>> = const { RefCell::new(None) };
    static SEQ: RefCell<u64> = const { RefCell::new(0) };
}

/// Makes `lines` the log every [`log`] call appends to (done once by the app).
pub fn install(lines: RwSignal<Vec<LogLine>>) {
    SINK.with(|s| *s.borrow_mut() = Some(lines));
}

pub fn log(level: Level, source: &'static str, message: impl Into<String>) {
    let message = message.into();
    let seq = SEQ.with(|s| {
        let mut s = s.borrow_mut();
        *s += 1;
        *s
    });
    let line = LogLine {
        seq,
        ts_ms: js_sys::Date::now(),
        level,
        source,
        message,
    };
    match level {
        Level::Error => leptos::logging::error!("{}", line.to_text()),
        Level::Warn => leptos::logging::warn!("{}", line.to_text()),
        _ => leptos::logging::log!("{}", line.to_text()),
    }
    SINK.with(|s| {
        if let Some(sig) = *s.borrow() {
            sig.update(|lines| {
                lines.push(line);
                if lines.len() > MAX_LINES {
                    let extra = lines.len() - MAX_LINES;
                    lines.drain(..extra);
                }
            });
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
