//! The one error shape of the API and the one place errors become HTTP answers.
//!
//! Every failure, whether returned by a handler, raised by a guard or caught by Rocket,
//! answers `{"error": {"code", "message", "request_id"}}`. `code` is stable for clients to
//! branch on; `message` is for people. Server faults answer a bare "Internal server error"
//! and the detail goes to the log, under the request id, never to the client.

use std::backtrace::Backtrace;
use std::io::Cursor;
use std::sync::Arc;

use rocket::http::{ContentType, Header, Method, Status};
use rocket::response::{self, Responder, Response};
use rocket::{Request, catch};
use serde::Serialize;
use utoipa::ToSchema;

use super::request::RequestId;
use crate::assets::AssetError;
use crate::auth::AuthError;
use crate::store::StoreError;
use crate::store::page::InvalidCursor;

/// The body of every error answer.
// The responder below serialises this very type, so the OpenAPI schema derived from it is
// the shape clients get.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable cause, e.g. `not_found`, `version_mismatch`, `invalid_body`.
    #[schema(example = "not_found")]
    pub code: String,
    /// For people; its wording may change.
    pub message: String,
    /// The request's id, as echoed in the `X-Request-Id` response header.
    pub request_id: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: Status,
    pub code: &'static str,
    pub message: String,
    /// Extra response headers, e.g. `Allow` on a 405.
    pub headers: Vec<(&'static str, String)>,
    /// Where an unexpected fault arose. Expected 5xx answers (a busy store, a model still
    /// loading) carry none: they come in floods exactly when capturing one costs most.
    pub backtrace: Option<Arc<Backtrace>>,
}

impl ApiError {
    pub fn new(status: Status, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            backtrace: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(Status::BadRequest, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(Status::UnprocessableEntity, code, message)
    }

    /// A server fault: the client learns only that it happened; `detail` is logged.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError {
            backtrace: Some(Arc::new(Backtrace::force_capture())),
            ..ApiError::new(Status::InternalServerError, "internal", detail.to_string())
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    /// The message the client sees.
    fn public_message(&self) -> &str {
        if self.status == Status::InternalServerError {
            "Internal server error"
        } else {
            &self.message
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let request_id = RequestId::of(request);

        if self.status.code >= 500 {
            let route = request
                .route()
                .map_or("unmatched", |route| route.uri.as_str());
            let backtrace = self
                .backtrace
                .as_ref()
                .map(|backtrace| backtrace.to_string());
            tracing::error!(
                request_id = %request_id,
                route,
                status = self.status.code,
                code = self.code,
                detail = %self.message,
                backtrace = backtrace.as_deref(),
                "request failed"
            );
            crate::telemetry::logs::report_error(
                request_id.as_str(),
                route,
                self.code,
                &self.message,
            );
        }

        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.public_message().to_string(),
                request_id: request_id.as_str().to_string(),
            },
        };
        // Three strings always serialise.
        let body = serde_json::to_string(&body).expect("an error body serialises");

        let mut response = Response::build();
        response
            .status(self.status)
            .header(ContentType::JSON)
            .sized_body(body.len(), Cursor::new(body));
        for (name, value) in self.headers {
            response.header(Header::new(name, value));
        }
        response.ok()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound(what) => {
                ApiError::new(Status::NotFound, "not_found", format!("{what} not found"))
            }
            StoreError::VersionMismatch { .. } => ApiError::new(
                Status::PreconditionFailed,
                "version_mismatch",
                error.to_string(),
            ),
            StoreError::Conflict(message) => ApiError::new(Status::Conflict, "conflict", message),
            StoreError::DiskFull => ApiError::new(
                Status::InsufficientStorage,
                "storage_full",
                "the server is out of disk space; nothing was written",
            ),
            StoreError::Busy => ApiError::new(
                Status::ServiceUnavailable,
                "store_busy",
                "the store is busy; retry",
            )
            .with_header("Retry-After", "1"),
            other => ApiError::internal(other),
        }
    }
}

impl From<AssetError> for ApiError {
    fn from(error: AssetError) -> ApiError {
        match error {
            AssetError::UnsupportedType { .. } | AssetError::TypeNotAllowed { .. } => {
                ApiError::new(
                    Status::UnsupportedMediaType,
                    "unsupported_media_type",
                    error.to_string(),
                )
            }
            AssetError::TooLarge { .. } => ApiError::new(
                Status::PayloadTooLarge,
                "payload_too_large",
                error.to_string(),
            ),
            AssetError::Empty => ApiError::bad_request("empty_body", error.to_string()),
            AssetError::Interrupted(_) => {
                ApiError::bad_request("upload_interrupted", error.to_string())
            }
            AssetError::DiskFull => StoreError::DiskFull.into(),
            AssetError::Store(error) => error.into(),
            AssetError::Io(_) => ApiError::internal(error),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        let (status, code) = match error {
            AuthError::Forbidden { .. } => (Status::Forbidden, "forbidden"),
            AuthError::LimitedToProjects => (Status::Forbidden, "key_limited_to_projects"),
            AuthError::Missing => (Status::Unauthorized, "missing_api_key"),
            _ => (Status::Unauthorized, "invalid_api_key"),
        };
        let error = ApiError::new(status, code, error.to_string());
        if status == Status::Unauthorized {
            error.with_header("WWW-Authenticate", "Bearer")
        } else {
            error
        }
    }
}

impl From<InvalidCursor> for ApiError {
    fn from(error: InvalidCursor) -> ApiError {
        ApiError::bad_request("invalid_cursor", error.to_string())
    }
}

/// Set by a guard that fails, so that the catcher Rocket then calls can answer with the
/// guard's own error instead of a generic one for the status.
pub struct GuardError(pub Option<ApiError>);

impl GuardError {
    pub fn stash(request: &Request<'_>, error: ApiError) -> Status {
        let status = error.status;
        request.local_cache(|| GuardError(Some(error)));
        status
    }
}

/// Answers every status Rocket itself raises (no route, guard failures, panics).
#[catch(default)]
pub fn catch_all(status: Status, request: &Request<'_>) -> ApiError {
    if let Some(error) = &request.local_cache(|| GuardError(None)).0 {
        return error.clone();
    }

    if status == Status::NotFound
        && let Some(allowed) = allowed_methods(request)
    {
        return ApiError::new(
            Status::MethodNotAllowed,
            "method_not_allowed",
            format!(
                "{} is not allowed here; allowed: {allowed}",
                request.method()
            ),
        )
        .with_header("Allow", allowed);
    }

    let (code, message) = match status.code {
        400 => ("bad_request", "the request is malformed"),
        401 => ("missing_api_key", "this route needs an API key"),
        404 => ("not_found", "no such route"),
        413 => ("payload_too_large", "the request body is too large"),
        415 => (
            "unsupported_media_type",
            "the request body must be application/json",
        ),
        422 => (
            "unprocessable_entity",
            "the request could not be understood",
        ),
        500 => (
            "internal",
            "a request handler failed (see the log for the panic)",
        ),
        _ => ("http_error", status.reason_lossy()),
    };
    ApiError::new(status, code, message)
}

/// Rocket answers 404 to a known path with an unrouted method; this finds the methods that
/// the path does have, so the answer can be 405 with `Allow`.
fn allowed_methods(request: &Request<'_>) -> Option<String> {
    let path: Vec<&str> = request.uri().path().segments().collect();
    let mut methods: Vec<Method> = request
        .rocket()
        .routes()
        // The CORS preflight answers OPTIONS on every path, and the https_only guard every
        // method on every path; they say nothing about a path.
        .filter(|route| route.method != Method::Options)
        .filter(|route| !super::https::is_https_only_route(route))
        // Nor does the web app's catch-all about the API's paths, which it never serves.
        .filter(|route| !super::web::is_fallback_for_api(route, &path))
        .filter(|route| route.method != request.method() && path_matches(route.uri.path(), &path))
        .map(|route| route.method)
        .collect();

    if methods.is_empty() {
        return None;
    }
    if methods.contains(&Method::Get) && !methods.contains(&Method::Head) {
        methods.push(Method::Head);
    }
    methods.sort_by_key(|method| method.as_str());
    methods.dedup();
    Some(
        methods
            .iter()
            .map(|method| method.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// Whether a route path like `/api/v1/canvases/<id>` matches the request's segments.
fn path_matches(route_path: &str, request: &[&str]) -> bool {
    let route: Vec<&str> = route_path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    if route.last().is_some_and(|segment| segment.ends_with("..>")) {
        return request.len() + 1 >= route.len()
            && route[..route.len() - 1]
                .iter()
                .zip(request)
                .all(|(r, s)| segment_matches(r, s));
    }
    route.len() == request.len()
        && route
            .iter()
            .zip(request)
            .all(|(r, s)| segment_matches(r, s))
}

fn segment_matches(route: &str, request: &str) -> bool {
    (route.starts_with('<') && route.ends_with('>')) || route == request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_paths_match_like_rocket() {
        assert!(path_matches(
            "/api/v1/canvases/<id>",
            &["api", "v1", "canvases", "x"]
        ));
        assert!(!path_matches(
            "/api/v1/canvases/<id>",
            &["api", "v1", "canvases"]
        ));
        assert!(!path_matches(
            "/api/v1/canvases/<id>",
            &["api", "v1", "projects", "x"]
        ));
        assert!(path_matches("/files/<path..>", &["files", "a", "b"]));
        assert!(path_matches("/health", &["health"]));
    }
}
