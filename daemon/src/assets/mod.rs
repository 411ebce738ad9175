//! Brand assets on disk: the content-addressed file store, its garbage collector, and the
//! thumbnails made in the background.
//!
//! Under `<data_dir>/assets/`:
//! - `sha256/ab/cd/<hash>`: the bytes of each distinct file, named by their SHA-256 (its first
//!   two byte pairs shard the folders), and beside them its thumbnails, `<hash>.t256.png`.
//! - `tmp/`: uploads being received and thumbnails being encoded. A file gets its final name
//!   only by `rename` after an fsync, followed by an fsync of the folder, so a final name never
//!   holds a partial file; whatever a crash leaves in `tmp/` is removed at the next start.
//!
//! Many assets (rows) may name one file. Whether a file exists is decided under the store's
//! writer lock only: an upload moves its file into place inside the write transaction that
//! inserts its row, and the collector removes a file inside a write transaction that first
//! checks that no row names it. Those transactions are serialised, so collecting can never
//! remove bytes that a concurrent upload of the same content has just been promised.

pub mod sniff;
pub mod thumbnails;

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use image::ImageFormat;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::config::{AssetsConfig, Config};
use crate::store::assets::{self as rows, Asset, NewAsset, ThumbnailState};
use crate::store::{Store, StoreError, projects};
use sniff::Kind;

/// Errors of the asset layer; the API maps each to an answer in one place.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("the file is not of a type this appliance accepts (allowed: {allowed})")]
    UnsupportedType { allowed: String },
    #[error("{} files are not accepted here (allowed: {allowed})", .kind.mime())]
    TypeNotAllowed { kind: Kind, allowed: String },
    #[error("{} files may be at most {limit} bytes", .kind.mime())]
    TooLarge { kind: Kind, limit: u64 },
    #[error("the body is empty")]
    Empty,
    #[error("the upload was cut short: {0}")]
    Interrupted(io::Error),
    #[error("the disk holding the assets is full")]
    DiskFull,
    #[error("asset files: {0}")]
    Io(io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AssetError {
    /// A failure to write our own files: the disk's fault, not the client's.
    fn write(error: io::Error) -> AssetError {
        // ENOSPC and EDQUOT.
        if error.kind() == io::ErrorKind::StorageFull
            || matches!(error.raw_os_error(), Some(28 | 122))
        {
            AssetError::DiskFull
        } else {
            AssetError::Io(error)
        }
    }
}

/// Whether `text` is a hash as files are named: 64 lower-case hex digits. Every path built
/// from a hash is built from one that passed this, so no client text reaches a path.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A file under `tmp/` that is removed when dropped, unless it was moved into place.
#[derive(Debug)]
pub struct TempPath(Option<PathBuf>);

impl TempPath {
    pub fn path(&self) -> &Path {
        self.0
            .as_deref()
            .expect("a temp path is only emptied when consumed")
    }

    /// Gives up ownership: the file is no longer removed on drop.
    fn keep(mut self) -> PathBuf {
        self.0
            .take()
            .expect("a temp path is only emptied when consumed")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && let Err(error) = fs::remove_file(&path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), %error, "could not remove a temporary file");
        }
    }
}

/// The folders and file names of the content-addressed store. Synchronous: its moves and
/// removals run inside store transactions, on the blocking pool.
#[derive(Debug)]
pub struct BlobFiles {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl BlobFiles {
    /// The store under `root` (`<data_dir>/assets`).
    pub fn new(root: &Path) -> BlobFiles {
        BlobFiles {
            blobs: root.join("sha256"),
            tmp: root.join("tmp"),
        }
    }

    fn shard(&self, sha256: &str) -> PathBuf {
        debug_assert!(is_sha256(sha256));
        self.blobs.join(&sha256[0..2]).join(&sha256[2..4])
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.shard(sha256).join(sha256)
    }

    pub fn thumbnail_path(&self, sha256: &str, size: u32) -> PathBuf {
        self.shard(sha256).join(format!("{sha256}.t{size}.png"))
    }

    /// A fresh name under `tmp/`, removed again when the returned guard drops.
    pub fn temp_path(&self, prefix: &str) -> TempPath {
        TempPath(Some(
            self.tmp
                .join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple())),
        ))
    }

    /// Creates the folders and empties `tmp/` of what an earlier process left (nothing else
    /// writes there before the server accepts requests).
    fn prepare(&self) -> io::Result<usize> {
        fs::create_dir_all(&self.blobs)?;
        fs::create_dir_all(&self.tmp)?;
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp)? {
            fs::remove_file(entry?.path())?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Moves a complete, synced file to its final name, unless that name exists already (the
    /// same bytes are there: the content names the file). Returns whether it moved.
    pub fn place(&self, temp: TempPath, destination: &Path) -> io::Result<bool> {
        if fs::symlink_metadata(destination).is_ok() {
            return Ok(false);
        }
        let folder = destination.parent().expect("a blob path has a folder");
        create_synced_dirs(folder)?;
        fs::rename(temp.keep(), destination)?;
        sync_dir(folder)?;
        Ok(true)
    }

    /// Removes the bytes with this hash and their thumbnails.
    fn remove(&self, sha256: &str) -> io::Result<()> {
        let folder = self.shard(sha256);
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == sha256 || name.starts_with(&format!("{sha256}.")) {
                fs::remove_file(entry.path())?;
            }
        }
        sync_dir(&folder)
    }

    /// The hashes of every file in the store (blobs and thumbnails alike).
    fn hashes_on_disk(&self) -> io::Result<BTreeSet<String>> {
        let mut hashes = BTreeSet::new();
        for first in fs::read_dir(&self.blobs)? {
            for second in fs::read_dir(first?.path())? {
                for file in fs::read_dir(second?.path())? {
                    let name = file?.file_name();
                    let name = name.to_string_lossy();
                    let hash = name.split('.').next().unwrap_or_default();
                    if is_sha256(hash) {
                        hashes.insert(hash.to_string());
                    }
                }
            }
        }
        Ok(hashes)
    }
}

/// Creates `folder` and any missing parents, syncing each parent that gained an entry so the
/// new folders survive a power loss along with the file about to be renamed into them.
fn create_synced_dirs(folder: &Path) -> io::Result<()> {
    if folder.is_dir() {
        return Ok(());
    }
    if let Some(parent) = folder.parent() {
        create_synced_dirs(parent)?;
    }
    match fs::create_dir(folder) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(error) => return Err(error),
    }
    folder.parent().map_or(Ok(()), sync_dir)
}

fn sync_dir(folder: &Path) -> io::Result<()> {
    fs::File::open(folder)?.sync_all()
}

/// Bytes gathered before a write to the temporary file: each write is a trip to the blocking
/// pool, and network reads come in pieces of a few kilobytes.
const WRITE_BATCH: usize = 256 << 10;

/// An upload being received into `tmp/`: its bytes are hashed and counted as they are
/// written, and refused as soon as they pass the type's limit.
pub struct Intake {
    kind: Kind,
    limit: u64,
    file: tokio::fs::File,
    temp: TempPath,
    hasher: Sha256,
    size: u64,
    batch: Vec<u8>,
}

impl Intake {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), AssetError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(AssetError::TooLarge {
                kind: self.kind,
                limit: self.limit,
            });
        }
        self.hasher.update(chunk);
        self.batch.extend_from_slice(chunk);
        if self.batch.len() >= WRITE_BATCH {
            self.flush_batch().await?;
        }
        Ok(())
    }

    async fn flush_batch(&mut self) -> Result<(), AssetError> {
        self.file
            .write_all(&self.batch)
            .await
            .map_err(AssetError::write)?;
        self.batch.clear();
        Ok(())
    }

    /// The file is complete: flush it to the disk. Only a synced file is ever renamed to its
    /// final name, since a rename can reach the disk before the data it names.
    pub async fn finish(mut self) -> Result<Staged, AssetError> {
        if self.size == 0 {
            return Err(AssetError::Empty);
        }
        self.flush_batch().await?;
        self.file.flush().await.map_err(AssetError::write)?;
        self.file.sync_all().await.map_err(AssetError::write)?;
        Ok(Staged {
            kind: self.kind,
            size: self.size,
            sha256: to_hex(&self.hasher.finalize()),
            temp: self.temp,
        })
    }
}

/// A received, synced upload waiting to be committed.
#[derive(Debug)]
pub struct Staged {
    pub kind: Kind,
    pub size: u64,
    pub sha256: String,
    temp: TempPath,
}

/// What the client said about an upload, besides its bytes.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub project_id: String,
    pub file_name: Option<String>,
    pub tags: Vec<String>,
    pub description: String,
    pub uploaded_by: String,
}

/// Thumbnails to make for one content.
#[derive(Debug)]
struct ThumbnailJob {
    sha256: String,
    format: ImageFormat,
}

/// The asset files and the work around them, shared by every request.
pub struct Assets {
    config: AssetsConfig,
    files: Arc<BlobFiles>,
    store: Store,
    jobs: mpsc::UnboundedSender<ThumbnailJob>,
    /// Taken by the worker when the server starts.
    job_queue: Mutex<Option<mpsc::UnboundedReceiver<ThumbnailJob>>>,
}

impl Assets {
    /// Prepares the folders and clears `tmp/`. Call before the server accepts requests.
    pub fn open(config: &Config, store: Store) -> Result<Assets, AssetError> {
        let files = BlobFiles::new(&config.store.data_dir.join("assets"));
        let removed = files.prepare().map_err(AssetError::Io)?;
        if removed > 0 {
            tracing::info!(removed, "removed unfinished uploads left by an earlier run");
        }

        let (jobs, job_queue) = mpsc::unbounded_channel();
        Ok(Assets {
            config: config.assets.clone(),
            files: Arc::new(files),
            store,
            jobs,
            job_queue: Mutex::new(Some(job_queue)),
        })
    }

    pub fn config(&self) -> &AssetsConfig {
        &self.config
    }

    pub fn files(&self) -> &BlobFiles {
        &self.files
    }

    fn allowed_list(&self) -> String {
        self.config.allowed_types.join(", ")
    }

    /// The largest upload of `kind`, in bytes.
    pub fn limit(&self, kind: Kind) -> u64 {
        self.config.max_bytes.get(kind.name()).copied().unwrap_or(0)
    }

    /// The largest upload of any accepted type.
    pub fn largest_limit(&self) -> u64 {
        self.config
            .allowed_types
            .iter()
            .filter_map(|name| self.config.max_bytes.get(name))
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// Tells an upload's type from its first bytes and checks it is accepted.
    pub fn accept(&self, head: &[u8]) -> Result<Kind, AssetError> {
        if head.is_empty() {
            return Err(AssetError::Empty);
        }
        let kind = sniff::sniff(head).ok_or_else(|| AssetError::UnsupportedType {
            allowed: self.allowed_list(),
        })?;
        if !self
            .config
            .allowed_types
            .iter()
            .any(|name| name == kind.name())
        {
            return Err(AssetError::TypeNotAllowed {
                kind,
                allowed: self.allowed_list(),
            });
        }
        Ok(kind)
    }

    /// Starts receiving an upload of `kind` into a temporary file.
    pub async fn begin(&self, kind: Kind) -> Result<Intake, AssetError> {
        let temp = self.files.temp_path("upload");
        let file = tokio::fs::File::create(temp.path())
            .await
            .map_err(AssetError::write)?;
        Ok(Intake {
            kind,
            limit: self.limit(kind),
            file,
            temp,
            hasher: Sha256::new(),
            size: 0,
            batch: Vec::with_capacity(WRITE_BATCH),
        })
    }

    /// Stores a received upload: its bytes under their hash (once, whoever uploaded them
    /// before) and its row, in one write transaction; then queues its thumbnails.
    #[tracing::instrument(skip_all, fields(sha256 = %staged.sha256, size = staged.size))]
    pub async fn commit(&self, staged: Staged, info: UploadInfo) -> Result<Asset, AssetError> {
        let kind = staged.kind;
        let format = sniff::raster_format(kind).filter(|_| !self.config.thumbnail_sizes.is_empty());
        let dimensions = match sniff::raster_format(kind) {
            Some(format) => {
                let path = staged.temp.path().to_path_buf();
                tokio::task::spawn_blocking(move || thumbnails::dimensions(&path, format).ok())
                    .await
                    .map_err(StoreError::from)?
            }
            None => None,
        };

        let sha256 = staged.sha256.clone();
        let row = NewAsset {
            project_id: info.project_id,
            file_name: info
                .file_name
                .unwrap_or_else(|| format!("asset-{}.{}", &staged.sha256[..12], kind.extension())),
            sha256: staged.sha256.clone(),
            size: staged.size,
            mime: kind.mime().to_string(),
            tags: info.tags,
            description: info.description,
            dimensions,
            uploaded_by: info.uploaded_by,
            thumbnails: match format {
                Some(_) => ThumbnailState::Pending,
                None => ThumbnailState::Unsupported,
            },
        };
        let files = Arc::clone(&self.files);
        let committed = self
            .store
            .write(move |tx| {
                // Before touching the disk: a missing project leaves nothing behind.
                projects::get(tx, &row.project_id)?;
                let destination = files.blob_path(&staged.sha256);
                match files.place(staged.temp, &destination) {
                    Ok(placed) => tracing::debug!(placed, "bytes stored"),
                    Err(error) => return Ok(Err(error)),
                }
                rows::create(tx, &row).map(Ok)
            })
            .await;

        let asset = match committed {
            Ok(Ok(asset)) => asset,
            Ok(Err(error)) => return Err(AssetError::write(error)),
            Err(error) => {
                // The bytes may have been moved into place before the transaction failed.
                if let Err(gc_error) = self.collect(&sha256).await {
                    tracing::warn!(%gc_error, "could not collect the bytes of a failed upload");
                }
                return Err(error.into());
            }
        };
        if let Some(format) = format
            && asset.thumbnail_state == ThumbnailState::Pending
        {
            self.queue_thumbnails(sha256, format);
        }
        Ok(asset)
    }

    fn queue_thumbnails(&self, sha256: String, format: ImageFormat) {
        // The receiver lives as long as the server; after it, nothing is left to make them.
        let _ = self.jobs.send(ThumbnailJob { sha256, format });
    }

    /// Deletes an asset's row, then its bytes if no other asset names them.
    pub async fn delete(&self, id: String) -> Result<(), AssetError> {
        let sha256 = self.store.write(move |tx| rows::delete(tx, &id)).await?;
        match self.collect(&sha256).await {
            Ok(removed) => tracing::debug!(%sha256, removed, "asset deleted"),
            // The row is gone, which is what the client asked; the next start's sweep
            // removes the bytes.
            Err(error) => tracing::warn!(%sha256, %error, "could not collect an asset's bytes"),
        }
        Ok(())
    }

    /// Removes the bytes with this hash (and their thumbnails) unless an asset names them.
    /// Returns whether they were removed.
    pub async fn collect(&self, sha256: &str) -> Result<bool, AssetError> {
        let (files, sha256) = (Arc::clone(&self.files), sha256.to_string());
        // Under the writer lock: no upload can place or name these bytes meanwhile.
        let removed = self
            .store
            .write(move |tx| {
                if rows::is_referenced(tx, &sha256)? {
                    return Ok(Ok(false));
                }
                Ok(files.remove(&sha256).map(|()| true))
            })
            .await?;
        removed.map_err(AssetError::Io)
    }

    /// Removes every file no asset names (left by a crash between moving bytes into place
    /// and committing, or by a failed collection). Returns how many contents went.
    pub async fn sweep(&self) -> Result<usize, AssetError> {
        let files = Arc::clone(&self.files);
        let on_disk = tokio::task::spawn_blocking(move || files.hashes_on_disk())
            .await
            .map_err(StoreError::from)?
            .map_err(AssetError::Io)?;
        let referenced: BTreeSet<String> = self
            .store
            .read(rows::referenced_hashes)
            .await?
            .into_iter()
            .collect();

        let mut removed = 0;
        for sha256 in on_disk.difference(&referenced) {
            // Checked again under the writer lock: an upload may have named it since.
            if self.collect(sha256).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Starts the background work: the thumbnail worker, thumbnails left pending by an
    /// earlier run, and a sweep of unreferenced files. Call once the runtime runs.
    pub fn spawn_background(self: &Arc<Assets>) {
        let Some(mut queue) = self
            .job_queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };

        let worker = Arc::clone(self);
        tokio::spawn(async move {
            // One image at a time: decoding is what bounds memory, not the queue.
            while let Some(job) = queue.recv().await {
                let sha256 = job.sha256.clone();
                if let Err(error) = worker.make_thumbnails(job).await {
                    tracing::warn!(%sha256, %error, "could not record thumbnails");
                }
            }
        });

        let assets = Arc::clone(self);
        tokio::spawn(async move {
            match assets.store.read(rows::pending_thumbnails).await {
                Ok(pending) => {
                    for (sha256, mime) in pending {
                        let format = Kind::from_mime(&mime).and_then(sniff::raster_format);
                        if let Some(format) = format {
                            assets.queue_thumbnails(sha256, format);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "could not list pending thumbnails"),
            }
            match assets.sweep().await {
                Ok(removed) => tracing::info!(removed, "asset files swept"),
                Err(error) => tracing::warn!(%error, "could not sweep asset files"),
            }
        });
    }

    /// Makes one content's thumbnails and records the outcome on every asset naming it.
    #[tracing::instrument(skip_all, fields(sha256 = %job.sha256))]
    async fn make_thumbnails(&self, job: ThumbnailJob) -> Result<(), AssetError> {
        let ThumbnailJob { sha256, format } = job;
        let files = Arc::clone(&self.files);
        let (sizes, max_pixels) = (
            self.config.thumbnail_sizes.clone(),
            self.config.max_image_pixels,
        );
        let hash = sha256.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            thumbnails::render(&files, &hash, format, &sizes, max_pixels)
        })
        .await;
        let outcome = match rendered {
            Ok(Ok(made)) => Ok(made),
            Ok(Err(error)) => Err(error.to_string()),
            // A decoder that panics on a hostile file fails that asset, not the daemon.
            Err(_) => Err("the image decoder failed on this file".to_string()),
        };
        match &outcome {
            Ok(made) => tracing::info!(made = made.len(), "thumbnails made"),
            Err(why) => tracing::warn!(why, "no thumbnails for this image"),
        }

        let files = Arc::clone(&self.files);
        self.store
            .write(move |tx| {
                // Deleted meanwhile: the rendered files are dropped, and so removed.
                if !rows::is_referenced(tx, &sha256)? {
                    return Ok(());
                }
                let placed = outcome.and_then(|made| {
                    made.into_iter().try_for_each(|(size, temp)| {
                        let destination = files.thumbnail_path(&sha256, size);
                        files
                            .place(temp, &destination)
                            .map(drop)
                            .map_err(|error| format!("cannot store the thumbnail: {error}"))
                    })
                });
                let outcome = match &placed {
                    Ok(()) => Ok(()),
                    Err(why) => Err(why.as_str()),
                };
                rows::settle_thumbnails(tx, &sha256, outcome)?;
                Ok(())
            })
            .await?;
        Ok(())
    }
}
