//! Brand assets over HTTP: upload (a raw body, or `multipart/form-data` from browsers), list,
//! metadata, delete, and the bytes: by asset id, by content hash, and as thumbnails.
//!
//! An upload streams to a temporary file while it is hashed; its type is sniffed from its first
//! bytes (415 when not accepted) and its size checked against that type's limit as it arrives
//! (413, at once when `Content-Length` already says so). Bytes are served by
//! [`super::files`]: strong ETags, 304, ranges. SVG, which a browser would run as a page,
//! always carries a sandboxing CSP and is an attachment unless `assets.svg_inline`.

use std::sync::Arc;

use rocket::data::{ByteUnit, Data};
use rocket::fairing::{Fairing, Info, Kind as FairingKind};
use rocket::form::FromForm;
use rocket::http::{ContentType, Method, RawStr, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::status::Created;
use rocket::serde::json::Json;
use rocket::{Build, Orbit, Rocket, Route, State, delete, get, post, routes};
use tokio::io::AsyncReadExt;
use utoipa::ToSchema;

use super::auth::{Caller, ReadKey, WriteKey};
use super::body::at_most_once;
use super::error::{ApiError, ErrorBody, GuardError};
use super::files::{FileAnswer, FileBody, IMMUTABLE, Preconditions};
use super::request::RequestId;
use super::{AppState, Id, PageBody, page_request};
use crate::assets::sniff::{HEAD_BYTES, Kind};
use crate::assets::{AssetError, Assets, Staged, UploadInfo, is_sha256};
use crate::store::assets::{self as rows, Asset, AssetFilter, ThumbnailState};
use crate::store::projects;

pub fn routes() -> Vec<Route> {
    routes![upload, list, get, remove, content, thumbnail, blob]
}

const MAX_FILE_NAME_CHARS: usize = 255;
const MAX_TAGS: usize = 32;
const MAX_TAG_CHARS: usize = 64;
const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Room in a multipart body for its boundaries, part headers and text fields.
const MULTIPART_OVERHEAD: u64 = 1 << 20;
/// The most a multipart text field may hold.
const MAX_TEXT_FIELD_BYTES: usize = 64 << 10;
/// How much of a raw body is read at a time.
const READ_CHUNK: usize = 64 << 10;
/// How long a client may cache what the id URLs answer: assets are immutable, but may be
/// deleted, which this bounds the visibility of.
const SHORT_CACHE: &str = "private, max-age=60";
/// The policy an SVG is served under: its own styles, nothing loaded, no script, sandboxed.
const SVG_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/// Whether a request is an upload. Uploads have their own rate-limit bucket and stay out of
/// the write latency objective: they last as long as the client's link takes.
pub fn is_upload(method: Method, path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    method == Method::Post && matches!(segments[..], ["api", "v1", "projects", _, "assets"])
}

/// Opens the asset store when Rocket ignites (a failure stops the launch, naming the cause)
/// and starts its background work once the server is up.
pub struct AssetsFairing;

#[rocket::async_trait]
impl Fairing for AssetsFairing {
    fn info(&self) -> Info {
        Info {
            name: "asset store",
            kind: FairingKind::Ignite | FairingKind::Liftoff,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> rocket::fairing::Result {
        let Some(state) = rocket.state::<AppState>() else {
            return Err(rocket);
        };
        match Assets::open(&state.config, state.store.clone()) {
            Ok(assets) => Ok(rocket.manage(Arc::new(assets))),
            Err(error) => {
                tracing::error!(%error, "cannot open the asset store");
                Err(rocket)
            }
        }
    }

    async fn on_liftoff(&self, rocket: &Rocket<Orbit>) {
        if let Some(assets) = rocket.state::<Arc<Assets>>() {
            assets.spawn_background();
        }
    }
}

/// The file's bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
struct FileBytes(#[allow(dead_code)] Vec<u8>);

/// An upload from a browser form. Only `file` is needed; the other fields, like the query
/// parameters and headers, describe it (a query parameter or header wins over a field).
#[derive(ToSchema)]
// Documents the form; the handler reads it part by part, as it streams.
#[allow(dead_code)]
struct UploadForm {
    /// The file. Its part's own file name names the asset when nothing else does.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    #[schema(max_length = 255)]
    filename: Option<String>,
    /// Comma-separated, at most 32 of at most 64 characters each.
    tags: Option<String>,
    #[schema(max_length = 2000)]
    description: Option<String>,
}

/// What describes an upload besides its bytes, wherever it came from.
#[derive(Debug, Default)]
struct Described {
    file_name: Option<String>,
    tags: Option<Vec<String>>,
    description: Option<String>,
}

impl Described {
    /// Fills what `self` lacks from `other`.
    fn or(self, other: Described) -> Described {
        Described {
            file_name: self.file_name.or(other.file_name),
            tags: self.tags.or(other.tags),
            description: self.description.or(other.description),
        }
    }

    fn set(&mut self, field: &str, value: &str) -> Result<(), ApiError> {
        match field {
            "filename" => self.file_name = Some(file_name(value)?),
            "tags" => self.tags = Some(tags(value)?),
            "description" => self.description = Some(description(value)?),
            other => {
                return Err(ApiError::bad_request(
                    "invalid_form",
                    format!("unknown form field `{other}`"),
                ));
            }
        }
        Ok(())
    }
}

fn invalid_field(message: String) -> ApiError {
    ApiError::unprocessable("invalid_field", message)
}

/// A file name as stored: the last part of what the client sent (some browsers send a whole
/// path), without control characters. It is only ever shown, never used as a path.
fn file_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.rsplit(['/', '\\']).next().unwrap_or(raw).trim();
    if name.is_empty()
        || name.chars().count() > MAX_FILE_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(invalid_field(format!(
            "the file name must be 1 to {MAX_FILE_NAME_CHARS} printable characters"
        )));
    }
    Ok(name.to_string())
}

/// Comma-separated tags, trimmed, empty ones dropped, repeats kept once.
fn tags(raw: &str) -> Result<Vec<String>, ApiError> {
    let mut tags: Vec<String> = Vec::new();
    for tag in raw.split(',').map(str::trim).filter(|tag| !tag.is_empty()) {
        check_tag(tag)?;
        if !tags.iter().any(|known| known == tag) {
            tags.push(tag.to_string());
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(invalid_field(format!("at most {MAX_TAGS} tags")));
    }
    Ok(tags)
}

fn check_tag(tag: &str) -> Result<(), ApiError> {
    if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS || tag.chars().any(char::is_control) {
        return Err(invalid_field(format!(
            "a tag must be 1 to {MAX_TAG_CHARS} printable characters"
        )));
    }
    Ok(())
}

fn description(raw: &str) -> Result<String, ApiError> {
    if raw.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid_field(format!(
            "the description must be at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(raw.to_string())
}

/// The headers of an upload request: how the body is framed, and the optional `X-Filename`,
/// `X-Tags` and `X-Description` (percent-encoded UTF-8, since header values are ASCII).
struct UploadHeaders {
    content_type: Option<ContentType>,
    content_length: Option<u64>,
    described: Described,
}

impl UploadHeaders {
    fn read(request: &Request<'_>) -> Result<UploadHeaders, ApiError> {
        let headers = request.headers();
        let mut described = Described::default();
        for (header, field) in [
            ("X-Filename", "filename"),
            ("X-Tags", "tags"),
            ("X-Description", "description"),
        ] {
            if let Some(value) = headers.get_one(header) {
                let value = RawStr::new(value).percent_decode().map_err(|_| {
                    ApiError::bad_request(
                        "invalid_header",
                        format!("`{header}` is not percent-encoded UTF-8"),
                    )
                })?;
                described.set(field, &value)?;
            }
        }
        Ok(UploadHeaders {
            content_type: request.content_type().cloned(),
            content_length: headers
                .get_one("Content-Length")
                .and_then(|length| length.trim().parse().ok()),
            described,
        })
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for UploadHeaders {
    type Error = ();

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ()> {
        match UploadHeaders::read(request) {
            Ok(headers) => Outcome::Success(headers),
            Err(error) => Outcome::Error((GuardError::stash(request, error), ())),
        }
    }
}

/// The asset store, as managed by [`AssetsFairing`].
type AssetStore = State<Arc<Assets>>;

/// Upload an asset to a project
///
/// The body is the file itself (any `Content-Type`: the type is read from the bytes), or a
/// `multipart/form-data` form with a `file` part. The file name, tags and description may
/// come as query parameters, as `X-Filename`, `X-Tags`, `X-Description` headers
/// (percent-encoded), or as form fields. The same bytes uploaded twice are stored once.
#[utoipa::path(
    post,
    path = "/api/v1/projects/{project_id}/assets",
    operation_id = "upload_asset",
    tag = "assets",
    security(("api_key" = ["write"])),
    params(
        ("project_id" = String, Path, format = "uuid", description = "The project's id"),
        ("filename" = Option<String>, Query, max_length = 255,
            description = "The asset's file name"),
        ("tags" = Option<String>, Query, description = "Comma-separated tags"),
        ("description" = Option<String>, Query, max_length = 2000,
            description = "What the asset is"),
        ("X-Filename" = Option<String>, Header, description = "The file name, percent-encoded"),
        ("X-Tags" = Option<String>, Header, description = "Comma-separated tags, percent-encoded"),
        ("X-Description" = Option<String>, Header,
            description = "The description, percent-encoded"),
    ),
    request_body(
        description = "The file, or a form holding it",
        content(
            (inline(FileBytes) = "application/octet-stream"),
            (inline(UploadForm) = "multipart/form-data"),
        )
    ),
    responses(
        (status = 201, description = "Stored", body = Asset, headers(
            ("Location" = String, description = "The new asset's URL"),
        )),
        (status = 400, description = "Invalid project id (`invalid_id`), an empty body \
            (`empty_body`), a malformed form (`invalid_multipart`, `invalid_form`, \
            `missing_file`), a header that is not percent-encoded UTF-8 (`invalid_header`), a \
            parameter given twice (`repeated_parameter`), or a body cut short \
            (`upload_interrupted`)", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 413, description = "The file is over its type's size limit \
            (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "The file's type (read from its bytes) is not accepted \
            (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "An invalid file name, tag or description \
            (`invalid_field`)", body = ErrorBody),
        (status = 429, description = "Too many uploads (`rate_limited`)", body = ErrorBody),
        (status = 507, description = "The server is out of disk space", body = ErrorBody),
    )
)]
#[post(
    "/projects/<project_id>/assets?<filename>&<tags>&<description>",
    data = "<body>"
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
#[allow(clippy::too_many_arguments)] // Rocket's guards are arguments.
async fn upload(
    state: &State<AppState>,
    assets: &AssetStore,
    request_id: RequestId,
    caller: WriteKey,
    project_id: Result<Id, ApiError>,
    filename: Vec<&str>,
    tags: Vec<&str>,
    description: Vec<&str>,
    mut headers: UploadHeaders,
    body: Data<'_>,
) -> Result<Created<Json<Asset>>, ApiError> {
    let project_id = project_id?.0;
    projects::ensure_visible(&caller.0.projects, &project_id, "project")?;
    let mut described = Described::default();
    for (field, values) in [
        ("filename", filename),
        ("tags", tags),
        ("description", description),
    ] {
        if let Some(value) = at_most_once(field, &values)? {
            described.set(field, value)?;
        }
    }
    let described = described.or(std::mem::take(&mut headers.described));

    // Before receiving what may be a large body.
    let project = project_id.clone();
    state
        .store
        .read(move |connection| projects::get(connection, &project))
        .await?;

    let multipart = headers
        .content_type
        .as_ref()
        .is_some_and(|content_type| content_type.top() == "multipart");
    let (staged, described) = if multipart {
        let (staged, form) = receive_form(assets, &headers, body).await?;
        (staged, described.or(form))
    } else {
        (
            receive_raw(assets, headers.content_length, body).await?,
            described,
        )
    };

    let info = UploadInfo {
        project_id,
        file_name: described.file_name,
        tags: described.tags.unwrap_or_default(),
        description: described.description.unwrap_or_default(),
        uploaded_by: caller.0.name,
    };
    let asset = assets.commit(staged, info).await?;
    tracing::info!(
        asset_id = %asset.id,
        sha256 = %asset.sha256,
        mime = %asset.mime,
        size = asset.size,
        "asset uploaded"
    );

    let location = format!("/api/v1/assets/{}", asset.id);
    Ok(Created::new(location).body(Json(asset)))
}

/// Receives a raw body: the file itself.
async fn receive_raw(
    assets: &Assets,
    declared_length: Option<u64>,
    mut body: Data<'_>,
) -> Result<Staged, ApiError> {
    let kind = assets.accept(body.peek(HEAD_BYTES).await)?;
    let limit = assets.limit(kind);
    // Refused before a byte is stored when the client already said how much it will send.
    if declared_length.is_some_and(|length| length > limit) {
        return Err(AssetError::TooLarge { kind, limit }.into());
    }

    let mut intake = assets.begin(kind).await?;
    // One byte over the limit is enough for the intake to refuse it.
    let mut stream = body.open(ByteUnit::from(limit.saturating_add(1)));
    let mut buffer = vec![0; READ_CHUNK];
    loop {
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(AssetError::Interrupted)?;
        if read == 0 {
            break;
        }
        intake.write(&buffer[..read]).await?;
    }
    Ok(intake.finish().await?)
}

/// Receives a `multipart/form-data` body: one `file` part, streamed like a raw body, and the
/// optional text fields.
async fn receive_form(
    assets: &Assets,
    headers: &UploadHeaders,
    body: Data<'_>,
) -> Result<(Staged, Described), ApiError> {
    let boundary = headers
        .content_type
        .as_ref()
        .filter(|content_type| content_type.sub() == "form-data")
        .and_then(|content_type| content_type.param("boundary"))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_multipart",
                "a multipart body must be multipart/form-data with a boundary",
            )
        })?
        .to_string();
    let cap = assets.largest_limit().saturating_add(MULTIPART_OVERHEAD);
    if headers.content_length.is_some_and(|length| length > cap) {
        return Err(too_large_form(cap));
    }

    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(cap));
    let stream = body.open(ByteUnit::from(cap.saturating_add(1)));
    let mut form = multer::Multipart::with_reader_with_constraints(stream, boundary, constraints);

    let (mut staged, mut described, mut part_name) = (None, Described::default(), None);
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name != "file" {
            let text = field_text(&mut field, &name).await?;
            described.set(&name, &text)?;
            continue;
        }
        if staged.is_some() {
            return Err(ApiError::bad_request(
                "invalid_form",
                "one file per upload: the form has a second `file` part",
            ));
        }
        part_name = field.file_name().map(file_name).transpose()?;
        staged = Some(receive_part(assets, &mut field).await?);
    }

    let staged = staged
        .ok_or_else(|| ApiError::bad_request("missing_file", "the form has no `file` part"))?;
    described.file_name = described.file_name.or(part_name);
    Ok((staged, described))
}

/// Streams a form's file part into the store's intake.
async fn receive_part(assets: &Assets, field: &mut multer::Field<'_>) -> Result<Staged, ApiError> {
    // Enough of the start to tell the type; parts arrive in chunks of any size.
    let mut head = Vec::with_capacity(HEAD_BYTES);
    while head.len() < HEAD_BYTES {
        match field.chunk().await.map_err(multipart_error)? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    let kind = assets.accept(&head[..head.len().min(HEAD_BYTES)])?;

    let mut intake = assets.begin(kind).await?;
    intake.write(&head).await?;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        intake.write(&chunk).await?;
    }
    Ok(intake.finish().await?)
}

async fn field_text(field: &mut multer::Field<'_>, name: &str) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
            return Err(ApiError::new(
                Status::PayloadTooLarge,
                "payload_too_large",
                format!("the `{name}` field is over {MAX_TEXT_FIELD_BYTES} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| {
        ApiError::bad_request("invalid_form", format!("the `{name}` field is not UTF-8"))
    })
}

fn too_large_form(cap: u64) -> ApiError {
    ApiError::new(
        Status::PayloadTooLarge,
        "payload_too_large",
        format!("the form is larger than the limit of {cap} bytes"),
    )
}

fn multipart_error(error: multer::Error) -> ApiError {
    match error {
        multer::Error::StreamSizeExceeded { limit } => too_large_form(limit),
        other => ApiError::bad_request(
            "invalid_multipart",
            format!("the form cannot be read: {other}"),
        ),
    }
}

/// The query of a listing.
#[derive(FromForm)]
struct ListQuery<'r> {
    limit: Vec<&'r str>,
    cursor: Vec<&'r str>,
    /// `type` (a Rust keyword, hence the rename).
    #[field(name = "type")]
    mime: Vec<&'r str>,
    tag: Vec<&'r str>,
}

/// A MIME type prefix to filter on: `image` means `image/`.
fn mime_prefix(raw: &str) -> Result<String, ApiError> {
    let prefix = raw.trim().to_ascii_lowercase();
    let valid = !prefix.is_empty()
        && prefix.len() <= 100
        && prefix
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$&^_.+-/".contains(&byte));
    if !valid {
        return Err(ApiError::bad_request(
            "invalid_type",
            "`type` must be a MIME type or its start, like `image` or `image/png`",
        ));
    }
    Ok(if prefix.contains('/') {
        prefix
    } else {
        format!("{prefix}/")
    })
}

/// List a project's assets, oldest first
#[utoipa::path(
    get,
    path = "/api/v1/projects/{project_id}/assets",
    operation_id = "list_assets",
    tag = "assets",
    security(("api_key" = ["read"])),
    params(
        ("project_id" = String, Path, format = "uuid", description = "The project's id"),
        ("limit" = Option<u32>, Query, minimum = 1, description = "Page size"),
        ("cursor" = Option<String>, Query,
            description = "`next_cursor` of the previous page, as the server issued it"),
        ("type" = Option<String>, Query,
            description = "Only assets whose MIME type starts so: `image`, `font`, `image/png`"),
        ("tag" = Option<String>, Query, description = "Only assets with this tag"),
    ),
    responses(
        (status = 200, description = "One page of assets", body = PageBody<Asset>),
        (status = 400, description = "The project id (`invalid_id`), `limit`, `cursor` or \
            `type` is invalid (`invalid_limit`, `invalid_cursor`, `invalid_type`), or one is \
            given twice (`repeated_parameter`)", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 422, description = "An invalid tag (`invalid_field`)", body = ErrorBody),
    )
)]
#[get("/projects/<project_id>/assets?<query..>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn list(
    state: &State<AppState>,
    request_id: RequestId,
    caller: ReadKey,
    project_id: Result<Id, ApiError>,
    query: ListQuery<'_>,
) -> Result<Json<PageBody<Asset>>, ApiError> {
    let project_id = project_id?.0;
    projects::ensure_visible(&caller.0.projects, &project_id, "project")?;
    let page = page_request(
        &state.limits,
        at_most_once("limit", &query.limit)?,
        at_most_once("cursor", &query.cursor)?,
    )?;
    let filter = AssetFilter {
        mime_prefix: at_most_once("type", &query.mime)?
            .map(mime_prefix)
            .transpose()?,
        tag: at_most_once("tag", &query.tag)?
            .map(|tag| check_tag(tag.trim()).map(|()| tag.trim().to_string()))
            .transpose()?,
    };
    let page = state
        .store
        .read(move |connection| rows::list(connection, &project_id, &filter, page))
        .await?;
    Ok(Json(page.into()))
}

/// Get an asset's metadata
#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}",
    operation_id = "get_asset",
    tag = "assets",
    security(("api_key" = ["read"])),
    params(("id" = String, Path, format = "uuid", description = "The asset's id")),
    responses(
        (status = 200, description = "The asset", body = Asset),
        (status = 400, description = "The id is not a UUID (`invalid_id`)", body = ErrorBody),
        (status = 404, description = "No such asset", body = ErrorBody),
    )
)]
#[get("/assets/<id>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn get(
    state: &State<AppState>,
    request_id: RequestId,
    caller: ReadKey,
    id: Result<Id, ApiError>,
) -> Result<Json<Asset>, ApiError> {
    let asset = visible_asset(state, caller.0, id?.0).await?;
    Ok(Json(asset))
}

/// Asset `id`, answered as not found when the caller's key may not see its project.
async fn visible_asset(state: &AppState, caller: Caller, id: String) -> Result<Asset, ApiError> {
    let asset = state
        .store
        .read(move |connection| {
            let asset = rows::get(connection, &id)?;
            projects::ensure_visible(&caller.projects, &asset.project_id, "asset")?;
            Ok(asset)
        })
        .await?;
    Ok(asset)
}

/// Delete an asset
///
/// Its bytes are removed when no other asset has the same content.
#[utoipa::path(
    delete,
    path = "/api/v1/assets/{id}",
    operation_id = "delete_asset",
    tag = "assets",
    security(("api_key" = ["write"])),
    params(("id" = String, Path, format = "uuid", description = "The asset's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID (`invalid_id`)", body = ErrorBody),
        (status = 404, description = "No such asset", body = ErrorBody),
        (status = 507, description = "The server is out of disk space", body = ErrorBody),
    )
)]
#[delete("/assets/<id>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn remove(
    state: &State<AppState>,
    assets: &AssetStore,
    request_id: RequestId,
    caller: WriteKey,
    id: Result<Id, ApiError>,
) -> Result<Status, ApiError> {
    let asset = visible_asset(state, caller.0, id?.0).await?;
    assets.delete(asset.id).await?;
    Ok(Status::NoContent)
}

/// How a file of `mime` is presented: `Content-Disposition` and, for SVG, its policy.
fn presentation(assets: &Assets, mime: &str, name: Option<&str>) -> Vec<(&'static str, String)> {
    let svg = Kind::from_mime(mime) == Some(Kind::Svg);
    let disposition = if svg && !assets.config().svg_inline {
        "attachment"
    } else {
        "inline"
    };
    let mut headers = vec![(
        "Content-Disposition",
        content_disposition(disposition, name),
    )];
    if svg {
        headers.push(("Content-Security-Policy", SVG_CSP.to_string()));
    }
    headers
}

/// `inline` or `attachment`, with the file name as plain ASCII and as RFC 8187 UTF-8.
fn content_disposition(disposition: &str, name: Option<&str>) -> String {
    let Some(name) = name else {
        return disposition.to_string();
    };
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    let encoded: String =
        name.bytes()
            .map(|byte| match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (byte as char).to_string(),
                b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|'
                | b'~' => (byte as char).to_string(),
                _ => format!("%{byte:02X}"),
            })
            .collect();
    format!("{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

fn content_type(mime: &str) -> ContentType {
    ContentType::parse_flexible(mime).unwrap_or(ContentType::Binary)
}

/// Get an asset's bytes
///
/// Supports `If-None-Match` (304) and one byte range (206; 416 outside the file). The
/// `ETag` is the content's SHA-256.
#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}/content",
    operation_id = "get_asset_content",
    tag = "assets",
    security(("api_key" = ["read"])),
    params(
        ("id" = String, Path, format = "uuid", description = "The asset's id"),
        ("Range" = Option<String>, Header, description = "One range, e.g. `bytes=0-1023`"),
        ("If-Range" = Option<String>, Header,
            description = "The `ETag` a resumed download continues"),
        ("If-None-Match" = Option<String>, Header, description = "`ETag`s the client holds"),
    ),
    responses(
        (status = 200, description = "The bytes, with the asset's MIME type",
            content(
                (inline(FileBytes) = "image/png"), (inline(FileBytes) = "image/jpeg"),
                (inline(FileBytes) = "image/webp"), (inline(FileBytes) = "image/gif"),
                (inline(FileBytes) = "image/avif"), (inline(FileBytes) = "image/svg+xml"),
                (inline(FileBytes) = "font/woff2"), (inline(FileBytes) = "font/ttf"),
                (inline(FileBytes) = "font/otf"), (inline(FileBytes) = "video/mp4"),
                (inline(FileBytes) = "video/webm"), (inline(FileBytes) = "application/pdf"),
            ),
            headers(
                ("ETag" = String, description = "The content's SHA-256, quoted"),
                ("Cache-Control" = String, description = "`private, max-age=60`"),
                ("Accept-Ranges" = String, description = "`bytes`"),
                ("Content-Disposition" = String, description = "`inline` (`attachment` for \
                    SVG unless configured) with the file name"),
            )),
        (status = 206, description = "The range asked for",
            content(
                (inline(FileBytes) = "image/png"), (inline(FileBytes) = "image/jpeg"),
                (inline(FileBytes) = "image/webp"), (inline(FileBytes) = "image/gif"),
                (inline(FileBytes) = "image/avif"), (inline(FileBytes) = "image/svg+xml"),
                (inline(FileBytes) = "font/woff2"), (inline(FileBytes) = "font/ttf"),
                (inline(FileBytes) = "font/otf"), (inline(FileBytes) = "video/mp4"),
                (inline(FileBytes) = "video/webm"), (inline(FileBytes) = "application/pdf"),
            ),
            headers(("Content-Range" = String, description = "`bytes first-last/length`"))),
        (status = 304, description = "The client's copy is current"),
        (status = 400, description = "The id is not a UUID (`invalid_id`)", body = ErrorBody),
        (status = 404, description = "No such asset", body = ErrorBody),
        (status = 416, description = "The range is outside the file \
            (`range_not_satisfiable`)", body = ErrorBody, headers(
            ("Content-Range" = String, description = "`bytes */length`"),
        )),
    )
)]
#[get("/assets/<id>/content")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn content(
    state: &State<AppState>,
    assets: &AssetStore,
    request_id: RequestId,
    caller: ReadKey,
    id: Result<Id, ApiError>,
    conditions: Preconditions<'_>,
) -> Result<FileAnswer, ApiError> {
    let asset = visible_asset(state, caller.0, id?.0).await?;
    FileBody {
        path: assets.files().blob_path(&asset.sha256),
        content_type: content_type(&asset.mime),
        etag: format!("\"{}\"", asset.sha256),
        cache_control: SHORT_CACHE.to_string(),
        headers: presentation(assets, &asset.mime, Some(&asset.file_name)),
        immutable: true,
    }
    .answer(&conditions)
    .await
}

/// Get a thumbnail of an image asset
///
/// A PNG whose long side is `size` pixels (or the image's own, when smaller), made in the
/// background after the upload: until it is ready this answers 404 `thumbnail_pending`.
#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}/thumbnails/{size}",
    operation_id = "get_asset_thumbnail",
    tag = "assets",
    security(("api_key" = ["read"])),
    params(
        ("id" = String, Path, format = "uuid", description = "The asset's id"),
        ("size" = u32, Path, description = "One of `assets.thumbnail_sizes` (256, 1024)"),
        ("Range" = Option<String>, Header, description = "One range, e.g. `bytes=0-1023`"),
        ("If-Range" = Option<String>, Header,
            description = "The `ETag` a resumed download continues"),
        ("If-None-Match" = Option<String>, Header, description = "`ETag`s the client holds"),
    ),
    responses(
        (status = 200, description = "The thumbnail", body = inline(FileBytes),
            content_type = "image/png", headers(
                ("ETag" = String, description = "Names the content and the size"),
                ("Cache-Control" = String, description = "`private, max-age=60`"),
            )),
        (status = 206, description = "The range asked for", body = inline(FileBytes),
            content_type = "image/png",
            headers(("Content-Range" = String, description = "`bytes first-last/length`"))),
        (status = 304, description = "The client's copy is current"),
        (status = 400, description = "The id is not a UUID (`invalid_id`) or the size is not \
            one configured (`invalid_thumbnail_size`)", body = ErrorBody),
        (status = 404, description = "No such asset (`not_found`), or no thumbnail: still \
            being made (`thumbnail_pending`), the image could not be decoded \
            (`thumbnail_failed`), or not an image with thumbnails (`no_thumbnail`)",
            body = ErrorBody),
        (status = 416, description = "The range is outside the file \
            (`range_not_satisfiable`)", body = ErrorBody, headers(
            ("Content-Range" = String, description = "`bytes */length`"),
        )),
    )
)]
#[get("/assets/<id>/thumbnails/<size>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn thumbnail(
    state: &State<AppState>,
    assets: &AssetStore,
    request_id: RequestId,
    caller: ReadKey,
    id: Result<Id, ApiError>,
    size: &str,
    conditions: Preconditions<'_>,
) -> Result<FileAnswer, ApiError> {
    let id = id?.0;
    let sizes = &assets.config().thumbnail_sizes;
    let size = size
        .parse::<u32>()
        .ok()
        .filter(|size| sizes.contains(size))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_thumbnail_size",
                format!("thumbnails come in these sizes: {sizes:?}"),
            )
        })?;
    let asset = visible_asset(state, caller.0, id).await?;

    let missing = |code, message: String| ApiError::new(Status::NotFound, code, message);
    match asset.thumbnail_state {
        ThumbnailState::Ready => {}
        ThumbnailState::Pending => {
            return Err(missing(
                "thumbnail_pending",
                "the thumbnail is being made; retry shortly".to_string(),
            )
            .with_header("Retry-After", "1"));
        }
        ThumbnailState::Failed => {
            let why = asset.thumbnail_error.unwrap_or_default();
            return Err(missing("thumbnail_failed", format!("no thumbnail: {why}")));
        }
        ThumbnailState::Unsupported => {
            let message = format!("{} assets have no thumbnails", asset.mime);
            return Err(missing("no_thumbnail", message));
        }
    }
    FileBody {
        path: assets.files().thumbnail_path(&asset.sha256, size),
        content_type: ContentType::PNG,
        etag: format!("\"{}.t{size}\"", asset.sha256),
        cache_control: SHORT_CACHE.to_string(),
        headers: Vec::new(),
        immutable: true,
    }
    .answer(&conditions)
    .await
}

/// Get content by its SHA-256
///
/// The same bytes as an asset's content, named by their hash, so cached for a year as
/// immutable. Served only while some asset has this content.
#[utoipa::path(
    get,
    path = "/api/v1/blobs/{sha256}",
    operation_id = "get_blob",
    tag = "assets",
    security(("api_key" = ["read"])),
    params(
        ("sha256" = String, Path, description = "Lower-case hex SHA-256 of the content"),
        ("Range" = Option<String>, Header, description = "One range, e.g. `bytes=0-1023`"),
        ("If-Range" = Option<String>, Header,
            description = "The `ETag` a resumed download continues"),
        ("If-None-Match" = Option<String>, Header, description = "`ETag`s the client holds"),
    ),
    responses(
        (status = 200, description = "The bytes, with their MIME type",
            content(
                (inline(FileBytes) = "image/png"), (inline(FileBytes) = "image/jpeg"),
                (inline(FileBytes) = "image/webp"), (inline(FileBytes) = "image/gif"),
                (inline(FileBytes) = "image/avif"), (inline(FileBytes) = "image/svg+xml"),
                (inline(FileBytes) = "font/woff2"), (inline(FileBytes) = "font/ttf"),
                (inline(FileBytes) = "font/otf"), (inline(FileBytes) = "video/mp4"),
                (inline(FileBytes) = "video/webm"), (inline(FileBytes) = "application/pdf"),
            ),
            headers(
                ("ETag" = String, description = "The SHA-256, quoted"),
                ("Cache-Control" = String,
                    description = "`public, max-age=31536000, immutable`"),
                ("Accept-Ranges" = String, description = "`bytes`"),
            )),
        (status = 206, description = "The range asked for",
            content(
                (inline(FileBytes) = "image/png"), (inline(FileBytes) = "image/jpeg"),
                (inline(FileBytes) = "image/webp"), (inline(FileBytes) = "image/gif"),
                (inline(FileBytes) = "image/avif"), (inline(FileBytes) = "image/svg+xml"),
                (inline(FileBytes) = "font/woff2"), (inline(FileBytes) = "font/ttf"),
                (inline(FileBytes) = "font/otf"), (inline(FileBytes) = "video/mp4"),
                (inline(FileBytes) = "video/webm"), (inline(FileBytes) = "application/pdf"),
            ),
            headers(("Content-Range" = String, description = "`bytes first-last/length`"))),
        (status = 304, description = "The client's copy is current"),
        (status = 400, description = "Not a lower-case hex SHA-256 (`invalid_hash`)",
            body = ErrorBody),
        (status = 404, description = "No asset has this content", body = ErrorBody),
        (status = 416, description = "The range is outside the file \
            (`range_not_satisfiable`)", body = ErrorBody, headers(
            ("Content-Range" = String, description = "`bytes */length`"),
        )),
    )
)]
#[get("/blobs/<sha256>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn blob(
    state: &State<AppState>,
    assets: &AssetStore,
    request_id: RequestId,
    caller: ReadKey,
    sha256: &str,
    conditions: Preconditions<'_>,
) -> Result<FileAnswer, ApiError> {
    if !is_sha256(sha256) {
        return Err(ApiError::bad_request(
            "invalid_hash",
            "a content is named by its SHA-256 in 64 lower-case hex digits",
        ));
    }
    let hash = sha256.to_string();
    let mime = state
        .store
        .read(move |connection| rows::mime_of_blob(connection, &hash, &caller.0.projects))
        .await?;
    FileBody {
        path: assets.files().blob_path(sha256),
        content_type: content_type(&mime),
        etag: format!("\"{sha256}\""),
        cache_control: IMMUTABLE.to_string(),
        headers: presentation(assets, &mime, None),
        immutable: true,
    }
    .answer(&conditions)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_recognised_by_path() {
        assert!(is_upload(Method::Post, "/api/v1/projects/x/assets"));
        assert!(!is_upload(Method::Get, "/api/v1/projects/x/assets"));
        assert!(!is_upload(Method::Post, "/api/v1/projects/x/canvases"));
        assert!(!is_upload(Method::Post, "/api/v1/projects/x/assets/y"));
    }

    #[test]
    fn descriptions_are_checked() {
        assert_eq!(file_name("C:\\Users\\me\\logo.png").unwrap(), "logo.png");
        assert_eq!(file_name("../../etc/passwd").unwrap(), "passwd");
        assert!(file_name("a\u{0}b").is_err());
        assert!(file_name("  ").is_err());
        assert_eq!(tags(" a, b ,,a ").unwrap(), vec!["a", "b"]);
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(tags(&many.join(",")).is_err());
        assert_eq!(mime_prefix("Image").unwrap(), "image/");
        assert_eq!(mime_prefix("image/png").unwrap(), "image/png");
        assert!(mime_prefix("image%").is_err());
    }

    #[test]
    fn dispositions_carry_utf8_names() {
        assert_eq!(
            content_disposition("inline", Some("logo \"bleu\" é.png")),
            concat!(
                "inline; filename=\"logo _bleu_ _.png\"; ",
                "filename*=UTF-8''logo%20%22bleu%22%20%C3%A9.png"
            )
        );
        assert_eq!(content_disposition("attachment", None), "attachment");
    }
}
