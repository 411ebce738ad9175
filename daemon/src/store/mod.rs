//! The embedded store: SQLite in WAL mode with one writer connection and a small pool of
//! readers, opened and migrated before the API serves anything.
//!
//! Callers never hold a connection across an `.await`: [`Store::read`] and [`Store::write`]
//! run a synchronous closure on tokio's blocking pool, and a write is one short `IMMEDIATE`
//! transaction that commits when the closure returns `Ok`.

pub mod assets;
pub mod canvases;
pub mod changes;
pub mod keys;
pub mod migrations;
pub mod page;
pub mod projects;
pub mod search;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{Semaphore, watch};

/// Errors of the store layer. The API maps each to an HTTP answer in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("version {expected} is stale: the current version is {current}")]
    VersionMismatch { expected: i64, current: i64 },
    #[error("{0}")]
    Conflict(String),
    #[error(
        "the database schema is at version {found}, newer than this binary supports \
         ({supported}); run the newer release or restore a backup"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("the disk holding the database is full")]
    DiskFull,
    #[error("the database is locked by another process")]
    Busy,
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store task did not complete: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;

        match error.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::DiskFull,
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            _ => StoreError::Sqlite(error),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Options for opening the store, taken from the `[store]` section of the configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    pub readers: usize,
    pub busy_timeout: Duration,
}

/// A handle to the store; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The only connection that writes. A std mutex is enough: it is only ever locked on a
    /// blocking-pool thread, for the length of one transaction.
    writer: Mutex<Connection>,
    /// Idle reader connections; `reader_slots` counts them so that waiting is async.
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
    /// The change log's head after the last commit, for the replicas to follow.
    committed: watch::Sender<i64>,
}

impl Store {
    /// Opens (creating if needed) the database, applies pending migrations and opens the
    /// reader pool. Blocking: call it before the runtime serves requests.
    pub fn open(options: &StoreOptions) -> StoreResult<Store> {
        if let Some(dir) = options
            .path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }

        let mut writer = open_connection(&options.path, options.busy_timeout, false)?;
        migrations::apply(&mut writer)?;
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let captured = changes::install_triggers(&transaction)?;
        let head = changes::head(&transaction)?;
        transaction.commit()?;
        tracing::debug!(tables = captured, head, "change capture installed");

        let readers = (0..options.readers)
            .map(|_| open_connection(&options.path, options.busy_timeout, true))
            .collect::<StoreResult<Vec<_>>>()?;

        Ok(Store {
            inner: Arc::new(Inner {
                path: options.path.clone(),
                writer: Mutex::new(writer),
                reader_slots: Semaphore::new(readers.len()),
                readers: Mutex::new(readers),
                committed: watch::Sender::new(head),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Sizes in bytes of the database file and of its write-ahead log (0 when absent).
    pub fn file_sizes(&self) -> (u64, u64) {
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
        let mut wal = self.inner.path.clone().into_os_string();
        wal.push("-wal");
        (size(&self.inner.path), size(Path::new(&wal)))
    }

    /// Runs `query` on a reader connection.
    pub async fn read<T, F>(&self, query: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        // The permit guarantees an idle connection is in the pool when we pop.
        let _permit = self
            .inner
            .reader_slots
            .acquire()
            .await
            .expect("reader pool never closes");
        let inner = Arc::clone(&self.inner);

        tokio::task::spawn_blocking(move || {
            let connection = lock(&inner.readers)
                .pop()
                .expect("a permit implies a reader");
            let result = query(&connection);
            lock(&inner.readers).push(connection);
            result
        })
        .await?
    }

    /// Runs `change` in one `IMMEDIATE` transaction on the writer; commits on `Ok`, rolls back
    /// on `Err`. The commit is durable when this returns (see `synchronous` below).
    pub async fn write<T, F>(&self, change: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || write_blocking(&inner, change)).await?
    }

    /// The change log's head (the highest sequence number) as of the last commit.
    pub fn change_head(&self) -> i64 {
        *self.inner.committed.borrow()
    }

    /// Takes note of a change committed by another process (the CLI), which this one learns
    /// of only when it reads the log.
    pub fn observe_head(&self, seq: i64) {
        publish_head(&self.inner.committed, seq);
    }

    /// When the oldest change after `seq` was made (ms since the epoch); `None` when there is
    /// none: how far behind a replica standing at `seq` is.
    pub async fn oldest_change_after(&self, seq: i64) -> StoreResult<Option<i64>> {
        self.read(move |connection| changes::oldest_after(connection, seq))
            .await
    }

    /// Follows the change log's head: the value changes after every commit that logged a
    /// change.
    pub fn subscribe_changes(&self) -> watch::Receiver<i64> {
        self.inner.committed.subscribe()
    }

    /// The same as [`Store::write`], for callers outside the async runtime (the CLI).
    pub fn write_blocking<T>(
        &self,
        change: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        write_blocking(&self.inner, change)
    }

    /// The same as [`Store::read`], for callers outside the async runtime (the CLI).
    pub fn read_blocking<T>(
        &self,
        query: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        // The writer connection sees the same data; using it keeps the CLI free of the pool.
        query(&lock(&self.inner.writer))
    }

    /// Flushes the WAL into the main database file so that a clean stop leaves one file.
    pub fn close(&self) -> StoreResult<()> {
        let writer = lock(&self.inner.writer);
        writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// SQLite's `integrity_check`: an empty list when the database is sound, else each problem.
pub fn integrity_check(connection: &Connection) -> StoreResult<Vec<String>> {
    let mut statement = connection.prepare("PRAGMA integrity_check")?;
    let lines = statement.query_map([], |row| row.get::<_, String>(0))?;
    let lines = lines.collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(lines.into_iter().filter(|line| line != "ok").collect())
}

fn write_blocking<T>(
    inner: &Inner,
    change: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    let mut connection = lock(&inner.writer);
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let before = changes::head(&transaction)?;
    let value = change(&transaction)?;
    let head = changes::head(&transaction)?;
    if head > before {
        changes::stamp_transaction(&transaction, before)?;
    }
    transaction.commit()?;

    // Still under the writer lock, so heads are published in commit order.
    publish_head(&inner.committed, head);
    Ok(value)
}

/// Raises a published sequence number to `seq`; it never goes back, and waiters wake only
/// when it moves.
pub(crate) fn publish_head(published: &watch::Sender<i64>, seq: i64) {
    published.send_if_modified(|current| {
        let advanced = seq > *current;
        *current = seq.max(*current);
        advanced
    });
}

/// Locks a mutex, recovering it if a panicking thread poisoned it: the guarded connection is
/// still consistent, since SQLite rolls back any transaction the panic abandoned.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn open_connection(
    path: &Path,
    busy_timeout: Duration,
    read_only: bool,
) -> StoreResult<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(busy_timeout)?;

    if !read_only {
        let mode: String =
            connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "cannot switch to WAL, journal is {mode}"
            )));
        }
    }

    // FULL, not NORMAL: in WAL mode NORMAL already survives a killed process, but it may lose
    // the last commits when the host itself loses power. A 2xx promises the write is kept,
    // so each commit waits for the WAL fsync.
    connection.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )?;
    Ok(connection)
}

/// The current time as stored and served; see [`format_time`].
pub fn now() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

/// RFC 3339 in UTC with millisecond precision. The fixed width keeps stored times sortable
/// as text, which expiry checks rely on.
pub fn format_time(at: time::OffsetDateTime) -> String {
    use time::format_description::BorrowedFormatItem;
    const FORMAT: &[BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .expect("a UTC timestamp always formats")
}

/// Optimistic concurrency: a change applies only to the version the client last saw.
/// `None` stands for `If-Match: *`, which accepts any current version.
pub fn check_version(current: i64, expected: Option<i64>) -> StoreResult<()> {
    match expected {
        Some(expected) if expected != current => {
            Err(StoreError::VersionMismatch { expected, current })
        }
        _ => Ok(()),
    }
}

/// A fresh random identifier for a stored row.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
