//! Telemetry: what the daemon tells its operators about itself.
//!
//! - [`logs`]: structured logs, a live log level, error reports to Sentry.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`traffic`]: rolling windows of requests, errors and latency (the SLO figures).
//! - [`alerts`] and [`webhook`]: rules over those figures, their states, and chat messages.
//! - [`host`] and [`gpu`]: CPU, memory and GPU figures from `/proc` and NVML.
//!
//! [`Telemetry`] ties them together: the API records each request into it, and
//! [`Telemetry::spawn_evaluator`] samples the host and evaluates the alerts on a timer.

pub mod alerts;
pub mod gpu;
pub mod host;
pub mod logs;
pub mod metrics;
pub mod traffic;
pub mod webhook;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serializer;
use time::OffsetDateTime;

use crate::config::AlertsConfig;
use alerts::{AlertName, AlertState, Alerts, Figure, Figures};
use gpu::{GpuProbe, GpuReport};
use metrics::{AlertLabels, GpuLabels, Metrics};
use traffic::{RouteClass, Samples, Traffic};
use webhook::{Courier, Outbox};

pub use logs::{LevelHandle, Logging, init};

/// Reads the largest lag of the replicas, in seconds; `None` without replicas.
pub type LagSource = Box<dyn Fn() -> Option<f64> + Send + Sync>;

/// The daemon's telemetry, shared by the API and the evaluator task.
pub struct Telemetry {
    pub metrics: Metrics,
    pub traffic: Traffic,
    pub alerts: Alerts,
    host_cpu: Samples,
    gpu_memory: Samples,
    gpu: GpuProbe,
    latest_gpu: RwLock<GpuReport>,
    /// Replaced by a configuration reload.
    config: RwLock<AlertsConfig>,
    /// Reads the replicas' largest lag, once replication is set up.
    replication_lag: RwLock<Option<LagSource>>,
    pub started_at: OffsetDateTime,
}

impl Telemetry {
    pub fn new(config: &AlertsConfig) -> Telemetry {
        let metrics = Metrics::new();
        for name in alerts::thresholds(config).into_keys() {
            metrics
                .alerts_firing
                .get_or_create(&alert_labels(name))
                .set(0);
        }
        let gpu = GpuProbe::open();
        let latest_gpu = RwLock::new(gpu.report());
        Telemetry {
            metrics,
            traffic: Traffic::default(),
            alerts: Alerts::new(config),
            host_cpu: Samples::default(),
            gpu_memory: Samples::default(),
            gpu,
            latest_gpu,
            config: RwLock::new(config.clone()),
            replication_lag: RwLock::new(None),
            started_at: OffsetDateTime::now_utc(),
        }
    }

    pub fn alerts_config(&self) -> AlertsConfig {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Applies new thresholds and webhook settings from a reloaded configuration.
    pub fn set_alerts_config(&self, config: AlertsConfig) {
        self.alerts.set_thresholds(&config);
        *self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
    }

    /// Lets the replication-lag alert read the replicas.
    pub fn watch_replication(&self, source: LagSource) {
        *self
            .replication_lag
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(source);
    }

    /// The recovery point (`alerts.replication_lag_secs`).
    pub fn recovery_point(&self) -> Duration {
        Duration::from_secs(self.alerts_config().replication_lag_secs)
    }

    /// The GPU facts of the latest sample.
    pub fn gpu(&self) -> GpuReport {
        self.latest_gpu
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Host CPU busy, in percent, over the short window.
    pub fn host_cpu_percent(&self) -> Option<f64> {
        let window = Duration::from_secs(self.alerts_config().short_window_secs);
        self.host_cpu.mean(window, unix_now())
    }

    /// Counts an answered request in the SLO windows.
    pub fn record_request(&self, class: RouteClass, latency: Duration, status: u16) {
        self.traffic
            .record(class, latency, status >= 500, unix_now());
    }

    /// Samples the host and GPU and evaluates the alerts every `evaluate_interval_ms`,
    /// until the runtime shuts down.
    pub fn spawn_evaluator(self: Arc<Telemetry>) {
        tokio::spawn(async move {
            let mut cpu = host::CpuSampler::default();
            let mut outbox = Outbox::default();
            let courier = Courier::start();
            let host = host_name();
            loop {
                let interval = self.alerts_config().evaluate_interval_ms;
                tokio::time::sleep(Duration::from_millis(interval)).await;

                // Read after the pause, so a reload during it applies to this evaluation.
                let config = self.alerts_config();
                let now = unix_now();
                self.sample(&mut cpu, now);
                self.evaluate(&config, &mut outbox, now, |transition| {
                    courier.send(
                        &config.webhook_url,
                        config.webhook_attempts,
                        transition,
                        &host,
                    )
                });
            }
        });
    }

    fn sample(&self, cpu: &mut host::CpuSampler, now: u64) {
        if let Some(busy) = cpu.sample() {
            self.host_cpu.record(busy * 100.0, now);
            self.metrics.host_cpu.set(busy);
        }

        // NVML calls are blocking but take microseconds; no need to leave the runtime.
        let report = self.gpu.report();
        if let Some(percent) = report.memory_percent() {
            self.gpu_memory.record(percent, now);
        }
        for gpu in &report.gpus {
            let labels = GpuLabels {
                gpu: format!("{}: {}", gpu.index, gpu.name),
            };
            let bytes = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
            self.metrics
                .gpu_memory_used
                .get_or_create(&labels)
                .set(bytes(gpu.memory_used_bytes));
            self.metrics
                .gpu_memory_total
                .get_or_create(&labels)
                .set(bytes(gpu.memory_total_bytes));
            if let Some(percent) = gpu.utilization_percent {
                self.metrics
                    .gpu_utilization
                    .get_or_create(&labels)
                    .set(f64::from(percent) / 100.0);
            }
        }
        *self
            .latest_gpu
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = report;
    }

    /// One evaluation: figures from the windows, transitions logged, counted and offered to
    /// the webhook, whose due messages go to `send`.
    fn evaluate(
        &self,
        config: &AlertsConfig,
        outbox: &mut Outbox,
        now: u64,
        send: impl Fn(&alerts::Transition),
    ) {
        let figures = self.figures(config, now);
        let at = OffsetDateTime::from_unix_timestamp(now as i64)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());

        for transition in self.alerts.evaluate(config, &figures, at) {
            let firing = transition.state == AlertState::Firing;
            if firing {
                tracing::warn!(
                    alert = transition.name.as_str(),
                    value = transition.value,
                    threshold = transition.threshold,
                    "{}",
                    transition.message()
                );
            } else {
                tracing::info!(
                    alert = transition.name.as_str(),
                    value = transition.value,
                    threshold = transition.threshold,
                    "{}",
                    transition.message()
                );
            }
            self.metrics
                .alerts_firing
                .get_or_create(&alert_labels(transition.name))
                .set(i64::from(firing));
            if !config.webhook_url.is_empty() {
                outbox.offer(transition);
            }
        }

        let min_interval = Duration::from_secs(config.webhook_min_interval_secs);
        for transition in outbox.due(now, min_interval) {
            send(&transition);
        }
    }

    /// The value of every alert's figure over the short and the long window.
    fn figures(&self, config: &AlertsConfig, now: u64) -> Figures {
        let short = Duration::from_secs(config.short_window_secs);
        let long = Duration::from_secs(config.long_window_secs);
        let (short_traffic, long_traffic) = (
            self.traffic.summary(short, now),
            self.traffic.summary(long, now),
        );

        let error_rate = |summary: &traffic::TrafficSummary| {
            summary
                .error_rate
                .filter(|_| summary.requests >= config.min_requests)
        };
        let p99 = |class| Figure {
            short: short_traffic.classes[&class].p99_seconds,
            long: long_traffic.classes[&class].p99_seconds,
        };
        let lag = self
            .replication_lag
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .and_then(|source| source());
        let mean = |samples: &Samples| Figure {
            short: samples.mean(short, now),
            long: samples.mean(long, now),
        };
        Figures::from([
            (
                AlertName::ErrorRate,
                Figure {
                    short: error_rate(&short_traffic),
                    long: error_rate(&long_traffic),
                },
            ),
            (AlertName::ReadLatency, p99(RouteClass::Read)),
            (AlertName::WriteLatency, p99(RouteClass::Write)),
            (AlertName::AdminLatency, p99(RouteClass::Admin)),
            (AlertName::InferenceLatency, p99(RouteClass::Inference)),
            (AlertName::HostCpu, mean(&self.host_cpu)),
            (AlertName::GpuMemory, mean(&self.gpu_memory)),
            // A lag is a state, not a rate: its current value stands for both windows.
            (
                AlertName::ReplicationLag,
                Figure {
                    short: lag,
                    long: lag,
                },
            ),
        ])
    }
}

fn alert_labels(name: AlertName) -> AlertLabels {
    AlertLabels {
        alert: name.as_str().to_string(),
    }
}

/// Seconds since the Unix epoch, the clock of the SLO windows.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// This host's name, for alert messages from several appliances to tell them apart.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "nexus-canvas".to_string())
}

/// Serialises a time as RFC 3339 in UTC with milliseconds, like every time in the API.
pub(crate) fn serialize_time<S: Serializer>(
    at: &OffsetDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::store::format_time(*at))
}

pub(crate) fn serialize_optional_time<S: Serializer>(
    at: &Option<OffsetDateTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize_time(at, serializer),
        None => serializer.serialize_none(),
    }
}
