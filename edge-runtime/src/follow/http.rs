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
            // Only the CAs of --follow-ca, not the public roots remote write uses.
            .tls_built_in_root_certs(false)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(config.request_timeout)
            // Credentials go only to the tracking URI: a redirect elsewhere is an error.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wasmops-edge/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(1)
            // Under every server's keep-alive window (uvicorn 5 s, gunicorn 2 s): a connection
            // the server closes as a request goes out fails that request.
            .pool_idle_timeout(std::time::Duration::from_secs(1));
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wasmops_shared::mlflow::{Body, Method, Request, Transport};

    use super::*;

    /// A hostile "MLflow" on 127.0.0.1: reads the request head, then does `answer` with the
    /// connection. Returns the tracking URI.
    async fn hostile<F, Fut>(answer: F) -> String
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = [0u8; 4096];
                let _ = s.read(&mut head).await;
                answer(s).await;
            }
        });
        format!("http://{addr}")
    }

    fn transport(uri: String) -> HttpTransport {
        let mut config = FollowConfig::new(
            uri,
            "m".into(),
            "a".into(),
            Duration::from_secs(1),
            None,
            None,
        )
        .unwrap();
        config.max_module_bytes = 1 << 20;
        config.request_timeout = Duration::from_secs(1);
        HttpTransport::new(&config).unwrap()
    }

    async fn get(t: &HttpTransport) -> Result<Response, String> {
        t.send(Request {
            method: Method::Get,
            path: "/api/2.0/mlflow-artifacts/artifacts/x/model.wasm".into(),
            body: Body::Empty,
        })
        .await
    }

    #[tokio::test]
    async fn a_hostile_server_cannot_bloat_or_stall_the_follower() {
        // Announces more than the limit: refused before a byte of the body is read.
        let uri = hostile(|mut s| async move {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n")
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let err = get(&transport(uri)).await.unwrap_err();
        assert!(
            err.contains(TOO_LARGE) && err.contains("999999999999"),
            "{err}"
        );

        // Streams without end: cut off at the limit.
        let uri = hostile(|mut s| async move {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = [b'x'; 65536];
            loop {
                let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
                c.extend_from_slice(&chunk);
                c.extend_from_slice(b"\r\n");
                if s.write_all(&c).await.is_err() {
                    return;
                }
            }
        })
        .await;
        let err = get(&transport(uri)).await.unwrap_err();
        assert!(
            err.contains(TOO_LARGE) && err.contains("goes on past"),
            "{err}"
        );

        // Answers nothing: the request's time limit ends it.
        let uri = hostile(|s| async move {
            let _open = s;
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let started = Instant::now();
        let err = get(&transport(uri)).await.unwrap_err();
        assert!(err.contains("no complete answer within 1 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));

        // A redirect is not followed (the credentials stay with the tracking URI).
        let uri = hostile(|mut s| async move {
            let _ = s
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: http://example.com/\r\nContent-Length: 0\r\n\r\n")
                .await;
        })
        .await;
        assert_eq!(get(&transport(uri)).await.unwrap().status, 302);
    }
}
