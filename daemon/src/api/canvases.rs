//! Canvases: JSON documents inside a project, changed with optimistic concurrency, with
//! every version kept as a revision.

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, delete, get, post, put, routes};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::{ReadKey, WriteKey};
use super::body::{IfMatch, JsonBody, Versioned};
use super::error::ApiError;
use super::request::RequestId;
use super::{AppState, Id, PageBody, page_request};
use crate::store::canvases::{
    self, Canvas, CanvasFields, CanvasSummary, Revision, RevisionSummary,
};

pub fn routes() -> Vec<Route> {
    routes![create, list, get, update, remove, revisions, revision]
}

const MAX_TITLE_CHARS: usize = 200;

/// The body of a create or a full update.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CanvasInput {
    title: String,
    /// Any JSON object; serde refuses other JSON types with a clear message.
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
    let author = caller.0.name;
    let canvas = state
        .store
        .write(move |tx| canvases::create(tx, &project_id, &fields, &author))
        .await?;
    tracing::info!(canvas_id = %canvas.summary.id, "canvas created");

    let location = format!("/api/v1/canvases/{}", canvas.summary.id);
    Ok(Versioned::created(canvas, 1, location))
}

#[get("/projects/<project_id>/canvases?<limit>&<cursor>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn list(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: ReadKey,
    project_id: Result<Id, ApiError>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<Json<PageBody<CanvasSummary>>, ApiError> {
    let project_id = project_id?.0;
    let page = page_request(&state.limits, limit, cursor)?;
    let page = state
        .store
        .read(move |connection| canvases::list(connection, &project_id, page))
        .await?;
    Ok(Json(page.into()))
}

#[get("/canvases/<id>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn get(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: ReadKey,
    id: Result<Id, ApiError>,
) -> Result<Versioned<Canvas>, ApiError> {
    let id = id?.0;
    let canvas = state
        .store
        .read(move |connection| canvases::get(connection, &id))
        .await?;
    Ok(versioned(canvas))
}

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
    let author = caller.0.name;
    let canvas = state
        .store
        .write(move |tx| canvases::update(tx, &id, if_match.0, &fields, &author))
        .await?;
    Ok(versioned(canvas))
}

#[delete("/canvases/<id>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn remove(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: WriteKey,
    id: Result<Id, ApiError>,
    if_match: IfMatch,
) -> Result<Status, ApiError> {
    let id = id?.0;
    state
        .store
        .write(move |tx| canvases::delete(tx, &id, if_match.0))
        .await?;
    Ok(Status::NoContent)
}

#[get("/canvases/<id>/revisions?<limit>&<cursor>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn revisions(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: ReadKey,
    id: Result<Id, ApiError>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<Json<PageBody<RevisionSummary>>, ApiError> {
    let id = id?.0;
    let page = page_request(&state.limits, limit, cursor)?;
    let page = state
        .store
        .read(move |connection| canvases::revisions(connection, &id, page))
        .await?;
    Ok(Json(page.into()))
}

#[get("/canvases/<id>/revisions/<version>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn revision(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: ReadKey,
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
        .read(move |connection| canvases::revision(connection, &id, version))
        .await?;
    Ok(Versioned::ok(revision, version))
}
