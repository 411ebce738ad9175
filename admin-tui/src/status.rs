//! The daemon's admin status document (`GET /api/v1/admin/status`) and its reload answer, as
//! the console reads them.
//!
//! These are the console's own types, not the daemon's: the console is built and shipped
//! apart from the daemon and may face an older or newer one. So unknown fields are ignored,
//! every section but the identity and health defaults when absent, and optional figures are
//! `Option`s. Names the daemon enumerates (alert names and states, route classes, check
//! states) stay strings, so a new one still shows instead of failing the whole document.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Everything an operator watches, in one document.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StatusReport {
    pub version: String,
    #[serde(default)]
    pub git_revision: String,
    /// RFC 3339, UTC.
    #[serde(default)]
    pub started_at: String,
    pub uptime_seconds: u64,
    pub health: Readiness,
    #[serde(default)]
    pub model: ModelReport,
    #[serde(default)]
    pub gpu: GpuReport,
    #[serde(default)]
    pub queue: QueueReport,
    #[serde(default)]
    pub traffic: TrafficWindows,
    #[serde(default)]
    pub host: HostReport,
    #[serde(default)]
    pub alerts: AlertsReport,
    #[serde(default)]
    pub store: StoreReport,
    #[serde(default)]
    pub replication: ReplicationReport,
}

/// What `/ready` answers.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// By dependency (`store`, `model`); a map so that a check added later still shows.
    #[serde(default)]
    pub checks: BTreeMap<String, Check>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Check {
    /// `ok`, `failing`, or for the model also `loading` and `disabled`.
    pub status: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ModelReport {
    /// `ready`, `loading`, `failed` or `disabled`.
    #[serde(default)]
    pub state: String,
    pub detail: Option<String>,
    pub summary: Option<ModelSummary>,
    /// What burn's allocator holds on the model's GPU; absent on the CPU.
    pub device_memory: Option<DeviceMemory>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ModelSummary {
    pub name: String,
    pub revision: String,
    pub dimensions: u64,
    pub max_tokens: u64,
    pub backend: String,
    pub device: String,
    pub adapter: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct DeviceMemory {
    pub in_use_bytes: u64,
    pub reserved_bytes: u64,
}

/// GPU facts from NVML, or why there are none.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GpuReport {
    /// `nvml` when NVML answered, else `none`.
    pub source: String,
    pub driver: Option<String>,
    pub gpus: Vec<GpuFacts>,
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GpuFacts {
    pub index: u32,
    pub name: String,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub utilization_percent: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct QueueReport {
    /// Inputs (not requests) waiting for or inside the model.
    pub queued: u64,
    pub capacity: u64,
}

/// Traffic over the alerts' short and long windows.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TrafficWindows {
    pub short: TrafficSummary,
    pub long: TrafficSummary,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TrafficSummary {
    pub window_seconds: u64,
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub requests_per_second: f64,
    /// By route class: `read`, `write`, `inference`, `admin`.
    pub classes: BTreeMap<String, ClassSummary>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ClassSummary {
    pub requests: u64,
    pub errors: u64,
    /// Latency quantiles in seconds, as the upper bound of the daemon's histogram bucket.
    /// Absent without requests, and also (serialised from infinity) when the quantile falls
    /// past the last bucket.
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HostReport {
    /// Host CPU busy over the short window, in percent.
    pub cpu_percent: Option<f64>,
    pub process: ProcessStats,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct AlertsReport {
    pub firing: u64,
    pub alerts: Vec<AlertView>,
    /// The latest transitions, newest first.
    pub recent: Vec<Transition>,
}

/// One alert rule and where it stands.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct AlertView {
    pub name: String,
    /// `ok` (never fired), `firing` or `resolved`.
    pub state: String,
    pub summary: String,
    pub threshold: f64,
    /// The figure over the short window at the last evaluation.
    pub value: Option<f64>,
    pub fired_at: Option<String>,
    pub resolved_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Transition {
    pub name: String,
    pub state: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub at: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct StoreReport {
    pub path: String,
    pub size_bytes: u64,
    pub wal_bytes: u64,
    pub schema_version: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ReplicationReport {
    /// Always empty from the current daemon, which has no replication yet; kept as raw JSON
    /// so that whatever a later daemon reports is shown rather than guessed at.
    pub replicas: Vec<Value>,
}

/// What `POST /api/v1/admin/config/reload` did.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ReloadReport {
    pub applied: Vec<String>,
    pub needs_restart: Vec<String>,
}

/// The daemon's JSON error body: `{"error": {"code", "message", "request_id"}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl StatusReport {
    /// The alert called `name`, if the daemon has it.
    pub fn alert(&self, name: &str) -> Option<&AlertView> {
        self.alerts.alerts.iter().find(|alert| alert.name == name)
    }
}

impl GpuReport {
    /// Bytes used and in total over every GPU; absent without NVML facts.
    pub fn memory(&self) -> Option<(u64, u64)> {
        let total: u64 = self.gpus.iter().map(|gpu| gpu.memory_total_bytes).sum();
        let used: u64 = self.gpus.iter().map(|gpu| gpu.memory_used_bytes).sum();
        (total > 0).then_some((used, total))
    }
}
