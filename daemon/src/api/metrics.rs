//! `GET /metrics`: Prometheus metrics, for no one, anyone, or admin keys (`metrics.access`).

use rocket::http::{ContentType, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::{Request, Route, State, get, routes};

use super::AppState;
use super::auth::authenticate;
use super::error::{ApiError, GuardError};
use crate::auth::Scope;
use crate::config::MetricsAccess;
use crate::telemetry::metrics::{CONTENT_TYPE, MemoryLabels, ReplicaLabels};

pub fn routes() -> Vec<Route> {
    routes![metrics]
}

/// A caller that `metrics.access` lets read the metrics.
struct MetricsReader;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for MetricsReader {
    type Error = ();

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ()> {
        let Some(state) = request.rocket().state::<AppState>() else {
            let error = ApiError::internal("application state is not managed");
            return Outcome::Error((GuardError::stash(request, error), ()));
        };
        let allowed = match state.config.metrics.access {
            MetricsAccess::Public => Ok(()),
            MetricsAccess::Admin => authenticate(request, Scope::Admin).await.map(|_| ()),
            // As if the route did not exist: a scraper learns nothing about the daemon.
            MetricsAccess::Off => Err(ApiError::new(
                Status::NotFound,
                "not_found",
                "no such route",
            )),
        };
        match allowed {
            Ok(()) => Outcome::Success(MetricsReader),
            Err(error) => Outcome::Error((GuardError::stash(request, error), ())),
        }
    }
}

/// Prometheus metrics
///
/// Prometheus text format 0.0.4. Who may read it is `metrics.access`: an admin key (the
/// default), anyone, or no one (then this route answers 404 as if it did not exist).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    security(("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The metrics", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 404, description = "`metrics.access` is `off`", body = super::error::ErrorBody),
    )
)]
#[get("/metrics")]
fn metrics(state: &State<AppState>, _reader: MetricsReader) -> (ContentType, String) {
    let metrics = &state.telemetry.metrics;

    // Figures that are cheaper to read at scrape time than to keep up to date.
    let queued = i64::try_from(state.inference.queued()).unwrap_or(i64::MAX);
    metrics.queue_depth.set(queued);
    let capacity = i64::try_from(state.inference.capacity()).unwrap_or(i64::MAX);
    metrics.queue_capacity.set(capacity);
    let (database, wal) = state.store.file_sizes();
    metrics
        .store_size
        .set(i64::try_from(database).unwrap_or(i64::MAX));
    metrics.wal_size.set(i64::try_from(wal).unwrap_or(i64::MAX));
    if let Some(memory) = state.inference.device_memory() {
        for (kind, bytes) in [
            ("in_use", memory.in_use_bytes),
            ("reserved", memory.reserved_bytes),
        ] {
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            metrics
                .model_memory
                .get_or_create(&MemoryLabels { kind })
                .set(bytes);
        }
    }

    let replication = state.replicator.report(state.telemetry.recovery_point());
    metrics.change_log_head.set(replication.head);
    for replica in &replication.replicas {
        let labels = ReplicaLabels {
            replica: replica.name.clone(),
        };
        metrics
            .replica_position
            .get_or_create(&labels)
            .set(replica.position);
        metrics
            .replica_lag_changes
            .get_or_create(&labels)
            .set(replica.lag_changes);
        metrics
            .replica_lag_seconds
            .get_or_create(&labels)
            .set(replica.lag_seconds);
        metrics
            .replica_failures
            .get_or_create(&labels)
            .set(i64::from(replica.consecutive_failures));
    }

    let content_type = ContentType::parse_flexible(CONTENT_TYPE).unwrap_or(ContentType::Plain);
    (content_type, metrics.render())
}
