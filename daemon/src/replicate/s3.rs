//! The S3 replica: snapshots and change segments in a bucket (or any S3-compatible server, or
//! a local folder), shipped continuously by one task.
//!
//! The shipper follows the change log and uploads what is new as one segment per
//! `ship_interval_ms` (so a burst of commits rides one upload: group commit), takes a snapshot
//! at the start of each generation, every `snapshot_interval_secs` and once
//! `snapshot_after_bytes` of segments follow the newest one, and deletes what falls
//! out of retention. A new generation starts whenever the log no longer continues the
//! replica's: a new or restored store, a schema migration, or changes pruned while the replica
//! was disabled. Layout and formats: [`super::segment`].

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rusqlite::{Connection, OpenFlags};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::segment::{self, Layout, SegmentHeader, SegmentKey, SnapshotKey};
use super::{ReplicaTask, backoff, now_ms};
use crate::assets::BlobFiles;
use crate::config::{ReplicationConfig, S3ReplicaConfig};
use crate::store::changes::{self, ChangeOp, Position};
use crate::store::{StoreError, migrations};

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("replica URL {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Format(#[from] segment::FormatError),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ReplicaError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ReplicaError {
        let context = context.into();
        move |source| ReplicaError::Io { context, source }
    }
}

pub type ReplicaResult<T> = Result<T, ReplicaError>;

/// An opened replica: the object store and the keys under its prefix.
#[derive(Clone)]
pub struct Bucket {
    pub objects: Arc<dyn ObjectStore>,
    pub layout: Layout,
}

impl Bucket {
    /// Opens the replica at `config.url` (`s3://bucket/prefix` or `file:///folder`).
    pub fn open(config: &S3ReplicaConfig) -> ReplicaResult<Bucket> {
        let url_error = |why: String| ReplicaError::Url {
            url: config.url.clone(),
            why,
        };
        let url = url::Url::parse(&config.url).map_err(|error| url_error(error.to_string()))?;

        if url.scheme() == "file" {
            let folder = url
                .to_file_path()
                .map_err(|()| url_error("not an absolute local path".into()))?;
            std::fs::create_dir_all(&folder)
                .map_err(ReplicaError::io(format!("creating {}", folder.display())))?;
            let objects = object_store::local::LocalFileSystem::new_with_prefix(&folder)?;
            return Ok(Bucket {
                objects: Arc::new(objects),
                layout: Layout::new(Path::default()),
            });
        }

        use object_store::aws::AmazonS3Builder;
        use object_store::{ClientOptions, RetryConfig};

        crate::install_crypto_provider();
        let mut builder = AmazonS3Builder::new()
            .with_url(config.url.as_str())
            .with_region(&config.region)
            // Path-style requests: S3-compatible servers on a host name or an IP need them,
            // and AWS still accepts them.
            .with_virtual_hosted_style_request(false)
            // The client options carry `allow_http` too: set it here, not on the builder,
            // where these options would overwrite it.
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(30)),
            )
            // A few quick retries inside one attempt; the shipper's own backoff handles
            // outages, so that they show in its status instead of hiding in a long retry.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            });
        if !config.endpoint.is_empty() {
            builder = builder.with_endpoint(&config.endpoint);
        }
        if config.access_key_id.is_empty() {
            let variable = |name| std::env::var(name).ok();
            if let Some(key) = variable("AWS_ACCESS_KEY_ID") {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = variable("AWS_SECRET_ACCESS_KEY") {
                builder = builder.with_secret_access_key(secret);
            }
            if let Some(token) = variable("AWS_SESSION_TOKEN") {
                builder = builder.with_token(token);
            }
        } else {
            builder = builder
                .with_access_key_id(&config.access_key_id)
                .with_secret_access_key(config.secret_access_key.expose());
        }
        let objects = builder
            .build()
            .map_err(|error| url_error(error.to_string()))?;
        let prefix =
            Path::from_url_path(url.path()).map_err(|error| url_error(error.to_string()))?;
        Ok(Bucket {
            objects: Arc::new(objects),
            layout: Layout::new(prefix),
        })
    }

    /// Every generation, oldest first.
    pub async fn generations(&self) -> ReplicaResult<Vec<String>> {
        let listing = self
            .objects
            .list_with_delimiter(Some(&self.layout.generations()))
            .await?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// A generation's snapshots, oldest first.
    pub async fn snapshots(&self, generation: &str) -> ReplicaResult<Vec<SnapshotKey>> {
        let mut snapshots = self
            .parsed(&self.layout.snapshots(generation), SnapshotKey::parse)
            .await?;
        snapshots.sort_by_key(|snapshot| snapshot.seq);
        Ok(snapshots)
    }

    /// A generation's segments, in order.
    pub async fn segments(&self, generation: &str) -> ReplicaResult<Vec<SegmentKey>> {
        let mut segments = self
            .parsed(&self.layout.segments(generation), SegmentKey::parse)
            .await?;
        segments.sort_by_key(|segment| (segment.first, segment.last));
        Ok(segments)
    }

    /// The objects under `prefix` whose names `parse` understands; others are ignored.
    async fn parsed<T>(
        &self,
        prefix: &Path,
        parse: fn(&Path) -> Option<T>,
    ) -> ReplicaResult<Vec<T>> {
        let objects: Vec<_> = self.objects.list(Some(prefix)).try_collect().await?;
        Ok(objects
            .iter()
            .filter_map(|meta| parse(&meta.location))
            .collect())
    }

    /// Streams an object into a local file.
    pub async fn download(&self, key: &Path, into: &FsPath) -> ReplicaResult<()> {
        let mut stream = self.objects.get(key).await?.into_stream();
        let mut file = tokio::fs::File::create(into)
            .await
            .map_err(ReplicaError::io(format!("creating {}", into.display())))?;
        while let Some(chunk) = stream.try_next().await? {
            file.write_all(&chunk)
                .await
                .map_err(ReplicaError::io(format!("writing {}", into.display())))?;
        }
        file.sync_all()
            .await
            .map_err(ReplicaError::io(format!("syncing {}", into.display())))
    }

    /// Streams a local file into an object (multipart past a few megabytes).
    async fn upload(&self, from: &FsPath, key: &Path) -> ReplicaResult<()> {
        let mut file = tokio::fs::File::open(from)
            .await
            .map_err(ReplicaError::io(format!("opening {}", from.display())))?;
        let mut writer =
            object_store::buffered::BufWriter::new(Arc::clone(&self.objects), key.clone());
        tokio::io::copy(&mut file, &mut writer)
            .await
            .map_err(ReplicaError::io(format!("uploading {key}")))?;
        writer
            .shutdown()
            .await
            .map_err(ReplicaError::io(format!("completing the upload of {key}")))
    }
}

/// Starts the shipper.
pub fn spawn(config: ReplicationConfig, task: ReplicaTask) {
    tokio::spawn(async move {
        let bucket = match Bucket::open(&config.s3) {
            Ok(bucket) => bucket,
            Err(error) => {
                // A configuration fault: retrying would not help. The replica stays at 0 and
                // its lag and error show in the status and metrics.
                task.handle.failed(&error);
                tracing::error!(%error, "the S3 replica cannot be opened; nothing is shipped");
                return;
            }
        };
        let data_dir = task.store.path().parent().unwrap_or(FsPath::new("."));
        let shipper = Shipper {
            blob_files: BlobFiles::new(&data_dir.join("assets")),
            bucket,
            config: config.s3.clone(),
            batch: config.batch_changes,
            database: task.store.path().to_path_buf(),
            task,
        };
        shipper.run().await;
    });
}

struct Shipper {
    bucket: Bucket,
    blob_files: BlobFiles,
    config: S3ReplicaConfig,
    batch: usize,
    database: PathBuf,
    task: ReplicaTask,
}

impl Shipper {
    async fn run(self) {
        let mut failures = 0;
        let mut position = loop {
            match self.establish().await {
                Ok(position) => break position,
                Err(error) => failures = self.failed(&error, failures).await,
            }
        };

        let interval = Duration::from_millis(self.config.ship_interval_ms);
        let snapshot_every = Duration::from_secs(self.config.snapshot_interval_secs);
        let mut next_snapshot = Instant::now() + snapshot_every;
        // Segment bytes uploaded since the newest snapshot, and that snapshot's size.
        let (mut segment_bytes, mut snapshot_bytes) = (0, 0);
        let mut next_retention = Instant::now();
        let mut heads = self.task.store.subscribe_changes();
        let snapshot_now = Arc::clone(&self.task.handle.snapshot_requested);

        loop {
            if failures == 0 {
                // Wait for a change, a snapshot or retention; then let a ship interval pass
                // since the last upload, so that the commits of that interval share it.
                // Changes made by another process (the CLI) wake no one here: look at
                // least every few seconds.
                let due = next_snapshot
                    .min(next_retention)
                    .min(Instant::now() + Duration::from_secs(5));
                if self.task.store.change_head() <= position.seq {
                    tokio::select! {
                        _ = heads.changed() => {}
                        () = snapshot_now.notified() => next_snapshot = Instant::now(),
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                tokio::time::sleep(interval).await;
            }

            let outcome = async {
                segment_bytes += self.ship(&mut position).await?;
                // A restore replays every segment after the newest snapshot: once they outweigh
                // both the bound and the snapshot itself, a new snapshot is the cheaper thing
                // to download. (Bounding by the snapshot's size too keeps a large store from
                // being uploaded whole every few megabytes: uploads stay linear in changes.)
                let bound = self.config.snapshot_after_bytes.max(snapshot_bytes);
                if Instant::now() >= next_snapshot || segment_bytes >= bound {
                    let generation = position.generation.clone().unwrap();
                    (position, snapshot_bytes) = self.snapshot(generation).await?;
                    next_snapshot = Instant::now() + snapshot_every;
                    segment_bytes = 0;
                }
                if Instant::now() >= next_retention {
                    let days = self.config.retention_days as i64;
                    let cutoff_ms = now_ms() - days * 86_400_000;
                    let current = position.generation.as_deref().unwrap();
                    let deleted = apply_retention(&self.bucket, current, cutoff_ms).await?;
                    if deleted > 0 {
                        tracing::info!(deleted, "S3 replica: deleted objects past retention");
                    }
                    next_retention = Instant::now() + Duration::from_secs(3600);
                }
                ReplicaResult::Ok(())
            }
            .await;

            failures = match outcome {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "the S3 replica is reachable again");
                    }
                    0
                }
                Err(error) => self.failed(&error, failures).await,
            };
        }
    }

    /// Records a failure, warns once per outage, and waits out the backoff.
    async fn failed(&self, error: &ReplicaError, failures: u32) -> u32 {
        let failures = self.task.handle.failed(error).max(failures + 1);
        if failures == 1 {
            tracing::warn!(%error, "shipping to the S3 replica failed; retrying with backoff");
        }
        let oldest = self.oldest_unshipped(self.task.handle.position()).await;
        self.task.handle.pending(oldest);
        tokio::time::sleep(backoff(failures)).await;
        failures
    }

    /// Continues the replica's generation if the log still continues it, else starts a new
    /// one with a snapshot.
    async fn establish(&self) -> ReplicaResult<Position> {
        let (stored, tail, head, schema_version) = self
            .task
            .store
            .read(|connection| {
                Ok((
                    changes::position(connection, super::S3)?,
                    changes::tail(connection)?,
                    changes::head(connection)?,
                    migrations::current_version(connection)?,
                ))
            })
            .await?;

        let continues = stored.as_ref().is_some_and(|position| {
            position.generation.is_some()
                && position.schema_version == schema_version
                && position.seq <= head
                && tail.map_or(head == position.seq, |tail| tail <= position.seq + 1)
        });
        match stored {
            Some(position) if continues => {
                let oldest = self.oldest_unshipped(position.seq).await;
                self.task.handle.resume(&position, oldest);
                tracing::info!(
                    generation = position.generation.as_deref().unwrap_or_default(),
                    seq = position.seq,
                    "S3 replica: continuing the generation"
                );
                Ok(position)
            }
            _ => {
                let generation = segment::new_generation();
                tracing::info!(%generation, "S3 replica: starting a new generation");
                // The bucket may be another one now: check each asset file again (a HEAD
                // each, no upload where it is there).
                self.task
                    .store
                    .write(|transaction| Ok(transaction.execute("DELETE FROM replica_blobs", [])?))
                    .await?;
                Ok(self.snapshot(generation).await?.0)
            }
        }
    }

    /// Ships every change after `position`, a segment per batch; returns the bytes uploaded.
    async fn ship(&self, position: &mut Position) -> ReplicaResult<u64> {
        let mut uploaded = 0;
        loop {
            let after = position.seq;
            let batch = self.batch;
            let changes = self
                .task
                .store
                .read(move |connection| changes::read_after(connection, after, batch))
                .await?;
            let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
                return Ok(uploaded);
            };
            self.task.store.observe_head(last.seq);
            let generation = position
                .generation
                .clone()
                .expect("an established generation");
            let header = SegmentHeader {
                format: segment::SEGMENT_FORMAT,
                generation: generation.clone(),
                first_seq: first.seq,
                last_seq: last.seq,
                schema_version: position.schema_version,
            };
            let named = changes
                .iter()
                .filter(|change| change.table == ASSETS_TABLE && change.op == ChangeOp::Upsert)
                .filter_map(|change| change.row.as_ref()?.get("sha256")?.as_str())
                .map(str::to_owned)
                .collect();
            self.ship_blobs(named).await?;

            let key = self.bucket.layout.segment(&generation, first.seq, last.seq);
            let bytes = segment::encode_segment(&header, &changes);
            uploaded += bytes.len() as u64;
            self.bucket
                .objects
                .put(&key, PutPayload::from(bytes))
                .await?;

            position.seq = last.seq;
            let full = changes.len() == self.batch;
            let oldest = self.oldest_unshipped(position.seq).await;
            self.task.advance(position.clone(), oldest).await;
            tracing::debug!(first = first.seq, last = last.seq, "shipped a segment");
            if !full {
                return Ok(uploaded);
            }
        }
    }

    /// Takes a consistent snapshot with SQLite's online backup API, compresses and uploads
    /// it, and makes it the replica's position in `generation`. Returns the position and the
    /// snapshot's compressed size.
    async fn snapshot(&self, generation: String) -> ReplicaResult<(Position, u64)> {
        let database = self.database.clone();
        let snapshot = tokio::task::spawn_blocking(move || snapshot_to_files(&database)).await??;
        let Snapshot {
            copy,
            compressed,
            seq,
            schema_version,
            taken_ms,
            blobs,
        } = snapshot;
        let _cleanup = RemoveOnDrop(vec![copy, compressed.clone()]);
        self.ship_blobs(blobs).await?;

        let key = self.bucket.layout.snapshot(&generation, seq, taken_ms);
        let bytes = std::fs::metadata(&compressed).map_or(0, |meta| meta.len());
        self.bucket.upload(&compressed, &key).await?;
        tracing::info!(%key, seq, bytes, "S3 replica: snapshot uploaded");

        let position = Position {
            seq,
            generation: Some(generation),
            schema_version,
        };
        let oldest = self.oldest_unshipped(seq).await;
        self.task.advance(position.clone(), oldest).await;
        Ok((position, bytes))
    }

    /// Uploads the asset files among `named` that the replica does not hold yet, so that no
    /// segment or snapshot in the bucket ever names a file the bucket lacks.
    async fn ship_blobs(&self, mut named: Vec<String>) -> ReplicaResult<()> {
        named.sort_unstable();
        named.dedup();
        let missing = self
            .task
            .store
            .read(move |connection| {
                let mut statement =
                    connection.prepare_cached("SELECT 1 FROM replica_blobs WHERE sha256 = ?1")?;
                let mut missing = Vec::new();
                for sha256 in named {
                    if !statement.exists([&sha256])? {
                        missing.push(sha256);
                    }
                }
                Ok(missing)
            })
            .await?;

        for sha256 in missing {
            if !crate::assets::is_sha256(&sha256) {
                continue;
            }
            let file = self.blob_files.blob_path(&sha256);
            let key = self.bucket.layout.blob(&sha256);
            match self.bucket.objects.head(&key).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) if file.exists() => {
                    self.bucket.upload(&file, &key).await?;
                }
                Err(object_store::Error::NotFound { .. }) => {
                    // Deleted here (with its last asset) before it was shipped: a restore to
                    // the moment it existed will report the file missing.
                    tracing::warn!(%sha256, "an asset file was gone before it reached S3");
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
            self.task
                .store
                .write(move |transaction| {
                    transaction.execute(
                        "INSERT OR IGNORE INTO replica_blobs (sha256, uploaded_at)
                         VALUES (?1, ?2)",
                        (&sha256, crate::store::now()),
                    )?;
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// When the oldest change the replica lacks was made, if any.
    async fn oldest_unshipped(&self, after: i64) -> Option<i64> {
        self.task
            .store
            .oldest_change_after(after)
            .await
            .ok()
            .flatten()
    }
}

/// Deletes what no restore within the retention window needs: everything before the newest
/// snapshot taken at or before `cutoff_ms`. The current generation is never deleted, and the
/// newest complete chain stays however old it is. Returns how many objects went.
pub async fn apply_retention(
    bucket: &Bucket,
    current: &str,
    cutoff_ms: i64,
) -> ReplicaResult<usize> {
    let generations = bucket.generations().await?;
    let mut anchor = None;
    for generation in &generations {
        for snapshot in bucket.snapshots(generation).await? {
            if snapshot.taken_ms <= cutoff_ms {
                anchor = Some((generation.clone(), snapshot));
            }
        }
    }
    let Some((anchor_generation, anchor)) = anchor else {
        return Ok(0);
    };

    let mut doomed = Vec::new();
    for generation in generations.iter().filter(|name| **name < anchor_generation) {
        if generation != current {
            let prefix = bucket.layout.generations().join(generation.as_str());
            let objects: Vec<_> = bucket.objects.list(Some(&prefix)).try_collect().await?;
            doomed.extend(objects.into_iter().map(|object| object.location));
        }
    }
    for snapshot in bucket.snapshots(&anchor_generation).await? {
        if snapshot.seq < anchor.seq {
            doomed.push(snapshot.path);
        }
    }
    for segment in bucket.segments(&anchor_generation).await? {
        if segment.last <= anchor.seq {
            doomed.push(segment.path);
        }
    }
    for path in &doomed {
        bucket.objects.delete(path).await?;
    }
    Ok(doomed.len())
}

/// The table whose rows name asset files.
const ASSETS_TABLE: &str = "assets";

/// A snapshot ready to upload.
struct Snapshot {
    copy: PathBuf,
    compressed: PathBuf,
    /// The last change in the copy.
    seq: i64,
    schema_version: i64,
    /// When the copy was complete: every change in it was made before.
    taken_ms: i64,
    /// The asset files its rows name.
    blobs: Vec<String>,
}

/// Copies the database with the online backup API in one step (one read transaction, so the
/// copy is consistent), then compresses it.
fn snapshot_to_files(database: &FsPath) -> ReplicaResult<Snapshot> {
    let suffix = segment::new_generation();
    let copy = sibling(database, &format!("snapshot-{suffix}"));
    let compressed = sibling(database, &format!("snapshot-{suffix}.zst"));
    let cleanup = RemoveOnDrop(vec![copy.clone(), compressed.clone()]);

    let source = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut destination = Connection::open(&copy)?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut destination)?;
        backup.step(-1)?;
    }
    // Taken once the copy is complete, so every change in it was made before this time.
    let taken_ms = now_ms();
    let seq = changes::head(&destination)?;
    let schema_version = migrations::current_version(&destination)?;
    let blobs = named_blobs(&destination)?;
    // The log's rows are already in the copy's tables; a restore needs only the position.
    destination.execute_batch("DELETE FROM change_log; DELETE FROM replica_positions; VACUUM;")?;
    drop(destination);

    let input = std::fs::File::open(&copy).map_err(ReplicaError::io("reading the snapshot"))?;
    let output = std::fs::File::create(&compressed)
        .map_err(ReplicaError::io("writing the compressed snapshot"))?;
    segment::compress(input, &output).map_err(ReplicaError::io("compressing the snapshot"))?;
    output
        .sync_all()
        .map_err(ReplicaError::io("syncing the compressed snapshot"))?;

    std::mem::forget(cleanup);
    Ok(Snapshot {
        copy,
        compressed,
        seq,
        schema_version,
        taken_ms,
        blobs,
    })
}

/// Every asset file the database's rows name (none before the assets table exists).
pub fn named_blobs(connection: &Connection) -> rusqlite::Result<Vec<String>> {
    let has_assets = connection
        .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1")?
        .exists([ASSETS_TABLE])?;
    if !has_assets {
        return Ok(Vec::new());
    }
    connection
        .prepare("SELECT DISTINCT sha256 FROM assets")?
        .query_map([], |row| row.get(0))?
        .collect()
}

/// `<database>.<name>` in the database's folder (same filesystem, same permissions).
pub fn sibling(database: &FsPath, name: &str) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push(format!(".{name}"));
    PathBuf::from(path)
}

/// Removes scratch files when a step ends, however it ends.
pub struct RemoveOnDrop(pub Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generations g1 (old), g2 (spanning the cutoff) and g3 (current); only what no restore
    /// after the cutoff needs goes.
    #[tokio::test]
    async fn retention_keeps_every_chain_a_restore_in_the_window_needs() {
        let folder = tempfile::tempdir().unwrap();
        let config = S3ReplicaConfig {
            url: format!("file://{}", folder.path().display()),
            ..crate::config::Config::load(None).unwrap().replication.s3
        };
        let bucket = Bucket::open(&config).unwrap();
        let day = 86_400_000;
        let now = now_ms();
        let layout = &bucket.layout;
        let objects = [
            layout.snapshot("g1", 0, now - 40 * day),
            layout.segment("g1", 1, 10),
            layout.snapshot("g2", 10, now - 35 * day),
            layout.segment("g2", 11, 20),
            layout.snapshot("g2", 20, now - 31 * day),
            layout.segment("g2", 21, 30),
            layout.snapshot("g2", 30, now - 20 * day),
            layout.segment("g2", 31, 40),
            layout.snapshot("g3", 40, now - day),
            layout.segment("g3", 41, 50),
        ];
        for path in &objects {
            bucket
                .objects
                .put(path, PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }

        let deleted = apply_retention(&bucket, "g3", now - 30 * day)
            .await
            .unwrap();

        let mut left: Vec<String> = bucket
            .objects
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        left.sort();
        let mut expected: Vec<String> = objects[4..].iter().map(ToString::to_string).collect();
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(deleted, 4);

        // Nothing old enough: nothing goes.
        assert_eq!(
            apply_retention(&bucket, "g3", now - 50 * day)
                .await
                .unwrap(),
            0
        );
    }
}
