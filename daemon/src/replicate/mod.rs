//! Continuous replication of the store to S3 and PostgreSQL, fed by one change log.
//!
//! The store's triggers write every change to `change_log` in the transaction that makes it
//! (see [`crate::store::changes`]). Each configured replica runs as a task that follows the
//! log, ships what is new, records its position in `replica_positions` and reports through a
//! [`ReplicaHandle`]. The log is pruned up to the lowest position of the configured replicas,
//! so an outage of one replica keeps what it has not taken yet, and nothing else.
//!
//! - [`s3`]: snapshots plus change segments in a bucket, for point-in-time restore;
//! - [`postgres`]: the same tables in PostgreSQL, applied in order and idempotently;
//! - [`segment`]: the on-bucket file formats and key layout;
//! - [`restore`]: `restore` and `backup verify`.

pub mod postgres;
pub mod restore;
pub mod s3;
pub mod segment;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, watch};
use utoipa::ToSchema;

use crate::config::ReplicationConfig;
use crate::store::{Store, StoreResult, changes, lock};

/// The names replicas are known by, in `replica_positions` and in reports.
pub const S3: &str = "s3";
pub const POSTGRES: &str = "postgres";

/// The running replicas.
pub struct Replicator {
    store: Store,
    replicas: Vec<Arc<ReplicaHandle>>,
    config: ReplicationConfig,
}

impl Replicator {
    /// Sets up a handle per configured replica and forgets the positions of replicas that are
    /// no longer configured, so they do not hold the log back. Blocking: call it before the
    /// runtime serves; [`Replicator::spawn`] starts the tasks.
    pub fn new(config: &ReplicationConfig, store: Store) -> StoreResult<Arc<Replicator>> {
        let mut replicas = Vec::new();
        for (name, enabled) in [(S3, config.s3.enabled), (POSTGRES, config.postgres.enabled)] {
            if enabled {
                replicas.push(Arc::new(ReplicaHandle::new(name)));
            } else {
                store.write_blocking(|transaction| changes::forget_position(transaction, name))?;
            }
        }
        Ok(Arc::new(Replicator {
            store,
            replicas,
            config: config.clone(),
        }))
    }

    /// Starts a task per configured replica on the current tokio runtime.
    pub fn spawn(self: &Arc<Replicator>) {
        for handle in &self.replicas {
            let task = ReplicaTask {
                store: self.store.clone(),
                handle: Arc::clone(handle),
                replicator: Arc::clone(self),
            };
            match handle.name {
                S3 => s3::spawn(self.config.clone(), task),
                _ => postgres::spawn(self.config.clone(), task),
            }
        }
        if self.replicas.is_empty() {
            // Nobody follows the log: keep it from growing.
            tokio::spawn(prune_unfollowed(self.store.clone()));
        }
    }

    /// The largest lag of any replica, in seconds; `None` without replicas.
    pub fn max_lag_seconds(&self) -> Option<f64> {
        let report = self.report(Duration::MAX);
        report
            .replicas
            .iter()
            .map(|replica| replica.lag_seconds)
            .reduce(f64::max)
    }

    /// The replica a `Prefer: durability=replicated` write waits for: S3 when configured
    /// (the disaster-recovery copy), else PostgreSQL.
    pub fn durability_replica(&self) -> Option<&Arc<ReplicaHandle>> {
        self.replica(S3).or_else(|| self.replica(POSTGRES))
    }

    /// The handle of a configured replica.
    pub fn replica(&self, name: &str) -> Option<&Arc<ReplicaHandle>> {
        self.replicas.iter().find(|handle| handle.name == name)
    }

    /// Every configured replica's state, with its lag behind the log's current head; a
    /// replica more than `recovery_point` behind makes the report `behind`.
    pub fn report(&self, recovery_point: Duration) -> ReplicationReport {
        let head = self.store.change_head();
        let now_ms = now_ms();
        let replicas = self
            .replicas
            .iter()
            .map(|handle| handle.report(head, now_ms))
            .collect::<Vec<_>>();
        let behind = replicas
            .iter()
            .any(|replica| replica.lag_seconds > recovery_point.as_secs_f64());
        ReplicationReport {
            head,
            recovery_point_seconds: recovery_point.as_secs(),
            behind,
            replicas,
        }
    }

    /// Prunes the log up to the lowest position of the configured replicas.
    async fn prune(&self) -> StoreResult<usize> {
        let names: Vec<&'static str> = self.replicas.iter().map(|handle| handle.name).collect();
        self.store
            .write(move |transaction| {
                let mut lowest = i64::MAX;
                for name in names {
                    match changes::position(transaction, name)? {
                        Some(position) => lowest = lowest.min(position.seq),
                        // A replica that has never shipped needs the whole log.
                        None => return Ok(0),
                    }
                }
                changes::prune(transaction, lowest)
            })
            .await
    }
}

/// What a replica task is given: the store, its handle and the replicator (for pruning).
pub struct ReplicaTask {
    pub store: Store,
    pub handle: Arc<ReplicaHandle>,
    replicator: Arc<Replicator>,
}

impl ReplicaTask {
    /// Records a durable position (in the store, then in the handle, which wakes the
    /// requests waiting for it) and prunes what every replica now holds.
    pub async fn advance(&self, position: changes::Position, oldest_unshipped_ms: Option<i64>) {
        let name = self.handle.name;
        let stored = position.clone();
        let recorded = self
            .store
            .write(move |transaction| changes::set_position(transaction, name, &stored))
            .await;
        if let Err(error) = recorded {
            // The replica holds the changes; at worst they are shipped again after a restart,
            // which every replica tolerates.
            tracing::warn!(replica = name, %error, "could not record the replica's position");
        }
        self.handle.advanced(&position, oldest_unshipped_ms);

        if let Err(error) = self.replicator.prune().await {
            tracing::warn!(%error, "could not prune the change log");
        }
    }
}

/// The shared state of one replica: its position, its health, and a way to wait for it.
pub struct ReplicaHandle {
    pub name: &'static str,
    state: Mutex<ReplicaState>,
    /// The highest sequence number durably in the replica.
    shipped: watch::Sender<i64>,
    /// Asks the replica for a snapshot now (the S3 replica; others ignore it).
    pub snapshot_requested: Arc<Notify>,
}

#[derive(Debug, Default)]
struct ReplicaState {
    generation: Option<String>,
    /// When the oldest change the replica does not hold yet was made; `None` when level.
    oldest_unshipped_ms: Option<i64>,
    last_success: Option<String>,
    last_error: Option<String>,
    consecutive_failures: u32,
}

impl ReplicaHandle {
    fn new(name: &'static str) -> ReplicaHandle {
        ReplicaHandle {
            name,
            state: Mutex::new(ReplicaState::default()),
            shipped: watch::Sender::new(0),
            snapshot_requested: Arc::new(Notify::new()),
        }
    }

    /// The highest sequence number the replica durably holds.
    pub fn position(&self) -> i64 {
        *self.shipped.borrow()
    }

    /// Sets the starting position without pruning (a task calls this once it knows where
    /// the replica stands).
    pub fn resume(&self, position: &changes::Position, oldest_unshipped_ms: Option<i64>) {
        self.advanced(position, oldest_unshipped_ms);
    }

    fn advanced(&self, position: &changes::Position, oldest_unshipped_ms: Option<i64>) {
        {
            let mut state = lock(&self.state);
            state.generation = position.generation.clone();
            state.oldest_unshipped_ms = oldest_unshipped_ms;
            state.last_success = Some(crate::store::now());
            state.last_error = None;
            state.consecutive_failures = 0;
        }
        crate::store::publish_head(&self.shipped, position.seq);
    }

    /// Notes that changes are waiting since `oldest_unshipped_ms` (lag keeps growing while
    /// the replica is down).
    pub fn pending(&self, oldest_unshipped_ms: Option<i64>) {
        lock(&self.state).oldest_unshipped_ms = oldest_unshipped_ms;
    }

    /// Records a failed attempt; returns how many failed in a row.
    pub fn failed(&self, error: &dyn std::fmt::Display) -> u32 {
        let mut state = lock(&self.state);
        state.last_error = Some(error.to_string());
        state.consecutive_failures += 1;
        state.consecutive_failures
    }

    /// Waits until the replica holds `seq`, or `timeout` passes; true when it does.
    pub async fn wait_for(&self, seq: i64, timeout: Duration) -> bool {
        let mut shipped = self.shipped.subscribe();
        tokio::time::timeout(timeout, shipped.wait_for(|shipped| *shipped >= seq))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    fn report(&self, head: i64, now_ms: i64) -> ReplicaReport {
        let state = lock(&self.state);
        let position = self.position();
        let lag_seconds = state
            .oldest_unshipped_ms
            .filter(|_| head > position)
            .map_or(0.0, |oldest| (now_ms - oldest).max(0) as f64 / 1000.0);
        ReplicaReport {
            name: self.name.to_owned(),
            position,
            lag_changes: (head - position).max(0),
            lag_seconds,
            generation: state.generation.clone(),
            last_success: state.last_success.clone(),
            last_error: state.last_error.clone(),
            consecutive_failures: state.consecutive_failures,
        }
    }
}

/// Replication as the admin status and `/ready` show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplicationReport {
    /// The change log's head: the sequence number of the last committed change.
    pub head: i64,
    pub recovery_point_seconds: u64,
    /// Whether a replica lags further behind than the recovery point.
    pub behind: bool,
    pub replicas: Vec<ReplicaReport>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplicaReport {
    pub name: String,
    /// Every change up to this sequence number is in the replica.
    pub position: i64,
    pub lag_changes: i64,
    /// Age of the oldest change the replica does not hold yet; 0 when it is level.
    pub lag_seconds: f64,
    /// The S3 replica's current lineage of snapshot and segments.
    pub generation: Option<String>,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
}

/// Retry delays: exponential from 250 ms up to 30 s, with up to 50 % random jitter so that
/// many appliances do not hammer a recovering server in step.
pub fn backoff(failures: u32) -> Duration {
    let base_ms = 250u64.saturating_mul(1 << failures.min(7)).min(30_000);
    let mut byte = [0u8; 1];
    let jitter = match getrandom::fill(&mut byte) {
        Ok(()) => base_ms * u64::from(byte[0]) / 510,
        Err(_) => 0,
    };
    Duration::from_millis(base_ms + jitter)
}

/// Without replicas the log only needs to hold changes briefly; prune it once a minute.
async fn prune_unfollowed(store: Store) {
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    loop {
        ticks.tick().await;
        let head = store.change_head();
        if let Err(error) = store
            .write(move |transaction| changes::prune(transaction, head))
            .await
        {
            tracing::warn!(%error, "could not prune the change log");
        }
    }
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
