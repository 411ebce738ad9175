//! The background indexer: waits for the model, loads the stored vectors of its revision,
//! reconciles the store (see the module docs of `crate::search`), then embeds what the work
//! list names, in batches, as writes come in.
//!
//! It wakes on every store commit (`Store::subscribe_changes`), when a reindex pokes it, and
//! every [`POLL`] (writes by another process, such as `nexus-canvasd search reindex`, and
//! retries whose time has come). Embedding goes through the inference queue like any
//! request: when it is full or the model is busy, the batch is retried with backoff, and a
//! client write never waits for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nexus_models::ComputeDevice;
use tracing::Instrument;

use super::index::{self, Index};
use super::text::{self, ItemText};
use super::{Phase, Search, model_gone, read, write};
use crate::infer::{InferError, Input, ModelState};
use crate::store::StoreError;
use crate::store::search::{self as rows, Kind, ModelId, PendingItem, StoredVector};

/// Items embedded in one call to the model: small enough to leave room in the queue for
/// clients, large enough to batch well.
const BATCH: usize = 16;
/// Longest sleep when nothing wakes the indexer.
const POLL: Duration = Duration::from_secs(2);
/// Rows read at a time while loading and reconciling.
const PAGE: usize = 500;
/// Backoff after a failed batch: from the first to the last step, doubling.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_LAST: Duration = Duration::from_secs(30);
/// The longest an item that fails by itself waits before its next attempt.
const ITEM_BACKOFF_LAST_MS: i64 = 5 * 60 * 1000;

/// A failure that stops the current pass; the indexer retries it after a backoff.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("the model cannot take the batch now: {0}")]
    Model(InferError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Task(String),
}

pub(super) async fn run(search: Arc<Search>) {
    let span = tracing::info_span!("search_indexer");
    async move {
        let Some((model, device, dims)) = wait_for_model(&search).await else {
            return;
        };
        *write(&search.model) = Some(model.clone());
        *write(&search.phase) = Phase::Loading;

        let mut backoff = Backoff::default();
        while let Err(error) = load(&search, &model, &device, dims).await {
            note_failure(&search, &error);
            tokio::time::sleep(backoff.next()).await;
        }
        // Searches are served from here on: the reconciliation only finds work for a store
        // restored from elsewhere, which the pending counts then include.
        *write(&search.phase) = Phase::Ready;

        backoff.reset();
        while let Err(error) = reconcile(&search, &model).await {
            note_failure(&search, &error);
            tokio::time::sleep(backoff.next()).await;
        }
        serve(&search, &model).await;
    }
    .instrument(span)
    .await
}

/// Waits until the model is ready; `None` if it never will be in this process.
async fn wait_for_model(search: &Search) -> Option<(ModelId, ComputeDevice, usize)> {
    loop {
        let state = search.inference.state();
        if let Some(phase) = model_gone(&state) {
            tracing::info!(?phase, "search is off: there is no model to embed with");
            *write(&search.phase) = phase;
            return None;
        }
        if let ModelState::Ready(summary) = state
            && let Some(device) = search.inference.compute_device()
        {
            let model = ModelId {
                name: summary.name,
                revision: summary.revision,
            };
            return Some((model, device, summary.dimensions));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Loads the stored vectors of `model` into a new index.
async fn load(
    search: &Arc<Search>,
    model: &ModelId,
    device: &ComputeDevice,
    dims: usize,
) -> Result<(), PassError> {
    let started = Instant::now();
    let mut index = Index::new(device.clone(), dims);
    let mut after: Option<(Kind, String)> = None;
    loop {
        let (page_model, page_after) = (model.clone(), after.clone());
        let page = search
            .store
            .read(move |connection| {
                rows::vectors_page(connection, &page_model, page_after.as_ref(), PAGE)
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.kind, last.item_id.clone()));
        index = blocking(move || {
            for stored in &page {
                add_stored(&mut index, stored);
            }
            index
        })
        .await?;
    }
    let loaded = index.len();
    *write(&search.index) = Some(index);
    search.metrics.vectors.set(loaded as i64);
    tracing::info!(
        loaded,
        model = %model.name,
        revision = %model.revision,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "search index ready"
    );
    Ok(())
}

/// Adds a stored vector to the index. An unusable one (corrupt, or of another length) is left
/// out, and the reconciliation, finding the item missing from the index, has it recomputed.
fn add_stored(index: &mut Index, stored: &StoredVector) -> bool {
    match index::normalized(&stored.vector).filter(|vector| vector.len() == index.dims()) {
        Some(vector) => {
            index.upsert(stored.kind, &stored.item_id, &stored.project_id, &vector);
            true
        }
        None => {
            tracing::warn!(
                kind = stored.kind.as_str(),
                item_id = %stored.item_id,
                "a stored search vector is unusable; it will be recomputed"
            );
            false
        }
    }
}

/// Queues every item whose stored vector is missing, of another revision, of an older text,
/// or not in the index; deletes vectors whose item is gone.
async fn reconcile(search: &Arc<Search>, model: &ModelId) -> Result<(), PassError> {
    let started = Instant::now();
    let mut queued = 0u64;
    for kind in Kind::ALL {
        let mut after_seq = 0;
        loop {
            let page_model = model.clone();
            let checker = Arc::clone(search);
            let (last_seq, stale) = search
                .store
                .read(move |connection| {
                    let page = rows::sources_page(connection, kind, after_seq, PAGE)?;
                    let last_seq = page.last().map(|(seq, _, _)| *seq);
                    let index = read(&checker.index);
                    // (id, force): a current vector the index could not take is recomputed.
                    let stale: Vec<(String, bool)> = page
                        .into_iter()
                        .filter_map(|(_, source, stored)| {
                            let current = stored.as_ref().is_some_and(|stored| {
                                stored.model == page_model
                                    && stored.text_hash == text::of(&source).hash
                            });
                            let held = index
                                .as_ref()
                                .is_some_and(|index| index.contains(kind, &source.id));
                            (!(current && held)).then_some((source.id, current))
                        })
                        .collect();
                    Ok((last_seq, stale))
                })
                .await?;
            let Some(last_seq) = last_seq else { break };
            after_seq = last_seq;

            if !stale.is_empty() {
                queued += stale.len() as u64;
                search
                    .store
                    .write(move |tx| {
                        for (id, force) in &stale {
                            rows::enqueue(tx, kind, id, *force)?;
                        }
                        Ok(())
                    })
                    .await?;
            }
        }
    }

    let orphans = search.store.write(rows::delete_orphans).await?;
    tracing::info!(
        queued,
        orphans,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "search index reconciled with the store"
    );
    Ok(())
}

/// Works through the work list for as long as the daemon runs.
async fn serve(search: &Arc<Search>, model: &ModelId) {
    let mut changes = search.store.subscribe_changes();
    let mut backoff = Backoff::default();
    let mut kinds = Kind::ALL.into_iter().cycle();

    loop {
        // Alternate the kinds so that a flood of one never starves the other.
        let mut worked = false;
        for _ in 0..Kind::ALL.len() {
            let kind = kinds.next().expect("a cycle never ends");
            match pass(search, model, kind).await {
                Ok(did) => {
                    worked |= did;
                    backoff.reset();
                    *search
                        .last_error
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                }
                Err(error) => {
                    note_failure(search, &error);
                    tokio::time::sleep(backoff.next()).await;
                    worked = true;
                }
            }
        }
        if worked {
            continue;
        }

        if let Ok(length) = search.store.read(rows::queue_length).await {
            search.metrics.pending.set(length as i64);
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = search.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One batch of due items of `kind`; returns whether there was any.
async fn pass(search: &Arc<Search>, model: &ModelId, kind: Kind) -> Result<bool, PassError> {
    let now = now_ms();
    let due = search
        .store
        .read(move |connection| {
            let due = rows::due(connection, kind, now, BATCH)?;
            // Texts are made here, on the blocking pool: a document may be large.
            Ok(due
                .into_iter()
                .map(|item| {
                    let text = item.source.as_ref().map(text::of);
                    (item, text)
                })
                .collect::<Vec<_>>())
        })
        .await?;
    if due.is_empty() {
        return Ok(false);
    }

    // Sort the batch: items that are gone, items whose vector is already current (a write
    // that did not change the words), and items to embed.
    let mut settle = Vec::new();
    let mut work: Vec<(PendingItem, ItemText)> = Vec::new();
    for (item, text) in due {
        match text {
            Some(text) if !is_current(&item, &text, model) => work.push((item, text)),
            _ => settle.push(item),
        }
    }
    settle_without_model(search, model, settle).await?;
    if work.is_empty() {
        return Ok(true);
    }

    let inputs = work
        .iter()
        .map(|(_, text)| Input::Text(text.text.clone()))
        .collect();
    let embeddings = match search.inference.embed(inputs).await {
        Ok(embeddings) => embeddings,
        Err(InferError::InvalidInput { index, reason }) => {
            // One item the model refuses; the others are tried again at once.
            let (item, _) = work.swap_remove(index.min(work.len() - 1));
            defer(search, vec![item], &reason).await?;
            return Ok(true);
        }
        Err(InferError::Failed(reason)) => {
            defer(
                search,
                work.into_iter().map(|(item, _)| item).collect(),
                &reason,
            )
            .await?;
            return Err(PassError::Model(InferError::Failed(reason)));
        }
        Err(error) => return Err(PassError::Model(error)),
    };

    let mut vectors = Vec::with_capacity(work.len());
    for ((item, text), embedding) in work.into_iter().zip(embeddings) {
        let Some(source) = item.source.as_ref() else {
            continue;
        };
        match index::normalized(&embedding.vector) {
            Some(vector) => vectors.push((
                item.ticket,
                StoredVector {
                    kind: item.kind,
                    item_id: item.item_id.clone(),
                    project_id: source.project_id.clone(),
                    model: model.clone(),
                    vector,
                    text_hash: text.hash,
                    snippet: text.snippet,
                },
            )),
            None => {
                defer(
                    search,
                    vec![item],
                    "the model gave a vector that is not finite",
                )
                .await?
            }
        }
    }

    // The index first, then the store: see the module docs of `crate::search`.
    let indexed = vectors.clone();
    let holder = Arc::clone(search);
    blocking(move || {
        let mut index = write(&holder.index);
        if let Some(index) = index.as_mut() {
            for (_, stored) in &indexed {
                index.upsert(
                    stored.kind,
                    &stored.item_id,
                    &stored.project_id,
                    &stored.vector,
                );
            }
        }
    })
    .await?;
    let stored = search
        .store
        .write(move |tx| {
            let mut stored = 0;
            for (ticket, vector) in &vectors {
                // A write since the batch was read leaves the item pending for its new text.
                if rows::finish(tx, vector.kind, &vector.item_id, *ticket)? {
                    rows::put_vector(tx, vector)?;
                    stored += 1;
                }
            }
            Ok(stored)
        })
        .await?;

    search.embedded.fetch_add(stored, Ordering::Relaxed);
    search.metrics.embedded.inc_by(stored);
    search.metrics.vectors.set(index_len(search) as i64);
    tracing::debug!(kind = kind.as_str(), stored, "search vectors stored");
    Ok(true)
}

/// Whether the stored vector is of `model` and this very text (a reindex recomputes anyway).
fn is_current(item: &PendingItem, text: &ItemText, model: &ModelId) -> bool {
    !item.force
        && item
            .stored
            .as_ref()
            .is_some_and(|stored| &stored.model == model && stored.text_hash == text.hash)
}

/// Takes off the work list the items that need no model: deleted ones (their vector goes)
/// and ones whose vector is current (the index gets it if it lacks it).
async fn settle_without_model(
    search: &Arc<Search>,
    model: &ModelId,
    items: Vec<PendingItem>,
) -> Result<(), PassError> {
    if items.is_empty() {
        return Ok(());
    }
    let gone: Vec<(Kind, String)> = items
        .iter()
        .filter(|item| item.source.is_none())
        .map(|item| (item.kind, item.item_id.clone()))
        .collect();

    let current: Vec<(Kind, String)> = items
        .iter()
        .filter(|item| item.source.is_some())
        .map(|item| (item.kind, item.item_id.clone()))
        .collect();
    let missing: Vec<(Kind, String)> = {
        let index = read(&search.index);
        current
            .into_iter()
            .filter(|(kind, id)| {
                !index
                    .as_ref()
                    .is_some_and(|index| index.contains(*kind, id))
            })
            .collect()
    };
    if !missing.is_empty() {
        let wanted = model.clone();
        let loaded = search
            .store
            .read(move |connection| {
                let mut loaded = Vec::new();
                for (kind, id) in &missing {
                    loaded.extend(rows::vector(connection, *kind, id, &wanted)?);
                }
                Ok(loaded)
            })
            .await?;
        let holder = Arc::clone(search);
        blocking(move || {
            if let Some(index) = write(&holder.index).as_mut() {
                for stored in &loaded {
                    add_stored(index, stored);
                }
            }
        })
        .await?;
    }

    search
        .store
        .write(move |tx| {
            for item in &items {
                if rows::finish(tx, item.kind, &item.item_id, item.ticket)? && item.source.is_none()
                {
                    rows::delete_vector(tx, item.kind, &item.item_id)?;
                }
            }
            Ok(())
        })
        .await?;

    // After the commit: until then, a search's confirmation already hides these hits.
    if !gone.is_empty() {
        let holder = Arc::clone(search);
        blocking(move || {
            if let Some(index) = write(&holder.index).as_mut() {
                for (kind, id) in &gone {
                    index.remove(*kind, id);
                }
            }
        })
        .await?;
    }
    search.metrics.vectors.set(index_len(search) as i64);
    Ok(())
}

/// Records a failed attempt at each of `items`; each is retried after its own backoff.
async fn defer(search: &Search, items: Vec<PendingItem>, reason: &str) -> Result<(), PassError> {
    tracing::warn!(items = items.len(), %reason, "search items could not be embedded");
    search.metrics.failures.inc();
    let (reason, now) = (reason.to_string(), now_ms());
    search
        .store
        .write(move |tx| {
            for item in &items {
                let shift = item.attempts.clamp(0, 20) as u32;
                let wait = (1000i64 << shift).min(ITEM_BACKOFF_LAST_MS);
                rows::defer(
                    tx,
                    item.kind,
                    &item.item_id,
                    item.ticket,
                    now + wait,
                    &reason,
                )?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

fn note_failure(search: &Search, error: &PassError) {
    tracing::warn!(%error, "search indexing failed; retrying with backoff");
    search.metrics.failures.inc();
    *search
        .last_error
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
}

fn index_len(search: &Search) -> usize {
    read(&search.index).as_ref().map_or(0, Index::len)
}

/// Runs `work` on the blocking pool: the index's blocks may talk to the GPU.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PassError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| PassError::Task(error.to_string()))
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Doubling waits between failed attempts.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = BACKOFF_FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_LAST);
        self.failures += 1;
        wait
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| backoff.next()).collect();
        assert_eq!(waits[0], BACKOFF_FIRST);
        assert_eq!(waits[1], BACKOFF_FIRST * 2);
        assert_eq!(waits[9], BACKOFF_LAST);
        backoff.reset();
        assert_eq!(backoff.next(), BACKOFF_FIRST);
    }
}
