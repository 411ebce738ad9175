-- The change log that feeds the replicas (S3 and PostgreSQL).
--
-- Triggers on every replicated table write one row here inside the transaction that makes the
-- change, so a change and its log row commit or roll back together. The triggers are not in
-- this file: the store generates them from the schema at every start (store/changes.rs), so a
-- table added by a later migration is captured without anyone remembering to do it.

CREATE TABLE change_log (
    -- AUTOINCREMENT: a sequence number is never reused, even after the log is pruned, so a
    -- replica's position stays meaningful.
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    table_name TEXT    NOT NULL,
    op         TEXT    NOT NULL CHECK (op IN ('upsert', 'delete')),
    -- JSON object of the primary-key columns.
    row_key    TEXT    NOT NULL,
    -- JSON object of every column after the change; NULL for a delete. BLOB columns are hex.
    row_data   TEXT,
    -- When the change was made, in milliseconds since the Unix epoch.
    at_ms      INTEGER NOT NULL
);

-- How far each replica has durably taken the log. The log is pruned up to the lowest position
-- of the replicas that are configured.
CREATE TABLE replica_positions (
    replica    TEXT    PRIMARY KEY,
    seq        INTEGER NOT NULL,
    -- The S3 replica's current generation (a lineage of snapshot plus segments); else NULL.
    generation TEXT,
    -- The store's schema version the replica last saw; a migration makes it resynchronise.
    schema_version INTEGER NOT NULL,
    updated_at TEXT    NOT NULL
);
