//! Applying a changed configuration to the running daemon, when the file changes (watched
//! with `notify`) or when an operator asks (`POST /api/v1/admin/config/reload`).
//!
//! What can change live is applied at once: `log.level`, `[alerts]`, `[rate_limits]`,
//! `[cors]`, and the TLS certificate files (read again when they or their paths changed; the
//! front also watches the files by itself). A change elsewhere is reported as needing a
//! restart. A file that does not load is refused with its reason and the running
//! configuration stays; so is a certificate pair that does not load, and the old pair stays.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::edge::Cors;
use crate::config::{Config, ConfigError};
use crate::front::FrontHandle;
use crate::front::tls::Refresh;
use crate::limits::RateLimits;
use crate::telemetry::{LevelHandle, Telemetry};

/// Editors save in several steps (write, rename, chmod); one reload follows them all.
const SETTLE: Duration = Duration::from_millis(200);

/// What a reload did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadReport {
    /// The live settings now in force.
    pub applied: Vec<&'static str>,
    /// Settings that differ in the file but only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
    /// Live settings that could not be applied, with the reason; the old ones stay (e.g. a
    /// new TLS certificate whose key does not fit it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// Everything a reload touches.
pub struct Reloader {
    pub file: Option<PathBuf>,
    /// The configuration the daemon started with: what restart-only settings still are.
    pub started_with: Config,
    pub log_level: LevelHandle,
    pub telemetry: Arc<Telemetry>,
    pub rate_limits: Arc<RateLimits>,
    pub cors: Arc<Cors>,
    /// The listener front's live parts (trusted proxies, certificates), once it is bound.
    front: Option<FrontHandle>,
    /// One reload at a time, so two never interleave their half-applied states.
    running: Mutex<()>,
}

impl Reloader {
    pub fn new(
        file: Option<PathBuf>,
        started_with: Config,
        log_level: LevelHandle,
        telemetry: Arc<Telemetry>,
        rate_limits: Arc<RateLimits>,
        cors: Arc<Cors>,
    ) -> Reloader {
        Reloader {
            file,
            started_with,
            log_level,
            telemetry,
            rate_limits,
            cors,
            front: None,
            running: Mutex::new(()),
        }
    }

    /// Lets reloads reach the listener front.
    pub fn with_front(mut self, front: FrontHandle) -> Reloader {
        self.front = Some(front);
        self
    }

    /// Loads the configuration again (file and environment) and applies what can change live.
    pub fn reload(&self) -> Result<ReloadReport, ConfigError> {
        let _one_at_a_time = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let config = Config::load(self.file.as_deref())?;

        let mut applied = vec!["alerts", "rate_limits", "cors"];
        self.telemetry.set_alerts_config(config.alerts.clone());
        self.rate_limits.set_config(&config.rate_limits);
        self.cors.set_config(&config.cors);
        match self.log_level.set(config.log.level) {
            Ok(true) => applied.push("log.level"),
            Ok(false) => tracing::info!("RUST_LOG is set; it keeps deciding the log level"),
            Err(error) => tracing::warn!(%error, "could not change the log level"),
        }
        let mut refused = Vec::new();
        if let Some(front) = &self.front {
            front.set_trusted_proxies(&config.rate_limits.trusted_proxies);
            match front.reload_certificates(&config.tls) {
                Some(Refresh::Applied) => applied.push("tls.certificates"),
                Some(Refresh::Refused(error)) => refused.push(format!("tls: {error}")),
                Some(Refresh::Unchanged) | None => {}
            }
        }

        let needs_restart = self.started_with.restart_sections_changed(&config);
        tracing::info!(?applied, ?needs_restart, "configuration reloaded");
        Ok(ReloadReport {
            applied,
            needs_restart,
            refused,
        })
    }

    /// Reloads whenever the configuration file changes, until the returned watcher is
    /// dropped. `None` when there is no file to watch (defaults and environment only).
    pub fn watch(self: &Arc<Self>) -> Option<RecommendedWatcher> {
        let file = self.file.clone()?;
        // The folder, not the file: editors and config managers replace the file by renaming
        // a new one over it, which a watch on the old file would miss.
        let folder = file
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = file.file_name()?.to_owned();

        let (events, changes) = mpsc::channel();
        let mut watcher = match notify::recommended_watcher(events) {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::warn!(%error, "cannot watch the configuration file; reload by API only");
                return None;
            }
        };
        if let Err(error) = watcher.watch(&folder, RecursiveMode::NonRecursive) {
            tracing::warn!(%error, folder = %folder.display(),
                "cannot watch the configuration folder; reload by API only");
            return None;
        }

        let reloader = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("config-watch".into())
            .spawn(move || {
                let concerns_file = |event: &notify::Result<notify::Event>| {
                    event.as_ref().is_ok_and(|event| {
                        !event.kind.is_access()
                            && event
                                .paths
                                .iter()
                                .any(|path| path.file_name() == Some(&name))
                    })
                };
                while let Ok(event) = changes.recv() {
                    if !concerns_file(&event) {
                        continue;
                    }
                    std::thread::sleep(SETTLE);
                    while changes.try_recv().is_ok() {}
                    if let Err(error) = reloader.reload() {
                        tracing::warn!(%error, "the changed configuration file is refused; \
                            the running configuration stays");
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the configuration watcher");
            return None;
        }
        tracing::info!(file = %file.display(), "watching the configuration file");
        Some(watcher)
    }
}
