//! `/api/v1/projects`: create, list, get, update and delete projects.

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, delete, get, post, put, routes};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::{ReadKey, WriteKey};
use super::body::{IfMatch, JsonBody, Versioned, at_most_once};
use super::error::{ApiError, ErrorBody};
use super::request::RequestId;
use super::{AppState, Id, PageBody, page_request};
use crate::auth::{AuthError, ProjectAccess};
use crate::store::projects::{self, Project, ProjectFields, ensure_visible};

pub fn routes() -> Vec<Route> {
    routes![create, list, get, update, remove]
}

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2000;

/// The body of a create or a full update.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProjectInput {
    /// 1 to 200 characters once leading and trailing white space is trimmed.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: String,
    /// At most 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
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

/// Create a project
#[utoipa::path(
    post,
    path = "/api/v1/projects",
    operation_id = "create_project",
    tag = "projects",
    security(("api_key" = ["write"])),
    request_body = ProjectInput,
    responses(
        (status = 201, description = "Created", body = Project, headers(
            ("ETag" = String, description = "The project's version, e.g. `\"1\"`"),
            ("Location" = String, description = "The new project's URL"),
        )),
        (status = 400, description = "The body is not JSON (`malformed_json`, `invalid_utf8`)",
            body = ErrorBody),
        (status = 413, description = "The body is over the size limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "Wrong shape (`invalid_body`) or an invalid field \
            (`invalid_field`)", body = ErrorBody),
        (status = 507, description = "The server is out of disk space", body = ErrorBody),
    )
)]
#[post("/projects", data = "<input>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn create(
    state: &State<AppState>,
    request_id: RequestId,
    caller: WriteKey,
    input: JsonBody<ProjectInput>,
) -> Result<Versioned<Project>, ApiError> {
    // The new project would be outside the key's own list.
    if caller.0.projects != ProjectAccess::All {
        return Err(AuthError::LimitedToProjects.into());
    }
    let fields = input.0.validate()?;
    let project = state
        .store
        .write(move |tx| projects::create(tx, &fields))
        .await?;
    tracing::info!(project_id = %project.id, "project created");

    let (version, location) = (project.version, format!("/api/v1/projects/{}", project.id));
    Ok(Versioned::created(project, version, location))
}

/// List projects, oldest first
#[utoipa::path(
    get,
    path = "/api/v1/projects",
    operation_id = "list_projects",
    tag = "projects",
    security(("api_key" = ["read"])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, description = "Page size"),
        ("cursor" = Option<String>, Query,
            description = "`next_cursor` of the previous page, as the server issued it"),
    ),
    responses(
        (status = 200, description = "One page of projects", body = PageBody<Project>),
        (status = 400, description = "`limit` or `cursor` is invalid (`invalid_limit`, \
            `invalid_cursor`) or given twice (`repeated_parameter`)", body = ErrorBody),
    )
)]
#[get("/projects?<limit>&<cursor>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn list(
    state: &State<AppState>,
    request_id: RequestId,
    caller: ReadKey,
    limit: Vec<&str>,
    cursor: Vec<&str>,
) -> Result<Json<PageBody<Project>>, ApiError> {
    let page = page_request(
        &state.limits,
        at_most_once("limit", &limit)?,
        at_most_once("cursor", &cursor)?,
    )?;
    let page = state
        .store
        .read(move |connection| projects::list(connection, &caller.0.projects, page))
        .await?;
    Ok(Json(page.into()))
}

/// Get a project
#[utoipa::path(
    get,
    path = "/api/v1/projects/{id}",
    operation_id = "get_project",
    tag = "projects",
    security(("api_key" = ["read"])),
    params(("id" = String, Path, format = "uuid", description = "The project's id")),
    responses(
        (status = 200, description = "The project", body = Project, headers(
            ("ETag" = String, description = "The project's version, for `If-Match`"),
        )),
        (status = 400, description = "The id is not a UUID (`invalid_id`)", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
    )
)]
#[get("/projects/<id>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn get(
    state: &State<AppState>,
    request_id: RequestId,
    caller: ReadKey,
    id: Result<Id, ApiError>,
) -> Result<Versioned<Project>, ApiError> {
    let id = id?.0;
    ensure_visible(&caller.0.projects, &id, "project")?;
    let project = state
        .store
        .read(move |connection| projects::get(connection, &id))
        .await?;
    Ok(versioned(project))
}

/// Replace a project's fields
///
/// Optimistic concurrency: `If-Match` must name the version the change is based on (or be
/// `*`), else the change is refused rather than silently overwriting another.
#[utoipa::path(
    put,
    path = "/api/v1/projects/{id}",
    operation_id = "update_project",
    tag = "projects",
    security(("api_key" = ["write"])),
    params(
        ("id" = String, Path, format = "uuid", description = "The project's id"),
        ("If-Match" = String, Header, pattern = r#"^(\*|"[0-9]{1,18}")$"#,
            description = "The ETag last read (e.g. `\"3\"`), or `*` for any version"),
    ),
    request_body = ProjectInput,
    responses(
        (status = 200, description = "The updated project", body = Project, headers(
            ("ETag" = String, description = "The new version"),
        )),
        (status = 400, description = "Invalid id (`invalid_id`), `If-Match` \
            (`invalid_if_match`) or JSON (`malformed_json`, `invalid_utf8`)", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
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
#[put("/projects/<id>", data = "<input>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn update(
    state: &State<AppState>,
    request_id: RequestId,
    caller: WriteKey,
    id: Result<Id, ApiError>,
    if_match: IfMatch,
    input: JsonBody<ProjectInput>,
) -> Result<Versioned<Project>, ApiError> {
    let (id, fields) = (id?.0, input.0.validate()?);
    ensure_visible(&caller.0.projects, &id, "project")?;
    let project = state
        .store
        .write(move |tx| projects::update(tx, &id, if_match.0, &fields))
        .await?;
    Ok(versioned(project))
}

/// Delete an empty project
#[utoipa::path(
    delete,
    path = "/api/v1/projects/{id}",
    operation_id = "delete_project",
    tag = "projects",
    security(("api_key" = ["write"])),
    params(
        ("id" = String, Path, format = "uuid", description = "The project's id"),
        ("If-Match" = String, Header, pattern = r#"^(\*|"[0-9]{1,18}")$"#,
            description = "The ETag last read (e.g. `\"3\"`), or `*` for any version"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id (`invalid_id`) or `If-Match` \
            (`invalid_if_match`)", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 409, description = "The project still holds canvases (`conflict`)",
            body = ErrorBody),
        (status = 412, description = "`If-Match` names another version \
            (`version_mismatch`)", body = ErrorBody),
        (status = 428, description = "`If-Match` is missing", body = ErrorBody),
        (status = 507, description = "The server is out of disk space", body = ErrorBody),
    )
)]
#[delete("/projects/<id>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn remove(
    state: &State<AppState>,
    request_id: RequestId,
    caller: WriteKey,
    id: Result<Id, ApiError>,
    if_match: IfMatch,
) -> Result<Status, ApiError> {
    let id = id?.0;
    ensure_visible(&caller.0.projects, &id, "project")?;
    state
        .store
        .write(move |tx| projects::delete(tx, &id, if_match.0))
        .await?;
    Ok(Status::NoContent)
}
