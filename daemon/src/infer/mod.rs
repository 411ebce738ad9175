//! The inference runtime: admission, the result cache, and the handle to the model worker.
//!
//! A request's inputs are first looked up in a moka cache (keyed by model revision and
//! input); the misses take one permit each from a fixed pool, without waiting (an empty pool
//! answers 429 at once, never an unbounded queue), and go to the device's single worker
//! thread, which batches them with other requests' inputs (see [`worker`]). Every request
//! carries a deadline; work whose client gave up or whose deadline passed is dropped.

mod worker;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use nexus_models::{ComputeDevice, DeviceMemory};
use tokio::sync::{Semaphore, oneshot};

use crate::config::InferenceConfig;
use crate::telemetry::metrics::InferenceMetrics;

/// One input as a client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    Text(String),
    /// Token ids of the model's own vocabulary, `[CLS]` and `[SEP]` included.
    TokenIds(Vec<u32>),
}

/// The embedding of one input and how many tokens it took.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub vector: Arc<[f32]>,
    pub tokens: u32,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum InferError {
    #[error("inference is disabled on this server")]
    Disabled,
    #[error("the model is still loading")]
    Loading,
    #[error("the model is unavailable: {0}")]
    Unavailable(String),
    #[error("the inference queue is full")]
    QueueFull,
    #[error("the request took longer than its deadline of {0:?}")]
    Timeout(Duration),
    #[error("input {index} is invalid: {reason}")]
    InvalidInput { index: usize, reason: String },
    #[error("inference failed: {0}")]
    Failed(String),
}

/// What the model is and where it runs, once loaded.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ModelSummary {
    pub name: String,
    pub revision: String,
    pub dimensions: usize,
    pub max_tokens: usize,
    pub backend: &'static str,
    pub device: String,
    pub adapter: Option<String>,
}

/// Where the model is in its life.
#[derive(Debug, Clone)]
pub enum ModelState {
    Disabled,
    Loading,
    Ready(ModelSummary),
    Failed(String),
}

type CacheKey = (Arc<str>, Input);

/// A cheap, cloneable handle to the inference runtime.
#[derive(Clone)]
pub struct Inference {
    inner: Arc<Inner>,
}

struct Inner {
    /// Shared with the worker, which moves it from loading to ready or failed.
    state: Arc<RwLock<ModelState>>,
    /// The model's device, set by the worker once the model is loaded.
    device: Arc<OnceLock<ComputeDevice>>,
    jobs: Option<std::sync::mpsc::Sender<worker::Job>>,
    permits: Arc<Semaphore>,
    capacity: usize,
    cache: Cache<CacheKey, Embedding>,
    timeout: Duration,
    metrics: InferenceMetrics,
}

impl Inference {
    /// Starts the worker thread, which loads the model in the background; `on_ready` runs
    /// once the model answered a warm-up batch (at once when inference is disabled).
    pub fn start(
        config: &InferenceConfig,
        metrics: InferenceMetrics,
        on_ready: impl FnOnce() + Send + 'static,
    ) -> Inference {
        let initial = if config.enabled {
            ModelState::Loading
        } else {
            ModelState::Disabled
        };
        let state = Arc::new(RwLock::new(initial));
        let device = Arc::new(OnceLock::new());

        let jobs = if config.enabled {
            let (sender, receiver) = std::sync::mpsc::channel();
            worker::spawn(
                config,
                receiver,
                Arc::clone(&state),
                Arc::clone(&device),
                metrics.clone(),
                on_ready,
            );
            Some(sender)
        } else {
            on_ready();
            None
        };

        let capacity = config.queue_capacity as usize;
        Inference {
            inner: Arc::new(Inner {
                state,
                device,
                jobs,
                permits: Arc::new(Semaphore::new(capacity)),
                capacity,
                cache: Cache::builder()
                    .weigher(|_key: &CacheKey, value: &Embedding| {
                        // Bytes of the vector plus a rough allowance for the key and entry.
                        (value.vector.len() * 4 + 256)
                            .try_into()
                            .unwrap_or(u32::MAX)
                    })
                    .max_capacity(config.cache_bytes)
                    .build(),
                timeout: Duration::from_millis(config.request_timeout_ms),
                metrics,
            }),
        }
    }

    pub fn state(&self) -> ModelState {
        self.inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The loaded model, or why there is none to serve with.
    pub fn ready_model(&self) -> Result<ModelSummary, InferError> {
        match self.state() {
            ModelState::Ready(summary) => Ok(summary),
            ModelState::Disabled => Err(InferError::Disabled),
            ModelState::Loading => Err(InferError::Loading),
            ModelState::Failed(reason) => Err(InferError::Unavailable(reason)),
        }
    }

    /// Embeds `inputs` in order, from the cache where possible.
    pub async fn embed(&self, inputs: Vec<Input>) -> Result<Vec<Embedding>, InferError> {
        let model = self.ready_model()?;
        let cache_scope: Arc<str> = format!("{}@{}", model.name, model.revision).into();
        let deadline = Instant::now() + self.inner.timeout;

        // Answer what the cache knows; queue the rest.
        let mut results: Vec<Option<Embedding>> = inputs
            .iter()
            .map(|input| self.inner.cache.get(&(cache_scope.clone(), input.clone())))
            .collect();
        let missing: Vec<usize> = (0..inputs.len())
            .filter(|&i| results[i].is_none())
            .collect();
        self.inner
            .metrics
            .cache_lookups(inputs.len() - missing.len(), missing.len());
        if missing.is_empty() {
            return Ok(results.into_iter().flatten().collect());
        }

        let permits = u32::try_from(missing.len()).map_err(|_| InferError::QueueFull)?;
        let permit = Arc::clone(&self.inner.permits)
            .try_acquire_many_owned(permits)
            .map_err(|_| InferError::QueueFull)?;

        let (reply, answer) = oneshot::channel();
        let job = worker::Job {
            inputs: missing.iter().map(|&i| inputs[i].clone()).collect(),
            deadline,
            reply,
            permit,
            span: tracing::Span::current(),
        };
        let jobs = self.inner.jobs.as_ref().ok_or(InferError::Disabled)?;
        jobs.send(job)
            .map_err(|_| InferError::Unavailable("the worker stopped".into()))?;

        let computed = match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(InferError::Failed("the worker dropped the request".into())),
            Err(_) => return Err(InferError::Timeout(self.inner.timeout)),
        };

        for (&index, embedding) in missing.iter().zip(computed) {
            self.inner.cache.insert(
                (cache_scope.clone(), inputs[index].clone()),
                embedding.clone(),
            );
            results[index] = Some(embedding);
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// Inputs waiting for or inside the model right now.
    pub fn queued(&self) -> usize {
        self.inner.capacity - self.inner.permits.available_permits()
    }

    /// The device the model runs on, once it is loaded: search keeps its vectors on the same
    /// one (the wgpu device is shared process-wide).
    pub fn compute_device(&self) -> Option<ComputeDevice> {
        self.inner.device.get().cloned()
    }

    /// GPU memory that the model's allocator holds; `None` on the CPU or before loading.
    pub fn device_memory(&self) -> Option<DeviceMemory> {
        self.inner.device.get()?.memory()
    }

    /// Inputs the queue holds before requests are refused.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }
}
