//! Per-request context: the request id, the start time, the key that authenticated, and the
//! access log line written when the response leaves.
//!
//! A client-supplied `X-Request-Id` is kept when it is short and made of safe characters, so
//! ids can be followed across services; anything else is replaced by a fresh id (the header
//! ends up in logs, so it must not be able to forge or flood log lines).

use std::fmt;
use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::request::{FromRequest, Outcome};
use rocket::{Data, Request, Response};

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

/// Assigns request ids, echoes them, and writes one access log line per request.
pub struct RequestContext;

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
        tracing::info!(
            target: "access",
            request_id = %request_id,
            method = %request.method(),
            route,
            path = %request.uri().path(),
            status = response.status().code,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            key,
            "request"
        );
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
}
