//! `/api/v1/admin`: operator routes, for admin keys only.

use rocket::serde::json::Json;
use rocket::{Route, State, get, routes};
use serde_json::{Value, json};

use super::AppState;
use super::auth::AdminKey;
use super::error::ApiError;
use super::request::RequestId;

pub fn routes() -> Vec<Route> {
    routes![integrity]
}

/// Runs SQLite's full `integrity_check` on a reader; it scans the whole database, so it is
/// an explicit operator action rather than part of `/ready`.
#[get("/store/integrity")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn integrity(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: AdminKey,
) -> Result<Json<Value>, ApiError> {
    let problems = state.store.read(crate::store::integrity_check).await?;
    tracing::info!(problems = problems.len(), "integrity check ran");
    Ok(Json(
        json!({ "ok": problems.is_empty(), "problems": problems }),
    ))
}
