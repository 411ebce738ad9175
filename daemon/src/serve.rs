//! The `serve` command: open the store, start the model, serve the API until SIGTERM or
//! SIGINT, drain, close.
//!
//! The HTTP listener starts while the model loads, so `/health` answers (and the canvas API
//! works) from the first second; `/ready` and systemd's `READY=1` wait for the model's
//! warm-up batch too.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rocket::fairing::AdHoc;

use crate::api::AppState;
use crate::config::Config;
use crate::infer::Inference;
use crate::reload::Reloader;
use crate::store::{Store, StoreError, StoreOptions};
use crate::telemetry::{LevelHandle, Telemetry};
use crate::{api, systemd};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the store at {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error("the HTTP server failed: {0}")]
    Http(Box<rocket::Error>),
}

pub fn run(
    config: Config,
    file: Option<PathBuf>,
    log_level: LevelHandle,
) -> Result<(), ServeError> {
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

    // Ready once both the listener is up and the model is warm, in whichever order.
    let ready = ReadyGate::new(2, started);
    let model_ready = ready.clone();
    if config.inference.enabled {
        systemd::status("loading the embedding model");
    }
    let telemetry = Arc::new(Telemetry::new(&config.alerts));
    let inference = Inference::start(
        &config.inference,
        telemetry.metrics.inference.clone(),
        move || model_ready.arrive(),
    );

    let watched_store = store.clone();
    let rocket = api::build(&config, store.clone(), inference, Arc::clone(&telemetry));
    let state = rocket
        .state::<AppState>()
        .expect("api::build manages the state");
    let rate_limits = Arc::clone(&state.rate_limits);
    let reloader = Arc::new(Reloader::new(
        file,
        config.clone(),
        log_level,
        Arc::clone(&telemetry),
        Arc::clone(&state.rate_limits),
        Arc::clone(&state.cors),
    ));
    // Held until the server stops; dropping it ends the watch.
    let _watcher = reloader.watch();
    let rocket = rocket
        .manage(reloader)
        .attach(AdHoc::on_liftoff("systemd ready", move |rocket| {
            Box::pin(async move {
                let config = rocket.config();
                tracing::info!(
                    address = %config.address,
                    port = config.port,
                    version = env!("CARGO_PKG_VERSION"),
                    "listening"
                );
                systemd::spawn_watchdog(watched_store);
                telemetry.spawn_evaluator();
                rate_limits.spawn_sweeper();
                ready.arrive();
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

/// Counts down the conditions of readiness and tells systemd when the last one arrives.
#[derive(Clone)]
struct ReadyGate {
    pending: Arc<AtomicUsize>,
    started: Instant,
}

impl ReadyGate {
    fn new(conditions: usize, started: Instant) -> ReadyGate {
        ReadyGate {
            pending: Arc::new(AtomicUsize::new(conditions)),
            started,
        }
    }

    fn arrive(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let startup_ms = self.started.elapsed().as_millis() as u64;
            tracing::info!(startup_ms, "ready");
            systemd::ready("serving");
        }
    }
}
