//! The change log: every write to a replicated table, captured in the transaction that makes
//! it, and what the replicas need to read, follow and prune it.
//!
//! Capture is done by triggers that this module generates from the live schema each time the
//! store opens ([`install_triggers`]). Generating them, rather than writing them by hand in
//! migrations, means a table added later is captured without anyone remembering to: a table is
//! either captured or named in [`NOT_CAPTURED`], and one with no primary key stops the daemon.
//!
//! A logged row is a JSON object of the row's columns after the change (BLOB columns as hex),
//! and its key is a JSON object of the primary-key columns. Every replica applies the same
//! log in `seq` order: an upsert by key, or a delete by key.

use rusqlite::{Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value};

use super::{StoreError, StoreResult};

/// The entries of the log as segments carry them, and the decoding of their BLOB values:
/// `nexus_formats` owns them, since a restore reads them from the replica.
pub use nexus_formats::segment::{Change, ChangeOp, decode_hex};

/// Tables that are deliberately not captured: the migration ledger (each side migrates its
/// own schema), the log itself, the replicas' bookkeeping (positions, uploaded files) and the
/// search indexer's work list (a restored store is reconciled at start instead).
/// SQLite's internal `sqlite_*` tables are never captured either.
pub const NOT_CAPTURED: &[&str] = &[
    "schema_migrations",
    "change_log",
    "replica_positions",
    "replica_blobs",
    "search_pending",
];

/// Prefix of the generated trigger names; every trigger with it is rebuilt at each start.
const TRIGGER_PREFIX: &str = "capture_";

/// Milliseconds since the Unix epoch, as SQL.
const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// The columns and primary key of a replicated table, read from the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub name: String,
    pub columns: Vec<Column>,
    /// The primary-key columns, in key order.
    pub key: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The declared type, e.g. `INTEGER`, `TEXT`, `BLOB`.
    pub declared_type: String,
    pub not_null: bool,
}

impl Column {
    /// Whether values of this column travel as hex text (JSON cannot hold bytes).
    pub fn is_blob(&self) -> bool {
        self.declared_type.to_ascii_uppercase().contains("BLOB")
    }
}

/// A replica's durable position in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Every change up to and including this sequence number is in the replica.
    pub seq: i64,
    pub generation: Option<String>,
    /// The store's schema version when the position was recorded; after a migration a
    /// replica starts over (a new S3 generation, a PostgreSQL resynchronisation).
    pub schema_version: i64,
}

/// The tables that are captured, with their shapes, in name order.
pub fn replicated_tables(connection: &Connection) -> StoreResult<Vec<TableShape>> {
    let mut statement = connection.prepare(
        "SELECT name FROM sqlite_schema
         WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
         ORDER BY name",
    )?;
    let names = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;

    names
        .into_iter()
        .filter(|name| !NOT_CAPTURED.contains(&name.as_str()))
        .map(|name| table_shape(connection, &name))
        .collect()
}

/// Reads one table's columns and primary key.
pub fn table_shape(connection: &Connection, table: &str) -> StoreResult<TableShape> {
    let mut statement =
        connection.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")?;
    let rows = statement
        .query_map([table], |row| {
            let column = Column {
                name: row.get(0)?,
                declared_type: row.get(1)?,
                not_null: row.get(2)?,
            };
            Ok((column, row.get::<_, i64>(3)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;

    let mut key: Vec<(i64, String)> = rows
        .iter()
        .filter(|(_, position)| *position > 0)
        .map(|(column, position)| (*position, column.name.clone()))
        .collect();
    key.sort();
    if key.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "table {table} has no primary key, so its changes cannot be replicated; give it \
             one or add it to the tables that are not captured"
        )));
    }

    Ok(TableShape {
        name: table.to_owned(),
        columns: rows.into_iter().map(|(column, _)| column).collect(),
        key: key.into_iter().map(|(_, name)| name).collect(),
    })
}

/// Drops every generated capture trigger and creates them again from the current schema, in
/// the caller's transaction. Returns how many tables are captured.
pub fn install_triggers(transaction: &Transaction<'_>) -> StoreResult<usize> {
    let mut statement = transaction
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE ?1 || '%'")?;
    let existing = statement
        .query_map([TRIGGER_PREFIX], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    drop(statement);
    for trigger in existing {
        transaction.execute_batch(&format!("DROP TRIGGER {}", quote(&trigger)))?;
    }

    let tables = replicated_tables(transaction)?;
    for table in &tables {
        transaction.execute_batch(&trigger_sql(table))?;
    }
    Ok(tables.len())
}

/// The three triggers (insert, update, delete) that capture one table.
fn trigger_sql(table: &TableShape) -> String {
    let name = &table.name;
    let quoted = quote(name);
    let literal = name.replace('\'', "''");
    let key = |row: &str| json_object(table, Some(row), true);
    let data = |row: &str| row_json(table, Some(row));
    let insert = format!(
        "INSERT INTO change_log (table_name, op, row_key, row_data, at_ms) VALUES \
         ('{literal}', 'upsert', {}, {}, {NOW_MS});",
        key("NEW"),
        data("NEW")
    );
    // An update that changes the key moves the row: the old key is deleted first.
    let key_changed = table
        .key
        .iter()
        .map(|column| format!("OLD.{0} IS NOT NEW.{0}", quote(column)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let delete = |row: &str| {
        format!(
            "INSERT INTO change_log (table_name, op, row_key, row_data, at_ms) \
             SELECT '{literal}', 'delete', {}, NULL, {NOW_MS}",
            key(row)
        )
    };

    format!(
        "CREATE TRIGGER {insert_trigger} AFTER INSERT ON {quoted} BEGIN {insert} END;
         CREATE TRIGGER {update_trigger} AFTER UPDATE ON {quoted} BEGIN
             {delete_old} WHERE {key_changed};
             {insert}
         END;
         CREATE TRIGGER {delete_trigger} AFTER DELETE ON {quoted} BEGIN {delete_old}; END;",
        insert_trigger = quote(&format!("{TRIGGER_PREFIX}{name}_insert")),
        update_trigger = quote(&format!("{TRIGGER_PREFIX}{name}_update")),
        delete_trigger = quote(&format!("{TRIGGER_PREFIX}{name}_delete")),
        delete_old = delete("OLD"),
    )
}

/// SQL for a row as the change log holds it: `json_object('a', NEW."a", ...)` over every
/// column, of `row` (`NEW`, `OLD`) or of the table being selected from.
pub fn row_json(table: &TableShape, row: Option<&str>) -> String {
    json_object(table, row, false)
}

fn json_object(table: &TableShape, row: Option<&str>, key_only: bool) -> String {
    let arguments = table
        .columns
        .iter()
        .filter(|column| !key_only || table.key.contains(&column.name))
        .map(|column| {
            let value = match row {
                Some(row) => format!("{row}.{}", quote(&column.name)),
                None => quote(&column.name),
            };
            let value = if column.is_blob() {
                format!("iif({value} IS NULL, NULL, hex({value}))")
            } else {
                value
            };
            format!("'{}', {value}", column.name.replace('\'', "''"))
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("json_object({arguments})")
}

/// Quotes an SQL identifier.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The highest sequence number ever assigned (0 for an empty log); it survives pruning.
pub fn head(connection: &Connection) -> StoreResult<i64> {
    let seq: Option<i64> = connection
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'change_log'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0))
}

/// Gives every change logged after `before` in this transaction one time, the latest of
/// them, so that a point-in-time restore takes a transaction whole or not at all. The time
/// never goes below the last logged one, so it grows with the sequence even if the clock
/// steps back.
pub fn stamp_transaction(transaction: &Transaction<'_>, before: i64) -> StoreResult<()> {
    transaction.execute(
        "UPDATE change_log SET at_ms = (
             SELECT MAX(at_ms) FROM change_log
             WHERE seq > ?1 OR seq = (SELECT MAX(seq) FROM change_log WHERE seq <= ?1)
         )
         WHERE seq > ?1",
        [before],
    )?;
    Ok(())
}

/// The lowest sequence number still in the log, if any.
pub fn tail(connection: &Connection) -> StoreResult<Option<i64>> {
    Ok(connection.query_row("SELECT MIN(seq) FROM change_log", [], |row| row.get(0))?)
}

/// Up to `limit` changes after `after`, in order.
pub fn read_after(connection: &Connection, after: i64, limit: usize) -> StoreResult<Vec<Change>> {
    let mut statement = connection.prepare_cached(
        "SELECT seq, table_name, op, row_key, row_data, at_ms FROM change_log
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = statement.query_map((after, limit as i64), |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, Option<String>>(4)?,
            row.get::<_, i64>(5)?,
        ))
    })?;

    rows.map(|row| {
        let (seq, table, op, key, data, at_ms) = row?;
        let op = match op.as_str() {
            "upsert" => ChangeOp::Upsert,
            "delete" => ChangeOp::Delete,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "change {seq} has unknown operation {other:?}"
                )));
            }
        };
        Ok(Change {
            seq,
            table,
            op,
            key: parse_object(seq, &key)?,
            row: data.map(|data| parse_object(seq, &data)).transpose()?,
            at_ms,
        })
    })
    .collect()
}

fn parse_object(seq: i64, text: &str) -> StoreResult<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(StoreError::Corrupt(format!(
            "change {seq} does not hold a JSON object"
        ))),
    }
}

/// The oldest change's time after `after`, in milliseconds; `None` when the replica is level.
pub fn oldest_after(connection: &Connection, after: i64) -> StoreResult<Option<i64>> {
    Ok(connection
        .query_row(
            "SELECT at_ms FROM change_log WHERE seq > ?1 ORDER BY seq LIMIT 1",
            [after],
            |row| row.get(0),
        )
        .optional()?)
}

/// Where `replica` stands, or `None` before it has ever taken anything.
pub fn position(connection: &Connection, replica: &str) -> StoreResult<Option<Position>> {
    Ok(connection
        .query_row(
            "SELECT seq, generation, schema_version FROM replica_positions WHERE replica = ?1",
            [replica],
            |row| {
                Ok(Position {
                    seq: row.get(0)?,
                    generation: row.get(1)?,
                    schema_version: row.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Records that `replica` durably holds everything up to `position.seq`.
pub fn set_position(
    transaction: &Transaction<'_>,
    replica: &str,
    position: &Position,
) -> StoreResult<()> {
    transaction.execute(
        "INSERT INTO replica_positions (replica, seq, generation, schema_version, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (replica) DO UPDATE SET
             seq = excluded.seq, generation = excluded.generation,
             schema_version = excluded.schema_version, updated_at = excluded.updated_at",
        (
            replica,
            position.seq,
            &position.generation,
            position.schema_version,
            super::now(),
        ),
    )?;
    Ok(())
}

/// Forgets a replica that is no longer configured, so it does not hold the log back.
pub fn forget_position(transaction: &Transaction<'_>, replica: &str) -> StoreResult<()> {
    transaction.execute(
        "DELETE FROM replica_positions WHERE replica = ?1",
        [replica],
    )?;
    Ok(())
}

/// Deletes the changes up to and including `up_to`; returns how many went.
pub fn prune(transaction: &Transaction<'_>, up_to: i64) -> StoreResult<usize> {
    Ok(transaction.execute("DELETE FROM change_log WHERE seq <= ?1", [up_to])?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::migrations;

    /// An in-memory store at the latest schema, with the capture triggers installed.
    pub(crate) fn migrated() -> Connection {
        let mut connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("PRAGMA foreign_keys = ON")
            .unwrap();
        migrations::apply(&mut connection).unwrap();
        let transaction = connection.transaction().unwrap();
        install_triggers(&transaction).unwrap();
        transaction.commit().unwrap();
        connection
    }

    /// Every table of the schema is either captured by all three triggers or deliberately
    /// excluded; a new table cannot slip past replication. (Other triggers, such as the
    /// search work list's, may sit beside the capture ones.)
    #[test]
    fn every_table_is_captured_or_deliberately_excluded() {
        let connection = migrated();
        let mut statement = connection
            .prepare(
                "SELECT name FROM sqlite_schema
                 WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            )
            .unwrap();
        let tables: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(tables.len() > NOT_CAPTURED.len());

        for table in tables {
            let triggers: Vec<String> = connection
                .prepare(
                    "SELECT name FROM sqlite_schema
                     WHERE type = 'trigger' AND tbl_name = ?1 AND name LIKE ?2 || '%'",
                )
                .unwrap()
                .query_map([&table, TRIGGER_PREFIX], |row| row.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            if NOT_CAPTURED.contains(&table.as_str()) {
                assert!(
                    triggers.is_empty(),
                    "{table} is excluded but has {triggers:?}"
                );
            } else {
                let mut expected: Vec<String> = ["delete", "insert", "update"]
                    .iter()
                    .map(|op| format!("{TRIGGER_PREFIX}{table}_{op}"))
                    .collect();
                let mut found = triggers;
                found.sort();
                expected.sort();
                assert_eq!(found, expected, "{table}");
            }
        }
    }

    #[test]
    fn inserts_updates_cascades_and_rollbacks_are_logged_exactly() {
        let mut connection = migrated();
        connection
            .execute_batch(
                "INSERT INTO projects (id, name, version, created_at, updated_at)
                     VALUES ('p', 'Brand', 1, 't0', 't0');
                 INSERT INTO canvases (id, project_id, title, document, version, created_at,
                                       updated_at)
                     VALUES ('c', 'p', 'Hero', '{\"a\":1}', 1, 't0', 't0');
                 INSERT INTO canvas_revisions VALUES ('c', 1, 'Hero', '{\"a\":1}', 't0', 'k');
                 UPDATE projects SET name = 'Brand 2' WHERE id = 'p';
                 DELETE FROM canvases WHERE id = 'c';",
            )
            .unwrap();

        // A rolled-back transaction leaves no trace in the log.
        let transaction = connection.transaction().unwrap();
        transaction
            .execute("UPDATE projects SET name = 'never' WHERE id = 'p'", [])
            .unwrap();
        transaction.rollback().unwrap();

        let changes = read_after(&connection, 0, 100).unwrap();
        let summary: Vec<(i64, &str, ChangeOp)> = changes
            .iter()
            .map(|change| (change.seq, change.table.as_str(), change.op))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "projects", ChangeOp::Upsert),
                (2, "canvases", ChangeOp::Upsert),
                (3, "canvas_revisions", ChangeOp::Upsert),
                (4, "projects", ChangeOp::Upsert),
                // The cascade removes the revision before the canvas row goes.
                (5, "canvas_revisions", ChangeOp::Delete),
                (6, "canvases", ChangeOp::Delete),
            ]
        );

        let update = &changes[3];
        assert_eq!(update.key, json_map(r#"{"seq": 1}"#));
        assert_eq!(update.row.as_ref().unwrap()["name"], "Brand 2");
        assert_eq!(
            changes[4].key,
            json_map(r#"{"canvas_id": "c", "version": 1}"#)
        );
        // The document travels as the text the client stored, not re-encoded JSON.
        assert_eq!(changes[1].row.as_ref().unwrap()["document"], r#"{"a":1}"#);
        assert!(
            changes
                .iter()
                .all(|change| change.at_ms > 1_700_000_000_000)
        );
        assert_eq!(head(&connection).unwrap(), 6);
    }

    #[test]
    fn blobs_travel_as_hex_and_a_key_change_deletes_the_old_key() {
        let mut connection = migrated();
        connection
            .execute(
                "INSERT INTO api_keys (name, scope, secret_hash, prefix, created_at)
                 VALUES ('ci', 'read', x'00ff10', 'nc_', 't0')",
                [],
            )
            .unwrap();
        connection
            .execute("UPDATE api_keys SET seq = 42 WHERE name = 'ci'", [])
            .unwrap();

        let changes = read_after(&connection, 0, 100).unwrap();
        assert_eq!(changes[0].row.as_ref().unwrap()["secret_hash"], "00FF10");
        assert_eq!(changes[0].row.as_ref().unwrap()["expires_at"], Value::Null);
        assert_eq!(
            (changes[1].op, &changes[1].key),
            (ChangeOp::Delete, &json_map(r#"{"seq": 1}"#))
        );
        assert_eq!(
            (changes[2].op, &changes[2].key),
            (ChangeOp::Upsert, &json_map(r#"{"seq": 42}"#))
        );

        // Pruning keeps the numbering: the next change continues after the highest ever.
        let transaction = connection.transaction().unwrap();
        assert_eq!(prune(&transaction, 3).unwrap(), 3);
        transaction.commit().unwrap();
        assert_eq!(tail(&connection).unwrap(), None);
        connection
            .execute("DELETE FROM api_keys WHERE name = 'ci'", [])
            .unwrap();
        assert_eq!(read_after(&connection, 0, 10).unwrap()[0].seq, 4);
    }

    #[test]
    fn a_table_without_a_primary_key_is_refused() {
        let mut connection = migrated();
        connection
            .execute_batch("CREATE TABLE loose (a TEXT)")
            .unwrap();
        let transaction = connection.transaction().unwrap();
        let error = install_triggers(&transaction).unwrap_err();
        assert!(error.to_string().contains("loose"), "{error}");
    }

    /// Through the store, every change of one transaction carries the same time, and times
    /// never go down along the log.
    #[test]
    fn a_transaction_is_stamped_with_one_time() {
        let folder = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&crate::store::StoreOptions {
            path: folder.path().join("store.db"),
            readers: 1,
            busy_timeout: std::time::Duration::from_secs(1),
        })
        .unwrap();
        for name in ["a", "b"] {
            store
                .write_blocking(|transaction| {
                    for suffix in 0..3 {
                        transaction.execute(
                            "INSERT INTO projects (id, name, version, created_at, updated_at)
                             VALUES (?1, ?1, 1, 't', 't')",
                            [format!("{name}{suffix}")],
                        )?;
                        std::thread::sleep(std::time::Duration::from_millis(3));
                    }
                    Ok(())
                })
                .unwrap();
        }

        let changes = store
            .read_blocking(|connection| read_after(connection, 0, 10))
            .unwrap();
        let times: Vec<i64> = changes.iter().map(|change| change.at_ms).collect();
        assert_eq!(times.len(), 6);
        assert!(times[..3].iter().all(|at| *at == times[0]), "{times:?}");
        assert!(times[3..].iter().all(|at| *at == times[3]), "{times:?}");
        assert!(times[3] > times[0], "{times:?}");
        assert_eq!(store.change_head(), 6);
    }

    fn json_map(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).unwrap()
    }
}
