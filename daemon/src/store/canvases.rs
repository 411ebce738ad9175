//! Canvases (a title and a JSON document, versioned) and their revisions.
//!
//! Every write of a canvas, its creation included, adds a revision row in the same
//! transaction, so the revision history is exactly the sequence of versions ever served.

use rusqlite::{Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::page::{Page, PageRequest};
use super::{StoreError, StoreResult, check_version, new_id, now};

/// A canvas with its document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Canvas {
    #[serde(flatten)]
    pub summary: CanvasSummary,
    /// The JSON object the client stored.
    #[schema(value_type = Object)]
    pub document: Value,
}

/// A canvas without its document, as lists show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CanvasSummary {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(format = "uuid")]
    pub project_id: String,
    pub title: String,
    /// Starts at 1 and grows by one with every change; the `ETag` is this number quoted.
    #[schema(minimum = 1)]
    pub version: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// One stored version of a canvas.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Revision {
    #[serde(flatten)]
    pub summary: RevisionSummary,
    /// The canvas's document as of this version.
    #[schema(value_type = Object)]
    pub document: Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevisionSummary {
    #[schema(format = "uuid")]
    pub canvas_id: String,
    #[schema(minimum = 1)]
    pub version: i64,
    pub title: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The name of the API key that wrote this version.
    pub author: Option<String>,
}

/// What a client writes: a title and a document (a serialised JSON object).
#[derive(Debug, Clone)]
pub struct CanvasFields {
    pub title: String,
    pub document: String,
}

const SUMMARY_COLUMNS: &str = "seq, id, project_id, title, version, created_at, updated_at";

fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, CanvasSummary)> {
    Ok((
        row.get(0)?,
        CanvasSummary {
            id: row.get(1)?,
            project_id: row.get(2)?,
            title: row.get(3)?,
            version: row.get(4)?,
            created_at: row.get(5)?,
            updated_at: row.get(6)?,
        },
    ))
}

/// Parses a stored document; the API only ever stores valid JSON objects.
fn document(text: String) -> rusqlite::Result<Value> {
    serde_json::from_str(&text).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
    })
}

pub fn create(
    tx: &Transaction<'_>,
    project_id: &str,
    fields: &CanvasFields,
    author: &str,
) -> StoreResult<Canvas> {
    super::projects::get(tx, project_id)?;

    let (id, at) = (new_id(), now());
    tx.execute(
        "INSERT INTO canvases (id, project_id, title, document, version, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
        (&id, project_id, &fields.title, &fields.document, &at),
    )?;
    record_revision(tx, &id, 1, &fields.title, &at, author)?;
    get(tx, &id)
}

pub fn get(connection: &Connection, id: &str) -> StoreResult<Canvas> {
    connection
        .query_row(
            &format!("SELECT {SUMMARY_COLUMNS}, document FROM canvases WHERE id = ?1"),
            [id],
            |row| {
                Ok(Canvas {
                    summary: summary_from_row(row)?.1,
                    document: document(row.get(7)?)?,
                })
            },
        )
        .optional()?
        .ok_or(StoreError::NotFound("canvas"))
}

/// The project a canvas belongs to.
pub fn project_of(connection: &Connection, id: &str) -> StoreResult<String> {
    connection
        .query_row(
            "SELECT project_id FROM canvases WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .optional()?
        .ok_or(StoreError::NotFound("canvas"))
}

pub fn list(
    connection: &Connection,
    project_id: &str,
    page: PageRequest,
) -> StoreResult<Page<CanvasSummary>> {
    super::projects::get(connection, project_id)?;

    let mut statement = connection.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM canvases
         WHERE project_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    let rows = statement
        .query_map(
            (project_id, page.after, page.fetch_limit()),
            summary_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// Replaces title and document of a canvas whose current version is `expected`, keeping the
/// new version as a revision.
pub fn update(
    tx: &Transaction<'_>,
    id: &str,
    expected: Option<i64>,
    fields: &CanvasFields,
    author: &str,
) -> StoreResult<Canvas> {
    let current = get(tx, id)?.summary.version;
    check_version(current, expected)?;

    // The version being replaced keeps its document in its revision row from now on.
    tx.execute(
        "UPDATE canvas_revisions
         SET document = (SELECT document FROM canvases WHERE id = ?1)
         WHERE canvas_id = ?1 AND version = ?2",
        (id, current),
    )?;

    let (version, at) = (current + 1, now());
    tx.execute(
        "UPDATE canvases SET title = ?2, document = ?3, version = ?4, updated_at = ?5
         WHERE id = ?1",
        (id, &fields.title, &fields.document, version, &at),
    )?;
    record_revision(tx, id, version, &fields.title, &at, author)?;
    get(tx, id)
}

/// Deletes a canvas and its revisions.
pub fn delete(tx: &Transaction<'_>, id: &str, expected: Option<i64>) -> StoreResult<()> {
    let current = get(tx, id)?.summary.version;
    check_version(current, expected)?;

    tx.execute("DELETE FROM canvases WHERE id = ?1", [id])?;
    Ok(())
}

/// Records a new current version. Its document is the canvas's own until a later version
/// replaces it (see [`update`]), so it is not stored a second time here.
fn record_revision(
    tx: &Transaction<'_>,
    canvas_id: &str,
    version: i64,
    title: &str,
    at: &str,
    author: &str,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO canvas_revisions (canvas_id, version, title, document, created_at, author)
         VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
        (canvas_id, version, title, at, author),
    )?;
    Ok(())
}

/// Revisions of a canvas, oldest first; the cursor is the last version seen.
pub fn revisions(
    connection: &Connection,
    canvas_id: &str,
    page: PageRequest,
) -> StoreResult<Page<RevisionSummary>> {
    get(connection, canvas_id)?;

    let mut statement = connection.prepare_cached(
        "SELECT version, canvas_id, title, created_at, author FROM canvas_revisions
         WHERE canvas_id = ?1 AND version > ?2 ORDER BY version LIMIT ?3",
    )?;
    let rows = statement
        .query_map((canvas_id, page.after, page.fetch_limit()), |row| {
            Ok((
                row.get(0)?,
                RevisionSummary {
                    version: row.get(0)?,
                    canvas_id: row.get(1)?,
                    title: row.get(2)?,
                    created_at: row.get(3)?,
                    author: row.get(4)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, page.limit))
}

pub fn revision(connection: &Connection, canvas_id: &str, version: i64) -> StoreResult<Revision> {
    connection
        .query_row(
            "SELECT revision.canvas_id, revision.version, revision.title, revision.created_at,
                    revision.author, coalesce(revision.document, canvas.document)
             FROM canvas_revisions AS revision
             JOIN canvases AS canvas ON canvas.id = revision.canvas_id
             WHERE revision.canvas_id = ?1 AND revision.version = ?2",
            (canvas_id, version),
            |row| {
                Ok(Revision {
                    summary: RevisionSummary {
                        canvas_id: row.get(0)?,
                        version: row.get(1)?,
                        title: row.get(2)?,
                        created_at: row.get(3)?,
                        author: row.get(4)?,
                    },
                    document: document(row.get(5)?)?,
                })
            },
        )
        .optional()?
        .ok_or(StoreError::NotFound("revision"))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::store::migrations::{self, MIGRATIONS};
    use crate::store::projects::{self, ProjectFields};

    fn fields(title: &str, document: &str) -> CanvasFields {
        CanvasFields {
            title: title.to_string(),
            document: document.to_string(),
        }
    }

    fn stored_documents(connection: &Connection, canvas_id: &str) -> Vec<Option<String>> {
        connection
            .prepare("SELECT document FROM canvas_revisions WHERE canvas_id = ?1 ORDER BY version")
            .unwrap()
            .query_map([canvas_id], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn every_version_reads_back_and_the_current_document_is_stored_once() {
        let mut connection = Connection::open_in_memory().unwrap();
        migrations::apply(&mut connection).unwrap();
        let tx = connection.transaction().unwrap();
        let project = projects::create(
            &tx,
            &ProjectFields {
                name: "p".into(),
                description: String::new(),
            },
        )
        .unwrap();

        let canvas = create(&tx, &project.id, &fields("one", r#"{"v":1}"#), "k").unwrap();
        let id = canvas.summary.id;
        update(&tx, &id, Some(1), &fields("two", r#"{"v":2}"#), "k").unwrap();
        update(&tx, &id, Some(2), &fields("three", r#"{"v":3}"#), "k").unwrap();

        for (version, title, value) in [(1, "one", 1), (2, "two", 2), (3, "three", 3)] {
            let revision = revision(&tx, &id, version).unwrap();
            assert_eq!(revision.summary.title, title);
            assert_eq!(revision.document, serde_json::json!({ "v": value }));
        }
        assert_eq!(
            stored_documents(&tx, &id),
            [
                Some(r#"{"v":1}"#.to_string()),
                Some(r#"{"v":2}"#.to_string()),
                None
            ]
        );
    }

    #[test]
    fn the_migration_keeps_past_documents_and_drops_the_current_copy() {
        let connection = Connection::open_in_memory().unwrap();
        let before = MIGRATIONS
            .iter()
            .position(|migration| migration.name == "revision_documents_once")
            .unwrap();
        for migration in &MIGRATIONS[..before] {
            connection.execute_batch(migration.sql).unwrap();
        }
        connection
            .execute_batch(
                "INSERT INTO projects VALUES (1, 'p', 'p', '', 1, 't', 't');
                 INSERT INTO canvases VALUES (1, 'c', 'p', 'two', '{\"v\":2}', 2, 't', 't');
                 INSERT INTO canvas_revisions VALUES ('c', 1, 'one', '{\"v\":1}', 't', 'k');
                 INSERT INTO canvas_revisions VALUES ('c', 2, 'two', '{\"v\":2}', 't', 'k');",
            )
            .unwrap();

        connection.execute_batch(MIGRATIONS[before].sql).unwrap();

        assert_eq!(
            stored_documents(&connection, "c"),
            [Some(r#"{"v":1}"#.to_string()), None]
        );
        assert_eq!(
            revision(&connection, "c", 2).unwrap().document,
            serde_json::json!({ "v": 2 })
        );
    }
}
