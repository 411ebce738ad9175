//! Liveness (`/health`), readiness (`/ready`) and build information (`/api/v1/info`).
//!
//! `/health` answers from memory and touches nothing, so a probe never fails because a
//! dependency is slow (or the model still loads); `/ready` checks what serving needs (the
//! store, the model once warm) and names what is missing.

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, get, routes};
use serde::Serialize;
use utoipa::ToSchema;

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

#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`: the process is up and answering.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: the process answers
///
/// Answers from memory, without touching the store or the model, so that a slow dependency
/// never makes a liveness probe fail.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "service",
    responses((status = 200, description = "The process is alive", body = Health))
)]
#[get("/health")]
fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// One dependency's state, as `/ready` reports it.
#[derive(Serialize, ToSchema)]
pub(super) struct Check {
    /// `ok`, `failing`, or for the model also `loading` and `disabled`; for replication also
    /// `behind` and `disabled`.
    #[schema(example = "ok")]
    status: &'static str,
    /// What is wrong, when it is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Checks {
    store: Check,
    model: Check,
    /// Informational: a replica that lags or is down does not make the daemon unready, since
    /// the local log keeps every change until it is shipped.
    replication: Check,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    status: &'static str,
    checks: Checks,
}

/// Readiness: the store is at the current schema and the model is warm (or disabled)
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "service",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "Not ready; `checks` names what is missing",
            body = Readiness),
    )
)]
#[get("/ready")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn ready(state: &State<AppState>, request_id: RequestId) -> (Status, Json<Readiness>) {
    let readiness = readiness(state).await;
    let status = if readiness.status == "ready" {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    (status, Json(readiness))
}

/// What `/ready` answers, also part of the admin status.
pub(super) async fn readiness(state: &AppState) -> Readiness {
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

    let report = state.replicator.report(state.telemetry.recovery_point());
    let replication = if report.replicas.is_empty() {
        Check {
            status: "disabled",
            detail: None,
        }
    } else if report.behind {
        let lagging = report
            .replicas
            .iter()
            .map(|replica| {
                format!(
                    "{}: {} changes, {:.1} s behind{}",
                    replica.name,
                    replica.lag_changes,
                    replica.lag_seconds,
                    replica
                        .last_error
                        .as_deref()
                        .map(|error| format!(" ({error})"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>();
        Check {
            status: "behind",
            detail: Some(lagging.join("; ")),
        }
    } else {
        Check {
            status: "ok",
            detail: None,
        }
    };

    let ready = store.status == "ok" && matches!(model.status, "ok" | "disabled");
    Readiness {
        status: if ready { "ready" } else { "not_ready" },
        checks: Checks {
            store,
            model,
            replication,
        },
    }
}

#[derive(Serialize, ToSchema)]
struct Info {
    version: &'static str,
    git_revision: &'static str,
    build_profile: &'static str,
    uptime_seconds: u64,
    schema_version: i64,
    /// The embedding model and the device it runs on, once loaded.
    model: Option<ModelSummary>,
}

/// Build and runtime information
#[utoipa::path(
    get,
    path = "/api/v1/info",
    operation_id = "info",
    tag = "service",
    security(("api_key" = ["read"])),
    responses((status = 200, description = "Version, schema and model", body = Info))
)]
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
