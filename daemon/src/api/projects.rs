//! `/api/v1/projects`: create, list, get, update and delete projects.

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, delete, get, post, put, routes};
use serde::Deserialize;

use super::auth::{ReadKey, WriteKey};
use super::body::{IfMatch, JsonBody, Versioned};
use super::error::ApiError;
use super::request::RequestId;
use super::{AppState, Id, PageBody, page_request};
use crate::store::projects::{self, Project, ProjectFields};

pub fn routes() -> Vec<Route> {
    routes![create, list, get, update, remove]
}

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectInput {
    name: String,
    #[serde(default)]
    description: String,
}

impl ProjectInput {
    fn validate(self) -> Result<ProjectFields, ApiError> {
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("`name` must be 1 to {MAX_NAME_CHARS} characters"),
            ));
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("`description` must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        Ok(ProjectFields {
            name,
            description: self.description,
        })
    }
}

fn versioned(project: Project) -> Versioned<Project> {
    let version = project.version;
    Versioned::ok(project, version)
}

#[post("/projects", data = "<input>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn create(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: WriteKey,
    input: JsonBody<ProjectInput>,
) -> Result<Versioned<Project>, ApiError> {
    let fields = input.0.validate()?;
    let project = state
        .store
        .write(move |tx| projects::create(tx, &fields))
        .await?;
    tracing::info!(project_id = %project.id, "project created");

    let (version, location) = (project.version, format!("/api/v1/projects/{}", project.id));
    Ok(Versioned::created(project, version, location))
}

#[get("/projects?<limit>&<cursor>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn list(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: ReadKey,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<Json<PageBody<Project>>, ApiError> {
    let page = page_request(&state.limits, limit, cursor)?;
    let page = state
        .store
        .read(move |connection| projects::list(connection, page))
        .await?;
    Ok(Json(page.into()))
}

#[get("/projects/<id>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn get(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: ReadKey,
    id: Result<Id, ApiError>,
) -> Result<Versioned<Project>, ApiError> {
    let id = id?.0;
    let project = state
        .store
        .read(move |connection| projects::get(connection, &id))
        .await?;
    Ok(versioned(project))
}

#[put("/projects/<id>", data = "<input>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn update(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: WriteKey,
    id: Result<Id, ApiError>,
    if_match: IfMatch,
    input: JsonBody<ProjectInput>,
) -> Result<Versioned<Project>, ApiError> {
    let (id, fields) = (id?.0, input.0.validate()?);
    let project = state
        .store
        .write(move |tx| projects::update(tx, &id, if_match.0, &fields))
        .await?;
    Ok(versioned(project))
}

#[delete("/projects/<id>")]
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
        .write(move |tx| projects::delete(tx, &id, if_match.0))
        .await?;
    Ok(Status::NoContent)
}
