-- Brand assets: what is known of each uploaded file. The bytes are not in the database: they
-- are stored once per distinct content under <data_dir>/assets/sha256/, named by the SHA-256
-- in `sha256`. Several assets may name the same bytes (the same logo uploaded twice); the file
-- is removed when the last asset naming it is deleted.

CREATE TABLE assets (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    project_id      TEXT    NOT NULL REFERENCES projects (id),
    -- Lower-case hex SHA-256 of the bytes; the strong ETag of the content.
    sha256          TEXT    NOT NULL CHECK (length(sha256) = 64),
    size            INTEGER NOT NULL CHECK (size >= 0),
    -- Sniffed from the bytes on upload, never taken from the client.
    mime            TEXT    NOT NULL,
    file_name       TEXT    NOT NULL,
    -- A JSON array of strings.
    tags            TEXT    NOT NULL DEFAULT '[]' CHECK (json_type(tags) = 'array'),
    description     TEXT    NOT NULL DEFAULT '',
    -- Of raster images, as their header states; NULL for other types.
    width           INTEGER,
    height          INTEGER,
    -- Name of the API key that uploaded it.
    uploaded_by     TEXT    NOT NULL,
    thumbnail_state TEXT    NOT NULL
        CHECK (thumbnail_state IN ('unsupported', 'pending', 'ready', 'failed')),
    -- Why thumbnails could not be made, when `thumbnail_state` is 'failed'.
    thumbnail_error TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);

CREATE INDEX assets_by_project ON assets (project_id, seq);
-- Reference counting of the files, and serving them by hash.
CREATE INDEX assets_by_sha256 ON assets (sha256);
