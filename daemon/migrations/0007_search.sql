-- Semantic search: one embedding per canvas and per asset, and the list of items whose
-- embedding is still to be computed (see daemon/src/search/).
--
-- `search_vectors` is replicated like every other table (change capture sends its BLOBs as
-- hex), so a store restored from S3 or promoted from PostgreSQL comes back with its vectors.
-- Each vector names the model and revision that made it: the daemon serves only vectors of the
-- model it runs, and recomputes the others.
--
-- `search_pending` is the indexer's work list. The triggers below add an item to it in the
-- transaction that writes the canvas or asset, so no write escapes the indexer, whichever code
-- path (API, CLI, restore) makes it. It is this store's own bookkeeping and is not replicated
-- (store/changes.rs, NOT_CAPTURED): a restored store is reconciled when the daemon starts.
--
-- A later migration that rebuilds `canvases` or `assets` drops these triggers with the table
-- and must create them again.

CREATE TABLE search_vectors (
    kind       TEXT    NOT NULL CHECK (kind IN ('canvas', 'asset')),
    item_id    TEXT    NOT NULL,
    project_id TEXT    NOT NULL,
    model      TEXT    NOT NULL,
    revision   TEXT    NOT NULL,
    dims       INTEGER NOT NULL CHECK (dims > 0),
    -- `dims` little-endian f32 values of a unit-length vector.
    vector     BLOB    NOT NULL CHECK (length(vector) = 4 * dims),
    -- SHA-256 (lower-case hex) of the text that was embedded; a start compares it with the
    -- item's current text to find vectors that are out of date.
    text_hash  TEXT    NOT NULL,
    -- The start of the embedded text, served with each hit.
    snippet    TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (kind, item_id)
) WITHOUT ROWID;

CREATE TABLE search_pending (
    kind         TEXT    NOT NULL CHECK (kind IN ('canvas', 'asset')),
    item_id      TEXT    NOT NULL,
    -- Grows with every write of the item: the indexer takes an item off the list only if the
    -- ticket it read is still current, so a write made while it was embedding is not lost.
    ticket       INTEGER NOT NULL DEFAULT 1,
    -- 1: recompute even when the stored vector matches the text (a reindex).
    force        INTEGER NOT NULL DEFAULT 0 CHECK (force IN (0, 1)),
    queued_at_ms INTEGER NOT NULL,
    -- Failed attempts at this item, and when the next may run (ms since the Unix epoch).
    attempts     INTEGER NOT NULL DEFAULT 0,
    retry_at_ms  INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    PRIMARY KEY (kind, item_id)
) WITHOUT ROWID;

-- The indexer takes due items, oldest first.
CREATE INDEX search_pending_due ON search_pending (retry_at_ms, queued_at_ms);

-- A new write resets the item's backoff: the new text may well embed where the old one failed.
CREATE TRIGGER search_canvas_insert AFTER INSERT ON canvases BEGIN
    INSERT INTO search_pending (kind, item_id, queued_at_ms)
    VALUES ('canvas', NEW.id, CAST(unixepoch('subsec') * 1000 AS INTEGER))
    ON CONFLICT (kind, item_id) DO UPDATE SET
        ticket = ticket + 1, attempts = 0, retry_at_ms = 0, last_error = NULL;
END;

CREATE TRIGGER search_canvas_update AFTER UPDATE OF project_id, title, document ON canvases
WHEN OLD.project_id IS NOT NEW.project_id OR OLD.title IS NOT NEW.title
    OR OLD.document IS NOT NEW.document
BEGIN
    INSERT INTO search_pending (kind, item_id, queued_at_ms)
    VALUES ('canvas', NEW.id, CAST(unixepoch('subsec') * 1000 AS INTEGER))
    ON CONFLICT (kind, item_id) DO UPDATE SET
        ticket = ticket + 1, attempts = 0, retry_at_ms = 0, last_error = NULL;
END;

-- The vector goes with its item at once; the pending entry tells the running index to forget it.
CREATE TRIGGER search_canvas_delete AFTER DELETE ON canvases BEGIN
    DELETE FROM search_vectors WHERE kind = 'canvas' AND item_id = OLD.id;
    INSERT INTO search_pending (kind, item_id, queued_at_ms)
    VALUES ('canvas', OLD.id, CAST(unixepoch('subsec') * 1000 AS INTEGER))
    ON CONFLICT (kind, item_id) DO UPDATE SET
        ticket = ticket + 1, attempts = 0, retry_at_ms = 0, last_error = NULL;
END;

CREATE TRIGGER search_asset_insert AFTER INSERT ON assets BEGIN
    INSERT INTO search_pending (kind, item_id, queued_at_ms)
    VALUES ('asset', NEW.id, CAST(unixepoch('subsec') * 1000 AS INTEGER))
    ON CONFLICT (kind, item_id) DO UPDATE SET
        ticket = ticket + 1, attempts = 0, retry_at_ms = 0, last_error = NULL;
END;

-- Thumbnail bookkeeping updates other columns and does not touch the index.
CREATE TRIGGER search_asset_update
AFTER UPDATE OF project_id, file_name, tags, description ON assets
WHEN OLD.project_id IS NOT NEW.project_id OR OLD.file_name IS NOT NEW.file_name
    OR OLD.tags IS NOT NEW.tags OR OLD.description IS NOT NEW.description
BEGIN
    INSERT INTO search_pending (kind, item_id, queued_at_ms)
    VALUES ('asset', NEW.id, CAST(unixepoch('subsec') * 1000 AS INTEGER))
    ON CONFLICT (kind, item_id) DO UPDATE SET
        ticket = ticket + 1, attempts = 0, retry_at_ms = 0, last_error = NULL;
END;

CREATE TRIGGER search_asset_delete AFTER DELETE ON assets BEGIN
    DELETE FROM search_vectors WHERE kind = 'asset' AND item_id = OLD.id;
    INSERT INTO search_pending (kind, item_id, queued_at_ms)
    VALUES ('asset', OLD.id, CAST(unixepoch('subsec') * 1000 AS INTEGER))
    ON CONFLICT (kind, item_id) DO UPDATE SET
        ticket = ticket + 1, attempts = 0, retry_at_ms = 0, last_error = NULL;
END;
