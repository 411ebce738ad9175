-- Asset files the S3 replica already holds. They are stored there by content hash, so once is
-- enough. Not captured by the change log: it describes this host's replica, not the data.
CREATE TABLE replica_blobs (
    sha256      TEXT PRIMARY KEY,
    uploaded_at TEXT NOT NULL
) WITHOUT ROWID;
