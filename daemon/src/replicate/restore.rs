//! Restoring the store from the S3 replica, to its latest state or to any moment within
//! retention, and `backup verify`, which restores into a scratch file and compares.
//!
//! A restore takes the newest snapshot taken at or before the target time, in the newest
//! generation that has one, then applies that generation's segments in order until the
//! target. Transactions are applied whole or not at all, since the store stamps all changes
//! of one transaction with one time. A gap between segments stops the restore with the
//! missing range named, rather than restoring a state that never existed. The result is
//! written next to the destination, checked with `integrity_check`, synced, and only then
//! renamed into place, so a failed restore leaves nothing behind.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Transaction};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::s3::{Bucket, RemoveOnDrop, ReplicaError, ReplicaResult, sibling};
use super::segment::{self, SegmentKey, SnapshotKey};
use crate::assets::BlobFiles;
use crate::store::changes::{self, Change, ChangeOp, TableShape};
use crate::store::{StoreError, integrity_check};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0} already exists; restore refuses to overwrite a database (move it away first)")]
    DestinationExists(PathBuf),
    #[error("the replica holds no snapshot{}", describe_moment(at.as_deref()))]
    NoSnapshot { at: Option<String> },
    #[error(
        "the replica is missing changes {from} to {to} of generation {generation}; the \
         newest state it can restore is that of change {}", from - 1
    )]
    Gap {
        generation: String,
        from: i64,
        to: i64,
    },
    #[error("change {seq} cannot be applied: {why}")]
    BadChange { seq: i64, why: String },
    #[error("the restored database fails its integrity check: {0}")]
    Integrity(String),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

fn describe_moment(at: Option<&str>) -> String {
    at.map(|at| format!(" taken at or before {at}"))
        .unwrap_or_default()
}

impl From<rusqlite::Error> for RestoreError {
    fn from(error: rusqlite::Error) -> Self {
        RestoreError::Replica(ReplicaError::Sqlite(error))
    }
}

impl From<StoreError> for RestoreError {
    fn from(error: StoreError) -> Self {
        RestoreError::Replica(ReplicaError::Store(error))
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub generation: String,
    pub snapshot_seq: i64,
    /// The last change applied: the restored database holds everything up to it.
    pub seq: i64,
    /// When that change was made (ms since the epoch); the snapshot's time if none was.
    pub at_ms: i64,
    pub segments: usize,
    pub changes: usize,
    /// Asset files downloaded next to the database (`<folder>/assets/sha256/...`).
    pub files: usize,
    /// Asset files the rows name but the replica lacks (deleted on the host before they
    /// were shipped).
    pub missing_files: Vec<String>,
}

/// Restores the replica into `into`, as of `to_ms` (ms since the epoch) or its latest state,
/// with the asset files its rows name (under `assets/` beside it).
pub async fn restore(
    bucket: &Bucket,
    into: &FsPath,
    to_ms: Option<i64>,
) -> Result<Restored, RestoreError> {
    let mut restored = restore_database(bucket, into, to_ms).await?;
    let folder = into.parent().unwrap_or(FsPath::new("."));
    let named = super::s3::named_blobs(&Connection::open(into)?)?;
    (restored.files, restored.missing_files) = restore_files(bucket, folder, named).await?;
    Ok(restored)
}

/// The database part of [`restore`].
///
/// Three things overlap: the snapshot streams through the zstd decoder into the scratch file
/// as it downloads; segments download [`SEGMENTS_IN_FLIGHT`] at a time, each decoded on a
/// blocking thread; and one more blocking thread applies them in order as they arrive.
async fn restore_database(
    bucket: &Bucket,
    into: &FsPath,
    to_ms: Option<i64>,
) -> Result<Restored, RestoreError> {
    if into.exists() || sibling(into, "wal").exists() {
        return Err(RestoreError::DestinationExists(into.to_path_buf()));
    }
    let (generation, snapshot) = choose_snapshot(bucket, to_ms).await?;
    let plan = SegmentPlan::new(bucket.segments(&generation).await?, snapshot.seq);

    let scratch = sibling(into, "restoring");
    let cleanup = RemoveOnDrop(vec![
        scratch.clone(),
        sibling(&scratch, "wal"),
        sibling(&scratch, "shm"),
    ]);
    let started = std::time::Instant::now();
    stream_snapshot(bucket, &snapshot.path, &scratch).await?;
    tracing::info!(
        snapshot = %snapshot.path,
        elapsed_ms = started.elapsed().as_millis(),
        "snapshot downloaded and decompressed"
    );

    let mut restored = Restored {
        generation: generation.clone(),
        snapshot_seq: snapshot.seq,
        seq: snapshot.seq,
        at_ms: snapshot.taken_ms,
        segments: 0,
        changes: 0,
        files: 0,
        missing_files: Vec::new(),
    };
    let (segments, arriving) = tokio::sync::mpsc::channel(SEGMENTS_IN_FLIGHT);
    let applying = {
        let (scratch, restored) = (scratch.clone(), restored.clone());
        tokio::task::spawn_blocking(move || apply_segments(&scratch, restored, to_ms, arriving))
    };
    let fetching = futures::stream::iter(plan.keys.clone())
        .map(|key| tokio::spawn(fetch_segment(bucket.clone(), key)))
        .buffered(SEGMENTS_IN_FLIGHT);
    tokio::pin!(fetching);
    while let Some(fetched) = fetching.next().await {
        let segment = fetched.map_err(ReplicaError::from)??;
        // A closed channel means the applier stopped: at the target time, or on an error
        // that awaiting it reports.
        if segments.send(segment).await.is_err() {
            break;
        }
    }
    drop(segments);
    let reached_target;
    (restored, reached_target) = applying.await.map_err(ReplicaError::from)??;
    if let Some((from, to)) = plan.gap.filter(|_| !reached_target) {
        return Err(RestoreError::Gap {
            generation,
            from,
            to,
        });
    }
    tracing::info!(
        segments = restored.segments,
        changes = restored.changes,
        elapsed_ms = started.elapsed().as_millis(),
        "segments applied"
    );

    let scratch_for_check = scratch.clone();
    tokio::task::spawn_blocking(move || check_and_seal(&scratch_for_check))
        .await
        .map_err(ReplicaError::from)??;
    std::fs::rename(&scratch, into).map_err(ReplicaError::io(format!(
        "moving the restored database to {}",
        into.display()
    )))?;
    drop(cleanup);
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis(),
        "database restored"
    );
    Ok(restored)
}

/// Segments downloaded ahead of the one being applied. Each is at most a few megabytes
/// (a ship interval's changes), so this bounds memory while hiding the request latency.
const SEGMENTS_IN_FLIGHT: usize = 8;

/// Compressed snapshot chunks buffered between the download and the decoder.
const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 16;

/// The segments a restore reads after its snapshot, in order, up to the first gap.
struct SegmentPlan {
    keys: Vec<SegmentKey>,
    /// The first missing range of changes, if the replica has one after the snapshot. It
    /// only matters if the restore has not reached its target time before it.
    gap: Option<(i64, i64)>,
}

impl SegmentPlan {
    fn new(sorted: Vec<SegmentKey>, snapshot_seq: i64) -> SegmentPlan {
        let mut covered = snapshot_seq;
        let mut keys = Vec::new();
        for key in sorted {
            if key.last <= covered {
                continue;
            }
            if key.first > covered + 1 {
                return SegmentPlan {
                    keys,
                    gap: Some((covered + 1, key.first - 1)),
                };
            }
            covered = key.last;
            keys.push(key);
        }
        SegmentPlan { keys, gap: None }
    }
}

/// Streams a snapshot object through the zstd decoder into `into`, so the download and the
/// decompression overlap and the compressed copy never touches the disk.
async fn stream_snapshot(bucket: &Bucket, key: &Path, into: &FsPath) -> ReplicaResult<()> {
    let mut stream = bucket.objects.get(key).await?.into_stream();
    let (chunks, receiver) = tokio::sync::mpsc::channel(SNAPSHOT_CHUNKS_IN_FLIGHT);
    let target = into.to_path_buf();
    let decoding = tokio::task::spawn_blocking(move || {
        let output = std::fs::File::create(&target)
            .map_err(ReplicaError::io("writing the restored database"))?;
        segment::decompress(ChunkReader::new(receiver), std::io::BufWriter::new(&output))
            .map_err(ReplicaError::io("decompressing the snapshot"))
    });

    let downloaded = async {
        while let Some(chunk) = stream.try_next().await? {
            if chunks.send(chunk).await.is_err() {
                // The decoder stopped early; its own error says why.
                break;
            }
        }
        Ok::<(), ReplicaError>(())
    }
    .await;
    drop(chunks);
    let decoded = decoding.await?;
    downloaded.and(decoded)
}

/// Reads the chunks of a download on a blocking thread, as they arrive.
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChunkReader {
    fn new(chunks: tokio::sync::mpsc::Receiver<Bytes>) -> ChunkReader {
        ChunkReader {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let taken = buffer.len().min(self.current.len());
        buffer[..taken].copy_from_slice(&self.current.split_to(taken));
        Ok(taken)
    }
}

/// Downloads one segment and decodes it on a blocking thread.
async fn fetch_segment(
    bucket: Bucket,
    key: SegmentKey,
) -> ReplicaResult<(SegmentKey, Vec<Change>)> {
    let bytes = bucket.objects.get(&key.path).await?.bytes().await?;
    tokio::task::spawn_blocking(move || {
        let (_, changes) = segment::decode_segment(&key, &bytes)?;
        Ok((key, changes))
    })
    .await?
}

/// Applies segments to the scratch database as they arrive, in one transaction, stopping at
/// `to_ms`. Returns what was restored and whether the target time was reached.
fn apply_segments(
    scratch: &FsPath,
    mut restored: Restored,
    to_ms: Option<i64>,
    mut arriving: tokio::sync::mpsc::Receiver<(SegmentKey, Vec<Change>)>,
) -> Result<(Restored, bool), RestoreError> {
    let mut connection = Connection::open(scratch)?;
    let mut applier = Applier::new(&mut connection)?;
    let mut reached_target = false;

    'segments: while let Some((_, changes)) = arriving.blocking_recv() {
        restored.segments += 1;
        let applied = restored.seq;
        for change in changes.iter().filter(|change| change.seq > applied) {
            if to_ms.is_some_and(|to_ms| change.at_ms > to_ms) {
                reached_target = true;
                break 'segments;
            }
            applier.apply(change)?;
            restored.seq = change.seq;
            restored.at_ms = change.at_ms;
            restored.changes += 1;
        }
    }
    applier.finish(restored.seq)?;
    Ok((restored, reached_target))
}

/// Checks the restored database's integrity, leaves it in WAL mode with an empty WAL, and
/// syncs it, so that only a sound and durable file is renamed into place.
fn check_and_seal(scratch: &FsPath) -> Result<(), RestoreError> {
    let started = std::time::Instant::now();
    let connection = Connection::open(scratch)?;
    let problems = integrity_check(&connection)?;
    if !problems.is_empty() {
        return Err(RestoreError::Integrity(problems.join("; ")));
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis(),
        "integrity check passed"
    );

    connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = WAL;")?;
    drop(connection);
    sync_file(scratch)?;
    Ok(())
}

/// Asset files downloaded at once during a restore.
const FILES_IN_FLIGHT: usize = 8;

/// Downloads the asset files `named` into the content-addressed store under `folder`,
/// [`FILES_IN_FLIGHT`] at a time, each checked against its hash before it gets its final
/// name. Returns how many were fetched and which the replica lacks.
async fn restore_files(
    bucket: &Bucket,
    folder: &FsPath,
    named: Vec<String>,
) -> Result<(usize, Vec<String>), RestoreError> {
    let files = BlobFiles::new(&folder.join("assets"));
    let wanted = named
        .into_iter()
        .filter(|sha256| crate::assets::is_sha256(sha256))
        .map(|sha256| (files.blob_path(&sha256), sha256))
        .filter(|(destination, _)| !destination.exists());
    let mut fetching = futures::stream::iter(wanted)
        .map(|(destination, sha256)| restore_file(bucket, destination, sha256))
        .buffer_unordered(FILES_IN_FLIGHT);

    let mut fetched = 0;
    let mut missing = Vec::new();
    while let Some(outcome) = fetching.next().await {
        match outcome? {
            FileOutcome::Fetched => fetched += 1,
            FileOutcome::Missing(sha256) => missing.push(sha256),
        }
    }
    missing.sort();
    Ok((fetched, missing))
}

enum FileOutcome {
    Fetched,
    /// The replica lacks the file (deleted on the host before it was shipped).
    Missing(String),
}

/// Fetches one asset file to `destination`.
async fn restore_file(
    bucket: &Bucket,
    destination: PathBuf,
    sha256: String,
) -> Result<FileOutcome, RestoreError> {
    let shard = destination.parent().expect("a blob path has a folder");
    std::fs::create_dir_all(shard)
        .map_err(ReplicaError::io(format!("creating {}", shard.display())))?;
    let partial = sibling(&destination, "partial");
    let _cleanup = RemoveOnDrop(vec![partial.clone()]);
    match bucket
        .download(&bucket.layout.blob(&sha256), &partial)
        .await
    {
        Ok(()) => {}
        Err(ReplicaError::ObjectStore(object_store::Error::NotFound { .. })) => {
            return Ok(FileOutcome::Missing(sha256));
        }
        Err(error) => return Err(error.into()),
    }
    if file_sha256(&partial)? != sha256 {
        return Err(RestoreError::Integrity(format!(
            "the replica's copy of asset file {sha256} does not match its hash"
        )));
    }
    std::fs::rename(&partial, &destination).map_err(ReplicaError::io(format!(
        "placing {}",
        destination.display()
    )))?;
    Ok(FileOutcome::Fetched)
}

fn file_sha256(path: &FsPath) -> Result<String, ReplicaError> {
    let mut file = std::fs::File::open(path).map_err(ReplicaError::io("reading a file"))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(ReplicaError::io("hashing a file"))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// The newest snapshot at or before `to_ms`, searching generations newest first.
async fn choose_snapshot(
    bucket: &Bucket,
    to_ms: Option<i64>,
) -> Result<(String, SnapshotKey), RestoreError> {
    for generation in bucket.generations().await?.into_iter().rev() {
        let chosen = bucket
            .snapshots(&generation)
            .await?
            .into_iter()
            .filter(|snapshot| to_ms.is_none_or(|to_ms| snapshot.taken_ms <= to_ms))
            .max_by_key(|snapshot| snapshot.seq);
        if let Some(snapshot) = chosen {
            return Ok((generation, snapshot));
        }
    }
    Err(RestoreError::NoSnapshot {
        at: to_ms.map(segment::compact_time),
    })
}

/// Applies changes to a restored snapshot, in one transaction.
struct Applier<'c> {
    transaction: Transaction<'c>,
    shapes: HashMap<String, TableShape>,
}

impl<'c> Applier<'c> {
    fn new(connection: &'c mut Connection) -> Result<Applier<'c>, RestoreError> {
        // The data comes from a consistent source in commit order; checking references
        // row by row would only reject valid orders (a cascade logs children first).
        connection.execute_batch("PRAGMA foreign_keys = OFF")?;
        let transaction = connection.transaction()?;
        // The capture triggers would log the replayed changes again under new numbers.
        for table in changes::replicated_tables(&transaction)? {
            for op in ["insert", "update", "delete"] {
                transaction.execute_batch(&format!(
                    "DROP TRIGGER IF EXISTS {}",
                    changes::quote(&format!("capture_{}_{op}", table.name))
                ))?;
            }
        }
        let shapes = changes::replicated_tables(&transaction)?
            .into_iter()
            .map(|shape| (shape.name.clone(), shape))
            .collect();
        Ok(Applier {
            transaction,
            shapes,
        })
    }

    fn apply(&mut self, change: &Change) -> Result<(), RestoreError> {
        let bad = |why: String| RestoreError::BadChange {
            seq: change.seq,
            why,
        };
        let shape = self
            .shapes
            .get(&change.table)
            .ok_or_else(|| bad(format!("no table {}", change.table)))?;

        match change.op {
            ChangeOp::Upsert => {
                let row = change
                    .row
                    .as_ref()
                    .ok_or_else(|| bad("an upsert without a row".into()))?;
                let columns: Vec<&changes::Column> = shape
                    .columns
                    .iter()
                    .filter(|column| row.contains_key(&column.name))
                    .collect();
                let names: Vec<String> = columns
                    .iter()
                    .map(|column| changes::quote(&column.name))
                    .collect();
                let updates: Vec<String> = names
                    .iter()
                    .map(|name| format!("{name} = excluded.{name}"))
                    .collect();
                let keys: Vec<String> = shape.key.iter().map(|key| changes::quote(key)).collect();
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
                    changes::quote(&shape.name),
                    names.join(", "),
                    vec!["?"; names.len()].join(", "),
                    keys.join(", "),
                    updates.join(", ")
                );
                let values = columns
                    .iter()
                    .map(|column| sql_value(column, &row[&column.name]).map_err(&bad))
                    .collect::<Result<Vec<_>, _>>()?;
                self.transaction
                    .prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(values))?;
            }
            ChangeOp::Delete => {
                let condition: Vec<String> = shape
                    .key
                    .iter()
                    .map(|key| format!("{} = ?", changes::quote(key)))
                    .collect();
                let sql = format!(
                    "DELETE FROM {} WHERE {}",
                    changes::quote(&shape.name),
                    condition.join(" AND ")
                );
                let values = shape
                    .key
                    .iter()
                    .map(|key| {
                        let column = shape
                            .columns
                            .iter()
                            .find(|column| &column.name == key)
                            .expect("a key is a column");
                        let value = change
                            .key
                            .get(key)
                            .ok_or_else(|| bad(format!("key column {key} missing")))?;
                        sql_value(column, value).map_err(&bad)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.transaction
                    .prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(values))?;
            }
        }
        Ok(())
    }

    /// Leaves the database as a fresh store at `seq`: an empty log that continues from `seq`,
    /// no replica positions (each replica starts over from it), capture triggers in place.
    fn finish(self, seq: i64) -> Result<(), RestoreError> {
        let transaction = self.transaction;
        transaction.execute_batch("DELETE FROM change_log; DELETE FROM replica_positions;")?;
        transaction.execute("DELETE FROM sqlite_sequence WHERE name = 'change_log'", [])?;
        transaction.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('change_log', ?1)",
            [seq],
        )?;
        changes::install_triggers(&transaction)?;
        transaction.commit()?;
        Ok(())
    }
}

/// A logged JSON value as the column stores it.
fn sql_value(column: &changes::Column, value: &Value) -> Result<SqlValue, String> {
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Bool(flag) => SqlValue::Integer(i64::from(*flag)),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => SqlValue::Integer(integer),
            None => SqlValue::Real(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) if column.is_blob() => SqlValue::Blob(
            changes::decode_hex(text)
                .ok_or_else(|| format!("column {} holds invalid hex", column.name))?,
        ),
        Value::String(text) => SqlValue::Text(text.clone()),
        Value::Array(_) | Value::Object(_) => {
            return Err(format!("column {} holds a JSON container", column.name));
        }
    })
}

fn sync_file(path: &FsPath) -> ReplicaResult<()> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(ReplicaError::io(format!("syncing {}", path.display())))
}

/// Row count and content digest of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDigest {
    pub table: String,
    pub rows: u64,
    pub sha256: String,
}

/// Every replicated table's row count and digest. The digest is over each row's canonical
/// JSON (keys sorted, the change log's value encoding), sorted, so it does not depend on the
/// order rows come back in or on how a replica collates text.
pub fn digests(connection: &Connection) -> Result<Vec<TableDigest>, StoreError> {
    changes::replicated_tables(connection)?
        .iter()
        .map(|shape| {
            let sql = format!(
                "SELECT {} FROM {}",
                changes::row_json(shape, None),
                changes::quote(&shape.name)
            );
            let mut statement = connection.prepare(&sql)?;
            let rows = statement
                .query_map([], |row| row.get::<_, String>(0))?
                .map(|row| {
                    let text = row?;
                    let object: Map<String, Value> = serde_json::from_str(&text)
                        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
                    Ok(serde_json::to_string(&object).expect("a map always serialises"))
                })
                .collect::<Result<Vec<String>, StoreError>>()?;
            Ok(digest_rows(&shape.name, rows))
        })
        .collect()
}

/// The digest of a table's canonical rows (see [`digests`]).
pub fn digest_rows(table: &str, mut rows: Vec<String>) -> TableDigest {
    rows.sort_unstable();
    let mut hasher = Sha256::new();
    for row in &rows {
        hasher.update(row.as_bytes());
        hasher.update(b"\n");
    }
    TableDigest {
        table: table.to_owned(),
        rows: rows.len() as u64,
        sha256: format!("{:x}", hasher.finalize()),
    }
}

/// The outcome of `backup verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub restored: Restored,
    pub tables: Vec<TableComparison>,
}

impl Verification {
    pub fn matches(&self) -> bool {
        self.restored.missing_files.is_empty()
            && self.tables.iter().all(|table| table.live == table.replica)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TableComparison {
    pub table: String,
    pub live: TableDigest,
    pub replica: TableDigest,
}

/// Why `backup verify` could not compare.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(
        "the replica stayed behind the live store (it holds change {replica}, the store is at \
         {live}); is the daemon shipping? (see `replication` in the admin status)"
    )]
    Behind { replica: i64, live: i64 },
}

/// Restores the replica's latest state into a scratch file beside `live`, checks it, and
/// compares every table's row count and digest with the live store as of the same change.
/// The live store keeps moving while the daemon runs, so a comparison is only made when both
/// stand at the same change; it is retried a few times before giving up.
pub async fn verify(bucket: &Bucket, live: &FsPath) -> Result<Verification, VerifyError> {
    const ATTEMPTS: u32 = 5;
    let mut last = (0, 0);

    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        match compare_once(bucket, live).await? {
            Ok(verification) => return Ok(verification),
            Err(positions) => last = positions,
        }
    }
    Err(VerifyError::Behind {
        replica: last.0,
        live: last.1,
    })
}

/// One restore and comparison; `Err((replica, live))` when the two stand at different
/// changes.
async fn compare_once(
    bucket: &Bucket,
    live: &FsPath,
) -> Result<Result<Verification, (i64, i64)>, RestoreError> {
    let scratch = sibling(live, &format!("verify-{}", segment::new_generation()));
    let _cleanup = RemoveOnDrop(vec![
        scratch.clone(),
        sibling(&scratch, "wal"),
        sibling(&scratch, "shm"),
    ]);
    let mut restored = restore_database(bucket, &scratch, None).await?;
    let restored_db = Connection::open(&scratch)?;
    let replica = digests(&restored_db)?;
    // The files are not downloaded (the scratch copy sits beside the live store); that the
    // replica holds each one is enough.
    for sha256 in super::s3::named_blobs(&restored_db)? {
        if let Err(object_store::Error::NotFound { .. }) =
            bucket.objects.head(&bucket.layout.blob(&sha256)).await
        {
            restored.missing_files.push(sha256);
        }
    }

    let connection = Connection::open_with_flags(live, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // One read transaction, so the head and the digests describe the same state.
    connection.execute_batch("BEGIN")?;
    let head = changes::head(&connection)?;
    let live_digests = digests(&connection)?;
    connection.execute_batch("COMMIT")?;
    if head != restored.seq {
        return Ok(Err((restored.seq, head)));
    }

    let tables = live_digests
        .into_iter()
        .map(|live| {
            let replica = replica
                .iter()
                .find(|digest| digest.table == live.table)
                .cloned()
                .unwrap_or_else(|| digest_rows(&live.table, Vec::new()));
            TableComparison {
                table: live.table.clone(),
                live,
                replica,
            }
        })
        .collect();
    Ok(Ok(Verification { restored, tables }))
}
