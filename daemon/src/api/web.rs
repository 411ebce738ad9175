//! The web app's files, served at `/` from `web.root` when it is set: fingerprinted names
//! (`app.3f9a2c1b.js`) cached as immutable, `index.html` revalidated on every use, and the
//! single-page app's own routes (unknown paths without an extension) answered with
//! `index.html`. Paths under `/api` and `/v1` are never the web app's: an unknown one still
//! gets the API's JSON 404 (or 405).
//!
//! A path reaches the disk only as segments that are plain names: `..`, `.`, dot files,
//! separators and drive letters are refused after percent-decoding, and the file finally
//! opened must lie inside the root once symbolic links are resolved. Which names are plain is
//! `nexus_formats::names`'s, which is fuzzed.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use nexus_formats::names::{is_fingerprinted, is_plain_name};
use rocket::http::uri::{Segments, fmt};
use rocket::http::{ContentType, Status};
use rocket::request::FromSegments;
use rocket::{Build, Rocket, Route, State, get, routes};

use super::error::ApiError;
use super::files::{FileAnswer, FileBody, IMMUTABLE, Preconditions};
use crate::config::WebConfig;

/// Below every API route, which all have default (negative) ranks.
const RANK: isize = 50;
/// The route's path, as Rocket reports it.
const ROUTE_PATH: &str = "/<path..>";

/// The web root in force: its resolved folder and the policy its pages run under.
pub struct WebRoot {
    root: PathBuf,
    csp: String,
}

/// Serves `web.root` when it is set. The folder was checked by the configuration; if it went
/// missing since, the daemon says so and serves the API alone.
pub fn mount(rocket: Rocket<Build>, config: &WebConfig) -> Rocket<Build> {
    if config.root.as_os_str().is_empty() {
        return rocket;
    }
    match config.root.canonicalize() {
        Ok(root) => {
            tracing::info!(root = %root.display(), "serving the web app");
            rocket
                .manage(WebRoot {
                    root,
                    csp: config.csp.clone(),
                })
                .mount("/", routes())
        }
        Err(error) => {
            tracing::error!(root = %config.root.display(), %error, "web.root is unusable");
            rocket
        }
    }
}

fn routes() -> Vec<Route> {
    routes![file]
}

/// Whether `route` is the web app's catch-all and `path` one of the API's, which it never
/// serves: the API's 405 answers must not count it as a method the path has.
pub fn is_fallback_for_api(route: &Route, path: &[&str]) -> bool {
    route.rank == RANK && route.uri.path() == ROUTE_PATH && is_api(path.first().copied())
}

fn is_api(first_segment: Option<&str>) -> bool {
    matches!(first_segment, Some("api" | "v1"))
}

/// A request path as a relative path of plain names, or `Api` for the API's paths.
pub enum WebPath {
    Api,
    File(PathBuf),
}

impl<'r> FromSegments<'r> for WebPath {
    type Error = ApiError;

    fn from_segments(segments: Segments<'r, fmt::Path>) -> Result<WebPath, ApiError> {
        if is_api(segments.get(0)) {
            return Ok(WebPath::Api);
        }
        let mut path = PathBuf::new();
        for segment in segments {
            if !is_plain_name(segment) {
                return Err(ApiError::bad_request(
                    "invalid_path",
                    "the path holds a segment that is not a plain file name",
                ));
            }
            path.push(segment);
        }
        Ok(WebPath::File(path))
    }
}

#[get("/<path..>", rank = 50)]
async fn file(
    web: &State<WebRoot>,
    path: Result<WebPath, ApiError>,
    conditions: Preconditions<'_>,
) -> Option<Result<FileAnswer, ApiError>> {
    let relative = match path {
        // No such API route: the catcher answers as the API does.
        Ok(WebPath::Api) => return None,
        Ok(WebPath::File(relative)) => relative,
        Err(error) => return Some(Err(error)),
    };
    Some(serve(web, &relative, &conditions).await)
}

async fn serve(
    web: &WebRoot,
    relative: &Path,
    conditions: &Preconditions<'_>,
) -> Result<FileAnswer, ApiError> {
    let not_found = || ApiError::new(Status::NotFound, "not_found", "no such file");
    let wanted = web.root.join(relative);
    let chosen = match tokio::fs::metadata(&wanted).await {
        Ok(meta) if meta.is_file() => wanted,
        Ok(meta) if meta.is_dir() && wanted.join("index.html").is_file() => {
            wanted.join("index.html")
        }
        // A file the app asked for by name is missing: index.html in its place would be
        // parsed as a script or cached under a fingerprinted name.
        _ if relative.extension().is_some() => return Err(not_found()),
        // The app's own route, e.g. /projects/42: the app shows it.
        _ => web.root.join("index.html"),
    };

    // Symbolic links inside the root must not lead out of it.
    let resolved = tokio::fs::canonicalize(&chosen)
        .await
        .map_err(|_| not_found())?;
    if !resolved.starts_with(&web.root) {
        tracing::warn!(path = %relative.display(), "a web path resolved outside web.root");
        return Err(not_found());
    }
    let meta = tokio::fs::metadata(&resolved)
        .await
        .map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }

    let name = resolved
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let modified = meta
        .modified()
        .ok()
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    let content_type = resolved
        .extension()
        .and_then(|extension| ContentType::from_extension(&extension.to_string_lossy()))
        .unwrap_or(ContentType::Binary);
    let cache_control = if is_fingerprinted(&name) {
        IMMUTABLE
    } else {
        // index.html above all: it names the fingerprinted files of the current release.
        "no-cache"
    };

    FileBody {
        path: resolved,
        content_type,
        etag: format!("\"{:x}-{modified:x}\"", meta.len()),
        cache_control: cache_control.to_string(),
        headers: vec![("Content-Security-Policy", web.csp.clone())],
        // Operators deploy a new bundle over the old one.
        immutable: false,
    }
    .answer(conditions)
    .await
}
