//! Alert rules over the SLO figures, and the state of each alert: ok, firing, or resolved.
//!
//! A rule compares one figure against its threshold over the short and the long window. It
//! fires when both breach (the long window shows it is no blip) and resolves as soon as the
//! short window is back within the threshold. [`Alerts::evaluate`] takes the figures and the
//! time from its caller and returns the transitions, which the caller logs and notifies.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::config::AlertsConfig;

/// How many past transitions the admin status shows.
const HISTORY: usize = 50;

/// Every alert the daemon knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertName {
    ErrorRate,
    ReadLatency,
    WriteLatency,
    AdminLatency,
    InferenceLatency,
    HostCpu,
    GpuMemory,
    ReplicationLag,
}

impl AlertName {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertName::ErrorRate => "error_rate",
            AlertName::ReadLatency => "read_latency",
            AlertName::WriteLatency => "write_latency",
            AlertName::AdminLatency => "admin_latency",
            AlertName::InferenceLatency => "inference_latency",
            AlertName::HostCpu => "host_cpu",
            AlertName::GpuMemory => "gpu_memory",
            AlertName::ReplicationLag => "replication_lag",
        }
    }

    /// What the figure is, for messages.
    fn describe(self) -> &'static str {
        match self {
            AlertName::ErrorRate => "share of requests answered with a server error",
            AlertName::ReadLatency => "p99 latency of read requests, in seconds",
            AlertName::WriteLatency => "p99 latency of write requests, in seconds",
            AlertName::AdminLatency => "p99 latency of admin requests, in seconds",
            AlertName::InferenceLatency => "p99 latency of inference requests, in seconds",
            AlertName::HostCpu => "host CPU busy, in percent",
            AlertName::GpuMemory => "GPU memory used, in percent",
            AlertName::ReplicationLag => {
                "age of the oldest change a replica does not hold yet, in seconds"
            }
        }
    }
}

/// A figure over the two windows; `None` where there is nothing to measure (no traffic, no
/// GPU), which never breaches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figure {
    pub short: Option<f64>,
    pub long: Option<f64>,
}

/// The figures of one evaluation, by alert.
pub type Figures = BTreeMap<AlertName, Figure>;

/// The threshold of each alert, from the configuration.
pub fn thresholds(config: &AlertsConfig) -> BTreeMap<AlertName, f64> {
    let api_p99 = config.api_p99_ms as f64 / 1000.0;
    BTreeMap::from([
        (AlertName::ErrorRate, config.error_rate),
        (AlertName::ReadLatency, api_p99),
        (AlertName::WriteLatency, api_p99),
        (AlertName::AdminLatency, api_p99),
        (
            AlertName::InferenceLatency,
            config.inference_p99_ms as f64 / 1000.0,
        ),
        (AlertName::HostCpu, config.cpu_percent),
        (AlertName::GpuMemory, config.vram_percent),
        (
            AlertName::ReplicationLag,
            config.replication_lag_secs as f64,
        ),
    ])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Never fired since the daemon started.
    Ok,
    Firing,
    Resolved,
}

/// One alert as the admin status shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertView {
    pub name: AlertName,
    pub state: AlertState,
    pub summary: &'static str,
    pub threshold: f64,
    /// The figure over the short window at the last evaluation.
    pub value: Option<f64>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(serialize_with = "super::serialize_optional_time")]
    pub fired_at: Option<OffsetDateTime>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(serialize_with = "super::serialize_optional_time")]
    pub resolved_at: Option<OffsetDateTime>,
}

/// An alert that changed state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Transition {
    pub name: AlertName,
    pub state: AlertState,
    pub value: Option<f64>,
    pub threshold: f64,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "super::serialize_time")]
    pub at: OffsetDateTime,
}

impl Transition {
    /// One line for people: the log, a chat message.
    pub fn message(&self) -> String {
        let value = self
            .value
            .map_or_else(|| "no data".to_string(), |value| format!("{value:.4}"));
        match self.state {
            AlertState::Firing => format!(
                "{} is firing: {} is {value}, above {}",
                self.name.as_str(),
                self.name.describe(),
                self.threshold
            ),
            _ => format!(
                "{} resolved: {} is {value}, within {}",
                self.name.as_str(),
                self.name.describe(),
                self.threshold
            ),
        }
    }
}

/// Everything alerting remembers; one lock, taken briefly.
pub struct Alerts {
    book: Mutex<Book>,
}

struct Book {
    alerts: BTreeMap<AlertName, AlertView>,
    history: VecDeque<Transition>,
}

/// What [`Alerts::report`] returns for the admin status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertsReport {
    pub firing: usize,
    pub alerts: Vec<AlertView>,
    /// The latest transitions, newest first.
    pub recent: Vec<Transition>,
}

impl Alerts {
    pub fn new(config: &AlertsConfig) -> Alerts {
        let alerts = thresholds(config)
            .into_iter()
            .map(|(name, threshold)| {
                let view = AlertView {
                    name,
                    state: AlertState::Ok,
                    summary: name.describe(),
                    threshold,
                    value: None,
                    fired_at: None,
                    resolved_at: None,
                };
                (name, view)
            })
            .collect();
        Alerts {
            book: Mutex::new(Book {
                alerts,
                history: VecDeque::with_capacity(HISTORY),
            }),
        }
    }

    /// Shows `config`'s thresholds at once, before the next evaluation applies them.
    pub fn set_thresholds(&self, config: &AlertsConfig) {
        let thresholds = thresholds(config);
        let mut book = self
            .book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (name, alert) in &mut book.alerts {
            alert.threshold = thresholds[name];
        }
    }

    /// Compares `figures` with `config`'s thresholds and returns the alerts that changed.
    pub fn evaluate(
        &self,
        config: &AlertsConfig,
        figures: &Figures,
        now: OffsetDateTime,
    ) -> Vec<Transition> {
        let thresholds = thresholds(config);
        let mut book = self
            .book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut transitions = Vec::new();

        for (name, alert) in &mut book.alerts {
            let threshold = thresholds[name];
            let figure = figures.get(name).copied().unwrap_or_default();
            let breaches = |value: Option<f64>| value.is_some_and(|value| value > threshold);
            alert.threshold = threshold;
            alert.value = figure.short;

            let firing = alert.state == AlertState::Firing;
            let next = if !firing && breaches(figure.short) && breaches(figure.long) {
                alert.fired_at = Some(now);
                alert.resolved_at = None;
                AlertState::Firing
            } else if firing && !breaches(figure.short) {
                alert.resolved_at = Some(now);
                AlertState::Resolved
            } else {
                continue;
            };
            alert.state = next;
            transitions.push(Transition {
                name: *name,
                state: next,
                value: figure.short,
                threshold,
                at: now,
            });
        }

        for transition in &transitions {
            if book.history.len() == HISTORY {
                book.history.pop_back();
            }
            book.history.push_front(transition.clone());
        }
        transitions
    }

    pub fn report(&self) -> AlertsReport {
        let book = self
            .book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let alerts: Vec<AlertView> = book.alerts.values().cloned().collect();
        AlertsReport {
            firing: alerts
                .iter()
                .filter(|alert| alert.state == AlertState::Firing)
                .count(),
            alerts,
            recent: book.history.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AlertsConfig {
        crate::config::Config::load(None).unwrap().alerts
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    fn error_rate(short: f64, long: f64) -> Figures {
        Figures::from([(
            AlertName::ErrorRate,
            Figure {
                short: Some(short),
                long: Some(long),
            },
        )])
    }

    #[test]
    fn fires_when_both_windows_breach_and_resolves_on_the_short_one() {
        let config = config();
        let alerts = Alerts::new(&config);

        // A blip: the short window breaches, the long one does not.
        assert!(
            alerts
                .evaluate(&config, &error_rate(0.05, 0.0005), at(0))
                .is_empty()
        );

        let fired = alerts.evaluate(&config, &error_rate(0.05, 0.002), at(10));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].name, AlertName::ErrorRate);
        assert_eq!(fired[0].state, AlertState::Firing);
        assert!(
            fired[0].message().contains("above 0.001"),
            "{}",
            fired[0].message()
        );

        // Still breaching: no new transition.
        assert!(
            alerts
                .evaluate(&config, &error_rate(0.05, 0.003), at(20))
                .is_empty()
        );
        // The long window still breaches, the short one does not: resolved.
        let resolved = alerts.evaluate(&config, &error_rate(0.0, 0.002), at(30));
        assert_eq!(resolved[0].state, AlertState::Resolved);

        let report = alerts.report();
        assert_eq!(report.firing, 0);
        let view = report
            .alerts
            .iter()
            .find(|alert| alert.name == AlertName::ErrorRate)
            .unwrap();
        assert_eq!(view.state, AlertState::Resolved);
        assert_eq!(view.fired_at, Some(at(10)));
        assert_eq!(view.resolved_at, Some(at(30)));
        assert_eq!(report.recent.len(), 2);
        assert_eq!(report.recent[0].state, AlertState::Resolved);
    }

    #[test]
    fn missing_figures_never_fire_and_resolve_a_firing_alert() {
        let config = config();
        let alerts = Alerts::new(&config);
        let vram = |short, long| Figures::from([(AlertName::GpuMemory, Figure { short, long })]);

        assert!(
            alerts
                .evaluate(&config, &vram(None, None), at(0))
                .is_empty()
        );
        assert_eq!(
            alerts
                .evaluate(&config, &vram(Some(95.0), Some(90.0)), at(10))
                .len(),
            1
        );
        let resolved = alerts.evaluate(&config, &vram(None, Some(90.0)), at(20));
        assert_eq!(resolved[0].state, AlertState::Resolved);
    }

    #[test]
    fn thresholds_follow_the_configuration() {
        let mut config = config();
        let alerts = Alerts::new(&config);
        let latency = Figures::from([(
            AlertName::ReadLatency,
            Figure {
                short: Some(0.25),
                long: Some(0.25),
            },
        )]);
        assert_eq!(alerts.evaluate(&config, &latency, at(0)).len(), 1);

        // Raised past the figure by a reload: the alert resolves.
        config.api_p99_ms = 300;
        let resolved = alerts.evaluate(&config, &latency, at(10));
        assert_eq!(resolved[0].state, AlertState::Resolved);
        assert_eq!(resolved[0].threshold, 0.3);
    }
}
