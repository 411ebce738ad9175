//! The `serve` command: open the store, start the model, serve the API until SIGTERM or
//! SIGINT, drain, close.
//!
//! The HTTP listener starts while the model loads, so `/health` answers (and the canvas API
//! works) from the first second; `/ready` and systemd's `READY=1` wait for the model's
//! warm-up batch too.
//!
//! The public sockets belong to the listener front ([`crate::front`]), bound before anything
//! else starts; Rocket listens on loopback behind it, and once it is up the front starts
//! accepting. On SIGTERM Rocket's shutdown also stops the front's accepting, then Rocket
//! drains what is in flight through the connections the front still relays.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rocket::fairing::AdHoc;

use crate::api::AppState;
use crate::config::Config;
use crate::front::{Front, FrontError, Listening};
use crate::infer::Inference;
use crate::reload::Reloader;
use crate::replicate::Replicator;
use crate::store::{Store, StoreError, StoreOptions};
use crate::telemetry::{LevelHandle, Telemetry};
use crate::{api, systemd};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the store at {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error("the HTTP server failed: {0}")]
    Http(Box<rocket::Error>),
    #[error("the listener front failed: {0}")]
    Front(FrontError),
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
    // A taken port or an unusable certificate stops the daemon here, before it serves.
    let front =
        Front::bind(&config, telemetry.metrics.connections.clone()).map_err(ServeError::Front)?;
    let listening = front.listening();
    ready.listening_on(listening);
    let inference = Inference::start(
        &config.inference,
        telemetry.metrics.inference.clone(),
        move || model_ready.arrive(),
    );

    let replicator = Replicator::new(&config.replication, store.clone()).map_err(|source| {
        ServeError::Store {
            path: options.path.display().to_string(),
            source,
        }
    })?;
    let replicas = Arc::clone(&replicator);
    let lagging = Arc::clone(&replicator);
    telemetry.watch_replication(Box::new(move || lagging.max_lag_seconds()));

    let watched_store = store.clone();
    let rocket = api::build(
        &config,
        store.clone(),
        inference,
        Arc::clone(&telemetry),
        replicator,
    );
    let state = rocket
        .state::<AppState>()
        .expect("api::build manages the state");
    let rate_limits = Arc::clone(&state.rate_limits);
    let reloader = Arc::new(
        Reloader::new(
            file,
            config.clone(),
            log_level,
            Arc::clone(&telemetry),
            Arc::clone(&state.rate_limits),
            Arc::clone(&state.cors),
        )
        .with_front(front.handle()),
    );
    // Held until the server stops; dropping it ends the watch.
    let _watcher = reloader.watch();
    let front_failed = Arc::new(Mutex::new(None));
    let failure = Arc::clone(&front_failed);
    let rocket = rocket
        .manage(reloader)
        .manage(front.peers())
        .manage(listening)
        .attach(AdHoc::on_liftoff("systemd ready", move |rocket| {
            Box::pin(async move {
                // Rocket's loopback address, its port chosen by the system at launch.
                let internal = SocketAddr::new(rocket.config().address, rocket.config().port);
                if let Err(error) = front.start(internal, rocket.shutdown()) {
                    tracing::error!(%error, "the public listeners cannot start; stopping");
                    *failure
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
                    rocket.shutdown().notify();
                    return;
                }
                tracing::info!(
                    address = %listening.http.ip(),
                    port = listening.http.port(),
                    https = listening.https.map(tracing::field::display),
                    internal = %internal,
                    version = env!("CARGO_PKG_VERSION"),
                    "listening"
                );
                systemd::spawn_watchdog(watched_store);
                telemetry.spawn_evaluator();
                rate_limits.spawn_sweeper();
                replicas.spawn();
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
    let failed = front_failed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(error) = failed {
        return Err(ServeError::Front(error));
    }
    tracing::info!("stopped");
    Ok(())
}

/// Counts down the conditions of readiness and tells systemd when the last one arrives.
#[derive(Clone)]
struct ReadyGate {
    pending: Arc<AtomicUsize>,
    started: Instant,
    /// The public addresses, for systemd's status line.
    listening: Arc<OnceLock<Listening>>,
}

impl ReadyGate {
    fn new(conditions: usize, started: Instant) -> ReadyGate {
        ReadyGate {
            pending: Arc::new(AtomicUsize::new(conditions)),
            started,
            listening: Arc::new(OnceLock::new()),
        }
    }

    fn listening_on(&self, listening: Listening) {
        let _ = self.listening.set(listening);
    }

    fn arrive(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let startup_ms = self.started.elapsed().as_millis() as u64;
            let status = match self.listening.get() {
                Some(listening) => format!("serving on {listening}"),
                None => "serving".to_string(),
            };
            tracing::info!(startup_ms, "ready");
            systemd::ready(&status);
        }
    }
}
