//! Assets: the metadata rows of uploaded files (the bytes live on disk, see `crate::assets`),
//! and the queries the file side needs: which contents are still referenced, and the state of
//! their thumbnails.
//!
//! Thumbnails belong to the content, not to a row: every row naming the same bytes shares one
//! set of thumbnail files, so their state is settled for all those rows at once.

use rusqlite::{Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;
use utoipa::ToSchema;

use super::page::{Page, PageRequest};
use super::{StoreError, StoreResult, new_id, now};
use crate::auth::ProjectAccess;

/// An asset's metadata, as served.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Asset {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(format = "uuid")]
    pub project_id: String,
    /// Lower-case hex SHA-256 of the bytes: the content's `ETag` and its `/api/v1/blobs/` name.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// In bytes.
    pub size: i64,
    /// Sniffed from the bytes on upload.
    #[schema(example = "image/png")]
    pub mime: String,
    pub file_name: String,
    pub tags: Vec<String>,
    pub description: String,
    /// Of raster images (PNG, JPEG, WebP, GIF), as their header states.
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// The name of the API key that uploaded it.
    pub uploaded_by: String,
    pub thumbnail_state: ThumbnailState,
    /// Why thumbnails could not be made (`thumbnail_state` is `failed`).
    pub thumbnail_error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// Where an asset's thumbnails stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ThumbnailState {
    /// Not a raster image this appliance decodes (SVG, AVIF, fonts, video, PDF).
    Unsupported,
    /// Being made in the background.
    Pending,
    Ready,
    /// The image could not be decoded, or is too large to (a decompression bomb).
    Failed,
}

impl ThumbnailState {
    fn as_str(self) -> &'static str {
        match self {
            ThumbnailState::Unsupported => "unsupported",
            ThumbnailState::Pending => "pending",
            ThumbnailState::Ready => "ready",
            ThumbnailState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> rusqlite::Result<ThumbnailState> {
        match text {
            "unsupported" => Ok(ThumbnailState::Unsupported),
            "pending" => Ok(ThumbnailState::Pending),
            "ready" => Ok(ThumbnailState::Ready),
            "failed" => Ok(ThumbnailState::Failed),
            other => Err(rusqlite::Error::InvalidColumnType(
                0,
                format!("thumbnail_state {other}"),
                rusqlite::types::Type::Text,
            )),
        }
    }
}

/// A new asset's row; the id and times are the store's.
#[derive(Debug, Clone)]
pub struct NewAsset {
    pub project_id: String,
    pub sha256: String,
    pub size: u64,
    pub mime: String,
    pub file_name: String,
    pub tags: Vec<String>,
    pub description: String,
    pub dimensions: Option<(u32, u32)>,
    pub uploaded_by: String,
    /// `Pending` for an image to make thumbnails of, else `Unsupported`.
    pub thumbnails: ThumbnailState,
}

/// Narrows a listing.
#[derive(Debug, Clone, Default)]
pub struct AssetFilter {
    /// A prefix of the MIME type: `image/`, `font/`, `image/png`.
    pub mime_prefix: Option<String>,
    /// Assets carrying this tag.
    pub tag: Option<String>,
}

const COLUMNS: &str = "seq, id, project_id, sha256, size, mime, file_name, tags, description, \
    width, height, uploaded_by, thumbnail_state, thumbnail_error, created_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(i64, Asset)> {
    let tags: String = row.get(7)?;
    let tags = serde_json::from_str(&tags).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(error))
    })?;
    Ok((
        row.get(0)?,
        Asset {
            id: row.get(1)?,
            project_id: row.get(2)?,
            sha256: row.get(3)?,
            size: row.get(4)?,
            mime: row.get(5)?,
            file_name: row.get(6)?,
            tags,
            description: row.get(8)?,
            width: row.get(9)?,
            height: row.get(10)?,
            uploaded_by: row.get(11)?,
            thumbnail_state: ThumbnailState::parse(&row.get::<_, String>(12)?)?,
            thumbnail_error: row.get(13)?,
            created_at: row.get(14)?,
            updated_at: row.get(15)?,
        },
    ))
}

/// Inserts an asset. Bytes already known from another asset bring their thumbnails' settled
/// state along, so a second upload of a logo does not wait for thumbnails that exist.
pub fn create(tx: &Transaction<'_>, new: &NewAsset) -> StoreResult<Asset> {
    super::projects::get(tx, &new.project_id)?;

    let (mut state, mut error) = (new.thumbnails, None);
    if state == ThumbnailState::Pending
        && let Some((settled, why)) = settled_thumbnails(tx, &new.sha256)?
    {
        (state, error) = (settled, why);
    }

    let (id, at) = (new_id(), now());
    let tags = serde_json::to_string(&new.tags).expect("a list of strings serialises");
    let (width, height) = new.dimensions.unzip();
    tx.execute(
        "INSERT INTO assets (id, project_id, sha256, size, mime, file_name, tags, description,
             width, height, uploaded_by, thumbnail_state, thumbnail_error, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
        rusqlite::params![
            id,
            new.project_id,
            new.sha256,
            new.size as i64,
            new.mime,
            new.file_name,
            tags,
            new.description,
            width,
            height,
            new.uploaded_by,
            state.as_str(),
            error,
            at,
        ],
    )?;
    get(tx, &id)
}

fn settled_thumbnails(
    connection: &Connection,
    sha256: &str,
) -> StoreResult<Option<(ThumbnailState, Option<String>)>> {
    let settled = connection
        .query_row(
            "SELECT thumbnail_state, thumbnail_error FROM assets
             WHERE sha256 = ?1 AND thumbnail_state IN ('ready', 'failed') LIMIT 1",
            [sha256],
            |row| {
                let state = ThumbnailState::parse(&row.get::<_, String>(0)?)?;
                Ok((state, row.get(1)?))
            },
        )
        .optional()?;
    Ok(settled)
}

pub fn get(connection: &Connection, id: &str) -> StoreResult<Asset> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM assets WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?
        .map(|(_, asset)| asset)
        .ok_or(StoreError::NotFound("asset"))
}

/// A project's assets, oldest first, narrowed by `filter`.
pub fn list(
    connection: &Connection,
    project_id: &str,
    filter: &AssetFilter,
    page: PageRequest,
) -> StoreResult<Page<Asset>> {
    super::projects::get(connection, project_id)?;

    // `substr` rather than LIKE: a prefix holding `%` or `_` must match itself only.
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM assets
         WHERE project_id = ?1 AND seq > ?2
           AND (?3 IS NULL OR substr(mime, 1, length(?3)) = ?3)
           AND (?4 IS NULL OR EXISTS (SELECT 1 FROM json_each(assets.tags) AS tag
                                      WHERE tag.value = ?4))
         ORDER BY seq LIMIT ?5"
    ))?;
    let rows = statement
        .query_map(
            rusqlite::params![
                project_id,
                page.after,
                filter.mime_prefix,
                filter.tag,
                page.fetch_limit()
            ],
            from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// Deletes an asset's row; returns the hash of its bytes, which may now be unreferenced.
pub fn delete(tx: &Transaction<'_>, id: &str) -> StoreResult<String> {
    let asset = get(tx, id)?;
    tx.execute("DELETE FROM assets WHERE id = ?1", [id])?;
    Ok(asset.sha256)
}

/// Whether any asset names the bytes with this hash.
pub fn is_referenced(connection: &Connection, sha256: &str) -> StoreResult<bool> {
    let found: Option<i64> = connection
        .query_row(
            "SELECT 1 FROM assets WHERE sha256 = ?1 LIMIT 1",
            [sha256],
            |row| row.get(0),
        )
        .optional()?;
    Ok(found.is_some())
}

/// Every hash some asset names.
pub fn referenced_hashes(connection: &Connection) -> StoreResult<Vec<String>> {
    let mut statement = connection.prepare("SELECT DISTINCT sha256 FROM assets")?;
    let hashes = statement
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(hashes)
}

/// The MIME type of the bytes with this hash, if an asset in a project `access` may see names
/// them.
pub fn mime_of_blob(
    connection: &Connection,
    sha256: &str,
    access: &ProjectAccess,
) -> StoreResult<String> {
    connection
        .query_row(
            "SELECT mime FROM assets
             WHERE sha256 = ?1
               AND (?2 IS NULL OR project_id IN (SELECT value FROM json_each(?2)))
             LIMIT 1",
            (sha256, access.to_json()),
            |row| row.get(0),
        )
        .optional()?
        .ok_or(StoreError::NotFound("blob"))
}

/// Contents whose thumbnails are still to be made, with their MIME type (after a restart, the
/// background work that was under way).
pub fn pending_thumbnails(connection: &Connection) -> StoreResult<Vec<(String, String)>> {
    let mut statement = connection
        .prepare("SELECT DISTINCT sha256, mime FROM assets WHERE thumbnail_state = 'pending'")?;
    let pending = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(pending)
}

/// Records how making the thumbnails of some content ended, for every pending asset naming
/// it: `Ok` when they are on disk, else the reason. Returns how many assets changed.
pub fn settle_thumbnails(
    tx: &Transaction<'_>,
    sha256: &str,
    outcome: Result<(), &str>,
) -> StoreResult<usize> {
    let (state, error) = match outcome {
        Ok(()) => (ThumbnailState::Ready, None),
        Err(why) => (ThumbnailState::Failed, Some(why)),
    };
    let changed = tx.execute(
        "UPDATE assets SET thumbnail_state = ?2, thumbnail_error = ?3, updated_at = ?4
         WHERE sha256 = ?1 AND thumbnail_state = 'pending'",
        (sha256, state.as_str(), error, now()),
    )?;
    Ok(changed)
}
