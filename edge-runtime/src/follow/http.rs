//! The follower's [`Transport`]: reqwest (rustls with ring, no built-in roots: only the CA
//! of `--follow-ca`), bounded answers, time limits, no redirects.

use wasmops_shared::mlflow::{Body, Method, Request, Response, Transport};

use super::{Credentials, FollowConfig, CONNECT_TIMEOUT};

/// Marks the error of an answer larger than the device accepts (a refusal, not a retry).
pub const TOO_LARGE: &str = "larger than this device accepts";

pub struct HttpTransport {
    client: reqwest::Client,
    base: String,
    credentials: Option<Credentials>,
    max_bytes: usize,
    timeout: std::time::Duration,
}

impl HttpTransport {
    pub fn new(config: &FollowConfig) -> Result<HttpTransport, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(config.request_timeout)
            // Credentials go only to the tracking URI: a redirect elsewhere is an error.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wasmops-edge/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(1);
        if let Some(pem) = &config.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the follow CA: {e}"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(HttpTransport {
            client: builder.build().map_err(|e| {
                format!(
                    "the follower's HTTP client: {}",
                    chain(&e, config.request_timeout)
                )
            })?,
            timeout: config.request_timeout,
            base: config.tracking_uri.clone(),
            credentials: config.credentials.clone(),
            // A module at the limit, plus room for an MLflow JSON answer around nothing.
            max_bytes: config.max_module_bytes.max(1 << 20),
        })
    }
}

impl Transport for HttpTransport {
    async fn send(&self, request: Request) -> Result<Response, String> {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
            Method::Patch => reqwest::Method::PATCH,
        };
        let mut r = self
            .client
            .request(method, format!("{}{}", self.base, request.path));
        r = match &self.credentials {
            Some(Credentials::Basic { user, password }) => r.basic_auth(user, Some(password)),
            Some(Credentials::Bearer(token)) => r.bearer_auth(token),
            None => r,
        };
        r = match request.body {
            Body::Empty => r,
            Body::Json(text) => r
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(text),
            Body::Bytes(bytes) => r
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes),
        };
        let timeout = self.timeout;
        let mut response = r.send().await.map_err(|e| chain(&e, timeout))?;
        let status = response.status().as_u16();
        if let Some(len) = response.content_length() {
            if len > self.max_bytes as u64 {
                return Err(format!(
                    "the answer is {len} bytes, {TOO_LARGE} ({} bytes)",
                    self.max_bytes
                ));
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| chain(&e, timeout))? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(format!(
                    "the answer goes on past {} bytes, {TOO_LARGE}",
                    self.max_bytes
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response { status, body })
    }
}

/// reqwest's error with its causes ("error sending request ...: invalid peer certificate:
/// UnknownIssuer"); its own text alone hides the reason.
fn chain(e: &reqwest::Error, timeout: std::time::Duration) -> String {
    if e.is_timeout() {
        return format!(
            "no complete answer within {} s (the request's time limit)",
            timeout.as_secs_f64()
        );
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    wasmops_shared::quote::clipped(&out)
}
