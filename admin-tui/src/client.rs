//! The console's HTTP client: fetches the status document and asks for a configuration
//! reload, with the admin key as a bearer token, and turns every way that can fail into a
//! [`ClientError`] an operator can act on.

use std::time::Duration;

use serde::de::DeserializeOwned;
use thiserror::Error;
use ureq::Agent;
use ureq::http::Response;

use crate::status::{ErrorBody, ErrorDetail, ReloadReport, StatusReport};

/// How long one request may take in all. Fetching runs on its own thread, so this bounds how
/// stale a "disconnected" verdict can be, not how long the screen freezes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A daemon that is down refuses at once; one that is unreachable should not hold a whole
/// request timeout before the console says so.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("the daemon refused the admin key ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error("the daemon answered {status} {code}: {message}{}", request_note(.request_id))]
    Status {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("the daemon's answer from {url} is not what the console reads: {source}")]
    Malformed {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One daemon and the key to talk to it.
#[derive(Clone)]
pub struct Client {
    base: String,
    key: String,
    agent: Agent,
}

impl Client {
    /// `base` is the daemon's root URL, such as `http://127.0.0.1:8000`.
    pub fn new(base: &str, key: &str) -> Client {
        let config = Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            // Error statuses carry the daemon's JSON error, which the operator should see.
            .http_status_as_error(false)
            .user_agent(concat!("nexus-canvas-console/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            agent: Agent::new_with_config(config),
        }
    }

    /// `GET /api/v1/admin/status`.
    pub fn status(&self) -> Result<StatusReport, ClientError> {
        let url = format!("{}/api/v1/admin/status", self.base);
        let response = self
            .agent
            .get(&url)
            .header("Authorization", self.bearer())
            .call();
        self.read(url, response)
    }

    /// `POST /api/v1/admin/config/reload`.
    pub fn reload_config(&self) -> Result<ReloadReport, ClientError> {
        let url = format!("{}/api/v1/admin/config/reload", self.base);
        let response = self
            .agent
            .post(&url)
            .header("Authorization", self.bearer())
            .send_empty();
        self.read(url, response)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.key)
    }

    fn read<T: DeserializeOwned>(
        &self,
        url: String,
        response: Result<Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        };
        let mut response = response.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(unreachable)?;

        if response.status().is_success() {
            return serde_json::from_str(&body)
                .map_err(|source| ClientError::Malformed { url, source });
        }
        // Not every error comes from the daemon's own handlers (a proxy, a wrong port), so a
        // body that is not its JSON error still gives the operator its first line.
        let error = match serde_json::from_str::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => error,
            Err(_) => ErrorDetail {
                message: body.lines().next().unwrap_or_default().to_string(),
                ..ErrorDetail::default()
            },
        };
        Err(match status {
            401 | 403 => ClientError::Unauthorized {
                status,
                message: error.message,
            },
            _ => ClientError::Status {
                status,
                code: error.code,
                message: error.message,
                request_id: error.request_id,
            },
        })
    }
}

/// The request id, for quoting when asking about a failure in the daemon's log.
fn request_note(request_id: &Option<String>) -> String {
    request_id
        .as_ref()
        .map_or_else(String::new, |id| format!(" (request id {id})"))
}
