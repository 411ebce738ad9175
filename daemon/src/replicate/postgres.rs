//! The PostgreSQL replica: the store's replicated tables, kept current in one schema of a
//! PostgreSQL database by applying the change log in order, idempotently; and `replica check`.
//!
//! Every replicated table becomes a table of the same name and primary key in
//! `replication.postgres.schema` (types mapped as [`PgType`] says), plus `_nexus_seq`: the
//! change that last wrote the row. `_nexus_replication`, in the same schema, holds one row:
//! the replica's lineage, the last change applied and when it was made, and the store's
//! schema version. The lineage is a random id given at each full copy and also kept as the
//! local position's generation, so that a store and a replica that did not grow from the same
//! copy never follow each other.
//!
//! - A session connects, takes an advisory lock on the schema (one appliance per schema), and
//!   either follows the log from the replica's own last applied change or rebuilds the replica
//!   with a full copy ([`resync_reason`] says when).
//! - A batch of changes is applied in one transaction together with the new last applied
//!   change, so a crash or a dropped connection leaves all of it or none. Changes the replica
//!   already holds are skipped and every write is guarded by `_nexus_seq`, so a replay is
//!   harmless.
//! - While PostgreSQL is down or slow the daemon keeps serving: the log keeps what the replica
//!   lacks, the lag shows in the replica's handle, and sessions are retried with backoff.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, IsolationLevel, NoTls, Row, Statement};

use super::restore::{TableComparison, TableDigest, digest_rows, digests};
use super::{ReplicaTask, backoff};
use crate::config::{PostgresReplicaConfig, ReplicationConfig};
use crate::store::changes::{self, Change, ChangeOp, Column, Position, TableShape, quote};
use crate::store::{Store, StoreError, StoreResult, migrations};

/// The bookkeeping table, in the replica's schema.
const BOOKKEEPING: &str = "_nexus_replication";

/// The column of every replicated table that holds the change that last wrote the row.
const SEQ_COLUMN: &str = "_nexus_seq";

/// The most one statement may take on the server. A batch is a handful of statements and a
/// full copy is made of chunks, so this only trips on a server that is stuck or locked.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The most a batch may take as the daemon sees it: also covers a server or a network that
/// stops answering altogether, which no server-side timeout can.
const BATCH_TIMEOUT: Duration = Duration::from_secs(45);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection whose sent data goes unacknowledged this long is dropped by the kernel, so a
/// vanished server ends a session (a full copy included) instead of hanging it.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Rows, and bytes of row data, per statement at most: a protocol message holds at most
/// 1 GiB, and a batch of large documents would pass that in one statement.
const CHUNK_ROWS: usize = 1000;
const CHUNK_BYTES: usize = 8 << 20;

/// Chunks read from the store ahead of PostgreSQL during a full copy.
const COPY_CHUNKS_AHEAD: usize = 4;

/// How long `replica check` waits for the replica to catch up with the store.
const CHECK_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("replication.postgres.url is not a valid PostgreSQL URL: {}", describe(.0))]
    Url(tokio_postgres::Error),
    #[error("PostgreSQL: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another process replicates into schema {0}: it holds the schema's advisory lock")]
    Locked(String),
    #[error("PostgreSQL did not finish a batch within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("change {seq} cannot be applied: {why}")]
    BadChange { seq: i64, why: String },
    #[error("a row of {table} cannot be copied: {why}")]
    BadRow { table: String, why: String },
    #[error("the replica was rebuilt by another process meanwhile")]
    LineageChanged,
    #[error("the full copy stopped: the store's reader did not send everything")]
    CopyInterrupted,
    #[error("schema {0} holds no replica yet: has the daemon replicated to it?")]
    NotSynchronised(String),
    #[error("table {table} is missing from the replica in schema {schema}")]
    MissingTable { schema: String, table: String },
    #[error(
        "the replica stayed {} change(s) behind the store (it holds change {replica}, the \
         store is at {live}); is the daemon replicating? (see `replication` in the admin \
         status)",
        live - replica
    )]
    Behind { replica: i64, live: i64 },
}

impl From<rusqlite::Error> for PostgresError {
    fn from(error: rusqlite::Error) -> Self {
        PostgresError::Store(error.into())
    }
}

/// tokio-postgres's own message only names the kind of error ("db error"); its cause holds
/// what the server said.
fn describe(error: &tokio_postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// Starts the replica's task on the current runtime.
pub fn spawn(config: ReplicationConfig, task: ReplicaTask) {
    tokio::spawn(run(config, task));
}

/// What the task needs from the configuration.
struct Settings {
    postgres: tokio_postgres::Config,
    schema: String,
    batch: usize,
    apply_interval: Duration,
}

/// Runs sessions for as long as the daemon does, retrying with backoff after each failure;
/// one warning per outage, however many retries it takes.
async fn run(config: ReplicationConfig, task: ReplicaTask) {
    let settings = match connection_config(&config.postgres) {
        Ok(postgres) => Settings {
            postgres,
            schema: config.postgres.schema.clone(),
            batch: config.batch_changes,
            apply_interval: Duration::from_millis(config.postgres.apply_interval_ms.max(1)),
        },
        Err(error) => {
            // A configuration fault: retrying would not help. The lag and the error show in
            // the status.
            task.handle.failed(&error);
            tracing::error!(%error, "the PostgreSQL replica cannot start; nothing is applied");
            return;
        }
    };

    let mut outage = false;
    loop {
        let error = match session(&settings, &task, &mut outage).await {
            Ok(never) => match never {},
            Err(error) => error,
        };

        let failures = task.handle.failed(&error);
        if !outage {
            outage = true;
            tracing::warn!(
                %error,
                "the PostgreSQL replica is unavailable; changes wait in the local log and are \
                 retried with backoff"
            );
        } else {
            tracing::debug!(%error, failures, "the PostgreSQL replica is still unavailable");
        }
        // The lag keeps growing visibly while nothing is applied.
        let position = task.handle.position();
        if let Ok(oldest) = task.store.oldest_change_after(position).await {
            task.handle.pending(oldest);
        }
        tokio::time::sleep(backoff(failures)).await;
    }
}

/// One connection's life: start (follow on, or copy everything), then follow the log until
/// something fails.
async fn session(
    settings: &Settings,
    task: &ReplicaTask,
    outage: &mut bool,
) -> Result<Infallible, PostgresError> {
    let mut replica = Replica::open(&settings.postgres, &settings.schema).await?;
    let started = replica.start(&task.store).await?;
    let mut position = started.position;

    let oldest = task.store.oldest_change_after(position.seq).await?;
    match started.resynchronised {
        Some(reason) => {
            tracing::info!(
                reason,
                seq = position.seq,
                rows = started.copied_rows,
                "PostgreSQL replica rebuilt with a full copy of the store"
            );
            task.advance(position.clone(), oldest).await;
        }
        None => {
            tracing::info!(seq = position.seq, "PostgreSQL replica: following the log");
            task.handle.resume(&position, oldest);
        }
    }
    if std::mem::take(outage) {
        tracing::info!(
            seq = position.seq,
            head = task.store.change_head(),
            "the PostgreSQL replica is reachable again; catching up"
        );
    }

    // Changes are applied as soon as they are committed, but at most once an interval while
    // they keep coming, so that a busy store shares transactions (and recorded positions)
    // among many commits. Changes made by another process (the CLI) wake no one here: the
    // interval also bounds how long they wait.
    let mut commits = task.store.subscribe_changes();
    let mut last_applied = Instant::now();
    loop {
        if catch_up(&mut replica, task, &mut position, settings.batch).await? {
            last_applied = Instant::now();
        }

        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(settings.apply_interval).await;
                }
            }
            () = tokio::time::sleep(settings.apply_interval) => {}
        }
        // What waits out the interval counts as lag meanwhile.
        task.handle
            .pending(task.store.oldest_change_after(position.seq).await?);
        tokio::time::sleep_until((last_applied + settings.apply_interval).into()).await;
    }
}

/// Applies every change after `position`, a batch (one PostgreSQL transaction) at a time,
/// recording each new position. Returns whether anything was applied.
async fn catch_up(
    replica: &mut Replica,
    task: &ReplicaTask,
    position: &mut Position,
    batch: usize,
) -> Result<bool, PostgresError> {
    let mut applied = false;
    loop {
        let after = position.seq;
        let changes = task
            .store
            .read(move |connection| changes::read_after(connection, after, batch))
            .await?;
        let Some(last) = changes.last() else {
            return Ok(applied);
        };
        task.store.observe_head(last.seq);

        let seq = tokio::time::timeout(BATCH_TIMEOUT, replica.apply(&changes))
            .await
            .map_err(|_| PostgresError::Timeout(BATCH_TIMEOUT))??;
        position.seq = seq;
        applied = true;

        let oldest = task.store.oldest_change_after(seq).await?;
        task.advance(position.clone(), oldest).await;
        if changes.len() < batch {
            return Ok(applied);
        }
    }
}

/// Parses the URL and adds the session settings the replica relies on.
fn connection_config(
    config: &PostgresReplicaConfig,
) -> Result<tokio_postgres::Config, PostgresError> {
    let mut postgres: tokio_postgres::Config =
        config.url.expose().parse().map_err(PostgresError::Url)?;

    // A session cut off by a partitioned network must not keep its locks, nor the schema's
    // advisory lock, for long: the server drops it when it hangs inside a transaction, or
    // when its keepalives go unanswered (the server's default waits two hours).
    let timeouts = format!(
        "-c statement_timeout={} -c idle_in_transaction_session_timeout={} \
         -c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3",
        STATEMENT_TIMEOUT.as_millis(),
        2 * BATCH_TIMEOUT.as_millis()
    );
    let options = match postgres.get_options() {
        Some(options) => format!("{options} {timeouts}"),
        None => timeouts,
    };
    postgres
        .options(options)
        .application_name("nexus-canvasd replica")
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_user_timeout(TCP_USER_TIMEOUT)
        .keepalives_idle(TCP_USER_TIMEOUT);
    Ok(postgres)
}

/// Connects; the connection is driven by a task of its own until the client is dropped.
async fn connect(postgres: &tokio_postgres::Config) -> Result<Client, PostgresError> {
    let (client, connection) = postgres.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %describe(&error), "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Where the replica stands, from its bookkeeping row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReplicaState {
    lineage: String,
    applied_seq: i64,
    /// When the last applied change was made; `None` after a copy of a store whose log no
    /// longer held its head.
    applied_at_ms: Option<i64>,
    schema_version: i64,
}

/// What the store says when a session starts, read in one transaction.
#[derive(Debug, Clone)]
struct LocalState {
    position: Option<Position>,
    schema_version: i64,
    head: i64,
    tail: Option<i64>,
    tables: Vec<TableShape>,
    /// When the change the replica says it applied last was made, if the log holds it.
    replica_last_at_ms: Option<i64>,
}

impl LocalState {
    fn read(connection: &Connection, replica_applied: Option<i64>) -> StoreResult<LocalState> {
        let transaction = connection.unchecked_transaction()?;
        let replica_last_at_ms = match replica_applied {
            Some(seq) => changes::read_after(&transaction, seq - 1, 1)?
                .first()
                .filter(|change| change.seq == seq)
                .map(|change| change.at_ms),
            None => None,
        };
        Ok(LocalState {
            position: changes::position(&transaction, super::POSTGRES)?,
            schema_version: migrations::current_version(&transaction)?,
            head: changes::head(&transaction)?,
            tail: changes::tail(&transaction)?,
            tables: changes::replicated_tables(&transaction)?,
            replica_last_at_ms,
        })
    }
}

/// Why the replica cannot follow the log from the change it applied last and must be rebuilt
/// with a full copy; `None` when it can.
///
/// The local position is recorded after PostgreSQL commits, so in one lineage it is at most
/// the replica's own last applied change (equal, or behind after a crash in between). Anything
/// else means one side was replaced or rolled back.
fn resync_reason(local: &LocalState, replica: Option<&ReplicaState>) -> Option<&'static str> {
    let Some(replica) = replica else {
        return Some("the replica is empty");
    };
    let Some(position) = &local.position else {
        return Some(
            "the store has no position for the replica (a new or restored store, or the \
             replica was just enabled)",
        );
    };
    if position.schema_version != local.schema_version
        || replica.schema_version != local.schema_version
    {
        return Some("the store's schema changed");
    }
    if position.generation.as_deref() != Some(replica.lineage.as_str()) {
        return Some("the replica was built from another copy of the store");
    }
    if replica.applied_seq > local.head {
        return Some("the replica is ahead of the store (was the store restored?)");
    }
    if replica.applied_seq < position.seq {
        return Some("the replica lost changes it had applied (was PostgreSQL restored?)");
    }
    if replica.applied_seq > position.seq
        && (local.replica_last_at_ms.is_none() || local.replica_last_at_ms != replica.applied_at_ms)
    {
        // The store went back to an earlier copy and has moved on since: the same sequence
        // numbers now stand for other changes.
        return Some("the store's log differs from what the replica applied");
    }
    let log_holds_the_rest = local
        .tail
        .map_or(local.head == replica.applied_seq, |tail| {
            tail <= replica.applied_seq + 1
        });
    if !log_holds_the_rest {
        return Some("the log no longer holds the changes the replica lacks");
    }
    None
}

/// How a session started.
#[derive(Debug, Clone)]
pub struct Started {
    /// The replica holds every change up to here.
    pub position: Position,
    /// Why the replica was rebuilt with a full copy; `None` when it followed on.
    pub resynchronised: Option<&'static str>,
    pub copied_rows: u64,
}

/// A connection to the replica, holding the schema's advisory lock.
pub struct Replica {
    client: Client,
    schema: String,
    /// The replica's lineage, known once [`Replica::start`] has run.
    lineage: String,
    prepared: Option<Prepared>,
}

impl Replica {
    /// Connects with `[replication.postgres]` and locks the schema.
    pub async fn connect(config: &PostgresReplicaConfig) -> Result<Replica, PostgresError> {
        Replica::open(&connection_config(config)?, &config.schema).await
    }

    async fn open(
        postgres: &tokio_postgres::Config,
        schema: &str,
    ) -> Result<Replica, PostgresError> {
        let client = connect(postgres).await?;

        // Two appliances replicating into one schema would undo each other's copies.
        let lock_name = format!("nexus-canvas replica {schema}");
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&lock_name],
            )
            .await?
            .get(0);
        if !locked {
            return Err(PostgresError::Locked(schema.to_owned()));
        }

        Ok(Replica {
            client,
            schema: schema.to_owned(),
            lineage: String::new(),
            prepared: None,
        })
    }

    /// Finds where the replica stands and whether it can follow the store's log from there;
    /// if not, rebuilds it with a full copy of the store.
    pub async fn start(&mut self, store: &Store) -> Result<Started, PostgresError> {
        let replica = bookkeeping(&self.client, &self.schema).await?;
        let applied = replica.as_ref().map(|state| state.applied_seq);
        let local = store
            .read(move |connection| LocalState::read(connection, applied))
            .await?;

        let mut reason = resync_reason(&local, replica.as_ref());
        if reason.is_none() {
            let existing = catalog(&self.client, &self.schema).await?;
            let same = local
                .tables
                .iter()
                .all(|shape| table_matches(shape, existing.get(&shape.name)));
            if !same {
                reason = Some("the replica's tables differ from the store's");
            }
        }

        match (reason, replica) {
            (None, Some(replica)) => {
                self.prepared =
                    Some(Prepared::new(&self.client, &self.schema, &local.tables).await?);
                self.lineage = replica.lineage.clone();
                Ok(Started {
                    position: Position {
                        seq: replica.applied_seq,
                        generation: Some(replica.lineage),
                        schema_version: local.schema_version,
                    },
                    resynchronised: None,
                    copied_rows: 0,
                })
            }
            (reason, _) => {
                let reason = reason.unwrap_or("the replica is empty");
                let (position, copied_rows) = self.resynchronise(store).await?;
                Ok(Started {
                    position,
                    resynchronised: Some(reason),
                    copied_rows,
                })
            }
        }
    }

    /// Applies a batch of changes (in `seq` order) in one transaction, with the new last
    /// applied change; returns the replica's last applied change after it. Changes it already
    /// holds are skipped, so a batch applied twice changes nothing the second time.
    pub async fn apply(&mut self, changes: &[Change]) -> Result<i64, PostgresError> {
        let prepared = self
            .prepared
            .as_ref()
            .expect("Replica::start prepares the statements");
        let transaction = self.client.transaction().await?;

        // Locking the bookkeeping row serialises appliers; it also says what is applied.
        let row = transaction
            .query_opt(&prepared.lock, &[])
            .await?
            .ok_or(PostgresError::LineageChanged)?;
        let (lineage, applied): (String, i64) = (row.get(0), row.get(1));
        if lineage != self.lineage {
            return Err(PostgresError::LineageChanged);
        }
        let fresh: Vec<&Change> = changes
            .iter()
            .filter(|change| change.seq > applied)
            .collect();
        let Some(last) = fresh.last() else {
            return Ok(applied);
        };

        for (table, rows) in last_changes(&fresh) {
            let target = prepared
                .targets
                .get(table)
                .ok_or_else(|| PostgresError::BadChange {
                    seq: rows[0].seq,
                    why: format!("table {table} is not replicated"),
                })?;
            let (upserts, deletes): (Vec<&Change>, Vec<&Change>) = rows
                .into_iter()
                .partition(|change| change.op == ChangeOp::Upsert);
            for upserts in statement_chunks(&upserts) {
                let params = target.upsert_params(upserts)?;
                transaction
                    .execute_raw(&target.upsert, params.iter().map(Values::as_param))
                    .await?;
            }
            for deletes in statement_chunks(&deletes) {
                let params = target.delete_params(deletes)?;
                transaction
                    .execute_raw(&target.delete, params.iter().map(Values::as_param))
                    .await?;
            }
        }

        transaction
            .execute(&prepared.record, &[&last.seq, &last.at_ms])
            .await?;
        transaction.commit().await?;
        Ok(last.seq)
    }

    /// Rebuilds the replica from one consistent read of the store, in one transaction: the
    /// tables are created or altered to match, emptied, filled, and the bookkeeping row names
    /// a new lineage and the store's head. Returns the position and the rows copied.
    async fn resynchronise(&mut self, store: &Store) -> Result<(Position, u64), PostgresError> {
        let (sender, receiver) = mpsc::channel(COPY_CHUNKS_AHEAD);
        let reading = store.read(move |connection| read_snapshot(connection, &sender));

        let (read, written) = tokio::join!(reading, self.write_snapshot(receiver));
        // A failed read also interrupts the writer; the read's error says why.
        read?;
        written
    }

    async fn write_snapshot(
        &mut self,
        mut receiver: mpsc::Receiver<Snapshot>,
    ) -> Result<(Position, u64), PostgresError> {
        let Some(Snapshot::Begin(snapshot)) = receiver.recv().await else {
            return Err(PostgresError::CopyInterrupted);
        };
        let lineage = crate::store::new_id();
        let schema = self.schema.clone();
        let transaction = self.client.transaction().await?;

        transaction.batch_execute(&bookkeeping_ddl(&schema)).await?;
        let existing = catalog(&transaction, &schema).await?;
        let kept: Vec<String> = snapshot
            .tables
            .iter()
            .filter(|shape| existing.contains_key(&shape.name))
            .map(|shape| qualified(&schema, &shape.name))
            .collect();
        // Emptied before they are altered, so that new NOT NULL columns can be added.
        if !kept.is_empty() {
            transaction
                .batch_execute(&format!("TRUNCATE {}", kept.join(", ")))
                .await?;
        }
        for shape in &snapshot.tables {
            for statement in reshape_sql(&schema, shape, existing.get(&shape.name)) {
                transaction.batch_execute(&statement).await?;
            }
        }

        let prepared = Prepared::new(&transaction, &schema, &snapshot.tables).await?;
        let mut copied = 0u64;
        loop {
            match receiver.recv().await {
                Some(Snapshot::Rows { table, rows }) => {
                    let shape = &snapshot.tables[table];
                    let target = &prepared.targets[&shape.name];
                    let rows: Vec<(&Map<String, Value>, i64)> =
                        rows.iter().map(|row| (row, snapshot.head)).collect();
                    let params = arrays(&target.columns, &rows).map_err(|(_, why)| {
                        PostgresError::BadRow {
                            table: shape.name.clone(),
                            why,
                        }
                    })?;
                    transaction
                        .execute_raw(&target.upsert, params.iter().map(Values::as_param))
                        .await?;
                    copied += rows.len() as u64;
                }
                Some(Snapshot::End) => break,
                Some(Snapshot::Begin(_)) | None => return Err(PostgresError::CopyInterrupted),
            }
        }

        transaction
            .execute(
                &format!(
                    "INSERT INTO {} (singleton, lineage, applied_seq, applied_at_ms, \
                     schema_version) VALUES (true, $1, $2, $3, $4)
                     ON CONFLICT (singleton) DO UPDATE SET lineage = EXCLUDED.lineage,
                         applied_seq = EXCLUDED.applied_seq,
                         applied_at_ms = EXCLUDED.applied_at_ms,
                         schema_version = EXCLUDED.schema_version, updated_at = now()",
                    qualified(&schema, BOOKKEEPING)
                ),
                &[
                    &lineage,
                    &snapshot.head,
                    &snapshot.head_at_ms,
                    &snapshot.schema_version,
                ],
            )
            .await?;
        transaction.commit().await?;

        self.lineage = lineage.clone();
        self.prepared = Some(prepared);
        let position = Position {
            seq: snapshot.head,
            generation: Some(lineage),
            schema_version: snapshot.schema_version,
        };
        Ok((position, copied))
    }
}

/// A full copy as the store's reader sends it.
enum Snapshot {
    Begin(SnapshotStart),
    /// Rows of `tables[table]`, as the change log encodes them.
    Rows {
        table: usize,
        rows: Vec<Map<String, Value>>,
    },
    End,
}

struct SnapshotStart {
    head: i64,
    head_at_ms: Option<i64>,
    schema_version: i64,
    tables: Vec<TableShape>,
}

/// Reads the whole store for a full copy, in one read transaction so that the rows and the
/// head describe the same state, and sends it in chunks. Stops quietly when the writer hangs
/// up: it reports its own error.
fn read_snapshot(connection: &Connection, sender: &mpsc::Sender<Snapshot>) -> StoreResult<()> {
    let transaction = connection.unchecked_transaction()?;
    let head = changes::head(&transaction)?;
    let head_at_ms = changes::read_after(&transaction, head - 1, 1)?
        .first()
        .filter(|change| change.seq == head)
        .map(|change| change.at_ms);
    let tables = changes::replicated_tables(&transaction)?;
    let start = SnapshotStart {
        head,
        head_at_ms,
        schema_version: migrations::current_version(&transaction)?,
        tables: tables.clone(),
    };
    if sender.blocking_send(Snapshot::Begin(start)).is_err() {
        return Ok(());
    }

    for (index, shape) in tables.iter().enumerate() {
        let mut statement = transaction.prepare(&format!(
            "SELECT {} FROM {}",
            changes::row_json(shape, None),
            quote(&shape.name)
        ))?;
        let mut rows = statement.query([])?;
        let mut chunk = Vec::new();
        let mut bytes = 0;
        loop {
            let row = rows.next()?;
            if let Some(row) = row {
                let text: String = row.get(0)?;
                bytes += text.len();
                chunk.push(parse_row(&shape.name, &text)?);
            }
            let full = chunk.len() >= CHUNK_ROWS || bytes >= CHUNK_BYTES;
            if (full || row.is_none()) && !chunk.is_empty() {
                let rows = std::mem::take(&mut chunk);
                bytes = 0;
                if sender
                    .blocking_send(Snapshot::Rows { table: index, rows })
                    .is_err()
                {
                    return Ok(());
                }
            }
            if row.is_none() {
                break;
            }
        }
    }
    // An error here means the writer is gone, which it reports itself.
    let _ = sender.blocking_send(Snapshot::End);
    Ok(())
}

fn parse_row(table: &str, text: &str) -> StoreResult<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(row)) => Ok(row),
        _ => Err(StoreError::Corrupt(format!(
            "a row of {table} does not read as a JSON object"
        ))),
    }
}

/// The last change of every row in `changes`, grouped by table, each group in `seq` order.
///
/// Applying only these gives the state the whole batch gives: a row's last change is its
/// final state, and rows do not depend on one another in the replica (it has primary keys
/// only: no foreign keys, no other unique constraints). So a batch becomes one statement per
/// table and kind of change, however many changes it holds.
fn last_changes<'c>(changes: &[&'c Change]) -> BTreeMap<&'c str, Vec<&'c Change>> {
    let mut last: HashMap<(&str, String), &Change> = HashMap::new();
    for change in changes {
        let key = serde_json::to_string(&change.key).expect("a JSON map always serialises");
        last.insert((change.table.as_str(), key), change);
    }

    let mut tables: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for ((table, _), change) in last {
        tables.entry(table).or_default().push(change);
    }
    for changes in tables.values_mut() {
        changes.sort_by_key(|change| change.seq);
    }
    tables
}

/// Splits changes into runs of at most [`CHUNK_ROWS`] changes and about [`CHUNK_BYTES`] of
/// row data, a statement each.
fn statement_chunks<'a, 'c>(changes: &'a [&'c Change]) -> Vec<&'a [&'c Change]> {
    let size = |change: &Change| -> usize {
        let values = change.row.as_ref().unwrap_or(&change.key).values();
        values.map(|value| value.as_str().map_or(8, str::len)).sum()
    };

    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, change) in changes.iter().enumerate() {
        if index > start && (index - start >= CHUNK_ROWS || bytes >= CHUNK_BYTES) {
            chunks.push(&changes[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size(change);
    }
    if start < changes.len() {
        chunks.push(&changes[start..]);
    }
    chunks
}

/// The PostgreSQL type a column is replicated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PgType {
    Bigint,
    Double,
    Text,
    Bytea,
}

impl PgType {
    /// INTEGER, REAL, TEXT and BLOB become bigint, double precision, text and bytea; other
    /// declared types follow SQLite's affinity rules, so that a column declared `INT` or
    /// `VARCHAR(20)` gets the type its values have. NUMERIC affinity and no declared type
    /// become text. BLOB is decided first, as the change log does when it hex-encodes.
    fn of(column: &Column) -> PgType {
        let declared = column.declared_type.to_ascii_uppercase();
        let has = |parts: &[&str]| parts.iter().any(|part| declared.contains(part));
        if column.is_blob() {
            PgType::Bytea
        } else if has(&["INT"]) {
            PgType::Bigint
        } else if has(&["CHAR", "CLOB", "TEXT"]) {
            PgType::Text
        } else if has(&["REAL", "FLOA", "DOUB"]) {
            PgType::Double
        } else {
            PgType::Text
        }
    }

    /// The name `format_type` gives it.
    fn sql(self) -> &'static str {
        match self {
            PgType::Bigint => "bigint",
            PgType::Double => "double precision",
            PgType::Text => "text",
            PgType::Bytea => "bytea",
        }
    }
}

/// One column's values for a statement's array parameter.
#[derive(Debug, Clone, PartialEq)]
enum Values {
    Bigint(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Bytea(Vec<Option<Vec<u8>>>),
}

impl Values {
    fn new(kind: PgType, capacity: usize) -> Values {
        match kind {
            PgType::Bigint => Values::Bigint(Vec::with_capacity(capacity)),
            PgType::Double => Values::Double(Vec::with_capacity(capacity)),
            PgType::Text => Values::Text(Vec::with_capacity(capacity)),
            PgType::Bytea => Values::Bytea(Vec::with_capacity(capacity)),
        }
    }

    /// Adds a value as the change log encodes it (BLOBs as hex).
    fn push(&mut self, value: &Value) -> Result<(), String> {
        let wrong = || format!("{value} does not fit");
        match (self, value) {
            (Values::Bigint(values), Value::Null) => values.push(None),
            (Values::Bigint(values), Value::Number(number)) => {
                values.push(Some(number.as_i64().ok_or_else(wrong)?));
            }
            (Values::Double(values), Value::Null) => values.push(None),
            (Values::Double(values), Value::Number(number)) => values.push(number.as_f64()),
            (Values::Text(values), Value::Null) => values.push(None),
            (Values::Text(values), Value::String(text)) => values.push(Some(text.clone())),
            // A column of NUMERIC affinity, or with no declared type, can hold numbers.
            (Values::Text(values), Value::Number(number)) => values.push(Some(number.to_string())),
            (Values::Bytea(values), Value::Null) => values.push(None),
            (Values::Bytea(values), Value::String(hex)) => {
                values.push(Some(changes::decode_hex(hex).ok_or_else(wrong)?));
            }
            _ => return Err(wrong()),
        }
        Ok(())
    }

    fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Values::Bigint(values) => values,
            Values::Double(values) => values,
            Values::Text(values) => values,
            Values::Bytea(values) => values,
        }
    }
}

/// Turns rows, each with the change that wrote it, into the array parameters of an upsert or
/// a delete: one array per named column, then `_nexus_seq`. An error names the row's index.
fn arrays(
    columns: &[(String, PgType)],
    rows: &[(&Map<String, Value>, i64)],
) -> Result<Vec<Values>, (usize, String)> {
    let mut arrays: Vec<Values> = columns
        .iter()
        .map(|(_, kind)| Values::new(*kind, rows.len()))
        .chain([Values::new(PgType::Bigint, rows.len())])
        .collect();
    for (index, (row, seq)) in rows.iter().enumerate() {
        for ((name, _), values) in columns.iter().zip(arrays.iter_mut()) {
            let value = row
                .get(name)
                .ok_or_else(|| (index, format!("column {name} is missing")))?;
            values
                .push(value)
                .map_err(|why| (index, format!("column {name}: {why}")))?;
        }
        arrays
            .last_mut()
            .expect("the sequence column")
            .push(&Value::from(*seq))
            .expect("a sequence number is an integer");
    }
    Ok(arrays)
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    bytes
        .iter()
        .flat_map(|byte| {
            [
                DIGITS[usize::from(byte >> 4)],
                DIGITS[usize::from(byte & 15)],
            ]
        })
        .map(char::from)
        .collect()
}

/// A replicated table as a session writes it: its columns and prepared statements.
struct Target {
    columns: Vec<(String, PgType)>,
    key: Vec<(String, PgType)>,
    upsert: Statement,
    delete: Statement,
}

impl Target {
    fn upsert_params(&self, changes: &[&Change]) -> Result<Vec<Values>, PostgresError> {
        let rows = changes
            .iter()
            .map(|change| match &change.row {
                Some(row) => Ok((row, change.seq)),
                None => Err(PostgresError::BadChange {
                    seq: change.seq,
                    why: "an upsert without a row".into(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        arrays(&self.columns, &rows).map_err(|(index, why)| PostgresError::BadChange {
            seq: changes[index].seq,
            why,
        })
    }

    fn delete_params(&self, changes: &[&Change]) -> Result<Vec<Values>, PostgresError> {
        let keys: Vec<(&Map<String, Value>, i64)> = changes
            .iter()
            .map(|change| (&change.key, change.seq))
            .collect();
        arrays(&self.key, &keys).map_err(|(index, why)| PostgresError::BadChange {
            seq: changes[index].seq,
            why,
        })
    }
}

/// A session's prepared statements (they belong to its connection).
struct Prepared {
    targets: HashMap<String, Target>,
    /// Locks the bookkeeping row; reads the lineage and the last applied change.
    lock: Statement,
    /// Records the last applied change and when it was made.
    record: Statement,
}

impl Prepared {
    async fn new<C: GenericClient>(
        client: &C,
        schema: &str,
        tables: &[TableShape],
    ) -> Result<Prepared, PostgresError> {
        let mut targets = HashMap::new();
        for shape in tables {
            let columns: Vec<(String, PgType)> = shape
                .columns
                .iter()
                .map(|column| (column.name.clone(), PgType::of(column)))
                .collect();
            let key = shape
                .key
                .iter()
                .filter_map(|name| columns.iter().find(|(column, _)| column == name).cloned())
                .collect();
            let target = Target {
                upsert: client.prepare(&upsert_sql(schema, shape)).await?,
                delete: client.prepare(&delete_sql(schema, shape)).await?,
                columns,
                key,
            };
            targets.insert(shape.name.clone(), target);
        }

        let bookkeeping = qualified(schema, BOOKKEEPING);
        Ok(Prepared {
            targets,
            lock: client
                .prepare(&format!(
                    "SELECT lineage, applied_seq FROM {bookkeeping} FOR UPDATE"
                ))
                .await?,
            record: client
                .prepare(&format!(
                    "UPDATE {bookkeeping} SET applied_seq = $1, applied_at_ms = $2, \
                     updated_at = now()"
                ))
                .await?,
        })
    }
}

fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

fn quoted_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(quote).collect::<Vec<_>>().join(", ")
}

/// The columns a replicated table has in PostgreSQL, with their types.
fn replica_columns(shape: &TableShape) -> Vec<(String, &'static str)> {
    shape
        .columns
        .iter()
        .map(|column| (column.name.clone(), PgType::of(column).sql()))
        .chain([(SEQ_COLUMN.to_owned(), "bigint")])
        .collect()
}

/// Columns are nullable but for the key: the store enforces its own constraints, and a
/// replica that refused a row the store holds would stop replication altogether.
fn create_table_sql(schema: &str, shape: &TableShape) -> String {
    let columns: Vec<String> = replica_columns(shape)
        .iter()
        .map(|(name, kind)| {
            let not_null = if name == SEQ_COLUMN { " NOT NULL" } else { "" };
            format!("{} {kind}{not_null}", quote(name))
        })
        .collect();
    format!(
        "CREATE TABLE {} ({}, PRIMARY KEY ({}))",
        qualified(schema, &shape.name),
        columns.join(", "),
        quoted_list(shape.key.iter().map(String::as_str))
    )
}

/// Upserts rows given as one array per column (then `_nexus_seq`); a row only replaces one
/// written by an earlier change.
fn upsert_sql(schema: &str, shape: &TableShape) -> String {
    let columns = replica_columns(shape);
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(index, (_, kind))| format!("${}::{kind}[]", index + 1))
        .collect();
    let updates: Vec<String> = columns
        .iter()
        .filter(|(name, _)| !shape.key.contains(name))
        .map(|(name, _)| format!("{0} = EXCLUDED.{0}", quote(name)))
        .collect();
    format!(
        "INSERT INTO {table} AS t ({columns}) SELECT * FROM unnest({arrays}) \
         ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE t.{seq} < EXCLUDED.{seq}",
        table = qualified(schema, &shape.name),
        columns = quoted_list(columns.iter().map(|(name, _)| name.as_str())),
        arrays = arrays.join(", "),
        key = quoted_list(shape.key.iter().map(String::as_str)),
        updates = updates.join(", "),
        seq = quote(SEQ_COLUMN),
    )
}

/// Deletes rows by key given as one array per key column (then `_nexus_seq`); a row written
/// by a later change stays.
fn delete_sql(schema: &str, shape: &TableShape) -> String {
    let columns = replica_columns(shape);
    let key: Vec<&(String, &str)> = shape
        .key
        .iter()
        .filter_map(|name| columns.iter().find(|(column, _)| column == name))
        .chain(columns.last())
        .collect();
    let arrays: Vec<String> = key
        .iter()
        .enumerate()
        .map(|(index, (_, kind))| format!("${}::{kind}[]", index + 1))
        .collect();
    let matches: Vec<String> = shape
        .key
        .iter()
        .map(|name| format!("t.{0} = d.{0}", quote(name)))
        .collect();
    format!(
        "DELETE FROM {table} AS t USING unnest({arrays}) AS d({names}) \
         WHERE {matches} AND t.{seq} < d.{seq}",
        table = qualified(schema, &shape.name),
        arrays = arrays.join(", "),
        names = quoted_list(key.iter().map(|(name, _)| name.as_str())),
        matches = matches.join(" AND "),
        seq = quote(SEQ_COLUMN),
    )
}

fn bookkeeping_ddl(schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {table} (
             singleton      boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
             lineage        text        NOT NULL,
             applied_seq    bigint      NOT NULL,
             applied_at_ms  bigint,
             schema_version bigint      NOT NULL,
             updated_at     timestamptz NOT NULL DEFAULT now()
         );",
        schema = quote(schema),
        table = qualified(schema, BOOKKEEPING)
    )
}

/// A table of the replica's schema as PostgreSQL has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PgTable {
    /// Name and type (as `format_type` gives it), in column order.
    columns: Vec<(String, String)>,
    /// The primary key's columns, in key order.
    key: Vec<String>,
}

/// The tables of `schema`.
async fn catalog<C: GenericClient>(
    client: &C,
    schema: &str,
) -> Result<HashMap<String, PgTable>, PostgresError> {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                    array_position(i.indkey::int2[], a.attnum)
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
             WHERE n.nspname = $1 AND c.relkind = 'r'
             ORDER BY c.relname, a.attnum",
            &[&schema],
        )
        .await?;

    let mut tables: HashMap<String, (PgTable, Vec<(i32, String)>)> = HashMap::new();
    for row in rows {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        let entry = tables.entry(table).or_insert_with(|| {
            let table = PgTable {
                columns: Vec::new(),
                key: Vec::new(),
            };
            (table, Vec::new())
        });
        if let Some(position) = row.get::<_, Option<i32>>(3) {
            entry.1.push((position, column.clone()));
        }
        entry.0.columns.push((column, row.get(2)));
    }
    Ok(tables
        .into_iter()
        .map(|(name, (mut table, mut key))| {
            key.sort();
            table.key = key.into_iter().map(|(_, column)| column).collect();
            (name, table)
        })
        .collect())
}

/// Whether the replica's table has exactly the columns, types and key the store's implies.
fn table_matches(shape: &TableShape, existing: Option<&PgTable>) -> bool {
    let Some(existing) = existing else {
        return false;
    };
    let mut expected: Vec<(String, String)> = replica_columns(shape)
        .into_iter()
        .map(|(name, kind)| (name, kind.to_owned()))
        .collect();
    let mut found = existing.columns.clone();
    expected.sort();
    found.sort();
    existing.key == shape.key && expected == found
}

/// The DDL that makes the (emptied) replica table match the store's: created if missing,
/// recreated if its key or a column's type differs, else columns added and dropped.
fn reshape_sql(schema: &str, shape: &TableShape, existing: Option<&PgTable>) -> Vec<String> {
    let table = qualified(schema, &shape.name);
    let wanted = replica_columns(shape);
    let Some(existing) = existing else {
        return vec![create_table_sql(schema, shape)];
    };

    let retyped = wanted.iter().any(|(name, kind)| {
        existing
            .columns
            .iter()
            .any(|(column, found)| column == name && found != kind)
    });
    if retyped || existing.key != shape.key {
        return vec![
            format!("DROP TABLE {table}"),
            create_table_sql(schema, shape),
        ];
    }

    let added = wanted
        .iter()
        .filter(|(name, _)| !existing.columns.iter().any(|(column, _)| column == name))
        .map(|(name, kind)| {
            let not_null = if name == SEQ_COLUMN { " NOT NULL" } else { "" };
            format!(
                "ALTER TABLE {table} ADD COLUMN {} {kind}{not_null}",
                quote(name)
            )
        });
    let dropped = existing
        .columns
        .iter()
        .filter(|(column, _)| !wanted.iter().any(|(name, _)| name == column))
        .map(|(column, _)| format!("ALTER TABLE {table} DROP COLUMN {}", quote(column)));
    added.chain(dropped).collect()
}

/// The bookkeeping row, or `None` when the schema holds no replica yet.
async fn bookkeeping<C: GenericClient>(
    client: &C,
    schema: &str,
) -> Result<Option<ReplicaState>, PostgresError> {
    let table = qualified(schema, BOOKKEEPING);
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&table])
        .await?
        .get(0);
    if exists.is_none() {
        return Ok(None);
    }
    let row = client
        .query_opt(
            &format!("SELECT lineage, applied_seq, applied_at_ms, schema_version FROM {table}"),
            &[],
        )
        .await?;
    Ok(row.map(|row| ReplicaState {
        lineage: row.get(0),
        applied_seq: row.get(1),
        applied_at_ms: row.get(2),
        schema_version: row.get(3),
    }))
}

/// The outcome of `replica check`.
#[derive(Debug, Clone)]
pub struct ReplicaCheck {
    pub schema: String,
    /// Both sides were compared as of this change.
    pub seq: i64,
    pub tables: Vec<TableComparison>,
}

impl ReplicaCheck {
    pub fn matches(&self) -> bool {
        self.tables.iter().all(|table| table.live == table.replica)
    }
}

/// Compares every replicated table's row count and digest in the store at `database` and in
/// the replica (`_nexus_seq` aside), as of the same change. The daemon keeps applying while
/// this runs, so the comparison waits, for a few seconds at most, until both sides stand at
/// the same change.
pub async fn check(
    config: &PostgresReplicaConfig,
    database: &Path,
) -> Result<ReplicaCheck, PostgresError> {
    let mut client = connect(&connection_config(config)?).await?;
    let local = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    local.busy_timeout(Duration::from_secs(5))?;
    let schema = &config.schema;
    let deadline = Instant::now() + CHECK_WAIT;

    loop {
        let replica = bookkeeping(&client, schema)
            .await?
            .ok_or_else(|| PostgresError::NotSynchronised(schema.clone()))?;
        let head = changes::head(&local)?;
        if replica.applied_seq == head
            && let Some(tables) = compare(&mut client, &local, schema).await?
        {
            return Ok(ReplicaCheck {
                schema: schema.clone(),
                seq: head,
                tables,
            });
        }
        if Instant::now() >= deadline {
            return Err(PostgresError::Behind {
                replica: replica.applied_seq,
                live: head,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Digests of both sides, each read in one transaction; `None` when they turn out to stand at
/// different changes after all.
async fn compare(
    client: &mut Client,
    local: &Connection,
    schema: &str,
) -> Result<Option<Vec<TableComparison>>, PostgresError> {
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let local = local.unchecked_transaction()?;

    let replica_seq = bookkeeping(&transaction, schema)
        .await?
        .map(|state| state.applied_seq);
    if replica_seq != Some(changes::head(&local)?) {
        return Ok(None);
    }
    let tables = changes::replicated_tables(&local)?;
    let live = digests(&local)?;
    let replica = replica_digests(&transaction, schema, &tables).await?;

    Ok(Some(
        live.into_iter()
            .zip(replica)
            .map(|(live, replica)| TableComparison {
                table: live.table.clone(),
                live,
                replica,
            })
            .collect(),
    ))
}

/// The digest of each of `tables` in the replica, over the same canonical rows as the store's
/// (see [`digests`]): the change log's encoding, hex for bytea, `_nexus_seq` left out.
async fn replica_digests<C: GenericClient>(
    client: &C,
    schema: &str,
    tables: &[TableShape],
) -> Result<Vec<TableDigest>, PostgresError> {
    let existing = catalog(client, schema).await?;
    let mut digests = Vec::with_capacity(tables.len());
    for shape in tables {
        if !existing.contains_key(&shape.name) {
            return Err(PostgresError::MissingTable {
                schema: schema.to_owned(),
                table: shape.name.clone(),
            });
        }
        let names = quoted_list(shape.columns.iter().map(|column| column.name.as_str()));
        let rows = client
            .query(
                &format!("SELECT {names} FROM {}", qualified(schema, &shape.name)),
                &[],
            )
            .await?;
        let rows = rows
            .iter()
            .map(|row| canonical_row(shape, row))
            .collect::<Result<Vec<String>, _>>()?;
        digests.push(digest_rows(&shape.name, rows));
    }
    Ok(digests)
}

fn canonical_row(shape: &TableShape, row: &Row) -> Result<String, tokio_postgres::Error> {
    let mut object = Map::new();
    for (index, column) in shape.columns.iter().enumerate() {
        let value = match PgType::of(column) {
            PgType::Bigint => row.try_get::<_, Option<i64>>(index)?.map(Value::from),
            PgType::Double => row
                .try_get::<_, Option<f64>>(index)?
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            PgType::Text => row.try_get::<_, Option<String>>(index)?.map(Value::String),
            PgType::Bytea => row
                .try_get::<_, Option<Vec<u8>>>(index)?
                .map(|bytes| Value::String(encode_hex(&bytes))),
        };
        object.insert(column.name.clone(), value.unwrap_or(Value::Null));
    }
    Ok(Value::Object(object).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, declared_type: &str) -> Column {
        Column {
            name: name.into(),
            declared_type: declared_type.into(),
            not_null: false,
        }
    }

    fn revisions() -> TableShape {
        TableShape {
            name: "canvas_revisions".into(),
            columns: vec![
                column("canvas_id", "TEXT"),
                column("version", "INTEGER"),
                column("document", "TEXT"),
                column("hash", "BLOB"),
            ],
            key: vec!["canvas_id".into(), "version".into()],
        }
    }

    fn change(seq: i64, op: ChangeOp, key: &str, row: Option<&str>) -> Change {
        let map = |text: &str| serde_json::from_str(text).unwrap();
        Change {
            seq,
            table: "canvas_revisions".into(),
            op,
            key: map(key),
            row: row.map(map),
            at_ms: 1_700_000_000_000 + seq,
        }
    }

    #[test]
    fn types_follow_the_declared_type() {
        let kinds: Vec<PgType> = [
            "INTEGER",
            "int",
            "BIGINT",
            "REAL",
            "DOUBLE",
            "TEXT",
            "VARCHAR(20)",
            "BLOB",
            "",
            "NUMERIC",
            "DATETIME",
        ]
        .iter()
        .map(|declared| PgType::of(&column("c", declared)))
        .collect();
        use PgType::*;
        assert_eq!(
            kinds,
            [
                Bigint, Bigint, Bigint, Double, Double, Text, Text, Bytea, Text, Text, Text
            ]
        );
    }

    #[test]
    fn statements_are_guarded_by_the_sequence() {
        let shape = revisions();
        assert_eq!(
            create_table_sql("nexus", &shape),
            "CREATE TABLE \"nexus\".\"canvas_revisions\" (\"canvas_id\" text, \"version\" \
             bigint, \"document\" text, \"hash\" bytea, \"_nexus_seq\" bigint NOT NULL, \
             PRIMARY KEY (\"canvas_id\", \"version\"))"
        );
        assert_eq!(
            upsert_sql("nexus", &shape),
            "INSERT INTO \"nexus\".\"canvas_revisions\" AS t (\"canvas_id\", \"version\", \
             \"document\", \"hash\", \"_nexus_seq\") SELECT * FROM unnest($1::text[], \
             $2::bigint[], $3::text[], $4::bytea[], $5::bigint[]) ON CONFLICT (\"canvas_id\", \
             \"version\") DO UPDATE SET \"document\" = EXCLUDED.\"document\", \"hash\" = \
             EXCLUDED.\"hash\", \"_nexus_seq\" = EXCLUDED.\"_nexus_seq\" WHERE \
             t.\"_nexus_seq\" < EXCLUDED.\"_nexus_seq\""
        );
        assert_eq!(
            delete_sql("nexus", &shape),
            "DELETE FROM \"nexus\".\"canvas_revisions\" AS t USING unnest($1::text[], \
             $2::bigint[], $3::bigint[]) AS d(\"canvas_id\", \"version\", \"_nexus_seq\") \
             WHERE t.\"canvas_id\" = d.\"canvas_id\" AND t.\"version\" = d.\"version\" AND \
             t.\"_nexus_seq\" < d.\"_nexus_seq\""
        );
    }

    #[test]
    fn values_are_converted_per_column_type() {
        let shape = revisions();
        let columns: Vec<(String, PgType)> = shape
            .columns
            .iter()
            .map(|column| (column.name.clone(), PgType::of(column)))
            .collect();
        let row: Map<String, Value> = serde_json::from_str(
            r#"{"canvas_id": "c", "version": 2, "document": null, "hash": "00FFa0"}"#,
        )
        .unwrap();
        let params = arrays(&columns, &[(&row, 7)]).unwrap();
        assert_eq!(
            params,
            [
                Values::Text(vec![Some("c".into())]),
                Values::Bigint(vec![Some(2)]),
                Values::Text(vec![None]),
                Values::Bytea(vec![Some(vec![0, 255, 160])]),
                Values::Bigint(vec![Some(7)]),
            ]
        );
        assert_eq!(encode_hex(&[0, 255, 160]), "00FFA0");

        let bad: Map<String, Value> = serde_json::from_str(
            r#"{"canvas_id": "c", "version": 2.5, "document": null, "hash": "0"}"#,
        )
        .unwrap();
        let (index, why) = arrays(&columns, &[(&row, 7), (&bad, 8)]).unwrap_err();
        assert_eq!(
            (index, why.as_str()),
            (1, "column version: 2.5 does not fit")
        );
        assert_eq!(changes::decode_hex("0"), None);
        assert_eq!(changes::decode_hex("zz"), None);
    }

    #[test]
    fn a_batch_keeps_the_last_change_of_each_row() {
        let changes = [
            change(
                1,
                ChangeOp::Upsert,
                r#"{"canvas_id": "a", "version": 1}"#,
                Some("{}"),
            ),
            change(
                2,
                ChangeOp::Upsert,
                r#"{"canvas_id": "b", "version": 1}"#,
                Some("{}"),
            ),
            change(
                3,
                ChangeOp::Delete,
                r#"{"canvas_id": "a", "version": 1}"#,
                None,
            ),
            change(
                4,
                ChangeOp::Upsert,
                r#"{"canvas_id": "b", "version": 1}"#,
                Some("{}"),
            ),
            change(
                5,
                ChangeOp::Delete,
                r#"{"canvas_id": "b", "version": 2}"#,
                None,
            ),
        ];
        let refs: Vec<&Change> = changes.iter().collect();
        let last = last_changes(&refs);
        let seqs: Vec<(i64, ChangeOp)> = last["canvas_revisions"]
            .iter()
            .map(|change| (change.seq, change.op))
            .collect();
        assert_eq!(
            seqs,
            [
                (3, ChangeOp::Delete),
                (4, ChangeOp::Upsert),
                (5, ChangeOp::Delete)
            ]
        );
    }

    #[test]
    fn large_batches_are_split_into_statements() {
        let small = change(
            1,
            ChangeOp::Delete,
            r#"{"canvas_id": "a", "version": 1}"#,
            None,
        );
        let document = format!(r#"{{"document": "{}"}}"#, "x".repeat(3 << 20));
        let large = change(
            2,
            ChangeOp::Upsert,
            r#"{"canvas_id": "b"}"#,
            Some(&document),
        );
        let many: Vec<&Change> = std::iter::repeat_n(&small, 2500).collect();
        let sizes: Vec<usize> = statement_chunks(&many)
            .iter()
            .map(|run| run.len())
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);

        let big: Vec<&Change> = std::iter::repeat_n(&large, 7).collect();
        let sizes: Vec<usize> = statement_chunks(&big).iter().map(|run| run.len()).collect();
        assert_eq!(sizes, [3, 3, 1]);
        assert!(statement_chunks(&[]).is_empty());
    }

    fn level() -> (LocalState, ReplicaState) {
        let local = LocalState {
            position: Some(Position {
                seq: 10,
                generation: Some("L".into()),
                schema_version: 2,
            }),
            schema_version: 2,
            head: 12,
            tail: Some(11),
            tables: Vec::new(),
            replica_last_at_ms: Some(100),
        };
        let replica = ReplicaState {
            lineage: "L".into(),
            applied_seq: 10,
            applied_at_ms: Some(100),
            schema_version: 2,
        };
        (local, replica)
    }

    #[test]
    fn the_replica_follows_on_only_in_the_same_lineage() {
        let (local, replica) = level();
        assert_eq!(resync_reason(&local, Some(&replica)), None);
        assert!(resync_reason(&local, None).is_some());

        // A crash after PostgreSQL committed but before the position was recorded: the log
        // still holds that change, as the replica remembers it.
        let ahead = ReplicaState {
            applied_seq: 12,
            ..replica.clone()
        };
        assert_eq!(resync_reason(&local, Some(&ahead)), None);

        let cases: Vec<(LocalState, ReplicaState)> = vec![
            (
                LocalState {
                    position: None,
                    ..local.clone()
                },
                replica.clone(),
            ),
            (
                LocalState {
                    schema_version: 3,
                    ..local.clone()
                },
                replica.clone(),
            ),
            (
                local.clone(),
                ReplicaState {
                    lineage: "other".into(),
                    ..replica.clone()
                },
            ),
            // The store was restored to an earlier copy.
            (
                local.clone(),
                ReplicaState {
                    applied_seq: 13,
                    ..replica.clone()
                },
            ),
            // ... and moved on past the replica since: the same number, another change.
            (
                LocalState {
                    replica_last_at_ms: Some(99),
                    ..local.clone()
                },
                ahead.clone(),
            ),
            // PostgreSQL was restored to an earlier point.
            (
                local.clone(),
                ReplicaState {
                    applied_seq: 9,
                    ..replica.clone()
                },
            ),
            // The log was pruned past what the replica lacks.
            (
                LocalState {
                    tail: Some(12),
                    ..local.clone()
                },
                replica.clone(),
            ),
        ];
        for (index, (local, replica)) in cases.iter().enumerate() {
            assert!(
                resync_reason(local, Some(replica)).is_some(),
                "case {index} should resynchronise"
            );
        }
    }

    #[test]
    fn tables_are_reshaped_to_the_store() {
        let shape = revisions();
        let table = |columns: &[(&str, &str)], key: &[&str]| PgTable {
            columns: columns
                .iter()
                .map(|(name, kind)| (name.to_string(), kind.to_string()))
                .collect(),
            key: key.iter().map(|name| name.to_string()).collect(),
        };
        let same = table(
            &[
                ("canvas_id", "text"),
                ("version", "bigint"),
                ("document", "text"),
                ("hash", "bytea"),
                ("_nexus_seq", "bigint"),
            ],
            &["canvas_id", "version"],
        );
        assert!(table_matches(&shape, Some(&same)));
        assert!(reshape_sql("s", &shape, Some(&same)).is_empty());
        assert!(!table_matches(&shape, None));

        let older = table(
            &[
                ("canvas_id", "text"),
                ("version", "bigint"),
                ("gone", "text"),
                ("_nexus_seq", "bigint"),
            ],
            &["canvas_id", "version"],
        );
        assert!(!table_matches(&shape, Some(&older)));
        assert_eq!(
            reshape_sql("s", &shape, Some(&older)),
            [
                "ALTER TABLE \"s\".\"canvas_revisions\" ADD COLUMN \"document\" text",
                "ALTER TABLE \"s\".\"canvas_revisions\" ADD COLUMN \"hash\" bytea",
                "ALTER TABLE \"s\".\"canvas_revisions\" DROP COLUMN \"gone\"",
            ]
        );

        let rekeyed = table(&[("canvas_id", "text")], &["canvas_id"]);
        assert_eq!(
            reshape_sql("s", &shape, Some(&rekeyed))[0],
            "DROP TABLE \"s\".\"canvas_revisions\""
        );
    }
}
