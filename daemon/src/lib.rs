//! The Nexus Canvas appliance daemon, as a library so that tests can reach its parts.
//!
//! - [`config`]: the one configuration stack (embedded defaults, file, environment).
//! - [`store`]: the embedded SQLite store, its migrations and queries.
//! - [`auth`]: API key secrets, scopes and the accept/refuse decision.
//! - [`infer`]: the embedding model's worker, batching queue and result cache;
//!   [`models`]: the model's files on disk (list, verify, pull from a mirror).
//! - [`api`]: the Rocket HTTP API: routes, guards, the error shape, the access log, the
//!   edge (client address, CORS, security headers); [`limits`]: rate limits.
//! - [`serve`]: the `serve` command's lifecycle; [`reload`]: live configuration changes;
//!   [`systemd`]: notify-socket integration.
//! - [`telemetry`]: logs, metrics, SLOs and alerts, GPU facts; [`cli`]: the command line.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod infer;
pub mod limits;
pub mod models;
pub mod reload;
pub mod serve;
pub mod store;
pub mod systemd;
pub mod telemetry;
