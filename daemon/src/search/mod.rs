//! Semantic search over canvases and assets: it owns the embeddings of every item, the
//! background indexer that keeps them current, and the exact top-k search over them.
//!
//! - [`text`]: what text each item is embedded from, and its hash.
//! - [`index`]: the in-memory index, one `VectorBlock` per (project, kind), and the merge.
//! - [`indexer`]: the background task that embeds what the store's work list names.
//!
//! **Work tracking.** Triggers add every canvas and asset write to the store's work list
//! (`search_pending`) in the write's own transaction, so no write is ever missed; the
//! indexer takes entries off only once their vector is stored, and only if the item was not
//! written again meanwhile (a ticket). At start, once the model is ready and the stored
//! vectors of its revision are loaded (searches are served from then on), a reconciliation
//! queues every item whose stored vector is missing, of another model revision, or of an
//! older text (a store restored from elsewhere), and drops vectors whose item is gone.
//!
//! **Consistency.** The index is updated before the store commits a vector, and a search
//! counts the pending items before reading the index: so when a search reports nothing
//! pending, every item of its scope is in what it searched. Hits are confirmed against the
//! store, so an item deleted a moment ago never comes back.
//!
//! **Revisions.** Every vector records the model and revision that made it; only vectors of
//! the running model's revision are loaded and compared. Others count as missing.

pub mod index;
mod indexer;
pub mod text;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use utoipa::ToSchema;

use crate::infer::{InferError, Inference, Input, ModelState};
use crate::store::search::{self as rows, Kind, ModelId, Scope};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::SearchMetrics;
use index::Index;

/// Largest `k` a search may ask for.
pub const MAX_RESULTS: usize = 100;
/// Extra candidates fetched beyond `k`, so that a hit dropped by the store's confirmation
/// (deleted a moment ago) still leaves `k`.
const OVERFETCH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search needs the embedding model, and inference is disabled on this server")]
    Disabled,
    #[error("the embedding model is not ready: {0}")]
    ModelNotReady(String),
    #[error("the search index is loading")]
    IndexLoading,
    #[error("the inference queue is full")]
    QueueFull,
    #[error("embedding the query took longer than its deadline of {0:?}")]
    Timeout(Duration),
    #[error("the query cannot be embedded: {0}")]
    InvalidQuery(String),
    #[error("search failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<InferError> for SearchError {
    fn from(error: InferError) -> SearchError {
        match error {
            InferError::Disabled => SearchError::Disabled,
            InferError::Loading => SearchError::ModelNotReady("it is loading".into()),
            InferError::Unavailable(reason) => SearchError::ModelNotReady(reason),
            InferError::QueueFull => SearchError::QueueFull,
            InferError::Timeout(after) => SearchError::Timeout(after),
            InferError::InvalidInput { reason, .. } => SearchError::InvalidQuery(reason),
            InferError::Failed(reason) => SearchError::Failed(reason),
        }
    }
}

/// A search, validated.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub scope: Scope,
    /// 1 to [`MAX_RESULTS`].
    pub k: usize,
    pub min_score: Option<f32>,
}

/// One item found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHit {
    pub kind: Kind,
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(format = "uuid")]
    pub project_id: String,
    /// Cosine similarity of the query and the item's text, -1 to 1; higher is closer.
    pub score: f32,
    /// The start of the item's indexed text.
    pub snippet: String,
}

/// What a search found, and with which model.
#[derive(Debug, Clone)]
pub struct Found {
    pub hits: Vec<SearchHit>,
    pub model: ModelId,
    /// Items in the query's scope not indexed yet, as of the search.
    pub pending: u64,
}

/// Where the index stands, for the admin status and the CLI.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchStatus {
    /// `disabled` (no model to embed with), `waiting_for_model`, `loading` (reading the
    /// stored vectors), `ready`, or `failed` (the model did not load); `offline` from the
    /// CLI, which reads the store only.
    pub state: &'static str,
    /// Why the index is not serving, when it failed.
    pub detail: Option<String>,
    /// The model and revision whose vectors are served.
    pub model: String,
    pub revision: String,
    /// Items with a vector of this model.
    pub indexed: u64,
    /// Items whose vector is missing, of another revision, or out of date.
    pub pending: u64,
    /// Stored vectors of another model or revision, waiting to be recomputed.
    pub stale: u64,
    /// Vectors the running index holds in memory.
    pub in_memory: u64,
    /// Vectors this process has computed since it started.
    pub embedded_since_start: u64,
    /// The indexer's last failure, if its last attempt failed.
    pub last_error: Option<String>,
}

/// What a reindex queued.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Reindexed {
    /// Items queued for recomputing.
    pub queued: u64,
    pub canvases: u64,
    pub assets: u64,
}

/// Where the index is in its life.
#[derive(Debug, Clone)]
enum Phase {
    WaitingForModel,
    Loading,
    Ready,
    Disabled,
    Failed(String),
}

/// The search service: shared by the API and the indexer task.
pub struct Search {
    store: Store,
    inference: Inference,
    metrics: SearchMetrics,
    /// `None` until the indexer has loaded the stored vectors.
    index: RwLock<Option<Index>>,
    phase: RwLock<Phase>,
    /// The model whose vectors the index holds, once known.
    model: RwLock<Option<ModelId>>,
    embedded: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Pokes the indexer (a reindex); it also wakes on store commits and on a timer.
    wake: Notify,
    spawned: AtomicBool,
}

impl Search {
    pub fn new(store: Store, inference: Inference, metrics: SearchMetrics) -> Arc<Search> {
        Arc::new(Search {
            store,
            inference,
            metrics,
            index: RwLock::new(None),
            phase: RwLock::new(Phase::WaitingForModel),
            model: RwLock::new(None),
            embedded: AtomicU64::new(0),
            last_error: Mutex::new(None),
            wake: Notify::new(),
            spawned: AtomicBool::new(false),
        })
    }

    /// Starts the indexer on the current runtime; later calls do nothing.
    pub fn spawn(self: &Arc<Search>) {
        if self.spawned.swap(true, Ordering::SeqCst) {
            return;
        }
        let search = Arc::clone(self);
        tokio::spawn(async move { indexer::run(search).await });
    }

    /// The best items of the query's scope, best first.
    #[tracing::instrument(skip_all, fields(k = query.k))]
    pub async fn search(self: &Arc<Search>, query: Query) -> Result<Found, SearchError> {
        let model = self.serving_model()?;

        let embedded = self
            .inference
            .embed(vec![Input::Text(query.text.clone())])
            .await?;
        let vector = embedded
            .first()
            .and_then(|embedding| index::normalized(&embedding.vector))
            .ok_or_else(|| SearchError::Failed("the model gave no usable vector".into()))?;

        // Pending first, then the index: see the module docs.
        let (counted_model, scope) = (model.clone(), query.scope.clone());
        let counts = self
            .store
            .read(move |connection| rows::counts(connection, &counted_model, &scope))
            .await?;

        let search = Arc::clone(self);
        let (scope, fetch) = (query.scope.clone(), query.k + OVERFETCH);
        let candidates = tokio::task::spawn_blocking(move || {
            let index = search
                .index
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let index = index.as_ref().ok_or(SearchError::IndexLoading)?;
            if vector.len() != index.dims() {
                return Err(SearchError::Failed(format!(
                    "the query has {} dimensions, the index {}",
                    vector.len(),
                    index.dims()
                )));
            }
            index
                .search(&vector, &scope, fetch, query.min_score)
                .map_err(|error| SearchError::Failed(error.to_string()))
        })
        .await
        .map_err(|error| SearchError::Failed(error.to_string()))??;

        let keys: Vec<(Kind, String)> = candidates
            .iter()
            .map(|candidate| (candidate.kind, candidate.id.clone()))
            .collect();
        let confirmed_model = model.clone();
        let mut details = self
            .store
            .read(move |connection| rows::hit_details(connection, &confirmed_model, &keys))
            .await?;
        let hits: Vec<SearchHit> = candidates
            .into_iter()
            .filter_map(|candidate| {
                let (project_id, snippet) =
                    details.remove(&(candidate.kind, candidate.id.clone()))?;
                Some(SearchHit {
                    kind: candidate.kind,
                    id: candidate.id,
                    project_id,
                    score: candidate.score,
                    snippet,
                })
            })
            .take(query.k)
            .collect();

        tracing::debug!(
            hits = hits.len(),
            pending = counts.pending,
            "search answered"
        );
        Ok(Found {
            hits,
            model,
            pending: counts.pending,
        })
    }

    /// The model whose vectors are searched, or why there is none yet.
    fn serving_model(&self) -> Result<ModelId, SearchError> {
        self.inference.ready_model()?;
        match &*read(&self.phase) {
            Phase::Ready => {}
            Phase::Disabled => return Err(SearchError::Disabled),
            Phase::Failed(reason) => return Err(SearchError::ModelNotReady(reason.clone())),
            Phase::WaitingForModel | Phase::Loading => return Err(SearchError::IndexLoading),
        }
        read(&self.model).clone().ok_or(SearchError::IndexLoading)
    }

    /// Where the index stands.
    pub async fn status(&self) -> Result<SearchStatus, SearchError> {
        let model = match read(&self.model).clone() {
            Some(model) => model,
            None => builtin_model().map_err(SearchError::Failed)?,
        };
        let mut status = offline_status(&self.store, model).await?;

        // The indexer learns that the model is off a moment after the server starts.
        let phase =
            model_gone(&self.inference.state()).unwrap_or_else(|| read(&self.phase).clone());
        let (state, detail) = match &phase {
            Phase::WaitingForModel => ("waiting_for_model", None),
            Phase::Loading => ("loading", None),
            Phase::Ready => ("ready", None),
            Phase::Disabled => ("disabled", None),
            Phase::Failed(reason) => ("failed", Some(reason.clone())),
        };
        status.state = state;
        status.detail = detail;
        status.in_memory = read(&self.index)
            .as_ref()
            .map_or(0, |index| index.len() as u64);
        status.embedded_since_start = self.embedded.load(Ordering::Relaxed);
        status.last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        Ok(status)
    }

    /// Queues every canvas and asset for recomputing (after a model change, or to repair);
    /// the indexer does the work in the background.
    pub async fn reindex(&self) -> Result<Reindexed, SearchError> {
        let reindexed = self.store.write(reindex_in).await?;
        tracing::info!(queued = reindexed.queued, "search reindex queued");
        self.wake.notify_one();
        Ok(reindexed)
    }
}

/// Queues every item for recomputing, in one transaction.
pub fn reindex_in(tx: &rusqlite::Transaction<'_>) -> Result<Reindexed, StoreError> {
    let canvases = rows::enqueue_all(tx, Kind::Canvas)?;
    let assets = rows::enqueue_all(tx, Kind::Asset)?;
    Ok(Reindexed {
        queued: canvases + assets,
        canvases,
        assets,
    })
}

/// The model this binary embeds with, from its built-in manifest (what the CLI reports,
/// since it does not load the model).
pub fn builtin_model() -> Result<ModelId, String> {
    let manifest = nexus_models::Manifest::builtin().map_err(|error| error.to_string())?;
    Ok(ModelId {
        name: manifest.model.name.clone(),
        revision: manifest.model.revision.clone(),
    })
}

/// The store's side of the status, for `model`: what a process without the index (the CLI)
/// can tell.
pub async fn offline_status(store: &Store, model: ModelId) -> Result<SearchStatus, StoreError> {
    let counted = model.clone();
    let (counts, stale) = store
        .read(move |connection| {
            let counts = rows::counts(connection, &counted, &Scope::everything())?;
            Ok((counts, rows::stale(connection, &counted)?))
        })
        .await?;
    Ok(status_of(model, counts, stale))
}

/// The same as [`offline_status`], for callers outside the async runtime (the CLI).
pub fn offline_status_blocking(store: &Store, model: ModelId) -> Result<SearchStatus, StoreError> {
    let (counts, stale) = store.read_blocking(|connection| {
        let counts = rows::counts(connection, &model, &Scope::everything())?;
        Ok((counts, rows::stale(connection, &model)?))
    })?;
    Ok(status_of(model, counts, stale))
}

fn status_of(model: ModelId, counts: rows::Counts, stale: u64) -> SearchStatus {
    SearchStatus {
        state: "offline",
        detail: None,
        model: model.name,
        revision: model.revision,
        indexed: counts.indexed,
        pending: counts.pending,
        stale,
        in_memory: 0,
        embedded_since_start: 0,
        last_error: None,
    }
}

/// Whether the model state means the index will never be served in this process.
fn model_gone(state: &ModelState) -> Option<Phase> {
    match state {
        ModelState::Disabled => Some(Phase::Disabled),
        ModelState::Failed(reason) => Some(Phase::Failed(reason.clone())),
        ModelState::Loading | ModelState::Ready(_) => None,
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
