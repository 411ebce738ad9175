//! Canvases: JSON documents inside a project, changed with optimistic concurrency, with
//! every version kept as a revision.

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, delete, get, post, put, routes};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::{Caller, ReadKey, WriteKey};
use super::body::{IfMatch, JsonBody, Versioned, at_most_once};
use super::error::{ApiError, ErrorBody};
use super::request::RequestId;
use super::{AppState, Id, PageBody, page_request};
use crate::store::canvases::{
    self, Canvas, CanvasFields, CanvasSummary, Revision, RevisionSummary,
};
use crate::store::projects::ensure_visible;

pub fn routes() -> Vec<Route> {
    routes![create, list, get, update, remove, revisions, revision]
}

const MAX_TITLE_CHARS: usize = 200;

/// The body of a create or a full update.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CanvasInput {
    /// 1 to 200 characters once leading and trailing white space is trimmed.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    title: String,
    /// Any JSON object; serde refuses other JSON types with a clear message.
    #[schema(value_type = Object)]
    document: Map<String, Value>,
}

impl CanvasInput {
    fn validate(self) -> Result<CanvasFields, ApiError> {
        let title = self.title.trim().to_string();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("`title` must be 1 to {MAX_TITLE_CHARS} characters"),
            ));
        }
        Ok(CanvasFields {
            title,
            document: Value::Object(self.document).to_string(),
        })
    }
}

fn versioned(canvas: Canvas) -> Versioned<Canvas> {
    let version = canvas.summary.version;
    Versioned::ok(canvas, version)
}

/// Create a canvas in a project
#[utoipa::path(
    post,
    path = "/api/v1/projects/{project_id}/canvases",
    operation_id = "create_canvas",
    tag = "canvases",
    security(("api_key" = ["write"])),
    params(("project_id" = String, Path, format = "uuid", description = "The project's id")),
    request_body = CanvasInput,
    responses(
        (status = 201, description = "Created, as version 1", body = Canvas, headers(
            ("ETag" = String, description = "The canvas's version, `\"1\"`"),
            ("Location" = String, description = "The new canvas's URL"),
        )),
        (status = 400, description = "Invalid project id (`invalid_id`) or JSON \
            (`malformed_json`, `invalid_utf8`)", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 413, description = "The body is over the size limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "Wrong shape (`invalid_body`) or an invalid field \
            (`invalid_field`)", body = ErrorBody),
        (status = 507, description = "The server is out of disk space", body = ErrorBody),
    )
)]
#[post("/projects/<project_id>/canvases", data = "<input>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn create(
    state: &State<AppState>,
    request_id: RequestId,
    caller: WriteKey,
    project_id: Result<Id, ApiError>,
    input: JsonBody<CanvasInput>,
) -> Result<Versioned<Canvas>, ApiError> {
    let (project_id, fields) = (project_id?.0, input.0.validate()?);
    ensure_visible(&caller.0.projects, &project_id, "project")?;
    let author = caller.0.name;
    let canvas = state
        .store
        .write(move |tx| canvases::create(tx, &project_id, &fields, &author))
        .await?;
    tracing::info!(canvas_id = %canvas.summary.id, "canvas created");

    let location = format!("/api/v1/canvases/{}", canvas.summary.id);
    Ok(Versioned::created(canvas, 1, location))
}

/// List a project's canvases, oldest first, without their documents
#[utoipa::path(
    get,
    path = "/api/v1/projects/{project_id}/canvases",
    operation_id = "list_canvases",
    tag = "canvases",
    security(("api_key" = ["read"])),
    params(
        ("project_id" = String, Path, format = "uuid", description = "The project's id"),
        ("limit" = Option<u32>, Query, minimum = 1, description = "Page size"),
        ("cursor" = Option<String>, Query,
            description = "`next_cursor` of the previous page, as the server issued it"),
    ),
    responses(
        (status = 200, description = "One page of canvases", body = PageBody<CanvasSummary>),
        (status = 400, description = "The project id (`invalid_id`), `limit` or `cursor` is \
            invalid (`invalid_limit`, `invalid_cursor`), or one is given twice \
            (`repeated_parameter`)", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
    )
)]
#[get("/projects/<project_id>/canvases?<limit>&<cursor>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn list(
    state: &State<AppState>,
    request_id: RequestId,
    caller: ReadKey,
    project_id: Result<Id, ApiError>,
    limit: Vec<&str>,
    cursor: Vec<&str>,
) -> Result<Json<PageBody<CanvasSummary>>, ApiError> {
    let project_id = project_id?.0;
    ensure_visible(&caller.0.projects, &project_id, "project")?;
    let page = page_request(
        &state.limits,
        at_most_once("limit", &limit)?,
        at_most_once("cursor", &cursor)?,
    )?;
    let page = state
        .store
        .read(move |connection| canvases::list(connection, &project_id, page))
        .await?;
    Ok(Json(page.into()))
}

/// Get a canvas with its document
#[utoipa::path(
    get,
    path = "/api/v1/canvases/{id}",
    operation_id = "get_canvas",
    tag = "canvases",
    security(("api_key" = ["read"])),
    params(("id" = String, Path, format = "uuid", description = "The canvas's id")),
    responses(
        (status = 200, description = "The canvas", body = Canvas, headers(
            ("ETag" = String, description = "The canvas's version, for `If-Match`"),
        )),
        (status = 400, description = "The id is not a UUID (`invalid_id`)", body = ErrorBody),
        (status = 404, description = "No such canvas", body = ErrorBody),
    )
)]
#[get("/canvases/<id>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn get(
    state: &State<AppState>,
    request_id: RequestId,
    caller: ReadKey,
    id: Result<Id, ApiError>,
) -> Result<Versioned<Canvas>, ApiError> {
    let id = id?.0;
    let canvas = state
        .store
        .read(move |connection| {
            let canvas = canvases::get(connection, &id)?;
            ensure_visible(&caller.0.projects, &canvas.summary.project_id, "canvas")?;
            Ok(canvas)
        })
        .await?;
    Ok(versioned(canvas))
}

/// Replace a canvas's title and document, keeping the new version as a revision
///
/// Optimistic concurrency: `If-Match` must name the version the change is based on (or be
/// `*`), else the change is refused rather than silently overwriting another.
#[utoipa::path(
    put,
    path = "/api/v1/canvases/{id}",
    operation_id = "update_canvas",
    tag = "canvases",
    security(("api_key" = ["write"])),
    params(
        ("id" = String, Path, format = "uuid", description = "The canvas's id"),
        ("If-Match" = String, Header, pattern = r#"^(\*|"[0-9]{1,18}")$"#,
            description = "The ETag last read (e.g. `\"3\"`), or `*` for any version"),
    ),
    request_body = CanvasInput,
    responses(
        (status = 200, description = "The updated canvas", body = Canvas, headers(
            ("ETag" = String, description = "The new version"),
        )),
        (status = 400, description = "Invalid id (`invalid_id`), `If-Match` \
            (`invalid_if_match`) or JSON (`malformed_json`, `invalid_utf8`)", body = ErrorBody),
        (status = 404, description = "No such canvas", body = ErrorBody),
        (status = 412, description = "`If-Match` names another version \
            (`version_mismatch`)", body = ErrorBody),
        (status = 413, description = "The body is over the size limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "Wrong shape (`invalid_body`) or an invalid field \
            (`invalid_field`)", body = ErrorBody),
        (status = 428, description = "`If-Match` is missing", body = ErrorBody),
        (status = 507, description = "The server is out of disk space", body = ErrorBody),
    )
)]
#[put("/canvases/<id>", data = "<input>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn update(
    state: &State<AppState>,
    request_id: RequestId,
    caller: WriteKey,
    id: Result<Id, ApiError>,
    if_match: IfMatch,
    input: JsonBody<CanvasInput>,
) -> Result<Versioned<Canvas>, ApiError> {
    let (id, fields) = (id?.0, input.0.validate()?);
    let Caller { name, projects, .. } = caller.0;
    let canvas = state
        .store
        .write(move |tx| {
            ensure_visible(&projects, &canvases::project_of(tx, &id)?, "canvas")?;
            canvases::update(tx, &id, if_match.0, &fields, &name)
        })
        .await?;
    Ok(versioned(canvas))
}

/// Delete a canvas and its revisions
#[utoipa::path(
    delete,
    path = "/api/v1/canvases/{id}",
    operation_id = "delete_canvas",
    tag = "canvases",
    security(("api_key" = ["write"])),
    params(
        ("id" = String, Path, format = "uuid", description = "The canvas's id"),
        ("If-Match" = String, Header, pattern = r#"^(\*|"[0-9]{1,18}")$"#,
            description = "The ETag last read (e.g. `\"3\"`), or `*` for any version"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id (`invalid_id`) or `If-Match` \
            (`invalid_if_match`)", body = ErrorBody),
        (status = 404, description = "No such canvas", body = ErrorBody),
        (status = 412, description = "`If-Match` names another version \
            (`version_mismatch`)", body = ErrorBody),
        (status = 428, description = "`If-Match` is missing", body = ErrorBody),
        (status = 507, description = "The server is out of disk space", body = ErrorBody),
    )
)]
#[delete("/canvases/<id>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn remove(
    state: &State<AppState>,
    request_id: RequestId,
    caller: WriteKey,
    id: Result<Id, ApiError>,
    if_match: IfMatch,
) -> Result<Status, ApiError> {
    let id = id?.0;
    state
        .store
        .write(move |tx| {
            ensure_visible(
                &caller.0.projects,
                &canvases::project_of(tx, &id)?,
                "canvas",
            )?;
            canvases::delete(tx, &id, if_match.0)
        })
        .await?;
    Ok(Status::NoContent)
}

/// List a canvas's revisions, oldest first, without their documents
#[utoipa::path(
    get,
    path = "/api/v1/canvases/{id}/revisions",
    operation_id = "list_revisions",
    tag = "canvases",
    security(("api_key" = ["read"])),
    params(
        ("id" = String, Path, format = "uuid", description = "The canvas's id"),
        ("limit" = Option<u32>, Query, minimum = 1, description = "Page size"),
        ("cursor" = Option<String>, Query,
            description = "`next_cursor` of the previous page, as the server issued it"),
    ),
    responses(
        (status = 200, description = "One page of revisions", body = PageBody<RevisionSummary>),
        (status = 400, description = "The id (`invalid_id`), `limit` or `cursor` is invalid \
            (`invalid_limit`, `invalid_cursor`), or one is given twice (`repeated_parameter`)",
            body = ErrorBody),
        (status = 404, description = "No such canvas", body = ErrorBody),
    )
)]
#[get("/canvases/<id>/revisions?<limit>&<cursor>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn revisions(
    state: &State<AppState>,
    request_id: RequestId,
    caller: ReadKey,
    id: Result<Id, ApiError>,
    limit: Vec<&str>,
    cursor: Vec<&str>,
) -> Result<Json<PageBody<RevisionSummary>>, ApiError> {
    let id = id?.0;
    let page = page_request(
        &state.limits,
        at_most_once("limit", &limit)?,
        at_most_once("cursor", &cursor)?,
    )?;
    let page = state
        .store
        .read(move |connection| {
            ensure_visible(
                &caller.0.projects,
                &canvases::project_of(connection, &id)?,
                "canvas",
            )?;
            canvases::revisions(connection, &id, page)
        })
        .await?;
    Ok(Json(page.into()))
}

/// Get one revision of a canvas, with its document
#[utoipa::path(
    get,
    path = "/api/v1/canvases/{id}/revisions/{version}",
    operation_id = "get_revision",
    tag = "canvases",
    security(("api_key" = ["read"])),
    params(
        ("id" = String, Path, format = "uuid", description = "The canvas's id"),
        ("version" = i64, Path, minimum = 1, description = "The version, from 1"),
    ),
    responses(
        (status = 200, description = "The revision", body = Revision, headers(
            ("ETag" = String, description = "The revision's version"),
        )),
        (status = 400, description = "Invalid id (`invalid_id`) or version \
            (`invalid_version`)", body = ErrorBody),
        (status = 404, description = "No such canvas or revision", body = ErrorBody),
    )
)]
#[get("/canvases/<id>/revisions/<version>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn revision(
    state: &State<AppState>,
    request_id: RequestId,
    caller: ReadKey,
    id: Result<Id, ApiError>,
    version: &str,
) -> Result<Versioned<Revision>, ApiError> {
    let id = id?.0;
    let version = version
        .parse::<i64>()
        .ok()
        .filter(|version| *version >= 1)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_version",
                "the revision must be a version number (1, 2, …)",
            )
        })?;
    let revision = state
        .store
        .read(move |connection| {
            ensure_visible(
                &caller.0.projects,
                &canvases::project_of(connection, &id)?,
                "canvas",
            )?;
            canvases::revision(connection, &id, version)
        })
        .await?;
    Ok(Versioned::ok(revision, version))
}
