//! HTTP client for a device's `/v1` API (gloo-net). Every failure becomes a [`DeviceError`]
//! that says what happened in the user's terms: unreachable, refused token, rejected module.

use gloo_net::http::{Request, Response};
use serde::de::DeserializeOwned;
use wasmops_shared::wire::{
    self, paths, ActivateResponse, DeviceInfo, PredictRequest, PredictResponse, RollbackResponse,
    Telemetry, UploadResponse, WindowsResponse,
};

use crate::storage::DeviceEntry;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "device at {url} is unreachable (is it running, and does it allow this page's origin?)"
    )]
    Unreachable { url: String },
    #[error("device at {url} refused the access token")]
    Unauthorized { url: String },
    #[error("device rejected the module: {0}")]
    Rejected(String),
    #[error("device answered {status}: {message}")]
    Http { status: u16, message: String },
    #[error("device sent an unreadable answer: {0}")]
    Protocol(String),
}

pub struct DeviceClient<'a> {
    pub device: &'a DeviceEntry,
}

impl DeviceClient<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.device.url.trim_end_matches('/'))
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.device.token)
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        response: Result<Response, gloo_net::Error>,
    ) -> Result<T, DeviceError> {
        let response = response.map_err(|_| DeviceError::Unreachable {
            url: self.device.url.clone(),
        })?;
        let status = response.status();
        if (200..300).contains(&status) {
            return response
                .json::<T>()
                .await
                .map_err(|e| DeviceError::Protocol(e.to_string()));
        }
        let body: Option<wire::ApiError> = response.json().await.ok();
        let message = body
            .as_ref()
            .map(|b| b.error.clone())
            .unwrap_or_else(|| response.status_text());
        Err(match (status, body.as_ref().map(|b| b.kind.as_str())) {
            (401, _) => DeviceError::Unauthorized {
                url: self.device.url.clone(),
            },
            (_, Some("module_rejected")) => DeviceError::Rejected(message),
            _ => DeviceError::Http { status, message },
        })
    }

    pub async fn info(&self) -> Result<DeviceInfo, DeviceError> {
        let r = Request::get(&self.url(paths::INFO))
            .header("Authorization", &self.auth())
            .send()
            .await;
        self.decode(r).await
    }

    pub async fn telemetry(&self) -> Result<Telemetry, DeviceError> {
        let r = Request::get(&self.url(paths::TELEMETRY))
            .header("Authorization", &self.auth())
            .send()
            .await;
        self.decode(r).await
    }

    /// Sends a module with its detached signature (a device with trusted keys refuses it
    /// without one).
    pub async fn upload(
        &self,
        module: &[u8],
        signature: Option<&str>,
    ) -> Result<UploadResponse, DeviceError> {
        let body = js_sys::Uint8Array::from(module);
        let mut request = Request::post(&self.url(paths::MODULES))
            .header("Authorization", &self.auth())
            .header("Content-Type", "application/wasm");
        if let Some(sig) = signature {
            request = request.header(wasmops_shared::signature::HEADER, sig);
        }
        let r = request
            .body(body)
            .map_err(|e| DeviceError::Protocol(e.to_string()))?
            .send()
            .await;
        self.decode(r).await
    }

    pub async fn activate(&self, hash: &str) -> Result<ActivateResponse, DeviceError> {
        let r = Request::post(&self.url(&paths::activate(hash)))
            .header("Authorization", &self.auth())
            .send()
            .await;
        self.decode(r).await
    }

    /// Predictions for a deployment check: marked, so the device does not count them as
    /// live traffic (counters, windows, drift).
    pub async fn verify(&self, rows: Vec<Vec<f64>>) -> Result<PredictResponse, DeviceError> {
        let r = Request::post(&self.url(paths::PREDICT))
            .header("Authorization", &self.auth())
            .header(wire::PURPOSE_HEADER, wire::PURPOSE_VERIFY)
            .json(&PredictRequest { rows })
            .map_err(|e| DeviceError::Protocol(e.to_string()))?
            .send()
            .await;
        self.decode(r).await
    }

    pub async fn rollback(&self) -> Result<RollbackResponse, DeviceError> {
        let r = Request::post(&self.url(paths::ROLLBACK))
            .header("Authorization", &self.auth())
            .send()
            .await;
        self.decode(r).await
    }

    /// The last `count` windows of `window_s` seconds (the current, partial one included).
    pub async fn windows(&self, window_s: u64, count: u64) -> Result<WindowsResponse, DeviceError> {
        let url = format!(
            "{}?window_s={window_s}&count={count}",
            self.url(paths::TELEMETRY_WINDOWS)
        );
        let r = Request::get(&url)
            .header("Authorization", &self.auth())
            .send()
            .await;
        self.decode(r).await
    }
}
