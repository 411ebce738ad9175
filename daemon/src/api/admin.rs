//! `/api/v1/admin`: operator routes, for admin keys only: the status document the console
//! reads, the store's integrity check, and a configuration reload.

use std::sync::Arc;
use std::time::Duration;

use rocket::http::Status as HttpStatus;
use rocket::serde::json::Json;
use rocket::{Route, State, get, post, routes};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::AdminKey;
use super::error::ApiError;
use super::health::{Readiness, readiness};
use super::request::RequestId;
use crate::infer::{ModelState, ModelSummary};
use crate::reload::{ReloadReport, Reloader};
use crate::replicate::ReplicationReport;
use crate::search::SearchStatus;
use crate::store::migrations;
use crate::telemetry::alerts::AlertsReport;
use crate::telemetry::gpu::GpuReport;
use crate::telemetry::host::ProcessStats;
use crate::telemetry::traffic::TrafficSummary;
use crate::telemetry::unix_now;

pub fn routes() -> Vec<Route> {
    routes![status, integrity, reload_config, request_snapshot]
}

/// Everything an operator watches, in one document.
#[derive(Serialize, ToSchema)]
struct StatusReport {
    version: &'static str,
    git_revision: &'static str,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::telemetry::serialize_time")]
    started_at: time::OffsetDateTime,
    /// The daemon's clock when it wrote this document.
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::telemetry::serialize_time")]
    generated_at: time::OffsetDateTime,
    uptime_seconds: u64,
    health: Readiness,
    model: ModelReport,
    gpu: GpuReport,
    queue: QueueReport,
    /// Requests over the alerts' short and long windows.
    traffic: TrafficWindows,
    host: HostReport,
    alerts: AlertsReport,
    store: StoreReport,
    replication: ReplicationReport,
    /// The semantic search index: how many items are indexed and pending, for which model.
    search: SearchStatus,
}

#[derive(Serialize, ToSchema)]
struct ModelReport {
    /// `ready`, `loading`, `failed` or `disabled`.
    state: &'static str,
    /// Why the model is not serving, when it failed.
    detail: Option<String>,
    /// The model and the device it runs on, once loaded.
    summary: Option<ModelSummary>,
    /// What burn's allocator holds on the model's GPU; absent on the CPU.
    device_memory: Option<DeviceMemoryReport>,
}

#[derive(Serialize, ToSchema)]
struct DeviceMemoryReport {
    /// Bytes of the model's live tensors.
    in_use_bytes: u64,
    /// Bytes reserved from the driver: in use plus pages kept for reuse.
    reserved_bytes: u64,
}

#[derive(Serialize, ToSchema)]
struct QueueReport {
    /// Inputs waiting for or inside the model.
    queued: usize,
    /// Inputs the queue holds before requests get 429.
    capacity: usize,
}

#[derive(Serialize, ToSchema)]
struct TrafficWindows {
    short: TrafficSummary,
    long: TrafficSummary,
}

#[derive(Serialize, ToSchema)]
struct HostReport {
    /// Host CPU busy over the short window, in percent; absent until sampled.
    cpu_percent: Option<f64>,
    process: ProcessStats,
}

#[derive(Serialize, ToSchema)]
struct StoreReport {
    path: String,
    size_bytes: u64,
    wal_bytes: u64,
    schema_version: i64,
}

/// The operator's status document
///
/// Version and uptime, health checks, the model and its device, GPU memory, the inference
/// queue, traffic and latency over the alert windows, host figures, alerts, the store, its
/// replication, and the search index.
#[utoipa::path(
    get,
    path = "/api/v1/admin/status",
    tag = "admin",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "The status document", body = StatusReport))
)]
#[get("/status")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn status(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: AdminKey,
) -> Result<Json<StatusReport>, ApiError> {
    let telemetry = &state.telemetry;
    let schema_version = state.store.read(migrations::current_version).await?;
    let search = state.search.status().await?;
    let (size_bytes, wal_bytes) = state.store.file_sizes();

    let (model_state, detail, summary) = match state.inference.state() {
        ModelState::Ready(summary) => ("ready", None, Some(summary)),
        ModelState::Loading => ("loading", None, None),
        ModelState::Failed(reason) => ("failed", Some(reason), None),
        ModelState::Disabled => ("disabled", None, None),
    };
    let alerts = telemetry.alerts_config();
    let now = unix_now();
    let window = |seconds| telemetry.traffic.summary(Duration::from_secs(seconds), now);

    Ok(Json(StatusReport {
        version: env!("CARGO_PKG_VERSION"),
        git_revision: env!("NEXUS_GIT_REVISION"),
        started_at: telemetry.started_at,
        generated_at: time::OffsetDateTime::now_utc(),
        uptime_seconds: state.started.elapsed().as_secs(),
        health: readiness(state).await,
        model: ModelReport {
            state: model_state,
            detail,
            summary,
            device_memory: state
                .inference
                .device_memory()
                .map(|memory| DeviceMemoryReport {
                    in_use_bytes: memory.in_use_bytes,
                    reserved_bytes: memory.reserved_bytes,
                }),
        },
        gpu: telemetry.gpu(),
        queue: QueueReport {
            queued: state.inference.queued(),
            capacity: state.inference.capacity(),
        },
        traffic: TrafficWindows {
            short: window(alerts.short_window_secs),
            long: window(alerts.long_window_secs),
        },
        host: HostReport {
            cpu_percent: telemetry.host_cpu_percent(),
            process: ProcessStats::read(),
        },
        alerts: telemetry.alerts.report(),
        store: StoreReport {
            path: state.store.path().display().to_string(),
            size_bytes,
            wal_bytes,
            schema_version,
        },
        replication: state.replicator.report(state.telemetry.recovery_point()),
        search,
    }))
}

/// Runs SQLite's full `integrity_check` on a reader; it scans the whole database, so it is
/// an explicit operator action rather than part of `/ready`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/store/integrity",
    operation_id = "check_store_integrity",
    tag = "admin",
    summary = "Check the database's integrity",
    description = "Runs SQLite's full `integrity_check`, which reads the whole database.",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "The check ran; `ok` tells whether it found \
        problems", body = IntegrityReport))
)]
#[get("/store/integrity")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn integrity(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: AdminKey,
) -> Result<Json<IntegrityReport>, ApiError> {
    let problems = state.store.read(crate::store::integrity_check).await?;
    tracing::info!(problems = problems.len(), "integrity check ran");
    Ok(Json(IntegrityReport {
        ok: problems.is_empty(),
        problems,
    }))
}

#[derive(Serialize, ToSchema)]
struct IntegrityReport {
    /// Whether SQLite found nothing wrong.
    ok: bool,
    /// SQLite's description of each problem found.
    problems: Vec<String>,
}

/// Reload the configuration
///
/// Reads the configuration file (and environment) again. `log.level`, `[alerts]`,
/// `[rate_limits]` and `[cors]` apply at once; other changed sections are named in
/// `needs_restart`. A file that does not load is refused with the reason, and the running
/// configuration stays. (The daemon also does this by itself when the file changes.)
#[utoipa::path(
    post,
    path = "/api/v1/admin/config/reload",
    tag = "admin",
    security(("api_key" = ["admin"])),
    responses(
        (status = 200, description = "Reloaded", body = ReloadReport),
        (status = 422, description = "The new configuration is invalid; nothing changed",
            body = super::error::ErrorBody),
    )
)]
#[post("/config/reload")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn reload_config(
    reloader: &State<Arc<Reloader>>,
    request_id: RequestId,
    _caller: AdminKey,
) -> Result<Json<ReloadReport>, ApiError> {
    let report = reloader.reload().map_err(|error| {
        tracing::warn!(%error, "configuration reload refused; the running one stays");
        ApiError::new(
            HttpStatus::UnprocessableEntity,
            "invalid_config",
            error.to_string(),
        )
    })?;
    Ok(Json(report))
}

#[derive(Serialize, ToSchema)]
struct SnapshotRequested {
    /// The S3 replica's current generation, which the snapshot joins.
    generation: Option<String>,
}

/// Take an S3 snapshot now
///
/// Asks the S3 replica for a full snapshot at its next step (within a ship interval), on top
/// of the schedule; useful before a risky change. The admin status shows when it is done
/// (`replication`).
#[utoipa::path(
    post,
    path = "/api/v1/admin/replication/snapshot",
    tag = "admin",
    security(("api_key" = ["admin"])),
    responses(
        (status = 202, description = "Requested", body = SnapshotRequested),
        (status = 409, description = "No S3 replica is configured",
            body = super::error::ErrorBody),
    )
)]
#[post("/replication/snapshot")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn request_snapshot(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: AdminKey,
) -> Result<(HttpStatus, Json<SnapshotRequested>), ApiError> {
    let replica = state
        .replicator
        .replica(crate::replicate::S3)
        .ok_or_else(|| {
            ApiError::new(
                HttpStatus::Conflict,
                "no_s3_replica",
                "no S3 replica is configured ([replication.s3] enabled = false)",
            )
        })?;
    replica.snapshot_requested.notify_one();
    tracing::info!("S3 snapshot requested");

    let recovery_point = state.telemetry.recovery_point();
    let generation = state
        .replicator
        .report(recovery_point)
        .replicas
        .into_iter()
        .find(|report| report.name == replica.name)
        .and_then(|report| report.generation);
    Ok((HttpStatus::Accepted, Json(SnapshotRequested { generation })))
}
