//! One line of the dashboard's log, as shown, exported and stored (IndexedDB store `logs`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Debug, Level::Info, Level::Warn, Level::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// The level a `<select>` names; anything else is `debug` (the lowest: shows everything).
    pub fn parse(s: &str) -> Level {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .unwrap_or(Level::Debug)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// `time-sequence`: unique, and sorts by time (the IndexedDB key).
    pub id: String,
    pub ts_ms: f64,
    pub level: Level,
    pub source: String,
    pub message: String,
}

impl LogLine {
    /// The line logged at `ts_ms` as the session's `seq`-th.
    pub fn new(ts_ms: f64, seq: u64, level: Level, source: &str, message: String) -> LogLine {
        LogLine {
            id: format!("{:015}-{seq:09}", ts_ms as u64),
            ts_ms,
            level,
            source: source.to_string(),
            message,
        }
    }

    /// `2026-11-26T10:21:24.123Z WARN telemetry: message`, as exported.
    pub fn to_text(&self) -> String {
        format!(
            "{} {} {}: {}",
            iso_utc(self.ts_ms),
            self.level.as_str().to_uppercase(),
            self.source,
            self.message
        )
    }
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (what JavaScript's `toISOString` gives, for
/// times after 1970): the automation log's format, [`wasmops_shared::automation::rfc3339`].
pub fn iso_utc(ms: f64) -> String {
    wasmops_shared::automation::rfc3339(ms.max(0.0) as u64)
}

/// Stored lines (oldest first) put before this session's, without the ones already there.
pub fn restore(session: &mut Vec<LogLine>, stored: Vec<LogLine>) {
    let mut all: Vec<LogLine> = stored
        .into_iter()
        .filter(|s| !session.iter().any(|l| l.id == s.id))
        .collect();
    all.append(session);
    *session = all;
}

/// Appends a line, keeping the newest `max` lines.
pub fn append(lines: &mut Vec<LogLine>, line: LogLine, max: usize) {
    lines.push(line);
    if lines.len() > max {
        let extra = lines.len() - max;
        lines.drain(..extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts_ms: f64, seq: u64) -> LogLine {
        LogLine::new(ts_ms, seq, Level::Info, "train", format!("line {seq}"))
    }

    #[test]
    fn export_text_matches_javascripts_iso_time() {
        // new Date(1795688484123).toISOString() === "2026-11-26T10:21:24.123Z"
        let l = LogLine::new(
            1_795_688_484_123.0,
            1,
            Level::Warn,
            "telemetry",
            "late".into(),
        );
        assert_eq!(l.to_text(), "2026-11-26T10:21:24.123Z WARN telemetry: late");
        assert_eq!(iso_utc(0.0), "1970-01-01T00:00:00.000Z");
        // A leap day, and the last millisecond of a year.
        assert_eq!(iso_utc(951_782_400_000.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_utc(1_704_067_199_999.0), "2023-12-31T23:59:59.999Z");
    }

    #[test]
    fn ids_sort_by_time_then_sequence() {
        let a = line(9_999.0, 2);
        let b = line(10_000.0, 1);
        let c = line(10_000.0, 10);
        assert!(a.id < b.id && b.id < c.id, "{} {} {}", a.id, b.id, c.id);
    }

    #[test]
    fn stored_json_of_a_line_still_loads() {
        let json = r#"{"id":"001795688484123-000000001","ts_ms":1795688484123.0,"level":"warn","source":"telemetry","message":"m"}"#;
        let l: LogLine = serde_json::from_str(json).unwrap();
        assert_eq!(l.level, Level::Warn);
        assert_eq!(serde_json::to_string(&l).unwrap(), json);
    }

    #[test]
    fn levels_parse_what_they_print_and_order_by_severity() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()), l);
        }
        assert_eq!(Level::parse("loud"), Level::Debug);
        assert!(Level::Debug < Level::Info && Level::Warn < Level::Error);
    }

    #[test]
    fn restore_puts_stored_lines_first_without_duplicates() {
        let mut session = vec![line(3.0, 3), line(4.0, 4)];
        restore(&mut session, vec![line(1.0, 1), line(3.0, 3)]);
        let ids: Vec<u64> = session.iter().map(|l| l.ts_ms as u64).collect();
        assert_eq!(ids, [1, 3, 4]);
    }

    #[test]
    fn append_keeps_the_newest() {
        let mut lines = Vec::new();
        for i in 0..5 {
            append(&mut lines, line(i as f64, i), 3);
        }
        let kept: Vec<u64> = lines.iter().map(|l| l.ts_ms as u64).collect();
        assert_eq!(kept, [2, 3, 4]);
    }
}
