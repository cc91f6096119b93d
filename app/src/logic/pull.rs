//! Pull planning: which telemetry windows a pull asks a device for, where its cursor moves,
//! and how far back the alert rules and the charts read. Window starts and cursors are the
//! device's clock; the browser's clock only measures how long ago the last pull was (a
//! duration, so clock offsets between the two cancel).

/// Most windows one pull asks for (the device's limit per call).
pub const MAX_WINDOWS: u64 = 1000;
/// How far back the first pull of a device reaches, in windows.
pub const FIRST_PULL_WINDOWS: u64 = 60;
/// Windows before the cursor every pull fetches again: the cursor's window may have been
/// partial, a record can commit a moment after the next window began, and labels that arrive
/// later count in their prediction's window (so stored accuracy catches up for this long).
pub const REFRESH_WINDOWS: u64 = 10;
/// Windows the alert rules read back from the newest (they need the last 3 that count; a
/// window counts only with enough rows or labels, so some slack).
pub const ALERT_LOOKBACK_WINDOWS: u64 = 60;
/// Windows the charts show, back from the newest.
pub const CHART_WINDOWS: u64 = 720;

/// What one pull asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Windows starting before this are not stored again (`None`: the first pull keeps all).
    pub from: Option<u64>,
    /// How many windows would cover the time since the last pull, with the refresh margin.
    pub wanted: u64,
    /// How many the pull asks for: `wanted`, within 1 and [`MAX_WINDOWS`].
    pub count: u64,
}

impl Plan {
    /// Windows that are beyond one pull and are not fetched (the dashboard warns).
    pub fn missed(&self) -> u64 {
        self.wanted.saturating_sub(MAX_WINDOWS)
    }
}

/// The pull of a device whose cursor (newest stored window start, device clock) is `cursor`
/// and that was last seen at `last_seen_ms` (browser clock), now.
pub fn plan(cursor: Option<u64>, last_seen_ms: Option<f64>, now_ms: f64, window_s: u64) -> Plan {
    let w_ms = window_s.max(1) * 1000;
    let (from, wanted) = match (cursor, last_seen_ms) {
        (Some(c), Some(seen)) => {
            let elapsed = (now_ms - seen).max(0.0) as u64;
            (
                Some(c.saturating_sub(REFRESH_WINDOWS * w_ms)),
                elapsed / w_ms + REFRESH_WINDOWS + 3,
            )
        }
        _ => (None, FIRST_PULL_WINDOWS),
    };
    Plan {
        from,
        wanted,
        count: wanted.clamp(1, MAX_WINDOWS),
    }
}

/// The cursor after storing windows starting at `starts`: the newest start, never moving back.
pub fn advance(cursor: Option<u64>, starts: impl IntoIterator<Item = u64>) -> Option<u64> {
    match (cursor, starts.into_iter().max()) {
        (Some(c), Some(n)) => Some(c.max(n)),
        (c, n) => c.or(n),
    }
}

/// The oldest window start (device clock) that `windows` windows back from `cursor` reach;
/// 0 without a cursor (everything stored).
pub fn since(cursor: Option<u64>, windows: u64, window_s: u64) -> u64 {
    cursor.map_or(0, |c| c.saturating_sub(windows * window_s.max(1) * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_pull_asks_for_the_last_hour_of_minutes() {
        let p = plan(None, None, 1e12, 60);
        assert_eq!(
            p,
            Plan {
                from: None,
                wanted: 60,
                count: 60
            }
        );
        // A cursor without a last contact (a status from an older build) is a first pull too.
        assert_eq!(plan(Some(5), None, 1e12, 60).from, None);
    }

    #[test]
    fn a_later_pull_covers_the_time_away_and_refreshes_the_last_windows() {
        let cursor = 10_000_000;
        // Seen 5 minutes ago with 60 s windows: 5 windows + 10 refreshed + 3 slack.
        let p = plan(Some(cursor), Some(1_000_000.0), 1_300_000.0, 60);
        assert_eq!(p.from, Some(cursor - 10 * 60_000));
        assert_eq!((p.wanted, p.count, p.missed()), (18, 18, 0));
        // A browser clock behind the last contact counts as no time away.
        assert_eq!(plan(Some(cursor), Some(2e6), 1e6, 60).wanted, 13);
    }

    #[test]
    fn a_long_absence_is_capped_at_one_pull_and_says_what_it_misses() {
        // Two days away with 60 s windows.
        let p = plan(Some(200_000_000), Some(0.0), 2.0 * 86_400_000.0, 60);
        assert_eq!(p.wanted, 2 * 1440 + 13);
        assert_eq!(p.count, MAX_WINDOWS);
        assert_eq!(p.missed(), 2 * 1440 + 13 - MAX_WINDOWS);
    }

    #[test]
    fn a_refresh_before_the_epoch_of_the_device_starts_at_zero() {
        assert_eq!(plan(Some(1_000), Some(0.0), 0.0, 60).from, Some(0));
        assert_eq!(since(Some(1_000), CHART_WINDOWS, 60), 0);
        assert_eq!(since(None, 3, 60), 0);
        assert_eq!(since(Some(10_000_000), 3, 60), 10_000_000 - 180_000);
    }

    #[test]
    fn the_cursor_only_moves_forward() {
        assert_eq!(advance(None, []), None);
        assert_eq!(advance(None, [3, 9, 6]), Some(9));
        assert_eq!(advance(Some(12), [3, 9]), Some(12));
        assert_eq!(advance(Some(5), [3, 9]), Some(9));
        assert_eq!(advance(Some(5), []), Some(5));
    }
}
