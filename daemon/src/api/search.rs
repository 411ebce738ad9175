//! `POST /api/v1/search`: semantic search over the canvases and assets a key may see, and
//! `POST /api/v1/admin/search/reindex`, which has every embedding recomputed.
//!
//! The request is checked whole before the model is asked anything, so a bad request gets
//! its 400 whether or not the model is ready. A key limited to some projects searches only
//! those; naming another project answers the same 404 as an unknown one.

use rocket::fairing::{Fairing, Info, Kind as FairingKind};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Orbit, Rocket, Route, State, post, routes};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{AdminKey, ReadKey};
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::request::RequestId;
use crate::auth::ProjectAccess;
use crate::search::{MAX_RESULTS, Query, Reindexed, SearchError, SearchHit};
use crate::store::projects;
use crate::store::search::{Kind, Scope};

pub fn routes() -> Vec<Route> {
    routes![search]
}

/// Mounted under `/api/v1/admin`.
pub fn admin_routes() -> Vec<Route> {
    routes![reindex]
}

/// Longest query, in characters: the model reads about a thousand characters at most.
const MAX_QUERY_CHARS: usize = 1000;
const DEFAULT_RESULTS: usize = 10;

/// Starts the search indexer once the server is up.
pub struct SearchFairing;

#[rocket::async_trait]
impl Fairing for SearchFairing {
    fn info(&self) -> Info {
        Info {
            name: "search indexer",
            kind: FairingKind::Liftoff,
        }
    }

    async fn on_liftoff(&self, rocket: &Rocket<Orbit>) {
        if let Some(state) = rocket.state::<AppState>() {
            state.search.spawn();
        }
    }
}

/// A semantic search.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    /// What to look for, in words: 1 to 1000 characters once leading and trailing white
    /// space is trimmed.
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"\S",
        example = "dark logo"
    )]
    query: String,
    /// Only this project's canvases and assets.
    #[schema(format = "uuid")]
    project: Option<String>,
    /// Only these kinds of item; both when absent.
    #[schema(min_items = 1)]
    kinds: Option<Vec<Kind>>,
    /// How many hits at most: 1 to 100, 10 when absent.
    // Read as any number, so that 0, 101 or 2.5 get this route's own 400.
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 100)]
    k: Option<f64>,
    /// Leave out hits scoring below this cosine similarity (-1 to 1).
    #[schema(minimum = -1.0, maximum = 1.0)]
    min_score: Option<f64>,
}

/// The request, checked.
struct Checked {
    query: String,
    project: Option<String>,
    kinds: Vec<Kind>,
    k: usize,
    min_score: Option<f32>,
}

impl SearchRequest {
    fn check(self) -> Result<Checked, ApiError> {
        let query = self.query.trim().to_string();
        if query.is_empty() {
            return Err(ApiError::bad_request(
                "empty_query",
                "`query` holds no words",
            ));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::bad_request(
                "query_too_long",
                format!("`query` is longer than {MAX_QUERY_CHARS} characters"),
            ));
        }

        let project = self
            .project
            .map(|project| {
                uuid::Uuid::try_parse(&project)
                    .map(|id| id.hyphenated().to_string())
                    .map_err(|_| ApiError::bad_request("invalid_id", "`project` is not a valid id"))
            })
            .transpose()?;

        let mut kinds = self.kinds.unwrap_or_else(|| Kind::ALL.to_vec());
        kinds.sort();
        kinds.dedup();
        if kinds.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_kinds",
                "`kinds` must name at least one of `canvas` and `asset`",
            ));
        }

        let k = match self.k {
            None => DEFAULT_RESULTS,
            Some(k) if k.fract() == 0.0 && (1.0..=MAX_RESULTS as f64).contains(&k) => k as usize,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_k",
                    format!("`k` must be a whole number from 1 to {MAX_RESULTS}"),
                ));
            }
        };

        let min_score = match self.min_score {
            None => None,
            Some(score) if (-1.0..=1.0).contains(&score) => Some(score as f32),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_min_score",
                    "`min_score` must be from -1 to 1",
                ));
            }
        };

        Ok(Checked {
            query,
            project,
            kinds,
            k,
            min_score,
        })
    }
}

#[derive(Serialize, ToSchema)]
struct SearchResponse {
    /// Best first.
    hits: Vec<SearchHit>,
    /// The model whose embeddings were compared.
    #[schema(example = "all-MiniLM-L6-v2")]
    model: String,
    /// The model's revision: vectors of other revisions are never compared.
    revision: String,
    /// Items of the searched scope that are not indexed yet (new, changed, or being
    /// recomputed). While above 0, the hits may miss them or reflect their older text.
    pending: u64,
}

impl From<SearchError> for ApiError {
    fn from(error: SearchError) -> ApiError {
        let message = error.to_string();
        match error {
            // As `/v1/embeddings` answers: on this server the feature does not exist, which
            // no retry changes (and a fuzzer rightly counts any 5xx as a server fault).
            SearchError::Disabled => ApiError::new(Status::NotFound, "inference_disabled", message),
            SearchError::ModelNotReady(_) => {
                ApiError::new(Status::ServiceUnavailable, "model_not_ready", message)
                    .with_header("Retry-After", "5")
            }
            SearchError::IndexLoading => {
                ApiError::new(Status::ServiceUnavailable, "index_loading", message)
                    .with_header("Retry-After", "1")
            }
            SearchError::QueueFull => ApiError::new(Status::TooManyRequests, "queue_full", message)
                .with_header("Retry-After", "1"),
            SearchError::Timeout(_) => {
                ApiError::new(Status::ServiceUnavailable, "inference_timeout", message)
            }
            SearchError::InvalidQuery(_) => ApiError::bad_request("invalid_query", message),
            SearchError::Store(error) => error.into(),
            SearchError::Failed(_) => ApiError::internal(message),
        }
    }
}

/// Search canvases and assets by meaning
///
/// Embeds `query` with the served model and compares it with the embedding of every canvas
/// (its title and the text in its document) and asset (its file name, tags and description)
/// that the key may see: exact cosine similarity, best first. Items are embedded in the
/// background after each write; `pending` says how many of the searched ones are not yet.
#[utoipa::path(
    post,
    path = "/api/v1/search",
    operation_id = "search",
    tag = "search",
    security(("api_key" = ["read"])),
    request_body = SearchRequest,
    responses(
        (status = 200, description = "The best hits, best first", body = SearchResponse),
        (status = 400, description = "Malformed JSON (`malformed_json`, `invalid_utf8`), an \
            empty (`empty_query`), too long (`query_too_long`) or unusable (`invalid_query`) \
            query, or an invalid `project` (`invalid_id`), `kinds` (`invalid_kinds`), `k` \
            (`invalid_k`) or `min_score` (`invalid_min_score`)", body = ErrorBody),
        (status = 404, description = "No such project, or one the key may not see \
            (`not_found`), or inference is disabled on this server (`inference_disabled`)",
            body = ErrorBody),
        (status = 413, description = "The body is over the size limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The body has the wrong shape (`invalid_body`)",
            body = ErrorBody),
        (status = 429, description = "The inference queue is full (`queue_full`)",
            body = ErrorBody, headers(
                ("Retry-After" = u32, description = "Seconds to wait before retrying"),
            )),
        (status = 503, description = "Search cannot answer now: the model is not ready \
            (`model_not_ready`), the index is loading (`index_loading`), embedding the query \
            ran past its deadline (`inference_timeout`), or the store is busy (`store_busy`)",
            body = ErrorBody,
            headers(
                ("Retry-After" = u32, description = "Seconds to wait before retrying"),
            )),
    )
)]
#[post("/search", data = "<request>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn search(
    state: &State<AppState>,
    request_id: RequestId,
    caller: ReadKey,
    request: JsonBody<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let checked = request.0.check()?;

    let projects = match checked.project {
        Some(project_id) => {
            projects::ensure_visible(&caller.0.projects, &project_id, "project")?;
            let id = project_id.clone();
            state
                .store
                .read(move |connection| projects::get(connection, &id))
                .await?;
            Some(vec![project_id])
        }
        None => match &caller.0.projects {
            ProjectAccess::All => None,
            ProjectAccess::Only(ids) => Some(ids.clone()),
        },
    };

    let found = state
        .search
        .search(Query {
            text: checked.query,
            scope: Scope {
                projects,
                kinds: checked.kinds,
            },
            k: checked.k,
            min_score: checked.min_score,
        })
        .await?;
    Ok(Json(SearchResponse {
        hits: found.hits,
        model: found.model.name,
        revision: found.model.revision,
        pending: found.pending,
    }))
}

/// Recompute every search embedding
///
/// Queues every canvas and asset for embedding again (after a model change, or to repair the
/// index) and answers at once; the indexer works through them in the background, while
/// searches go on with the current vectors. The admin status (`search`) shows the progress.
#[utoipa::path(
    post,
    path = "/api/v1/admin/search/reindex",
    operation_id = "reindex_search",
    tag = "admin",
    security(("api_key" = ["admin"])),
    responses(
        (status = 202, description = "Queued", body = Reindexed),
    )
)]
#[post("/search/reindex")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn reindex(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: AdminKey,
) -> Result<(Status, Json<Reindexed>), ApiError> {
    let reindexed = state.search.reindex().await?;
    Ok((Status::Accepted, Json(reindexed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: serde_json::Value) -> Result<Checked, (u16, &'static str)> {
        serde_json::from_value::<SearchRequest>(body)
            .expect("the body has the right shape")
            .check()
            .map_err(|error| (error.status.code, error.code))
    }

    #[test]
    fn a_request_is_checked_whole() {
        let checked = check(serde_json::json!({"query": "  dark logo "}))
            .ok()
            .unwrap();
        assert_eq!(checked.query, "dark logo");
        assert_eq!((checked.k, checked.kinds.len()), (10, 2));
        assert!(checked.project.is_none() && checked.min_score.is_none());

        let checked = check(serde_json::json!({
            "query": "x", "k": 100, "kinds": ["asset", "asset"], "min_score": -1,
            "project": "6F9619FF-8B86-D011-B42D-00C04FC964FF"
        }))
        .ok()
        .unwrap();
        assert_eq!((checked.k, checked.kinds), (100, vec![Kind::Asset]));
        assert_eq!(
            checked.project.as_deref(),
            Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        );

        for (body, code) in [
            (serde_json::json!({"query": " \n "}), "empty_query"),
            (
                serde_json::json!({"query": "é".repeat(1001)}),
                "query_too_long",
            ),
            (serde_json::json!({"query": "x", "k": 0}), "invalid_k"),
            (serde_json::json!({"query": "x", "k": 101}), "invalid_k"),
            (serde_json::json!({"query": "x", "k": 2.5}), "invalid_k"),
            (serde_json::json!({"query": "x", "k": -3}), "invalid_k"),
            (
                serde_json::json!({"query": "x", "kinds": []}),
                "invalid_kinds",
            ),
            (
                serde_json::json!({"query": "x", "min_score": 1.5}),
                "invalid_min_score",
            ),
            (
                serde_json::json!({"query": "x", "project": "p1"}),
                "invalid_id",
            ),
        ] {
            assert_eq!(check(body.clone()).err(), Some((400, code)), "{body}");
        }
        assert!(check(serde_json::json!({"query": "é".repeat(1000)})).is_ok());
    }
}
