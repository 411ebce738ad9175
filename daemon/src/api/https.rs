//! `tls.https_only`: plain-HTTP requests are turned away, and answers over TLS carry
//! `Strict-Transport-Security`.
//!
//! Plain requests for pages get a 308 redirect to the same URL over HTTPS; API requests
//! (`/api`, `/v1`) get a 426 error instead, since an API client that silently followed a
//! redirect would already have sent its key in clear and should be fixed, not helped along.
//! `/health` and `/ready` stay plain: local probes (systemd's healthcheck command, a load
//! balancer's health check on the host) speak plain HTTP and learn nothing secret.
//!
//! The refusal is a route ranked before every other, on every method and path, that forwards
//! unless the request must be refused; so no handler runs for a refused request and no write
//! happens over plain HTTP.

use rocket::http::{Header, Method, Status};
use rocket::route::{Handler, Outcome};
use rocket::{Data, Request, Route};

use super::AppState;
use super::edge::transport;
use super::error::ApiError;
use crate::front::Listening;

/// Ahead of every route (Rocket's default ranks are -12 to -1).
const RANK: isize = -100;
const METHODS: [Method; 7] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Delete,
    Method::Patch,
    Method::Options,
];
/// Paths served over plain HTTP whatever `https_only` says.
const PLAIN_PATHS: [&str; 2] = ["/health", "/ready"];

/// The routes that refuse plain HTTP, to mount at `/` when `tls.https_only` is on.
pub fn routes() -> Vec<Route> {
    METHODS
        .into_iter()
        .map(|method| {
            let mut route = Route::ranked(RANK, method, "/<_..>", HttpsOnly);
            route.name = Some("https_only".into());
            route
        })
        .collect()
}

/// Whether a route is one of [`routes`]; they match every path and say nothing about one.
pub fn is_https_only_route(route: &Route) -> bool {
    route.rank == RANK && route.name.as_deref() == Some("https_only")
}

#[derive(Clone)]
struct HttpsOnly;

#[rocket::async_trait]
impl Handler for HttpsOnly {
    async fn handle<'r>(&self, request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        match refusal(request) {
            // Not found here: the next route decides, or the catcher answers 404 as before.
            None => Outcome::forward(data, Status::NotFound),
            Some(error) => Outcome::from(request, error),
        }
    }
}

/// Whether the client's request reached the daemon over TLS: its own connection to the
/// HTTPS listener, or a trusted proxy's that says the client used HTTPS.
fn is_https(request: &Request<'_>, state: &AppState) -> bool {
    let connection = transport(request);
    if connection.tls {
        return true;
    }
    let from_proxy = connection
        .peer
        .is_some_and(|peer| state.rate_limits.trusted_proxies().contains(&peer.ip()));
    from_proxy
        && request
            .headers()
            .get_one("X-Forwarded-Proto")
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn refusal(request: &Request<'_>) -> Option<ApiError> {
    let state = request.rocket().state::<AppState>()?;
    if !state.config.tls.https_only || is_https(request, state) {
        return None;
    }
    let path = request.uri().path();
    if PLAIN_PATHS.contains(&path.as_str()) {
        return None;
    }

    let url = https_url(request, state);
    let api = ["/api", "/v1"]
        .iter()
        .any(|prefix| path.as_str() == *prefix || path.as_str().starts_with(&format!("{prefix}/")));
    let error = if api {
        // RFC 9110: a 426 names the protocol to switch to.
        ApiError::new(
            Status::UpgradeRequired,
            "https_required",
            format!("this API is served over HTTPS only: {url}"),
        )
        .with_header("Upgrade", "TLS/1.3, TLS/1.2, HTTP/1.1")
    } else {
        ApiError::new(
            Status::PermanentRedirect,
            "https_required",
            format!("moved to {url}"),
        )
        .with_header("Location", url)
    };
    Some(error)
}

/// The request's URL over HTTPS: the host the client asked for, the HTTPS listener's port.
fn https_url(request: &Request<'_>, state: &AppState) -> String {
    let tls = &state.config.tls;
    let port = request
        .rocket()
        .state::<Listening>()
        .and_then(|listening| listening.https)
        .map_or(tls.port, |address| address.port());
    // Rocket has checked the Host header's syntax; without one (HTTP/1.0) the listener's
    // own address is the best guess.
    let host = match request.host() {
        Some(host) => host.domain().as_str().to_string(),
        None if tls.address.is_unspecified() => "localhost".to_string(),
        None if tls.address.is_ipv6() => format!("[{}]", tls.address),
        None => tls.address.to_string(),
    };
    let authority = if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    };
    let uri = request.uri();
    match uri.query() {
        Some(query) => format!("https://{authority}{}?{}", uri.path(), query.as_str()),
        None => format!("https://{authority}{}", uri.path()),
    }
}

/// `Strict-Transport-Security` for an answer over TLS while `https_only` is on.
pub fn strict_transport_security(request: &Request<'_>) -> Option<Header<'static>> {
    let state = request.rocket().state::<AppState>()?;
    let tls = &state.config.tls;
    if !tls.https_only || !is_https(request, state) {
        return None;
    }
    Some(Header::new(
        "Strict-Transport-Security",
        format!("max-age={}; includeSubDomains", tls.hsts_max_age_secs),
    ))
}
