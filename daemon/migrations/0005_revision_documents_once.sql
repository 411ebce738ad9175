-- A canvas's current document is stored once, in `canvases`. Its newest revision row holds
-- NULL instead of a second copy, and receives the document when the canvas moves on to a new
-- version. Before this, every canvas's current document was stored twice.

CREATE TABLE canvas_revisions_new (
    canvas_id  TEXT    NOT NULL REFERENCES canvases (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    title      TEXT    NOT NULL,
    -- NULL for the canvas's current version, whose document is `canvases.document`.
    document   TEXT,
    created_at TEXT    NOT NULL,
    -- Name of the API key that wrote this version.
    author     TEXT,
    PRIMARY KEY (canvas_id, version)
) WITHOUT ROWID;

INSERT INTO canvas_revisions_new (canvas_id, version, title, document, created_at, author)
SELECT revision.canvas_id, revision.version, revision.title,
       CASE WHEN revision.version = canvas.version THEN NULL ELSE revision.document END,
       revision.created_at, revision.author
FROM canvas_revisions AS revision
JOIN canvases AS canvas ON canvas.id = revision.canvas_id;

DROP TABLE canvas_revisions;
ALTER TABLE canvas_revisions_new RENAME TO canvas_revisions;
