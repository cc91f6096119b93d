//! What the device form accepts.

use crate::storage::DeviceEntry;

/// The device form as typed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceForm {
    pub name: String,
    pub url: String,
    pub token: String,
    /// Telemetry window in seconds.
    pub window: String,
}

impl DeviceForm {
    /// The device to save: its URL without a trailing `/` (http or https), a window of 1 s to
    /// a day, the URL as its name when none is given; a device already known (by URL) keeps
    /// when it was added.
    pub fn entry(&self, known: &[DeviceEntry], now_ms: f64) -> Result<DeviceEntry, String> {
        let url = self.url.trim().trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "device URL must start with http:// or https://, got `{url}`"
            ));
        }
        let window_s = match self.window.trim().parse::<u64>() {
            Ok(w) if (1..=86_400).contains(&w) => w,
            _ => {
                return Err(format!(
                    "telemetry window must be 1 to 86400 seconds, got `{}`",
                    self.window
                ))
            }
        };
        let added_ms = known
            .iter()
            .find(|d| d.url == url)
            .map_or(now_ms, |d| d.added_ms);
        let name = self.name.trim();
        Ok(DeviceEntry {
            name: if name.is_empty() {
                url.clone()
            } else {
                name.to_string()
            },
            url,
            token: self.token.clone(),
            window_s,
            added_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(url: &str, window: &str) -> DeviceForm {
        DeviceForm {
            name: " gateway-1 ".into(),
            url: url.into(),
            token: "t0k".into(),
            window: window.into(),
        }
    }

    #[test]
    fn a_device_is_saved_with_a_clean_url_and_its_name() {
        let d = form(" http://127.0.0.1:7878/ ", "60")
            .entry(&[], 5.0)
            .unwrap();
        assert_eq!(
            d,
            DeviceEntry {
                url: "http://127.0.0.1:7878".into(),
                token: "t0k".into(),
                name: "gateway-1".into(),
                window_s: 60,
                added_ms: 5.0,
            }
        );
        let unnamed = DeviceForm {
            name: "  ".into(),
            ..form("https://edge.example", "1")
        };
        assert_eq!(
            unnamed.entry(&[], 0.0).unwrap().name,
            "https://edge.example"
        );
    }

    #[test]
    fn editing_a_known_device_keeps_when_it_was_added() {
        let first = form("http://a:1", "60").entry(&[], 5.0).unwrap();
        let edited = form("http://a:1/", "30").entry(&[first], 99.0).unwrap();
        assert_eq!((edited.window_s, edited.added_ms), (30, 5.0));
    }

    #[test]
    fn bad_urls_and_windows_are_named() {
        assert_eq!(
            form("127.0.0.1:7878", "60").entry(&[], 0.0),
            Err("device URL must start with http:// or https://, got `127.0.0.1:7878`".into())
        );
        for w in ["0", "86401", "1.5", "", "-3"] {
            let err = form("http://a", w).entry(&[], 0.0).unwrap_err();
            assert_eq!(
                err,
                format!("telemetry window must be 1 to 86400 seconds, got `{w}`")
            );
        }
        assert!(form("http://a", " 86400 ").entry(&[], 0.0).is_ok());
    }
}
