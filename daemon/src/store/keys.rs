//! API key records. Only the hash of a secret is stored; see `crate::auth` for the secrets.

use rusqlite::{Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::{StoreError, StoreResult, now};
use crate::auth::{ProjectAccess, Scope};

#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    pub name: String,
    pub scope: Scope,
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub projects: ProjectAccess,
}

/// A key ready to be stored: everything but the secret.
pub struct NewKey<'a> {
    pub name: &'a str,
    pub scope: Scope,
    pub secret_hash: &'a [u8],
    pub prefix: &'a str,
    pub expires_at: Option<&'a str>,
    pub projects: &'a ProjectAccess,
}

const COLUMNS: &str =
    "name, scope, prefix, created_at, last_used_at, expires_at, revoked_at, projects";

fn conversion_error(
    column: usize,
    error: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(error))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    let scope: String = row.get(1)?;
    let projects: Option<String> = row.get(7)?;
    Ok(KeyRecord {
        name: row.get(0)?,
        scope: scope.parse().map_err(|error| conversion_error(1, error))?,
        prefix: row.get(2)?,
        created_at: row.get(3)?,
        last_used_at: row.get(4)?,
        expires_at: row.get(5)?,
        revoked_at: row.get(6)?,
        projects: ProjectAccess::from_json(projects.as_deref())
            .map_err(|error| conversion_error(7, error))?,
    })
}

pub fn insert(tx: &Transaction<'_>, key: &NewKey<'_>) -> StoreResult<KeyRecord> {
    let taken: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM api_keys WHERE name = ?1",
            [key.name],
            |row| row.get(0),
        )
        .optional()?;
    if taken.is_some() {
        return Err(StoreError::Conflict(format!(
            "a key named `{}` already exists",
            key.name
        )));
    }

    tx.execute(
        "INSERT INTO api_keys (name, scope, secret_hash, prefix, created_at, expires_at, projects)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        (
            key.name,
            key.scope.as_str(),
            key.secret_hash,
            key.prefix,
            now(),
            key.expires_at,
            key.projects.to_json(),
        ),
    )?;
    by_name(tx, key.name)
}

pub fn by_name(connection: &Connection, name: &str) -> StoreResult<KeyRecord> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE name = ?1"),
            [name],
            from_row,
        )
        .optional()?
        .ok_or(StoreError::NotFound("key"))
}

/// The key whose secret hashes to `secret_hash`, revoked or expired ones included: the
/// caller decides, so that it can say why a key is refused.
pub fn by_secret_hash(
    connection: &Connection,
    secret_hash: &[u8],
) -> StoreResult<Option<KeyRecord>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE secret_hash = ?1"
    ))?;
    Ok(statement.query_row([secret_hash], from_row).optional()?)
}

pub fn list(connection: &Connection) -> StoreResult<Vec<KeyRecord>> {
    let mut statement =
        connection.prepare(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY seq"))?;
    let keys = statement
        .query_map([], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(keys)
}

/// Revokes a key; revoking a revoked key keeps its first revocation time.
pub fn revoke(tx: &Transaction<'_>, name: &str) -> StoreResult<KeyRecord> {
    by_name(tx, name)?;
    tx.execute(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1",
        (name, now()),
    )?;
    by_name(tx, name)
}

/// A rotated key: the successor under the old name, and the old key's new name and end.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub successor: KeyRecord,
    pub retiring: KeyRecord,
}

/// Rotates key `name` in one transaction: the old key is renamed `<name>~<its created time>`
/// and now expires at `retire_at` (or earlier, if it already did); a successor with the new
/// secret and the same scope and expiry takes the name. Both work until `retire_at`, so
/// clients can switch over.
pub fn rotate(
    tx: &Transaction<'_>,
    name: &str,
    secret_hash: &[u8],
    prefix: &str,
    retire_at: &str,
) -> StoreResult<Rotation> {
    let old = by_name(tx, name)?;
    if old.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "key `{name}` is revoked; create a new key instead"
        )));
    }
    let stamp: String = old
        .created_at
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let retired_name = format!("{name}~{stamp}");
    let retire_at = match old.expires_at.as_deref() {
        Some(expires) if expires < retire_at => expires.to_string(),
        _ => retire_at.to_string(),
    };
    tx.execute(
        "UPDATE api_keys SET name = ?2, expires_at = ?3 WHERE name = ?1",
        (name, &retired_name, &retire_at),
    )?;

    let successor = insert(
        tx,
        &NewKey {
            name,
            scope: old.scope,
            secret_hash,
            prefix,
            expires_at: old.expires_at.as_deref(),
            projects: &old.projects,
        },
    )?;
    Ok(Rotation {
        successor,
        retiring: by_name(tx, &retired_name)?,
    })
}

pub fn touch(tx: &Transaction<'_>, name: &str, at: &str) -> StoreResult<()> {
    tx.execute(
        "UPDATE api_keys SET last_used_at = ?2 WHERE name = ?1",
        (name, at),
    )?;
    Ok(())
}
