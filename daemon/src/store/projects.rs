//! Projects: the containers of canvases (and later assets).

use rusqlite::{Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;
use utoipa::ToSchema;

use super::page::{Page, PageRequest};
use super::{StoreError, StoreResult, check_version, new_id, now};
use crate::auth::ProjectAccess;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Project {
    #[schema(format = "uuid")]
    pub id: String,
    pub name: String,
    pub description: String,
    /// Starts at 1 and grows by one with every change; the `ETag` is this number quoted.
    #[schema(minimum = 1)]
    pub version: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// The fields a client sets on create and update.
#[derive(Debug, Clone)]
pub struct ProjectFields {
    pub name: String,
    pub description: String,
}

const COLUMNS: &str = "seq, id, name, description, version, created_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(i64, Project)> {
    Ok((
        row.get(0)?,
        Project {
            id: row.get(1)?,
            name: row.get(2)?,
            description: row.get(3)?,
            version: row.get(4)?,
            created_at: row.get(5)?,
            updated_at: row.get(6)?,
        },
    ))
}

pub fn create(tx: &Transaction<'_>, fields: &ProjectFields) -> StoreResult<Project> {
    let (id, at) = (new_id(), now());
    tx.execute(
        "INSERT INTO projects (id, name, description, version, created_at, updated_at)
         VALUES (?1, ?2, ?3, 1, ?4, ?4)",
        (&id, &fields.name, &fields.description, &at),
    )?;
    get(tx, &id)
}

pub fn get(connection: &Connection, id: &str) -> StoreResult<Project> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM projects WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?
        .map(|(_, project)| project)
        .ok_or(StoreError::NotFound("project"))
}

/// Fails as if the `what` in project `project_id` did not exist when `access` leaves that
/// project out: a key limited to some projects learns nothing of the others, not even that
/// they exist.
pub fn ensure_visible(
    access: &ProjectAccess,
    project_id: &str,
    what: &'static str,
) -> StoreResult<()> {
    if access.allows(project_id) {
        Ok(())
    } else {
        Err(StoreError::NotFound(what))
    }
}

/// The projects `access` may see, oldest first.
pub fn list(
    connection: &Connection,
    access: &ProjectAccess,
    page: PageRequest,
) -> StoreResult<Page<Project>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM projects
         WHERE seq > ?1 AND (?3 IS NULL OR id IN (SELECT value FROM json_each(?3)))
         ORDER BY seq LIMIT ?2"
    ))?;
    let rows = statement
        .query_map((page.after, page.fetch_limit(), access.to_json()), from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// Replaces the fields of a project whose current version is `expected`.
pub fn update(
    tx: &Transaction<'_>,
    id: &str,
    expected: Option<i64>,
    fields: &ProjectFields,
) -> StoreResult<Project> {
    let current = get(tx, id)?;
    check_version(current.version, expected)?;

    tx.execute(
        "UPDATE projects SET name = ?2, description = ?3, version = version + 1, updated_at = ?4
         WHERE id = ?1",
        (id, &fields.name, &fields.description, now()),
    )?;
    get(tx, id)
}

/// Deletes an empty project. One that still holds canvases or assets is a conflict: deleting
/// a whole project's work in one request is too easy a mistake to allow.
pub fn delete(tx: &Transaction<'_>, id: &str, expected: Option<i64>) -> StoreResult<()> {
    let current = get(tx, id)?;
    check_version(current.version, expected)?;

    let canvases: i64 = tx.query_row(
        "SELECT COUNT(*) FROM canvases WHERE project_id = ?1",
        [id],
        |row| row.get(0),
    )?;
    if canvases > 0 {
        return Err(StoreError::Conflict(format!(
            "project still holds {canvases} canvas(es); delete them first"
        )));
    }

    let assets: i64 = tx.query_row(
        "SELECT COUNT(*) FROM assets WHERE project_id = ?1",
        [id],
        |row| row.get(0),
    )?;
    if assets > 0 {
        return Err(StoreError::Conflict(format!(
            "project still holds {assets} asset(s); delete them first"
        )));
    }

    tx.execute("DELETE FROM projects WHERE id = ?1", [id])?;
    Ok(())
}
