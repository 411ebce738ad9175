//! Per-request context: the request id, the start time, the key that authenticated, and what
//! is recorded when the response leaves: the access log line, the metrics, the SLO windows.
//!
//! A client-supplied `X-Request-Id` is kept when it is short and made of safe characters, so
//! ids can be followed across services; anything else is replaced by a fresh id (the header
//! ends up in logs, so it must not be able to forge or flood log lines).

use std::fmt;
use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Header, Method};
use rocket::request::{FromRequest, Outcome};
use rocket::{Data, Request, Response};

use super::AppState;
use crate::telemetry::metrics::{RequestLabels, RouteLabels};
use crate::telemetry::traffic::RouteClass;

pub const REQUEST_ID_HEADER: &str = "X-Request-Id";
const MAX_REQUEST_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The id of `request`, assigned by [`RequestContext`] when the request arrived.
    pub fn of<'r>(request: &'r Request<'_>) -> &'r RequestId {
        request.local_cache(|| RequestId::from_client(request.headers().get_one(REQUEST_ID_HEADER)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn from_client(header: Option<&str>) -> RequestId {
        match header {
            Some(id) if is_sane(id) => RequestId(id.to_string()),
            _ => RequestId(uuid::Uuid::new_v4().simple().to_string()),
        }
    }
}

fn is_sane(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:/+=".contains(&byte))
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for RequestId {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(RequestId::of(request).clone())
    }
}

/// The name of the API key that authenticated this request, set by the auth guards.
pub struct KeyName(pub Option<String>);

struct StartedAt(Instant);

/// Assigns request ids, echoes them, writes one access log line per request and records it
/// in the metrics and the SLO windows.
pub struct RequestContext;

/// The SLO class of a request by its path; `None` for probes, scrapes and the console's
/// polling, which would otherwise dilute the figures with traffic no user sees, and for asset
/// uploads, which take as long as the client's link does (they have their own rate limit).
pub fn route_class(method: Method, path: &str) -> Option<RouteClass> {
    if super::assets::is_upload(method, path) {
        return None;
    }
    match path {
        "/health" | "/ready" | "/metrics" | "/api/v1/openapi.json" | "/api/v1/admin/status" => None,
        // A search embeds its query: it waits on the model like an embeddings request.
        _ if path.starts_with("/v1/") || path == "/api/v1/search" => Some(RouteClass::Inference),
        _ if path.starts_with("/api/v1/admin/") => Some(RouteClass::Admin),
        _ if matches!(method, Method::Get | Method::Head | Method::Options) => {
            Some(RouteClass::Read)
        }
        _ => Some(RouteClass::Write),
    }
}

#[rocket::async_trait]
impl Fairing for RequestContext {
    fn info(&self) -> Info {
        Info {
            name: "request id and access log",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        request.local_cache(|| StartedAt(Instant::now()));
        RequestId::of(request);
        // Now, while the listener front surely still maps this connection to its client.
        super::edge::transport(request);
        if let Some(state) = request.rocket().state::<AppState>() {
            state.telemetry.metrics.in_flight.inc();
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        let request_id = RequestId::of(request);
        response.set_header(Header::new(
            REQUEST_ID_HEADER,
            request_id.as_str().to_string(),
        ));

        let started = request.local_cache(|| StartedAt(Instant::now())).0;
        let key = request
            .local_cache(|| KeyName(None))
            .0
            .as_deref()
            .unwrap_or("-");
        let route = request.route().map_or("-", |route| route.uri.as_str());
        let latency = started.elapsed();
        let transport = super::edge::transport(request);
        let mut client = transport.peer.map(|peer| peer.ip());
        if let Some(state) = request.rocket().state::<AppState>() {
            record(state, request, response.status().code, latency);
            client = super::edge::client_address(request, &state.rate_limits.trusted_proxies());
        }
        tracing::info!(
            target: "access",
            request_id = %request_id,
            method = %request.method(),
            route,
            path = %request.uri().path(),
            status = response.status().code,
            latency_ms = latency.as_secs_f64() * 1000.0,
            key,
            client = client.map(tracing::field::display),
            tls = transport.tls,
            "request"
        );
    }
}

fn record(state: &AppState, request: &Request<'_>, status: u16, latency: std::time::Duration) {
    let telemetry = &state.telemetry;
    let metrics = &telemetry.metrics;
    metrics.in_flight.dec();

    // The route template, never the raw path: one series per route, whatever clients send.
    let route = request.route().map_or_else(
        || "unmatched".to_string(),
        |route| route.uri.path().to_string(),
    );
    let method = request.method().as_str().to_string();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: method.clone(),
            status: status.to_string(),
        })
        .inc();

    let class = route_class(request.method(), request.uri().path().as_str());
    if class == Some(RouteClass::Inference) {
        metrics
            .inference_request_duration
            .observe(latency.as_secs_f64());
    } else {
        metrics
            .request_duration
            .get_or_create(&RouteLabels { route, method })
            .observe(latency.as_secs_f64());
    }
    if let Some(class) = class {
        telemetry.record_request(class, latency, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        assert_eq!(RequestId::from_client(Some("abc-123")).as_str(), "abc-123");

        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in ["", "has space", "new\nline", "<script>", long.as_str()] {
            let id = RequestId::from_client(Some(bad));
            assert_ne!(id.as_str(), bad);
            assert!(is_sane(id.as_str()));
        }
    }

    #[test]
    fn routes_fall_into_slo_classes() {
        use RouteClass::{Admin, Inference, Read, Write};
        for (method, path, class) in [
            (Method::Get, "/health", None),
            (Method::Get, "/metrics", None),
            (Method::Post, "/v1/embeddings", Some(Inference)),
            (Method::Post, "/api/v1/search", Some(Inference)),
            (Method::Post, "/api/v1/admin/search/reindex", Some(Admin)),
            (Method::Get, "/api/v1/admin/status", None),
            (Method::Post, "/api/v1/admin/config/reload", Some(Admin)),
            (Method::Get, "/api/v1/projects", Some(Read)),
            (Method::Delete, "/api/v1/canvases/x", Some(Write)),
        ] {
            assert_eq!(route_class(method, path), class, "{method} {path}");
        }
    }
}
