//! The search index's rows: one embedding per canvas and asset (`search_vectors`, replicated
//! like every table) and the items whose embedding is still to be computed or dropped
//! (`search_pending`, filled by triggers in the very transaction of each canvas and asset
//! write; see `migrations/0007_search.sql`).
//!
//! Only SQL lives here. What text an item is embedded from, and when the work is done, is
//! `crate::search`'s business.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{StoreResult, now};

/// What kind of item an embedding belongs to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Canvas,
    Asset,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Canvas, Kind::Asset];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Canvas => "canvas",
            Kind::Asset => "asset",
        }
    }

    fn parse(text: &str) -> rusqlite::Result<Kind> {
        match text {
            "canvas" => Ok(Kind::Canvas),
            "asset" => Ok(Kind::Asset),
            other => Err(rusqlite::Error::InvalidColumnType(
                0,
                format!("search kind {other}"),
                rusqlite::types::Type::Text,
            )),
        }
    }

    /// The table holding items of this kind.
    fn table(self) -> &'static str {
        match self {
            Kind::Canvas => "canvases",
            Kind::Asset => "assets",
        }
    }
}

/// The model (and its revision) that made a vector. Vectors of different models, or of
/// different revisions of one model, are never compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    pub name: String,
    pub revision: String,
}

/// The stored fields an item's text is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFields {
    Canvas {
        title: String,
        /// The document as stored: a serialised JSON object.
        document: String,
    },
    Asset {
        file_name: String,
        tags: Vec<String>,
        description: String,
    },
}

/// An item to index, as stored now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: Kind,
    pub id: String,
    pub project_id: String,
    pub fields: SourceFields,
}

/// What is known of an item's stored vector, short of the vector itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub model: ModelId,
    pub text_hash: String,
}

/// An entry of the work list, with the item as it is now (`None`: deleted) and what its stored
/// vector was made from (`None`: it has none).
#[derive(Debug, Clone)]
pub struct PendingItem {
    pub kind: Kind,
    pub item_id: String,
    pub ticket: i64,
    pub force: bool,
    pub attempts: i64,
    pub source: Option<Source>,
    pub stored: Option<Fingerprint>,
}

/// One stored embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVector {
    pub kind: Kind,
    pub item_id: String,
    pub project_id: String,
    pub model: ModelId,
    pub vector: Vec<f32>,
    pub text_hash: String,
    pub snippet: String,
}

/// Which items a count or a search covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `None`: every project.
    pub projects: Option<Vec<String>>,
    pub kinds: Vec<Kind>,
}

impl Scope {
    /// Every item of every project.
    pub fn everything() -> Scope {
        Scope {
            projects: None,
            kinds: Kind::ALL.to_vec(),
        }
    }

    pub fn covers(&self, project_id: &str, kind: Kind) -> bool {
        self.kinds.contains(&kind)
            && self
                .projects
                .as_ref()
                .is_none_or(|projects| projects.iter().any(|id| id == project_id))
    }

    /// The projects as a JSON array for `json_each`, or NULL for all of them.
    fn projects_json(&self) -> Option<String> {
        self.projects
            .as_ref()
            .map(|projects| serde_json::to_string(projects).expect("strings serialise"))
    }
}

/// How far the index is, over some scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Items with a vector of the current model (possibly of an older text, see `pending`).
    pub indexed: u64,
    /// Items whose vector is missing, of another model, or awaits recomputing.
    pub pending: u64,
}

const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// The source columns of each kind, as `source_from_row` reads them from offset 0: project,
/// then the kind's own fields.
fn source_columns(kind: Kind, alias: &str) -> String {
    match kind {
        Kind::Canvas => format!("{alias}.project_id, {alias}.title, {alias}.document"),
        Kind::Asset => {
            format!("{alias}.project_id, {alias}.file_name, {alias}.tags, {alias}.description")
        }
    }
}

/// Reads an item's source from `row` starting at column `at`; `None` when the item is gone
/// (a LEFT JOIN found nothing).
fn source_from_row(
    row: &Row<'_>,
    at: usize,
    kind: Kind,
    id: &str,
) -> rusqlite::Result<Option<Source>> {
    let Some(project_id) = row.get::<_, Option<String>>(at)? else {
        return Ok(None);
    };
    let fields = match kind {
        Kind::Canvas => SourceFields::Canvas {
            title: row.get(at + 1)?,
            document: row.get(at + 2)?,
        },
        Kind::Asset => {
            let tags: String = row.get(at + 2)?;
            let tags = serde_json::from_str(&tags).map_err(|error| {
                rusqlite::Error::FromSqlConversionFailure(
                    at + 2,
                    rusqlite::types::Type::Text,
                    Box::new(error),
                )
            })?;
            SourceFields::Asset {
                file_name: row.get(at + 1)?,
                tags,
                description: row.get(at + 3)?,
            }
        }
    };
    Ok(Some(Source {
        kind,
        id: id.to_owned(),
        project_id,
        fields,
    }))
}

fn fingerprint_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Option<Fingerprint>> {
    let Some(text_hash) = row.get::<_, Option<String>>(at)? else {
        return Ok(None);
    };
    Ok(Some(Fingerprint {
        text_hash,
        model: ModelId {
            name: row.get(at + 1)?,
            revision: row.get(at + 2)?,
        },
    }))
}

/// Up to `limit` work-list entries of `kind` whose retry time has come, oldest first, with
/// each item as it is now and its stored vector's fingerprint.
pub fn due(
    connection: &Connection,
    kind: Kind,
    now_ms: i64,
    limit: usize,
) -> StoreResult<Vec<PendingItem>> {
    let sql = format!(
        "SELECT pending.item_id, pending.ticket, pending.force, pending.attempts,
                vector.text_hash, vector.model, vector.revision, {source}
         FROM search_pending AS pending
         LEFT JOIN {table} AS item ON item.id = pending.item_id
         LEFT JOIN search_vectors AS vector
             ON vector.kind = pending.kind AND vector.item_id = pending.item_id
         WHERE pending.kind = ?1 AND pending.retry_at_ms <= ?2
         ORDER BY pending.retry_at_ms, pending.queued_at_ms
         LIMIT ?3",
        source = source_columns(kind, "item"),
        table = kind.table(),
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map((kind.as_str(), now_ms, limit as i64), |row| {
        let item_id: String = row.get(0)?;
        Ok(PendingItem {
            kind,
            ticket: row.get(1)?,
            force: row.get(2)?,
            attempts: row.get(3)?,
            stored: fingerprint_from_row(row, 4)?,
            source: source_from_row(row, 7, kind, &item_id)?,
            item_id,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Takes an item off the work list if no write has queued it again since `ticket` was read.
/// Returns whether it did: `false` means the item changed and its new state is still pending.
pub fn finish(tx: &Transaction<'_>, kind: Kind, item_id: &str, ticket: i64) -> StoreResult<bool> {
    let removed = tx.execute(
        "DELETE FROM search_pending WHERE kind = ?1 AND item_id = ?2 AND ticket = ?3",
        (kind.as_str(), item_id, ticket),
    )?;
    Ok(removed == 1)
}

/// Records a failed attempt: the item is tried again at `retry_at_ms`. A write of the item
/// since `ticket` already reset its backoff, so then nothing changes.
pub fn defer(
    tx: &Transaction<'_>,
    kind: Kind,
    item_id: &str,
    ticket: i64,
    retry_at_ms: i64,
    error: &str,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE search_pending SET attempts = attempts + 1, retry_at_ms = ?4, last_error = ?5
         WHERE kind = ?1 AND item_id = ?2 AND ticket = ?3",
        (kind.as_str(), item_id, ticket, retry_at_ms, error),
    )?;
    Ok(())
}

/// Adds an item to the work list (or queues it again); `force` recomputes its vector even if
/// the stored one matches its text.
pub fn enqueue(tx: &Transaction<'_>, kind: Kind, item_id: &str, force: bool) -> StoreResult<()> {
    tx.execute(
        &format!(
            "INSERT INTO search_pending (kind, item_id, force, queued_at_ms)
             VALUES (?1, ?2, ?3, {NOW_MS})
             ON CONFLICT (kind, item_id) DO UPDATE SET
                 ticket = ticket + 1, force = max(force, excluded.force), attempts = 0,
                 retry_at_ms = 0, last_error = NULL"
        ),
        (kind.as_str(), item_id, force),
    )?;
    Ok(())
}

/// Queues every item of `kind` for recomputing; returns how many there are.
pub fn enqueue_all(tx: &Transaction<'_>, kind: Kind) -> StoreResult<u64> {
    // `WHERE true`: without it SQLite would read `ON CONFLICT` as part of a join.
    let queued = tx.execute(
        &format!(
            "INSERT INTO search_pending (kind, item_id, force, queued_at_ms)
             SELECT ?1, id, 1, {NOW_MS} FROM {table} WHERE true
             ON CONFLICT (kind, item_id) DO UPDATE SET
                 ticket = ticket + 1, force = 1, attempts = 0, retry_at_ms = 0,
                 last_error = NULL",
            table = kind.table()
        ),
        [kind.as_str()],
    )?;
    Ok(queued as u64)
}

/// Stores (or replaces) an item's vector.
pub fn put_vector(tx: &Transaction<'_>, vector: &StoredVector) -> StoreResult<()> {
    let bytes: Vec<u8> = vector
        .vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    tx.execute(
        "INSERT INTO search_vectors (kind, item_id, project_id, model, revision, dims, vector,
             text_hash, snippet, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (kind, item_id) DO UPDATE SET
             project_id = excluded.project_id, model = excluded.model,
             revision = excluded.revision, dims = excluded.dims, vector = excluded.vector,
             text_hash = excluded.text_hash, snippet = excluded.snippet,
             updated_at = excluded.updated_at",
        rusqlite::params![
            vector.kind.as_str(),
            vector.item_id,
            vector.project_id,
            vector.model.name,
            vector.model.revision,
            vector.vector.len() as i64,
            bytes,
            vector.text_hash,
            vector.snippet,
            now(),
        ],
    )?;
    Ok(())
}

/// Deletes an item's vector; returns whether there was one.
pub fn delete_vector(tx: &Transaction<'_>, kind: Kind, item_id: &str) -> StoreResult<bool> {
    let deleted = tx.execute(
        "DELETE FROM search_vectors WHERE kind = ?1 AND item_id = ?2",
        (kind.as_str(), item_id),
    )?;
    Ok(deleted == 1)
}

/// Deletes the vectors whose item no longer exists (a store restored from elsewhere, or
/// vectors written before their item's deletion was replayed); returns how many went.
pub fn delete_orphans(tx: &Transaction<'_>) -> StoreResult<u64> {
    let mut deleted = 0;
    for kind in Kind::ALL {
        deleted += tx.execute(
            &format!(
                "DELETE FROM search_vectors WHERE kind = ?1 AND NOT EXISTS
                     (SELECT 1 FROM {table} AS item WHERE item.id = search_vectors.item_id)",
                table = kind.table()
            ),
            [kind.as_str()],
        )? as u64;
    }
    Ok(deleted)
}

fn vector_from_row(row: &Row<'_>) -> rusqlite::Result<StoredVector> {
    let kind = Kind::parse(&row.get::<_, String>(0)?)?;
    let bytes: Vec<u8> = row.get(5)?;
    Ok(StoredVector {
        kind,
        item_id: row.get(1)?,
        project_id: row.get(2)?,
        model: ModelId {
            name: row.get(3)?,
            revision: row.get(4)?,
        },
        vector: bytes
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("chunks of four")))
            .collect(),
        text_hash: row.get(6)?,
        snippet: row.get(7)?,
    })
}

const VECTOR_COLUMNS: &str = "vector.kind, vector.item_id, vector.project_id, vector.model, \
     vector.revision, vector.vector, vector.text_hash, vector.snippet";

/// An item's stored vector, if it has one of `model`.
pub fn vector(
    connection: &Connection,
    kind: Kind,
    item_id: &str,
    model: &ModelId,
) -> StoreResult<Option<StoredVector>> {
    Ok(connection
        .query_row(
            &format!(
                "SELECT {VECTOR_COLUMNS} FROM search_vectors AS vector
                 WHERE kind = ?1 AND item_id = ?2 AND model = ?3 AND revision = ?4"
            ),
            (kind.as_str(), item_id, &model.name, &model.revision),
            vector_from_row,
        )
        .optional()?)
}

/// Up to `limit` vectors of `model` whose item exists, after `after` in key order: loading the
/// index page by page.
pub fn vectors_page(
    connection: &Connection,
    model: &ModelId,
    after: Option<&(Kind, String)>,
    limit: usize,
) -> StoreResult<Vec<StoredVector>> {
    let (after_kind, after_id) = match after {
        Some((kind, id)) => (kind.as_str(), id.as_str()),
        None => ("", ""),
    };
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {VECTOR_COLUMNS} FROM search_vectors AS vector
         WHERE vector.model = ?1 AND vector.revision = ?2
           AND (vector.kind, vector.item_id) > (?3, ?4)
           AND CASE vector.kind
               WHEN 'canvas' THEN EXISTS (SELECT 1 FROM canvases WHERE id = vector.item_id)
               ELSE EXISTS (SELECT 1 FROM assets WHERE id = vector.item_id)
           END
         ORDER BY vector.kind, vector.item_id
         LIMIT ?5"
    ))?;
    let rows = statement.query_map(
        (
            &model.name,
            &model.revision,
            after_kind,
            after_id,
            limit as i64,
        ),
        vector_from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Up to `limit` items of `kind` after the row `after_seq`, in row order, each with its stored
/// vector's fingerprint: the reconciliation at start reads the whole store this way.
pub fn sources_page(
    connection: &Connection,
    kind: Kind,
    after_seq: i64,
    limit: usize,
) -> StoreResult<Vec<(i64, Source, Option<Fingerprint>)>> {
    let sql = format!(
        "SELECT item.seq, item.id, vector.text_hash, vector.model, vector.revision, {source}
         FROM {table} AS item
         LEFT JOIN search_vectors AS vector ON vector.kind = ?1 AND vector.item_id = item.id
         WHERE item.seq > ?2 ORDER BY item.seq LIMIT ?3",
        source = source_columns(kind, "item"),
        table = kind.table(),
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map((kind.as_str(), after_seq, limit as i64), |row| {
        let id: String = row.get(1)?;
        let source = source_from_row(row, 5, kind, &id)?.ok_or_else(|| {
            rusqlite::Error::InvalidColumnType(5, "project_id".into(), rusqlite::types::Type::Null)
        })?;
        Ok((row.get(0)?, source, fingerprint_from_row(row, 2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// How many items in `scope` are indexed with `model`, and how many are pending. Exact as of
/// this read: a write committed before it is counted as pending, since its trigger queued it.
pub fn counts(connection: &Connection, model: &ModelId, scope: &Scope) -> StoreResult<Counts> {
    let projects = scope.projects_json();
    let mut counts = Counts::default();
    for kind in &scope.kinds {
        let sql = format!(
            "SELECT count(vector.item_id),
                    count(CASE WHEN pending.item_id IS NOT NULL OR vector.item_id IS NULL
                               THEN 1 END)
             FROM {table} AS item
             LEFT JOIN search_pending AS pending
                 ON pending.kind = ?1 AND pending.item_id = item.id
             LEFT JOIN search_vectors AS vector
                 ON vector.kind = ?1 AND vector.item_id = item.id
                AND vector.model = ?2 AND vector.revision = ?3
             WHERE ?4 IS NULL OR item.project_id IN (SELECT value FROM json_each(?4))",
            table = kind.table()
        );
        let (indexed, pending): (i64, i64) = connection.prepare_cached(&sql)?.query_row(
            (kind.as_str(), &model.name, &model.revision, &projects),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        counts.indexed += indexed as u64;
        counts.pending += pending as u64;
    }
    Ok(counts)
}

/// Vectors made by another model or revision than `model`, waiting to be recomputed.
pub fn stale(connection: &Connection, model: &ModelId) -> StoreResult<u64> {
    let stale: i64 = connection.query_row(
        "SELECT count(*) FROM search_vectors WHERE model != ?1 OR revision != ?2",
        (&model.name, &model.revision),
        |row| row.get(0),
    )?;
    Ok(stale as u64)
}

/// Entries on the work list, deletions included.
pub fn queue_length(connection: &Connection) -> StoreResult<u64> {
    let length: i64 =
        connection.query_row("SELECT count(*) FROM search_pending", [], |row| row.get(0))?;
    Ok(length as u64)
}

/// The project and snippet of each of `items` that still has a vector of `model`: a search
/// confirms its hits with this, so an item deleted a moment ago is never answered.
pub fn hit_details(
    connection: &Connection,
    model: &ModelId,
    items: &[(Kind, String)],
) -> StoreResult<HashMap<(Kind, String), (String, String)>> {
    let mut statement = connection.prepare_cached(
        "SELECT project_id, snippet FROM search_vectors
         WHERE kind = ?1 AND item_id = ?2 AND model = ?3 AND revision = ?4",
    )?;
    let mut found = HashMap::with_capacity(items.len());
    for (kind, id) in items {
        let details = statement
            .query_row((kind.as_str(), id, &model.name, &model.revision), |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .optional()?;
        if let Some(details) = details {
            found.insert((*kind, id.clone()), details);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::changes::{self, tests::migrated};

    fn model() -> ModelId {
        ModelId {
            name: "m".into(),
            revision: "r1".into(),
        }
    }

    fn pending(connection: &Connection) -> Vec<(String, String, i64, bool)> {
        connection
            .prepare("SELECT kind, item_id, ticket, force FROM search_pending ORDER BY 1, 2")
            .unwrap()
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn stored(kind: Kind, id: &str, hash: &str) -> StoredVector {
        StoredVector {
            kind,
            item_id: id.into(),
            project_id: "p".into(),
            model: model(),
            vector: vec![0.6, -0.8, 0.0],
            text_hash: hash.into(),
            snippet: format!("snippet of {id}"),
        }
    }

    fn with_items() -> Connection {
        let connection = migrated();
        connection
            .execute_batch(
                "INSERT INTO projects (id, name, version, created_at, updated_at)
                     VALUES ('p', 'Brand', 1, 't', 't');
                 INSERT INTO canvases (id, project_id, title, document, version, created_at,
                                       updated_at)
                     VALUES ('c', 'p', 'Hero', '{}', 1, 't', 't');
                 INSERT INTO assets (id, project_id, sha256, size, mime, file_name, tags,
                                     uploaded_by, thumbnail_state, created_at, updated_at)
                     VALUES ('a', 'p', printf('%064d', 0), 1, 'image/png', 'logo.png',
                             '[\"dark\"]', 'k', 'pending', 't', 't');",
            )
            .unwrap();
        connection
    }

    /// Every write that changes an item's words queues it in the write's own transaction;
    /// other writes (thumbnails, versions alone) do not.
    #[test]
    fn writes_queue_their_items_and_only_text_changes_count() {
        let connection = with_items();
        let queued = vec![
            ("asset".to_string(), "a".to_string(), 1, false),
            ("canvas".to_string(), "c".to_string(), 1, false),
        ];
        assert_eq!(pending(&connection), queued);

        connection
            .execute_batch(
                "UPDATE assets SET thumbnail_state = 'ready' WHERE id = 'a';
                 UPDATE canvases SET version = 2, title = 'Hero' WHERE id = 'c';",
            )
            .unwrap();
        assert_eq!(pending(&connection), queued);

        connection
            .execute_batch(
                "UPDATE canvases SET document = '{\"text\": \"hi\"}' WHERE id = 'c';
                 UPDATE assets SET tags = '[\"light\"]' WHERE id = 'a';",
            )
            .unwrap();
        let tickets: Vec<i64> = pending(&connection).iter().map(|p| p.2).collect();
        assert_eq!(tickets, [2, 2]);
    }

    #[test]
    fn an_item_leaves_the_list_only_with_its_current_ticket() {
        let mut connection = with_items();
        let due = due(&connection, Kind::Canvas, i64::MAX, 10).unwrap();
        assert_eq!(due.len(), 1);
        let item = &due[0];
        assert!(item.stored.is_none() && !item.force);
        assert_eq!(
            item.source.as_ref().unwrap().fields,
            SourceFields::Canvas {
                title: "Hero".into(),
                document: "{}".into()
            }
        );

        // Written again while it was being embedded: the old ticket no longer takes it off.
        connection
            .execute("UPDATE canvases SET title = 'Hero 2' WHERE id = 'c'", [])
            .unwrap();
        let tx = connection.transaction().unwrap();
        assert!(!finish(&tx, Kind::Canvas, "c", item.ticket).unwrap());
        assert!(finish(&tx, Kind::Canvas, "c", item.ticket + 1).unwrap());
        tx.commit().unwrap();
        assert_eq!(pending(&connection).len(), 1);

        // A failed attempt waits; a new write makes it due again at once.
        let tx = connection.transaction().unwrap();
        defer(&tx, Kind::Asset, "a", 1, i64::MAX - 1, "queue full").unwrap();
        tx.commit().unwrap();
        assert!(
            super::due(&connection, Kind::Asset, 1_000, 10)
                .unwrap()
                .is_empty()
        );
        connection
            .execute("UPDATE assets SET description = 'x' WHERE id = 'a'", [])
            .unwrap();
        assert_eq!(
            super::due(&connection, Kind::Asset, 1_000, 10)
                .unwrap()
                .len(),
            1
        );
    }

    /// Vectors round-trip, travel through the change log as hex, and go with their item.
    #[test]
    fn vectors_are_stored_replicated_counted_and_deleted_with_their_item() {
        let mut connection = with_items();
        let tx = connection.transaction().unwrap();
        put_vector(&tx, &stored(Kind::Canvas, "c", "h1")).unwrap();
        assert!(finish(&tx, Kind::Canvas, "c", 1).unwrap());
        tx.commit().unwrap();

        let read = vector(&connection, Kind::Canvas, "c", &model())
            .unwrap()
            .unwrap();
        assert_eq!(read, stored(Kind::Canvas, "c", "h1"));
        let other = ModelId {
            name: "m".into(),
            revision: "r2".into(),
        };
        assert!(
            vector(&connection, Kind::Canvas, "c", &other)
                .unwrap()
                .is_none()
        );

        let logged = changes::read_after(&connection, 0, 100).unwrap();
        let change = logged
            .iter()
            .find(|change| change.table == "search_vectors")
            .expect("the vector is captured");
        let hex = change.row.as_ref().unwrap()["vector"].as_str().unwrap();
        assert_eq!(
            changes::decode_hex(hex).unwrap(),
            [0.6f32, -0.8, 0.0]
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect::<Vec<u8>>()
        );

        // The canvas is indexed; the asset is still pending. Another revision sees neither.
        let all = counts(&connection, &model(), &Scope::everything()).unwrap();
        assert_eq!(
            all,
            Counts {
                indexed: 1,
                pending: 1
            }
        );
        let only_canvases = Scope {
            projects: Some(vec!["p".into()]),
            kinds: vec![Kind::Canvas],
        };
        let counts_of = |scope: &Scope, model: &ModelId| counts(&connection, model, scope).unwrap();
        assert_eq!(
            counts_of(&only_canvases, &model()),
            Counts {
                indexed: 1,
                pending: 0
            }
        );
        assert_eq!(
            counts_of(&only_canvases, &other),
            Counts {
                indexed: 0,
                pending: 1
            }
        );
        let elsewhere = Scope {
            projects: Some(vec!["q".into()]),
            kinds: Kind::ALL.to_vec(),
        };
        assert_eq!(counts_of(&elsewhere, &model()), Counts::default());
        assert_eq!(stale(&connection, &other).unwrap(), 1);

        let keys = [
            (Kind::Canvas, "c".to_string()),
            (Kind::Asset, "a".to_string()),
        ];
        let details = hit_details(&connection, &model(), &keys).unwrap();
        assert_eq!(details.len(), 1);
        assert_eq!(details[&keys[0]], ("p".into(), "snippet of c".into()));

        connection
            .execute("DELETE FROM canvases WHERE id = 'c'", [])
            .unwrap();
        assert!(
            vector(&connection, Kind::Canvas, "c", &model())
                .unwrap()
                .is_none()
        );
        let due = due(&connection, Kind::Canvas, i64::MAX, 10).unwrap();
        assert!(
            due[0].source.is_none(),
            "the deletion is queued for the index"
        );
    }

    #[test]
    fn a_reindex_forces_every_item_and_pages_cover_the_store() {
        let mut connection = with_items();
        let tx = connection.transaction().unwrap();
        put_vector(&tx, &stored(Kind::Asset, "a", "h")).unwrap();
        put_vector(&tx, &stored(Kind::Asset, "gone", "h")).unwrap();
        assert_eq!(enqueue_all(&tx, Kind::Canvas).unwrap(), 1);
        assert_eq!(enqueue_all(&tx, Kind::Asset).unwrap(), 1);
        tx.commit().unwrap();
        assert!(pending(&connection).iter().all(|(_, _, _, force)| *force));

        // Loading skips vectors whose item is gone; reconciling deletes them.
        let page = vectors_page(&connection, &model(), None, 10).unwrap();
        assert_eq!(page.len(), 1);
        assert!(
            vectors_page(&connection, &model(), Some(&(Kind::Asset, "a".into())), 10)
                .unwrap()
                .is_empty()
        );
        let tx = connection.transaction().unwrap();
        assert_eq!(delete_orphans(&tx).unwrap(), 1);
        tx.commit().unwrap();

        let sources = sources_page(&connection, Kind::Asset, 0, 10).unwrap();
        let (_, source, fingerprint) = &sources[0];
        assert_eq!(
            source.fields,
            SourceFields::Asset {
                file_name: "logo.png".into(),
                tags: vec!["dark".into()],
                description: String::new()
            }
        );
        assert_eq!(fingerprint.as_ref().unwrap().text_hash, "h");
        assert!(
            sources_page(&connection, Kind::Asset, sources[0].0, 10)
                .unwrap()
                .is_empty()
        );
    }
}
