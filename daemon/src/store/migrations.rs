//! Versioned, forward-only schema migrations, embedded in the binary.
//!
//! Each migration runs in its own transaction together with the row that records it, so a
//! crash mid-migration leaves the previous version intact. A database whose schema is newer
//! than this binary knows (after a downgrade) is refused rather than touched.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::{StoreError, StoreResult};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Append only: an applied migration is never edited.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "change_log",
        sql: include_str!("../../migrations/0002_change_log.sql"),
    },
    Migration {
        version: 3,
        name: "assets",
        sql: include_str!("../../migrations/0003_assets.sql"),
    },
    Migration {
        version: 4,
        name: "replica_blobs",
        sql: include_str!("../../migrations/0004_replica_blobs.sql"),
    },
    Migration {
        version: 5,
        name: "revision_documents_once",
        sql: include_str!("../../migrations/0005_revision_documents_once.sql"),
    },
    Migration {
        version: 6,
        name: "key_projects",
        sql: include_str!("../../migrations/0006_key_projects.sql"),
    },
    Migration {
        version: 7,
        name: "search",
        sql: include_str!("../../migrations/0007_search.sql"),
    },
];

/// The schema version this binary expects.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |migration| migration.version)
}

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// The highest applied version, 0 for a new database.
pub fn current_version(connection: &Connection) -> StoreResult<i64> {
    let ledger_exists: Option<i64> = connection
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if ledger_exists.is_none() {
        return Ok(0);
    }

    let version: Option<i64> =
        connection.query_row("SELECT MAX(version) FROM schema_migrations", [], |row| {
            row.get(0)
        })?;
    Ok(version.unwrap_or(0))
}

/// The migrations not yet applied to this database.
pub fn pending(connection: &Connection) -> StoreResult<Vec<&'static Migration>> {
    let current = current_version(connection)?;
    check_not_newer(current)?;
    Ok(MIGRATIONS
        .iter()
        .filter(|migration| migration.version > current)
        .collect())
}

/// Applies every pending migration; returns how many ran.
pub fn apply(connection: &mut Connection) -> StoreResult<usize> {
    connection.execute(CREATE_LEDGER, [])?;
    let pending = pending(connection)?;

    for migration in &pending {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute_batch(migration.sql)?;
        transaction.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            (migration.version, migration.name, super::now()),
        )?;
        transaction.commit()?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
    }
    Ok(pending.len())
}

fn check_not_newer(current: i64) -> StoreResult<()> {
    let supported = latest_version();
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_in_order() {
        let mut connection = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&mut connection).unwrap(), MIGRATIONS.len());
        assert_eq!(apply(&mut connection).unwrap(), 0);
        assert_eq!(current_version(&connection).unwrap(), latest_version());

        let versions: Vec<i64> = MIGRATIONS
            .iter()
            .map(|migration| migration.version)
            .collect();
        assert!(versions.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut connection = Connection::open_in_memory().unwrap();
        apply(&mut connection).unwrap();
        connection
            .execute(
                "INSERT INTO schema_migrations VALUES (?1, 'from the future', '')",
                [latest_version() + 1],
            )
            .unwrap();

        let error = apply(&mut connection).unwrap_err();
        assert!(matches!(error, StoreError::SchemaTooNew { .. }), "{error}");
    }
}
