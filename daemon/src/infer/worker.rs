//! The model worker: one thread per device that owns the model and runs batches.
//!
//! It loads and verifies the model, runs a warm-up batch, and then loops: take every queued
//! job while their tokens fit the batch budget, drop the ones whose client left or whose
//! deadline passed, sort the inputs by length (so that padding stays small), run them in
//! batches bounded by size and by padded tokens, and answer each job with its vectors.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use nexus_models::{BackendKind, ComputeDevice, DeviceChoice, Embedder, Manifest, Tokens};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::{Embedding, InferError, Input, ModelState, ModelSummary};
use crate::config::{DeviceSetting, InferenceConfig};
use crate::telemetry::metrics::InferenceMetrics;

/// A request's uncached inputs on their way to the model.
pub struct Job {
    pub inputs: Vec<Input>,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Vec<Embedding>, InferError>>,
    /// Held until the job is answered, so queued inputs count against the queue's capacity.
    pub permit: OwnedSemaphorePermit,
    /// The request's span, so that the worker's log lines carry its request id.
    pub span: tracing::Span,
}

impl Job {
    /// Frees the job's place in the queue, then answers it: in this order, a client that
    /// sends its next request the moment it has the answer finds the place free.
    fn answer(self, result: Result<Vec<Embedding>, InferError>) {
        drop(self.permit);
        let _ = self.reply.send(result);
    }
}

/// A job whose inputs are tokenized.
struct Prepared {
    job: Job,
    tokens: Vec<Tokens>,
}

impl Prepared {
    fn token_count(&self) -> usize {
        self.tokens.iter().map(Tokens::len).sum()
    }
}

/// Loads the model on a new thread and then serves `jobs` until every sender is gone.
pub fn spawn(
    config: &InferenceConfig,
    jobs: Receiver<Job>,
    state: Arc<RwLock<ModelState>>,
    device: Arc<OnceLock<ComputeDevice>>,
    metrics: InferenceMetrics,
    on_ready: impl FnOnce() + Send + 'static,
) {
    let config = config.clone();
    let spawned = std::thread::Builder::new().name("inference".into()).spawn(move || {
        let set_state = |new: ModelState| {
            *state.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = new;
        };

        match load(&config) {
            Ok((embedder, summary)) => {
                tracing::info!(
                    model = %summary.name,
                    revision = %summary.revision,
                    device = %summary.device,
                    "model ready"
                );
                let _ = device.set(embedder.device().clone());
                set_state(ModelState::Ready(summary));
                on_ready();
                serve(&embedder, &config, &metrics, &jobs);
            }
            Err(reason) => {
                tracing::error!(%reason, "the embedding model is unavailable; /ready stays 503");
                set_state(ModelState::Failed(reason.clone()));
                // Answer queued work rather than leaving it to time out.
                for job in jobs {
                    job.answer(Err(InferError::Unavailable(reason.clone())));
                }
            }
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the inference thread");
    }
}

fn device_choice(setting: DeviceSetting) -> DeviceChoice {
    match setting {
        DeviceSetting::Auto => DeviceChoice::Auto,
        DeviceSetting::Gpu => DeviceChoice::Wgpu,
        DeviceSetting::Cpu => DeviceChoice::Cpu,
    }
}

/// Verifies the model's files, loads it and runs one warm-up batch (which also compiles the
/// GPU kernels), so that the first client request is not the slow one.
fn load(config: &InferenceConfig) -> Result<(Embedder, ModelSummary), String> {
    let started = Instant::now();
    let manifest = Manifest::builtin().map_err(|error| error.to_string())?;
    let model_dir = manifest.model_dir(&config.models_dir);
    manifest
        .verify(&model_dir)
        .map_err(|error| error.to_string())?;

    let embedder = Embedder::load(&model_dir, device_choice(config.device))
        .map_err(|error| error.to_string())?;
    embedder
        .embed(&["warm-up: a bold serif logo on a pale blue background"])
        .map_err(|error| format!("the warm-up batch failed: {error}"))?;

    let info = embedder.info();
    let summary = ModelSummary {
        name: manifest.model.name.clone(),
        revision: manifest.model.revision.clone(),
        dimensions: info.dims,
        max_tokens: info.max_tokens,
        backend: match info.device.backend {
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cpu => "cpu",
        },
        device: info.device.to_string(),
        adapter: info
            .device
            .adapter
            .as_ref()
            .map(|adapter| adapter.name.clone()),
    };
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "model loaded and warm"
    );
    Ok((embedder, summary))
}

/// The batching loop; returns when the daemon drops the last sender.
fn serve(
    embedder: &Embedder,
    config: &InferenceConfig,
    metrics: &InferenceMetrics,
    jobs: &Receiver<Job>,
) {
    let mut carried: Option<Prepared> = None;

    loop {
        // Block for the first job of a batch, unless one was carried over from the last.
        let first = match carried.take() {
            Some(prepared) => prepared,
            None => match jobs.recv() {
                Ok(job) => match prepare(embedder, job) {
                    Some(prepared) => prepared,
                    None => continue,
                },
                Err(_) => return,
            },
        };

        // Add whatever else is queued while it fits the token budget.
        let mut tokens = first.token_count();
        let mut batch = vec![first];
        loop {
            match jobs.try_recv() {
                Ok(job) => {
                    let Some(prepared) = prepare(embedder, job) else {
                        continue;
                    };
                    if tokens + prepared.token_count() > config.max_batch_tokens {
                        carried = Some(prepared);
                        break;
                    }
                    tokens += prepared.token_count();
                    batch.push(prepared);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if carried.is_none() && batch.is_empty() => return,
                Err(TryRecvError::Disconnected) => break,
            }
        }

        run_batch(embedder, config, metrics, batch);
    }
}

/// Tokenizes a job's inputs; answers and drops it if that fails or nobody waits any more.
fn prepare(embedder: &Embedder, job: Job) -> Option<Prepared> {
    if job.reply.is_closed() || Instant::now() >= job.deadline {
        return None;
    }

    let _entered = job.span.clone().entered();
    let tokens: Result<Vec<Tokens>, InferError> = job
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let tokenized = match input {
                Input::Text(text) => embedder
                    .tokenize(&[text.as_str()])
                    .map(|mut all| all.remove(0)),
                Input::TokenIds(ids) => embedder.tokens_from_ids(ids),
            };
            tokenized.map_err(|error| InferError::InvalidInput {
                index,
                reason: error.to_string(),
            })
        })
        .collect();

    match tokens {
        Ok(tokens) => Some(Prepared { job, tokens }),
        Err(error) => {
            job.answer(Err(error));
            None
        }
    }
}

/// Runs the inputs of `batch` sorted by length, in chunks that respect both the batch size and
/// the budget of padded tokens, and answers every job.
fn run_batch(
    embedder: &Embedder,
    config: &InferenceConfig,
    metrics: &InferenceMetrics,
    batch: Vec<Prepared>,
) {
    let started = Instant::now();

    // (job, input) pairs, shortest first.
    let mut order: Vec<(usize, usize)> = batch
        .iter()
        .enumerate()
        .flat_map(|(job, prepared)| (0..prepared.tokens.len()).map(move |input| (job, input)))
        .collect();
    order.sort_by_key(|&(job, input)| batch[job].tokens[input].len());

    let mut vectors: Vec<Vec<Option<Vec<f32>>>> = batch
        .iter()
        .map(|prepared| vec![None; prepared.tokens.len()])
        .collect();
    let mut failure: Option<String> = None;

    for chunk in chunks(
        &order,
        |&(job, input)| batch[job].tokens[input].len(),
        config,
    ) {
        let inputs: Vec<Tokens> = chunk
            .iter()
            .map(|&(job, input)| batch[job].tokens[input].clone())
            .collect();
        let chunk_started = Instant::now();
        match embedder.embed_tokens(&inputs) {
            Ok(embedded) => {
                metrics
                    .batch_duration
                    .observe(chunk_started.elapsed().as_secs_f64());
                metrics.batch_size.observe(inputs.len() as f64);
                metrics
                    .tokens
                    .inc_by(inputs.iter().map(|tokens| tokens.len() as u64).sum());
                for (&(job, input), vector) in chunk.iter().zip(embedded) {
                    vectors[job][input] = Some(vector);
                }
            }
            Err(error) => {
                failure = Some(error.to_string());
                break;
            }
        }
    }

    let inputs = order.len();
    for (prepared, vectors) in batch.into_iter().zip(vectors) {
        let _entered = prepared.job.span.clone().entered();
        let answer = match &failure {
            Some(reason) => {
                tracing::error!(%reason, "inference failed");
                Err(InferError::Failed(reason.clone()))
            }
            None => Ok(prepared
                .tokens
                .iter()
                .zip(vectors)
                .map(|(tokens, vector)| Embedding {
                    vector: vector.unwrap_or_default().into(),
                    tokens: tokens.len() as u32,
                })
                .collect()),
        };
        prepared.job.answer(answer);
    }
    tracing::debug!(
        inputs,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "batch done"
    );
}

/// Splits length-sorted items into runs of at most `max_batch_size` whose padded size (the
/// longest item times the count) stays within `max_batch_tokens`.
fn chunks<'a, T>(
    sorted: &'a [T],
    len: impl Fn(&T) -> usize,
    config: &InferenceConfig,
) -> Vec<&'a [T]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start + 1;
        while end < sorted.len()
            && end - start < config.max_batch_size
            && len(&sorted[end]) * (end - start + 1) <= config.max_batch_tokens
        {
            end += 1;
        }
        chunks.push(&sorted[start..end]);
        start = end;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use rocket::figment::Figment;
    use rocket::figment::providers::{Format, Toml};

    use super::*;
    use crate::config::{Config, DEFAULT_TOML};

    fn config(max_batch_size: usize, max_batch_tokens: usize) -> InferenceConfig {
        let defaults: Config = Figment::from(Toml::string(DEFAULT_TOML)).extract().unwrap();
        InferenceConfig {
            max_batch_size,
            max_batch_tokens,
            ..defaults.inference
        }
    }

    #[test]
    fn chunks_respect_size_and_padded_tokens() {
        let lengths = [3, 4, 4, 10, 10, 10, 200];
        let split = chunks(&lengths, |&len| len, &config(3, 30));
        assert_eq!(split, vec![&[3, 4, 4][..], &[10, 10, 10][..], &[200][..]]);

        // A single item over the budget still runs, alone.
        let split = chunks(&[300, 300], |&len| len, &config(8, 512));
        assert_eq!(split, vec![&[300][..], &[300][..]]);

        let all: usize = chunks(&lengths, |&len| len, &config(2, 1000))
            .iter()
            .map(|c| c.len())
            .sum();
        assert_eq!(all, lengths.len());
    }
}
