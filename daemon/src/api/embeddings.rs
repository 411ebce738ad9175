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
use serde_json::{Value, json};

use super::AppState;
use super::auth::ReadKey;
use super::body::JsonBody;
use super::error::ApiError;
use super::request::RequestId;
use crate::infer::{InferError, Input};

pub fn routes() -> Vec<Route> {
    routes![embeddings]
}

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    input: RequestInput,
    model: String,
    #[serde(default)]
    encoding_format: EncodingFormat,
    dimensions: Option<usize>,
    /// Accepted for compatibility and ignored.
    #[serde(default, rename = "user")]
    _user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RequestInput {
    Text(String),
    Texts(Vec<String>),
    TokenIds(Vec<u32>),
    TokenIdLists(Vec<Vec<u32>>),
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Serialize)]
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

#[post("/embeddings", data = "<request>")]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
async fn embeddings(
    state: &State<AppState>,
    request_id: RequestId,
    _caller: ReadKey,
    request: JsonBody<EmbeddingsRequest>,
) -> Result<Json<Value>, ApiError> {
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
    let data: Vec<Value> = embeddings
        .iter()
        .enumerate()
        .map(|(index, embedding)| {
            let vector = match request.encoding_format {
                EncodingFormat::Float => json!(embedding.vector),
                EncodingFormat::Base64 => {
                    let bytes: Vec<u8> = embedding
                        .vector
                        .iter()
                        .flat_map(|value| value.to_le_bytes())
                        .collect();
                    json!(STANDARD.encode(bytes))
                }
            };
            json!({ "object": "embedding", "index": index, "embedding": vector })
        })
        .collect();

    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model.name,
        "usage": Usage { prompt_tokens: tokens, total_tokens: tokens },
    })))
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
