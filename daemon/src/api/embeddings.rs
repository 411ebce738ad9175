//! `POST /v1/embeddings`, compatible with the OpenAI embeddings API, so that the official
//! SDKs work with `base_url` pointed at the appliance.
//!
//! `input` is a string, an array of strings, an array of token ids, or an array of such
//! arrays. `encoding_format` is `float` or `base64` (little-endian f32 bytes; the Python SDK
//! asks for it when its caller says nothing). `dimensions` is refused unless it is the
//! model's own, since this model's vectors cannot be shortened without changing their meaning.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, post, routes};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::ReadKey;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::request::RequestId;
use crate::infer::{InferError, Input};

pub fn routes() -> Vec<Route> {
    routes![embeddings]
}

/// An OpenAI embeddings request. Other fields are ignored, as OpenAI's own API does.
#[derive(Debug, Deserialize, ToSchema)]
struct EmbeddingsRequest {
    input: RequestInput,
    /// The served model's name (see `/api/v1/info`), optionally prefixed with
    /// `sentence-transformers/`.
    #[schema(example = "all-MiniLM-L6-v2")]
    model: String,
    #[serde(default)]
    encoding_format: EncodingFormat,
    /// Only the model's own dimension count is accepted: its vectors cannot be shortened.
    dimensions: Option<usize>,
    /// Accepted for compatibility and ignored.
    #[serde(default, rename = "user")]
    _user: Option<String>,
}

/// What to embed: one text, several texts, or pre-tokenized input (token ids of the model's
/// vocabulary), one sequence or several. At most `inference.max_inputs_per_request` inputs
/// of at most `inference.max_input_chars` characters (or tokens) each; an empty array is
/// refused (`empty_input`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
enum RequestInput {
    Text(String),
    Texts(Vec<String>),
    TokenIds(Vec<u32>),
    TokenIdLists(Vec<Vec<u32>>),
}

/// How vectors are encoded in the response: JSON numbers, or base64 of little-endian f32.
#[derive(Debug, Default, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Serialize, ToSchema)]
struct EmbeddingsResponse {
    /// Always `list`.
    #[schema(example = "list")]
    object: &'static str,
    /// One embedding per input, in input order.
    data: Vec<EmbeddingItem>,
    /// The served model's name.
    model: String,
    usage: Usage,
}

#[derive(Serialize, ToSchema)]
struct EmbeddingItem {
    /// Always `embedding`.
    #[schema(example = "embedding")]
    object: &'static str,
    /// The input's position in the request.
    index: usize,
    embedding: Vector,
}

/// A vector as `encoding_format` asked for it.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    /// Base64 of the vector's little-endian f32 bytes.
    Base64(String),
}

#[derive(Serialize, ToSchema)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// Names the model is served under: its own and the hub name clients often use.
fn model_matches(requested: &str, served: &str) -> bool {
    requested == served
        || requested
            .strip_prefix("sentence-transformers/")
            .is_some_and(|name| name == served)
}

fn inputs(
    request: RequestInput,
    limits: &crate::config::InferenceConfig,
) -> Result<Vec<Input>, ApiError> {
    let inputs: Vec<Input> = match request {
        RequestInput::Text(text) => vec![Input::Text(text)],
        RequestInput::Texts(texts) => texts.into_iter().map(Input::Text).collect(),
        RequestInput::TokenIds(ids) => vec![Input::TokenIds(ids)],
        RequestInput::TokenIdLists(lists) => lists.into_iter().map(Input::TokenIds).collect(),
    };

    if inputs.is_empty() {
        return Err(ApiError::bad_request(
            "empty_input",
            "`input` holds no inputs",
        ));
    }
    if inputs.len() > limits.max_inputs_per_request as usize {
        return Err(ApiError::new(
            Status::PayloadTooLarge,
            "too_many_inputs",
            format!(
                "{} inputs in one request; the limit is {}",
                inputs.len(),
                limits.max_inputs_per_request
            ),
        ));
    }
    for (index, input) in inputs.iter().enumerate() {
        let too_long = match input {
            Input::Text(text) => text.chars().count() > limits.max_input_chars,
            Input::TokenIds(ids) => ids.len() > limits.max_input_chars,
        };
        if too_long {
            return Err(ApiError::new(
                Status::PayloadTooLarge,
                "input_too_long",
                format!(
                    "input {index} is longer than {} characters",
                    limits.max_input_chars
                ),
            ));
        }
    }
    Ok(inputs)
}

impl From<InferError> for ApiError {
    fn from(error: InferError) -> ApiError {
        let message = error.to_string();
        match error {
            InferError::Disabled => ApiError::new(Status::NotFound, "inference_disabled", message),
            InferError::Loading | InferError::Unavailable(_) => {
                ApiError::new(Status::ServiceUnavailable, "model_not_ready", message)
                    .with_header("Retry-After", "5")
            }
            InferError::QueueFull => ApiError::new(Status::TooManyRequests, "queue_full", message)
                .with_header("Retry-After", "1"),
            InferError::Timeout(_) => {
                ApiError::new(Status::ServiceUnavailable, "inference_timeout", message)
            }
            InferError::InvalidInput { .. } => ApiError::bad_request("invalid_input", message),
            InferError::Failed(_) => ApiError::internal(message),
        }
    }
}

/// Create embeddings (OpenAI-compatible)
///
/// Point an OpenAI SDK's `base_url` at `<daemon>/v1`. The Python SDK asks for `base64` when
/// its caller does not choose an encoding.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    operation_id = "create_embeddings",
    tag = "embeddings",
    security(("api_key" = ["read"])),
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "One embedding per input", body = EmbeddingsResponse),
        (status = 400, description = "Malformed JSON (`malformed_json`, `invalid_utf8`), no \
            input (`empty_input`), an input the model cannot take (`invalid_input`), or \
            unsupported `dimensions`", body = ErrorBody),
        (status = 404, description = "Inference is disabled on this appliance \
            (`inference_disabled`) or `model` is not served (`model_not_found`)",
            body = ErrorBody),
        (status = 413, description = "The body is over the size limit, or too many \
            (`too_many_inputs`) or too long (`input_too_long`) inputs", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The body has the wrong shape (`invalid_body`)",
            body = ErrorBody),
        (status = 429, description = "The inference queue is full (`queue_full`)",
            body = ErrorBody, headers(
                ("Retry-After" = u32, description = "Seconds to wait before retrying"),
            )),
        (status = 503, description = "The model is not ready (`model_not_ready`, with \
            `Retry-After`), the request ran past its deadline (`inference_timeout`), or the \
            store is busy (`store_busy`, with `Retry-After`)", body = ErrorBody, headers(
                ("Retry-After" = u32, description = "Seconds to wait before retrying"),
            )),
    )
)]
#[post("/embeddings", data = "<request>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn embeddings(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: ReadKey,
    request: JsonBody<EmbeddingsRequest>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    let request = request.0;
    let model = state.inference.ready_model()?;
    if !model_matches(&request.model, &model.name) {
        return Err(ApiError::new(
            Status::NotFound,
            "model_not_found",
            format!(
                "model `{}` is not served here; use `{}`",
                request.model, model.name
            ),
        ));
    }
    if let Some(dimensions) = request.dimensions.filter(|&d| d != model.dimensions) {
        return Err(ApiError::bad_request(
            "unsupported_dimensions",
            format!(
                "`dimensions` = {dimensions} is not supported: {} has a fixed {} dimensions",
                model.name, model.dimensions
            ),
        ));
    }
    let inputs = inputs(request.input, &state.inference_limits)?;

    let embeddings = state.inference.embed(inputs).await?;

    let tokens: u64 = embeddings
        .iter()
        .map(|embedding| u64::from(embedding.tokens))
        .sum();
    let data = embeddings
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| {
            let vector = match request.encoding_format {
                EncodingFormat::Float => Vector::Float(embedding.vector.to_vec()),
                EncodingFormat::Base64 => {
                    let bytes: Vec<u8> = embedding
                        .vector
                        .iter()
                        .flat_map(|value| value.to_le_bytes())
                        .collect();
                    Vector::Base64(STANDARD.encode(bytes))
                }
            };
            EmbeddingItem {
                object: "embedding",
                index,
                embedding: vector,
            }
        })
        .collect();

    Ok(Json(EmbeddingsResponse {
        object: "list",
        data,
        model: model.name,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_forms_parse() {
        let parse = |body: &str| {
            serde_json::from_str::<EmbeddingsRequest>(body)
                .unwrap()
                .input
        };
        assert!(matches!(
            parse(r#"{"input": "a", "model": "m"}"#),
            RequestInput::Text(_)
        ));
        assert!(matches!(
            parse(r#"{"input": ["a"], "model": "m"}"#),
            RequestInput::Texts(_)
        ));
        assert!(matches!(
            parse(r#"{"input": [101, 102], "model": "m"}"#),
            RequestInput::TokenIds(_)
        ));
        assert!(matches!(
            parse(r#"{"input": [[101, 102]], "model": "m"}"#),
            RequestInput::TokenIdLists(_)
        ));
    }

    #[test]
    fn hub_names_are_accepted() {
        assert!(model_matches("all-MiniLM-L6-v2", "all-MiniLM-L6-v2"));
        assert!(model_matches(
            "sentence-transformers/all-MiniLM-L6-v2",
            "all-MiniLM-L6-v2"
        ));
        assert!(!model_matches("text-embedding-3-small", "all-MiniLM-L6-v2"));
    }
}
