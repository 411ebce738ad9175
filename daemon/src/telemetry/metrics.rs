//! Prometheus metrics: the registry, the families the daemon updates as it works, and the
//! process figures read from `/proc` at each scrape.
//!
//! Names follow Prometheus conventions: a `nexus_` prefix, base units (seconds, bytes) in the
//! name, `_total` on counters. Route labels are Rocket's route templates (`/api/v1/canvases/<id>`),
//! never raw paths, so a client cannot blow up the number of series.

use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`Metrics::render`] returns (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Bounds for API routes (reads, writes, admin): fine around the 200 ms objective.
const API_SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0,
];
/// Bounds for inference: a batch can take seconds on a CPU; the objective is 15 s.
const INFERENCE_SECONDS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0,
];
const BATCH_SIZES: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub alert: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemoryLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    pub replica: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadlineLabels {
    pub deadline: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    pub gpu: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
    profile: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type Ratio = Gauge<f64, AtomicU64>;

/// What the inference worker and cache record; cheap to clone (each metric is shared).
#[derive(Clone)]
pub struct InferenceMetrics {
    pub batch_size: Histogram,
    pub batch_duration: Histogram,
    pub tokens: Counter,
    pub cache: Family<CacheLabels, Counter>,
}

impl InferenceMetrics {
    pub fn cache_lookups(&self, hits: usize, misses: usize) {
        let count = |result| self.cache.get_or_create(&CacheLabels { result }).clone();
        count("hit").inc_by(hits as u64);
        count("miss").inc_by(misses as u64);
    }
}

/// What the search indexer records (`crate::search`); cheap to clone.
#[derive(Clone, Default)]
pub struct SearchMetrics {
    /// Embeddings the in-memory index holds.
    pub vectors: Gauge,
    /// Entries of the indexer's work list: items to embed or to drop.
    pub pending: Gauge,
    pub embedded: Counter,
    pub failures: Counter,
}

/// What the listener front records (`crate::front`); cheap to clone.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: Family<ListenerLabels, Gauge>,
    pub accepted: Family<ListenerLabels, Counter>,
    pub refused: Family<ReasonLabels, Counter>,
    pub timed_out: Family<DeadlineLabels, Counter>,
    pub handshake_failures: Family<ReasonLabels, Counter>,
    pub certificate_reloads: Family<ResultLabels, Counter>,
}

impl ConnectionMetrics {
    /// Every series starts at 0, so that `rate()` sees the first refusal or timeout.
    fn new() -> ConnectionMetrics {
        let metrics = ConnectionMetrics {
            open: Family::default(),
            accepted: Family::default(),
            refused: Family::default(),
            timed_out: Family::default(),
            handshake_failures: Family::default(),
            certificate_reloads: Family::default(),
        };
        for listener in ["http", "https"] {
            let _ = metrics.open.get_or_create(&ListenerLabels { listener });
            let _ = metrics.accepted.get_or_create(&ListenerLabels { listener });
        }
        for reason in ["max_total", "max_per_address"] {
            let _ = metrics.refused.get_or_create(&ReasonLabels { reason });
        }
        for deadline in ["header", "idle"] {
            let _ = metrics
                .timed_out
                .get_or_create(&DeadlineLabels { deadline });
        }
        for reason in ["timeout", "refused", "io"] {
            let _ = metrics
                .handshake_failures
                .get_or_create(&ReasonLabels { reason });
        }
        for result in ["applied", "refused"] {
            let _ = metrics
                .certificate_reloads
                .get_or_create(&ResultLabels { result });
        }
        metrics
    }

    pub fn accepted(&self, listener: &'static str) {
        self.accepted
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn timed_out(&self, deadline: &'static str) {
        self.timed_out
            .get_or_create(&DeadlineLabels { deadline })
            .inc();
    }

    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

/// Every metric the daemon exposes.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<RouteLabels>,
    pub inference_request_duration: Histogram,
    pub in_flight: Gauge,
    pub inference: InferenceMetrics,
    pub search: SearchMetrics,
    pub queue_depth: Gauge,
    pub queue_capacity: Gauge,
    pub store_size: Gauge,
    pub wal_size: Gauge,
    pub gpu_memory_used: Family<GpuLabels, Gauge>,
    pub gpu_memory_total: Family<GpuLabels, Gauge>,
    pub gpu_utilization: Family<GpuLabels, Ratio>,
    pub model_memory: Family<MemoryLabels, Gauge>,
    pub host_cpu: Ratio,
    pub alerts_firing: Family<AlertLabels, Gauge>,
    pub connections: ConnectionMetrics,
    pub change_log_head: Gauge,
    pub replica_position: Family<ReplicaLabels, Gauge>,
    pub replica_lag_changes: Family<ReplicaLabels, Gauge>,
    pub replica_lag_seconds: Family<ReplicaLabels, Ratio>,
    pub replica_failures: Family<ReplicaLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(|| Histogram::new(API_SECONDS)),
            inference_request_duration: Histogram::new(INFERENCE_SECONDS),
            in_flight: Gauge::default(),
            inference: InferenceMetrics {
                batch_size: Histogram::new(BATCH_SIZES),
                batch_duration: Histogram::new(INFERENCE_SECONDS),
                tokens: Counter::default(),
                cache: Family::default(),
            },
            search: SearchMetrics::default(),
            queue_depth: Gauge::default(),
            queue_capacity: Gauge::default(),
            store_size: Gauge::default(),
            wal_size: Gauge::default(),
            gpu_memory_used: Family::default(),
            gpu_memory_total: Family::default(),
            gpu_utilization: Family::default(),
            model_memory: Family::default(),
            host_cpu: Ratio::default(),
            alerts_firing: Family::default(),
            connections: ConnectionMetrics::new(),
            change_log_head: Gauge::default(),
            replica_position: Family::default(),
            replica_lag_changes: Family::default(),
            replica_lag_seconds: Family::default(),
            replica_failures: Family::default(),
        };
        metrics.registered()
    }

    fn registered(mut self) -> Metrics {
        let registry = &mut self.registry;
        registry.register(
            "nexus_http_requests",
            "HTTP requests answered, by route template, method and status",
            self.requests.clone(),
        );
        registry.register(
            "nexus_http_request_duration_seconds",
            "Time to answer API requests (all but inference), by route and method",
            self.request_duration.clone(),
        );
        registry.register(
            "nexus_http_requests_in_flight",
            "HTTP requests being handled now",
            self.in_flight.clone(),
        );
        registry.register(
            "nexus_inference_request_duration_seconds",
            "Time to answer embedding requests, queueing included",
            self.inference_request_duration.clone(),
        );
        registry.register(
            "nexus_inference_batch_size",
            "Inputs per batch run by the model",
            self.inference.batch_size.clone(),
        );
        registry.register(
            "nexus_inference_batch_duration_seconds",
            "Time the model took per batch",
            self.inference.batch_duration.clone(),
        );
        registry.register(
            "nexus_inference_tokens",
            "Tokens run through the model, padding excluded",
            self.inference.tokens.clone(),
        );
        registry.register(
            "nexus_inference_cache_lookups",
            "Embedding cache lookups, by result (hit or miss)",
            self.inference.cache.clone(),
        );
        registry.register(
            "nexus_search_vectors",
            "Embeddings of canvases and assets the search index holds",
            self.search.vectors.clone(),
        );
        registry.register(
            "nexus_search_pending_items",
            "Canvases and assets waiting for the search indexer (to embed or to drop)",
            self.search.pending.clone(),
        );
        registry.register(
            "nexus_search_embedded",
            "Embeddings the search indexer computed and stored",
            self.search.embedded.clone(),
        );
        registry.register(
            "nexus_search_index_failures",
            "Search indexing attempts that failed and are retried with backoff",
            self.search.failures.clone(),
        );
        registry.register(
            "nexus_inference_queue_depth",
            "Inputs waiting for or inside the model",
            self.queue_depth.clone(),
        );
        registry.register(
            "nexus_inference_queue_capacity",
            "Inputs the queue holds before it answers 429",
            self.queue_capacity.clone(),
        );
        registry.register(
            "nexus_store_size_bytes",
            "Size of the SQLite database file",
            self.store_size.clone(),
        );
        registry.register(
            "nexus_store_wal_size_bytes",
            "Size of the SQLite write-ahead log",
            self.wal_size.clone(),
        );
        registry.register(
            "nexus_gpu_memory_used_bytes",
            "GPU memory in use, by GPU (from NVML)",
            self.gpu_memory_used.clone(),
        );
        registry.register(
            "nexus_gpu_memory_total_bytes",
            "GPU memory in all, by GPU (from NVML)",
            self.gpu_memory_total.clone(),
        );
        registry.register(
            "nexus_gpu_utilization_ratio",
            "Share of the last sample period the GPU was busy, by GPU (from NVML)",
            self.gpu_utilization.clone(),
        );
        registry.register(
            "nexus_inference_device_memory_bytes",
            "Memory burn's allocator holds on the model's GPU, by kind (in_use, reserved)",
            self.model_memory.clone(),
        );
        registry.register(
            "nexus_host_cpu_busy_ratio",
            "Share of all host CPU time spent busy over the last sample period",
            self.host_cpu.clone(),
        );
        registry.register(
            "nexus_alert_firing",
            "1 while an alert fires, else 0, by alert",
            self.alerts_firing.clone(),
        );
        registry.register(
            "nexus_change_log_head",
            "Sequence number of the last change committed to the store",
            self.change_log_head.clone(),
        );
        registry.register(
            "nexus_replica_position",
            "Last change durably held by each replica",
            self.replica_position.clone(),
        );
        registry.register(
            "nexus_replica_lag_changes",
            "Changes committed but not yet in each replica",
            self.replica_lag_changes.clone(),
        );
        registry.register(
            "nexus_replica_lag_seconds",
            "Age of the oldest change not yet in each replica; 0 when it is level",
            self.replica_lag_seconds.clone(),
        );
        registry.register(
            "nexus_replica_consecutive_failures",
            "Failed shipping attempts in a row, by replica; 0 when the last one worked",
            self.replica_failures.clone(),
        );
        registry.register(
            "nexus_connections_open",
            "Client connections open now, by listener (http, https)",
            self.connections.open.clone(),
        );
        registry.register(
            "nexus_connections_accepted",
            "Client connections accepted, by listener, refused ones included",
            self.connections.accepted.clone(),
        );
        registry.register(
            "nexus_connections_refused",
            "Connections closed at once for a limit, by reason (max_total, max_per_address)",
            self.connections.refused.clone(),
        );
        registry.register(
            "nexus_connections_timed_out",
            "Connections closed by a deadline, by deadline (header, idle)",
            self.connections.timed_out.clone(),
        );
        registry.register(
            "nexus_tls_handshake_failures",
            "TLS handshakes that failed, by reason (timeout, refused, io)",
            self.connections.handshake_failures.clone(),
        );
        registry.register(
            "nexus_tls_certificate_reloads",
            "Certificate reloads, by result (applied, refused: the old one stayed)",
            self.connections.certificate_reloads.clone(),
        );
        registry.register(
            "nexus_build",
            "Version, git revision and build profile of the daemon",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: env!("NEXUS_GIT_REVISION"),
                profile: env!("NEXUS_BUILD_PROFILE"),
            }),
        );
        registry.register_collector(Box::new(ProcessCollector {
            started: SystemTime::now(),
        }));
        self
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The conventional `process_*` metrics, read from `/proc/self` at each scrape.
#[derive(Debug)]
struct ProcessCollector {
    started: SystemTime,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let process = super::host::ProcessStats::read();
        let start = self
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());

        if let Some(cpu) = process.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                process.resident_bytes.map(|bytes| bytes as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                process.open_fds.map(|fds| fds as f64),
            ),
            (
                "process_max_fds",
                "Limit on open file descriptors",
                process.max_fds.map(|fds| fds as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                Some(start),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}
