//! Request bodies and versioned responses: the JSON body guard, `If-Match`, `ETag`, and query
//! parameters that may be given only once.
//!
//! The body guard replaces Rocket's `Json` so that every way a body can be wrong gets its own
//! stable code: too large (413), not JSON (415), not UTF-8 or not parseable (400), the wrong
//! shape or types (422).

use std::io::Cursor;

use rocket::data::{ByteUnit, Data, FromData, Outcome};
use rocket::http::{ContentType, Header, Status};
use rocket::request::{self, FromRequest, Request};
use rocket::response::{self, Responder, Response};
use rocket::{State, outcome::Outcome as RocketOutcome};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::{ApiError, GuardError};
use super::request::RequestId;

/// A JSON request body deserialised into `T`.
pub struct JsonBody<T>(pub T);

#[rocket::async_trait]
impl<'r, T: DeserializeOwned> FromData<'r> for JsonBody<T> {
    type Error = ();

    async fn from_data(request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r, Self, ()> {
        match parse_body(request, data).await {
            Ok(value) => RocketOutcome::Success(JsonBody(value)),
            Err(error) => RocketOutcome::Error((GuardError::stash(request, error), ())),
        }
    }
}

async fn parse_body<T: DeserializeOwned>(
    request: &Request<'_>,
    data: Data<'_>,
) -> Result<T, ApiError> {
    if let Some(content_type) = request.content_type()
        && !content_type.is_json()
    {
        return Err(ApiError::new(
            Status::UnsupportedMediaType,
            "unsupported_media_type",
            format!("the body must be application/json, not {content_type}"),
        ));
    }

    let limit = match request.guard::<&State<AppState>>().await {
        RocketOutcome::Success(state) => state.limits.json_body_bytes,
        _ => return Err(ApiError::internal("application state is not managed")),
    };
    let bytes = data
        .open(ByteUnit::from(limit))
        .into_bytes()
        .await
        .map_err(|error| ApiError::bad_request("unreadable_body", error.to_string()))?;
    if !bytes.is_complete() {
        return Err(ApiError::new(
            Status::PayloadTooLarge,
            "payload_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        ));
    }

    let text = std::str::from_utf8(&bytes).map_err(|error| {
        ApiError::bad_request(
            "invalid_utf8",
            format!("the body is not valid UTF-8: {error}"),
        )
    })?;
    serde_json::from_str(text).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ApiError::unprocessable(
            "invalid_body",
            format!("the body has the wrong shape: {error}"),
        ),
        _ => ApiError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {error}"),
        ),
    })
}

/// The version a client expects to change, from a required `If-Match` header.
/// `None` is `If-Match: *`.
pub struct IfMatch(pub Option<i64>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IfMatch {
    type Error = ();

    async fn from_request(request: &'r Request<'_>) -> request::Outcome<Self, ()> {
        match parse_if_match(request.headers().get_one("If-Match")) {
            Ok(expected) => RocketOutcome::Success(IfMatch(expected)),
            Err(error) => RocketOutcome::Error((GuardError::stash(request, error), ())),
        }
    }
}

fn parse_if_match(header: Option<&str>) -> Result<Option<i64>, ApiError> {
    let header = header.ok_or_else(|| {
        ApiError::new(
            Status::PreconditionRequired,
            "precondition_required",
            "send `If-Match` with the ETag you last read, so that a concurrent change is not lost",
        )
    })?;

    nexus_formats::http::parse_if_match(header).map_err(|_| {
        ApiError::bad_request(
            "invalid_if_match",
            "If-Match must be one ETag, like \"3\", or *",
        )
    })
}

/// The value of a query parameter that may be given at most once. Handlers take such a
/// parameter as `Vec<&str>`: as an `Option`, Rocket reads a repeated one as absent, so that
/// `?cursor=a&cursor=b` quietly restarted a listing at its first page.
pub fn at_most_once<'v>(name: &str, values: &[&'v str]) -> Result<Option<&'v str>, ApiError> {
    match values {
        [] => Ok(None),
        [value] => Ok(Some(value)),
        _ => Err(ApiError::bad_request(
            "repeated_parameter",
            format!("`{name}` is given more than once"),
        )),
    }
}

pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// A JSON response carrying an `ETag` (and, for a creation, its status and `Location`).
pub struct Versioned<T> {
    pub body: T,
    pub version: i64,
    pub status: Status,
    pub location: Option<String>,
}

impl<T> Versioned<T> {
    pub fn ok(body: T, version: i64) -> Versioned<T> {
        Versioned {
            body,
            version,
            status: Status::Ok,
            location: None,
        }
    }

    pub fn created(body: T, version: i64, location: String) -> Versioned<T> {
        Versioned {
            body,
            version,
            status: Status::Created,
            location: Some(location),
        }
    }
}

impl<'r, T: Serialize> Responder<'r, 'static> for Versioned<T> {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        // Our response types always serialise; should one ever fail, the 500 catcher answers.
        let body = serde_json::to_string(&self.body).map_err(|error| {
            tracing::error!(request_id = %RequestId::of(request), %error, "unserialisable body");
            Status::InternalServerError
        })?;

        let mut response = Response::build();
        response
            .status(self.status)
            .header(ContentType::JSON)
            .header(Header::new("ETag", etag(self.version)))
            .sized_body(body.len(), Cursor::new(body));
        if let Some(location) = self.location {
            response.header(Header::new("Location", location));
        }
        response.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_taken_once() {
        assert_eq!(at_most_once("limit", &[]).unwrap(), None);
        assert_eq!(at_most_once("limit", &["5"]).unwrap(), Some("5"));
        assert_eq!(
            at_most_once("limit", &["5", "5"]).unwrap_err().code,
            "repeated_parameter"
        );
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(parse_if_match(Some("\"3\"")).unwrap(), Some(3));
        assert_eq!(parse_if_match(Some(" * ")).unwrap(), None);
        assert_eq!(
            parse_if_match(None).unwrap_err().status,
            Status::PreconditionRequired
        );
        for bad in ["3", "W/\"3\"", "\"x\"", "\"1\", \"2\""] {
            assert_eq!(
                parse_if_match(Some(bad)).unwrap_err().code,
                "invalid_if_match",
                "{bad}"
            );
        }
    }
}
