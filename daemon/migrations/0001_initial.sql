-- Projects, canvases with their revisions, and API keys.
--
-- Every listed table has an integer `seq` that only grows: list endpoints page by it, so rows
-- inserted while a client pages appear at the end and never shift a page it already read.

CREATE TABLE api_keys (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    scope        TEXT    NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    -- SHA-256 of the secret; the secret itself is shown once and never stored.
    secret_hash  BLOB    NOT NULL UNIQUE,
    -- The first characters of the secret, so an operator can tell keys apart.
    prefix       TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    last_used_at TEXT,
    expires_at   TEXT,
    revoked_at   TEXT
);

CREATE TABLE projects (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    version     INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

CREATE TABLE canvases (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    project_id TEXT    NOT NULL REFERENCES projects (id),
    title      TEXT    NOT NULL,
    -- A JSON object, validated by the API before it gets here.
    document   TEXT    NOT NULL CHECK (json_type(document) = 'object'),
    version    INTEGER NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);

CREATE INDEX canvases_by_project ON canvases (project_id, seq);

-- One row per version of a canvas, the first included; deleting the canvas deletes them.
CREATE TABLE canvas_revisions (
    canvas_id  TEXT    NOT NULL REFERENCES canvases (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    title      TEXT    NOT NULL,
    document   TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    -- Name of the API key that wrote this version.
    author     TEXT,
    PRIMARY KEY (canvas_id, version)
) WITHOUT ROWID;
