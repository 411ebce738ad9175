//! The HTTP API: Rocket routes, guards and the error shape, assembled by [`build`].
//!
//! Handlers stay thin: parse (guards), call the store in one short closure, answer. Each
//! handler is instrumented with its request id, so that every log line it causes carries it.

pub mod admin;
mod assets;
pub mod auth;
pub mod body;
mod canvases;
mod durability;
pub mod edge;
mod embeddings;
pub mod error;
mod files;
mod health;
pub mod https;
mod metrics;
mod openapi;
mod projects;
pub mod request;
mod search;
mod web;

use std::sync::Arc;
use std::time::Instant;

use rocket::figment::Figment;
use rocket::request::FromParam;
use rocket::{Build, Rocket, catchers};
use serde::Serialize;

use crate::config::{Config, InferenceConfig, LimitsConfig};
use crate::infer::Inference;
use crate::limits::RateLimits;
use crate::replicate::Replicator;
use crate::search::Search;
use crate::store::Store;
use crate::store::page::{Page, PageRequest, decode_cursor};
use crate::telemetry::Telemetry;
use error::ApiError;

/// What every handler shares, managed by Rocket.
pub struct AppState {
    pub store: Store,
    pub inference: Inference,
    pub telemetry: Arc<Telemetry>,
    pub rate_limits: Arc<RateLimits>,
    pub cors: Arc<edge::Cors>,
    pub replicator: Arc<Replicator>,
    /// Semantic search over canvases and assets; its indexer starts at liftoff.
    pub search: Arc<Search>,
    /// The configuration the daemon started with.
    pub config: Config,
    pub limits: LimitsConfig,
    pub inference_limits: InferenceConfig,
    pub started: Instant,
}

/// Rocket's own configuration, derived from ours so that there is a single source of truth
/// (and no `ROCKET_*` variable can quietly change the daemon).
///
/// Rocket listens on loopback only, on a port the system picks: the listener front
/// (`crate::front`) owns the public addresses and relays each connection to it.
pub fn rocket_figment(config: &Config) -> Figment {
    let json_limit = rocket::data::ByteUnit::from(config.limits.json_body_bytes);
    let mut figment = Figment::from(rocket::Config::default())
        .merge(("address", std::net::Ipv4Addr::LOCALHOST))
        .merge(("port", 0))
        .merge((
            "ident",
            format!("nexus-canvasd/{}", env!("CARGO_PKG_VERSION")),
        ))
        .merge(("ip_header", false))
        .merge(("log_level", rocket::config::LogLevel::Off))
        .merge(("cli_colors", false))
        .merge((
            "limits",
            rocket::data::Limits::default().limit("json", json_limit),
        ))
        .merge(("shutdown.ctrlc", true))
        .merge(("shutdown.signals", ["term"]))
        .merge(("shutdown.grace", config.server.shutdown_grace_secs))
        .merge(("shutdown.mercy", 2));
    if config.server.workers > 0 {
        figment = figment.merge(("workers", config.server.workers));
    }
    figment
}

/// The Rocket application, ready to launch or to test.
pub fn build(
    config: &Config,
    store: Store,
    inference: Inference,
    telemetry: Arc<Telemetry>,
    replicator: Arc<Replicator>,
) -> Rocket<Build> {
    let search = Search::new(
        store.clone(),
        inference.clone(),
        telemetry.metrics.search.clone(),
    );
    let state = AppState {
        store,
        inference,
        search,
        telemetry,
        replicator,
        rate_limits: Arc::new(RateLimits::new(&config.rate_limits)),
        cors: Arc::new(edge::Cors::new(&config.cors)),
        config: config.clone(),
        limits: config.limits.clone(),
        inference_limits: config.inference.clone(),
        started: Instant::now(),
    };

    let https_only = if config.tls.https_only {
        https::routes()
    } else {
        Vec::new()
    };
    let rocket = rocket::custom(rocket_figment(config))
        .manage(state)
        // Before the access log, so that a wait for replication counts in the latency.
        .attach(durability::Durability)
        .attach(request::RequestContext)
        .attach(edge::EdgeHeaders)
        .mount("/", edge::routes())
        .mount("/", https_only)
        .mount("/", health::routes())
        .mount("/", metrics::routes())
        .mount("/api/v1", health::info_routes())
        .mount("/api/v1", openapi::routes())
        .mount("/api/v1", projects::routes())
        .mount("/api/v1", canvases::routes())
        .attach(assets::AssetsFairing)
        .mount("/api/v1", assets::routes())
        .mount("/api/v1/admin", admin::routes())
        .attach(search::SearchFairing)
        .mount("/api/v1", search::routes())
        .mount("/api/v1/admin", search::admin_routes())
        .mount("/v1", embeddings::routes())
        .register("/", catchers![error::catch_all]);
    web::mount(rocket, &config.web)
}

/// A row id taken from the path. Ids are UUIDs; anything else is refused before any lookup,
/// with its own error code rather than a confusing "not found".
#[derive(Debug, Clone)]
pub struct Id(pub String);

impl<'a> FromParam<'a> for Id {
    type Error = ApiError;

    fn from_param(param: &'a str) -> Result<Id, ApiError> {
        uuid::Uuid::try_parse(param)
            .map(|id| Id(id.hyphenated().to_string()))
            .map_err(|_| {
                ApiError::bad_request("invalid_id", "the id in the path is not a valid id")
            })
    }
}

/// One page of a list, as every list endpoint answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageBody<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> From<Page<T>> for PageBody<T> {
    fn from(page: Page<T>) -> PageBody<T> {
        PageBody {
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

/// Reads the `limit` and `cursor` query parameters of a list request.
pub fn page_request(
    limits: &LimitsConfig,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<PageRequest, ApiError> {
    let limit = match limit {
        None => limits.default_page_size,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=limits.max_page_size).contains(limit))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_limit",
                    format!(
                        "limit must be a whole number from 1 to {}",
                        limits.max_page_size
                    ),
                )
            })?,
    };
    let after = cursor.map(decode_cursor).transpose()?.unwrap_or(0);
    Ok(PageRequest { after, limit })
}
