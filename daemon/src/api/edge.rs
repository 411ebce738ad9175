//! The edge of the API: who the client is (its address, through the listener front and
//! trusted proxies only), the rate-limit headers, CORS for the allowed browser origins, and the
//! security headers that every response carries, errors included.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use nexus_formats::http::forwarded_client;
use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Header, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::{Request, Response, Route, State, options, routes};

use super::AppState;
use super::error::ApiError;
use crate::config::CorsConfig;
use crate::front::Peers;
use crate::limits::{Allowance, Refusal};

/// The API answers JSON only: nothing in it may load, run or frame anything.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'";
/// Headers a browser may send cross-origin, beyond the CORS-safelisted ones.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, If-Match, X-Request-Id";
/// Response headers a browser script may read cross-origin.
const EXPOSED_HEADERS: &str = "ETag, Location, Retry-After, X-Request-Id, RateLimit-Limit, \
    RateLimit-Remaining, RateLimit-Reset";
const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE";

pub fn routes() -> Vec<Route> {
    routes![preflight]
}

/// How a request reached the daemon: the peer's socket address and whether it came over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    pub peer: Option<SocketAddr>,
    pub tls: bool,
}

/// The request's [`Transport`]. Through the listener front, Rocket's own peer is the front's
/// loopback connection; the front's map names the client behind it. A connection that did
/// not come through the front (a local process on Rocket's loopback port, or a test client)
/// is taken as it is: plain, from its own address. Looked up once per request, when it
/// arrives (see `RequestContext`), while the connection is surely still mapped.
pub fn transport(request: &Request<'_>) -> Transport {
    *request.local_cache(|| {
        let socket = request.remote();
        let origin = socket
            .zip(request.rocket().state::<Arc<Peers>>())
            .and_then(|(peer, peers)| peers.lookup(peer));
        match origin {
            Some(origin) => Transport {
                peer: Some(origin.client),
                tls: origin.tls,
            },
            None => Transport {
                peer: socket,
                tls: false,
            },
        }
    })
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not a trusted proxy itself. Anything a client writes
/// into that header is ignored unless a trusted proxy appended the client after it.
pub fn client_address(request: &Request<'_>, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = transport(request).peer?.ip();
    let forwarded = request.headers().get("X-Forwarded-For");
    Some(forwarded_client(peer, forwarded, trusted))
}

/// What a rate-limit check left for the response headers.
pub struct RateLimitState(pub Option<Allowance>);

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let seconds = refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        ApiError::new(
            Status::TooManyRequests,
            "rate_limited",
            format!("too many requests; retry in {seconds} s"),
        )
        .with_header("Retry-After", seconds.to_string())
        .with_header("RateLimit-Limit", refusal.limit.to_string())
        .with_header("RateLimit-Remaining", "0")
        .with_header("RateLimit-Reset", seconds.to_string())
    }
}

/// The CORS policy in force; replaced by a configuration reload.
pub struct Cors {
    config: RwLock<CorsConfig>,
}

impl Cors {
    pub fn new(config: &CorsConfig) -> Cors {
        Cors {
            config: RwLock::new(config.clone()),
        }
    }

    pub fn set_config(&self, config: &CorsConfig) {
        *self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config.clone();
    }

    fn config(&self) -> CorsConfig {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The value of `Access-Control-Allow-Origin` for `origin`, if it is allowed.
    fn allow(&self, config: &CorsConfig, origin: &str) -> Option<String> {
        let listed = config
            .allowed_origins
            .iter()
            .any(|allowed| allowed == origin);
        if listed {
            Some(origin.to_string())
        } else if config.allowed_origins.iter().any(|allowed| allowed == "*") {
            Some("*".to_string())
        } else {
            None
        }
    }
}

/// The `Origin` header of a request, if any.
pub struct Origin<'r>(Option<&'r str>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Origin<'r> {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(Origin(request.headers().get_one("Origin")))
    }
}

/// Answers CORS preflights for every path. A browser sends one before a cross-origin request
/// that is not "simple"; the answer says whether the real request may follow.
#[options("/<_..>")]
fn preflight(state: &State<AppState>, origin: Origin<'_>) -> Result<Status, ApiError> {
    let config = state.cors.config();
    match origin
        .0
        .and_then(|origin| state.cors.allow(&config, origin))
    {
        // The fairing adds the Access-Control-* headers to this answer.
        Some(_) => Ok(Status::NoContent),
        None => Err(ApiError::new(
            Status::Forbidden,
            "cors_origin_refused",
            "this origin may not call the API from a browser",
        )),
    }
}

/// Adds the security, CORS and rate-limit headers to every response.
pub struct EdgeHeaders;

#[rocket::async_trait]
impl Fairing for EdgeHeaders {
    fn info(&self) -> Info {
        Info {
            name: "security, CORS and rate-limit headers",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        for (name, value) in [
            ("Content-Security-Policy", API_CSP),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            (
                "Permissions-Policy",
                "camera=(), microphone=(), geolocation=(), interest-cohort=()",
            ),
            ("Cross-Origin-Opener-Policy", "same-origin"),
            ("Cross-Origin-Resource-Policy", "same-site"),
        ] {
            // A route that serves files for browsers (an SVG, the web app) sets its own policy.
            if name == "Content-Security-Policy" && response.headers().contains(name) {
                continue;
            }
            // Replaces the milder defaults of Rocket's Shield (e.g. `SAMEORIGIN`).
            response.set_header(Header::new(name, value));
        }

        if let Some(hsts) = super::https::strict_transport_security(request) {
            response.set_header(hsts);
        }

        if let RateLimitState(Some(allowance)) = request.local_cache(|| RateLimitState(None)) {
            response.set_header(Header::new("RateLimit-Limit", allowance.limit.to_string()));
            response.set_header(Header::new(
                "RateLimit-Remaining",
                allowance.remaining.to_string(),
            ));
        }

        let Some(state) = request.rocket().state::<AppState>() else {
            return;
        };
        // Answers differ by Origin whenever CORS is configured, so caches must key on it.
        let config = state.cors.config();
        if config.allowed_origins.is_empty() {
            return;
        }
        response.adjoin_header(Header::new("Vary", "Origin"));
        let Some(origin) = request.headers().get_one("Origin") else {
            return;
        };
        let Some(allowed) = state.cors.allow(&config, origin) else {
            return;
        };
        response.set_header(Header::new("Access-Control-Allow-Origin", allowed));
        response.set_header(Header::new(
            "Access-Control-Expose-Headers",
            EXPOSED_HEADERS,
        ));
        if config.allow_credentials {
            response.set_header(Header::new("Access-Control-Allow-Credentials", "true"));
        }
        if request.method() == rocket::http::Method::Options {
            response.set_header(Header::new("Access-Control-Allow-Methods", ALLOWED_METHODS));
            response.set_header(Header::new("Access-Control-Allow-Headers", ALLOWED_HEADERS));
            response.set_header(Header::new(
                "Access-Control-Max-Age",
                config.max_age_secs.to_string(),
            ));
        }
    }
}
