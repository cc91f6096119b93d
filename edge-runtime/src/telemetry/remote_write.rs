//! Pushes the device's metrics to a Prometheus remote-write receiver, for devices Prometheus
//! cannot scrape (behind NAT or a firewall): `POST` a protobuf `WriteRequest`, snappy
//! block-compressed, with `Content-Encoding: snappy` and
//! `X-Prometheus-Remote-Write-Version: 0.1.0` (remote write 1.0). Prometheus
//! (`--web.enable-remote-write-receiver`), Mimir, Thanos Receive, VictoriaMetrics and the
//! OpenTelemetry collector accept it.
//!
//! Bounded by construction: one push in flight, each with a timeout; no queue. Every push is a
//! full snapshot of cumulative counters, so a push that fails is dropped and the next one
//! carries the totals (`rate()` sees a gap, never a loss). A failing receiver is logged once
//! when it starts failing and once when it recovers, never per attempt. The loop runs in its
//! own task and reads the telemetry database on the blocking pool: it never holds up serving.

use std::path::PathBuf;
use std::time::Duration;

use super::prometheus::{ConstLabels, Family};

/// The messages of `prometheus/prompb` (types.proto, remote.proto) that remote write 1.0
/// sends, derived by hand: no protoc, no build script. Tags are the `.proto`'s.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Sorted by name, `__name__` among them.
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// How the push authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Bearer(String),
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(..)"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, ..)"),
        }
    }
}

/// Where and how often to push.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWriteConfig {
    /// The receiver, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    pub interval: Duration,
    pub auth: Option<Auth>,
    /// A PEM file of CA certificates to trust besides the built-in roots (HTTPS receivers
    /// with a private CA).
    pub ca: Option<PathBuf>,
    /// The `job` label of every pushed series.
    pub job: String,
    /// The `instance` label of every pushed series (the device's name by default).
    pub instance: String,
}

/// Default interval between pushes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// The families as one `WriteRequest`: one series per sample, labelled `__name__`, the
/// constant labels, `job`, `instance` and the sample's own, sorted by name as the protocol
/// requires, all at `timestamp_ms`.
pub fn write_request(
    families: &[Family],
    constant: &ConstLabels,
    job: &str,
    instance: &str,
    timestamp_ms: i64,
) -> proto::WriteRequest {
    let label = |name: &str, value: &str| proto::Label {
        name: name.to_string(),
        value: value.to_string(),
    };
    let mut timeseries = Vec::new();
    for f in families {
        for s in &f.samples {
            let mut labels = Vec::with_capacity(4 + constant.pairs().len() + s.labels.len());
            labels.push(label("__name__", &format!("{}{}", f.name, s.suffix)));
            labels.push(label("job", job));
            labels.push(label("instance", instance));
            labels.extend(constant.pairs().iter().map(|(k, v)| label(k, v)));
            labels.extend(s.labels.iter().map(|(k, v)| label(k, v)));
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            timeseries.push(proto::TimeSeries {
                labels,
                samples: vec![proto::Sample {
                    value: s.value,
                    timestamp: timestamp_ms,
                }],
            });
        }
    }
    proto::WriteRequest { timeseries }
}

/// The request body: the protobuf, snappy block-compressed (not the framed format).
pub fn encode(request: &proto::WriteRequest) -> Vec<u8> {
    use prost::Message;
    let raw = request.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses any input shorter than 4 GiB")
}

/// Sends pushes; remembers whether the receiver was failing, so it logs changes only.
pub struct Pusher {
    client: reqwest::Client,
    config: RemoteWriteConfig,
    failing: bool,
    dropped: u64,
    pushed: u64,
}

impl Pusher {
    /// Builds the HTTP client (reads the CA file, if any). Each push may take the interval
    /// at most, and never more than 10 s.
    pub fn new(config: RemoteWriteConfig) -> Result<Pusher, String> {
        let timeout = config.interval.min(Duration::from_secs(10));
        let mut client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(1)
            // Under every server's keep-alive window (uvicorn 5 s, gunicorn 2 s): a connection
            // the server closes as a request goes out fails that request.
            .pool_idle_timeout(std::time::Duration::from_secs(1))
            .user_agent(concat!("wasmops-edge/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca {
            let pem = std::fs::read(path)
                .map_err(|e| format!("reading remote-write CA file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("remote-write CA file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "remote-write CA file {} holds no certificate",
                    path.display()
                ));
            }
            for cert in certs {
                client = client.add_root_certificate(cert);
            }
        }
        let client = client
            .build()
            .map_err(|e| format!("remote-write HTTP client: {e}"))?;
        reqwest::Url::parse(&config.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                format!(
                    "remote-write URL {} is not an http(s) URL",
                    wasmops_shared::quote::bounded(&config.url)
                )
            })?;
        Ok(Pusher {
            client,
            config,
            failing: false,
            dropped: 0,
            pushed: 0,
        })
    }

    /// Sends one snapshot; a failure is logged only when the receiver starts failing.
    pub async fn push(&mut self, families: &[Family], constant: &ConstLabels) -> bool {
        let request = write_request(
            families,
            constant,
            &self.config.job,
            &self.config.instance,
            super::now_ms() as i64,
        );
        let outcome = self.send(encode(&request)).await;
        match outcome {
            Ok(()) => {
                if self.failing {
                    tracing::info!(url = %self.config.url, dropped = self.dropped, "remote write recovered");
                } else if self.pushed == 0 {
                    tracing::info!(url = %self.config.url, series = request.timeseries.len(), "remote write: first push accepted");
                }
                self.failing = false;
                self.dropped = 0;
                self.pushed += 1;
                true
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(url = %self.config.url, error = %e, "remote write failing; dropping pushes until it recovers (logged once)");
                }
                self.failing = true;
                self.dropped += 1;
                false
            }
        }
    }

    async fn send(&self, body: Vec<u8>) -> Result<(), String> {
        let mut request = self
            .client
            .post(&self.config.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        request = match &self.config.auth {
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
            Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            // reqwest's Display leaves the cause out ("error sending request").
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(format!(
            "{status}: {}",
            wasmops_shared::quote::bounded(text.trim())
        ))
    }
}

/// Pushes every `config.interval` until `shutdown` resolves; `collect` takes a snapshot
/// (blocking: it runs on the blocking pool).
pub async fn run<F>(
    mut pusher: Pusher,
    constant: ConstLabels,
    collect: F,
    shutdown: impl std::future::Future<Output = ()>,
) where
    F: Fn() -> Result<Vec<Family>, String> + Send + Sync + Clone + 'static,
{
    let mut tick = tokio::time::interval(pusher.config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let collect = collect.clone();
        let families = match tokio::task::spawn_blocking(collect).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "remote write: reading the metrics failed");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "remote write: reading the metrics failed");
                continue;
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = pusher.push(&families, &constant) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::prometheus::{collect, Inputs};
    use prost::Message;

    #[test]
    fn a_write_request_round_trips_through_snappy_and_protobuf_with_sorted_labels() {
        let constant = ConstLabels::new(vec![("group".into(), "canary".into())]).unwrap();
        let families = collect(&Inputs::default());
        let request = write_request(
            &families,
            &constant,
            "wasmops-edge",
            "dev-1",
            1_700_000_000_000,
        );
        let body = encode(&request);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let back = proto::WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(back, request);
        let samples: usize = families.iter().map(|f| f.samples.len()).sum();
        assert_eq!(back.timeseries.len(), samples);
        for ts in &back.timeseries {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted);
            for needed in ["__name__", "group", "instance", "job"] {
                assert!(names.contains(&needed), "{names:?}");
            }
            assert_eq!(ts.samples[0].timestamp, 1_700_000_000_000);
        }
        let inf = back
            .timeseries
            .iter()
            .find(|ts| {
                ts.labels.iter().any(|l| {
                    l.name == "__name__" && l.value == "wasmops_predict_latency_seconds_bucket"
                }) && ts
                    .labels
                    .iter()
                    .any(|l| l.name == "le" && l.value == "+Inf")
            })
            .expect("the +Inf bucket is a series");
        assert_eq!(inf.samples[0].value, 0.0);
    }

    #[test]
    fn a_bad_url_or_ca_file_is_refused_before_any_push() {
        let config = |url: &str, ca: Option<PathBuf>| RemoteWriteConfig {
            url: url.into(),
            interval: DEFAULT_INTERVAL,
            auth: None,
            ca,
            job: "j".into(),
            instance: "i".into(),
        };
        assert!(Pusher::new(config("http://127.0.0.1:9/api/v1/write", None)).is_ok());
        let e = Pusher::new(config("ftp://x/", None)).err().unwrap();
        assert!(e.contains("not an http(s) URL"), "{e}");
        let e = Pusher::new(config("http://x/", Some("/nonexistent/ca.pem".into())))
            .err()
            .unwrap();
        assert!(e.contains("reading remote-write CA file"), "{e}");
    }
}
