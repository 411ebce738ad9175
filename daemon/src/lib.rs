//! The Nexus Canvas appliance daemon, as a library so that tests can reach its parts.
//!
//! - [`config`]: the one configuration stack (embedded defaults, file, environment).
//! - [`store`]: the embedded SQLite store, its migrations and queries; [`assets`]: the
//!   content-addressed asset files, their collection and thumbnails.
//! - [`auth`]: API key secrets, scopes and the accept/refuse decision.
//! - [`infer`]: the embedding model's worker, batching queue and result cache;
//!   [`models`]: the model's files on disk (list, verify, pull from a mirror).
//! - [`api`]: the Rocket HTTP API: routes, guards, the error shape, the access log, the
//!   edge (client address, CORS, security headers); [`limits`]: rate limits.
//! - [`serve`]: the `serve` command's lifecycle; [`reload`]: live configuration changes;
//!   [`systemd`]: notify-socket integration.
//! - [`front`]: the listener front that owns the public sockets: TLS, connection limits and
//!   deadlines, the real client behind each connection Rocket serves.
//! - [`replicate`]: continuous replication of the store to S3 and PostgreSQL, restore.
//! - [`search`]: semantic search over canvases and assets: their embeddings, the background
//!   indexer that keeps them current, exact top-k.
//! - [`telemetry`]: logs, metrics, SLOs and alerts, GPU facts; [`cli`]: the command line.

pub mod api;
pub mod assets;
pub mod auth;
pub mod cli;
pub mod config;
pub mod front;
pub mod infer;
pub mod limits;
pub mod models;
pub mod reload;
pub mod replicate;
pub mod search;
pub mod serve;
pub mod store;
pub mod systemd;
pub mod telemetry;

/// Makes ring the process's rustls crypto provider. Two providers are linked in (ring, and
/// aws-lc-rs through the S3 client), so rustls cannot pick one by itself, and without a
/// process default the HTTPS clients (S3, Sentry, the alert webhook) fail to build. Idempotent.
pub fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
