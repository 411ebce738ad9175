//! Liveness (`/health`), readiness (`/ready`) and build information (`/api/v1/info`).
//!
//! `/health` answers from memory and touches nothing, so a probe never fails because a
//! dependency is slow (or the model still loads); `/ready` checks what serving needs (the
//! store, the model once warm) and names what is missing.

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, get, routes};
use serde::Serialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::ReadKey;
use super::error::ApiError;
use super::request::RequestId;
use crate::infer::{ModelState, ModelSummary};
use crate::store::migrations;

pub fn routes() -> Vec<Route> {
    routes![health, ready]
}

pub fn info_routes() -> Vec<Route> {
    routes![info]
}

#[get("/health")]
fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[derive(Serialize)]
struct Check {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[get("/ready")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn ready(state: &State<AppState>, request_id: RequestId) -> (Status, Json<Value>) {
    let store = match state.store.read(migrations::current_version).await {
        Ok(version) if version == migrations::latest_version() => Check {
            status: "ok",
            detail: None,
        },
        Ok(version) => Check {
            status: "failing",
            detail: Some(format!(
                "schema is at version {version}, expected {}",
                migrations::latest_version()
            )),
        },
        Err(error) => Check {
            status: "failing",
            detail: Some(error.to_string()),
        },
    };

    let model = match state.inference.state() {
        ModelState::Ready(_) => Check {
            status: "ok",
            detail: None,
        },
        ModelState::Disabled => Check {
            status: "disabled",
            detail: None,
        },
        ModelState::Loading => Check {
            status: "loading",
            detail: None,
        },
        ModelState::Failed(reason) => Check {
            status: "failing",
            detail: Some(reason),
        },
    };

    let ready = store.status == "ok" && matches!(model.status, "ok" | "disabled");
    let status = if ready {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": { "store": store, "model": model },
    });
    (status, Json(body))
}

#[derive(Serialize)]
struct Info {
    version: &'static str,
    git_revision: &'static str,
    build_profile: &'static str,
    uptime_seconds: u64,
    schema_version: i64,
    /// The embedding model and the device it runs on, once loaded.
    model: Option<ModelSummary>,
}

#[get("/info")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn info(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: ReadKey,
) -> Result<Json<Info>, ApiError> {
    let schema_version = state.store.read(migrations::current_version).await?;

    Ok(Json(Info {
        version: env!("CARGO_PKG_VERSION"),
        git_revision: env!("NEXUS_GIT_REVISION"),
        build_profile: env!("NEXUS_BUILD_PROFILE"),
        uptime_seconds: state.started.elapsed().as_secs(),
        schema_version,
        model: state.inference.ready_model().ok(),
    }))
}
