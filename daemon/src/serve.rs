//! The `serve` command: open the store, serve the API until SIGTERM or SIGINT, drain, close.

use std::time::{Duration, Instant};

use rocket::fairing::AdHoc;

use crate::config::Config;
use crate::store::{Store, StoreError, StoreOptions};
use crate::{api, systemd};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the store at {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error("the HTTP server failed: {0}")]
    Http(Box<rocket::Error>),
}

pub fn run(config: Config) -> Result<(), ServeError> {
    let started = Instant::now();
    let options = StoreOptions {
        path: config.database_path(),
        readers: config.store.readers,
        busy_timeout: Duration::from_millis(config.store.busy_timeout_ms),
    };
    systemd::status("opening the store");
    let store = Store::open(&options).map_err(|source| ServeError::Store {
        path: options.path.display().to_string(),
        source,
    })?;
    tracing::info!(path = %options.path.display(), "store open");

    let watched_store = store.clone();
    let rocket = api::build(&config, store.clone())
        .attach(AdHoc::on_liftoff("systemd ready", move |rocket| {
            Box::pin(async move {
                let config = rocket.config();
                tracing::info!(
                    address = %config.address,
                    port = config.port,
                    startup_ms = started.elapsed().as_millis() as u64,
                    version = env!("CARGO_PKG_VERSION"),
                    "serving"
                );
                systemd::ready(&format!("serving on {}:{}", config.address, config.port));
                systemd::spawn_watchdog(watched_store);
            })
        }))
        .attach(AdHoc::on_shutdown("systemd stopping", |_| {
            Box::pin(async {
                tracing::info!("shutting down: draining in-flight requests");
                systemd::stopping();
            })
        }));

    let outcome = rocket::execute(rocket.launch());

    // Whatever ended the server, leave the database in one clean file.
    if let Err(error) = store.close() {
        tracing::warn!(%error, "could not checkpoint the store on shutdown");
    }
    outcome.map_err(|error| ServeError::Http(Box::new(error)))?;
    tracing::info!("stopped");
    Ok(())
}
