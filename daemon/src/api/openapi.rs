//! The OpenAPI 3.1 description of the whole HTTP API, served at `GET /api/v1/openapi.json`.
//!
//! It is generated from the code: each handler carries its `#[utoipa::path]` (method, path,
//! parameters, status codes, headers) and the request and response types derive their schemas,
//! so a changed type changes the document. What every authenticated route shares (401, 403,
//! `store_busy`) and the `X-Request-Id` header of every answer are added here, once, by
//! [`CommonResponses`]. A unit test checks that the mounted routes and the documented ones are
//! the same set, so a route cannot be added without describing it.

use std::collections::BTreeMap;

use rocket::serde::json::Json;
use rocket::{Route, State, get, routes};
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Object, OpenApi as Document, Ref, RefOr, Response, Schema, Type};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use super::{AppState, admin, assets, canvases, embeddings, health, metrics, projects, search};
use crate::config::LimitsConfig;

pub fn routes() -> Vec<Route> {
    routes![document]
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Nexus Canvas API",
        version = env!("CARGO_PKG_VERSION"),
        description = "The appliance's HTTP API: projects, canvases and their revisions, \
            OpenAI-compatible embeddings, and operator routes.\n\n\
            Authenticate with an API key as `Authorization: Bearer <key>`; each route names \
            the scope it needs (`read`, `write` or `admin`; a wider scope includes the \
            narrower). Every answer carries an `X-Request-Id` header (a client's own, when it \
            sent a short, safe one) and every error answers \
            `{\"error\": {\"code\", \"message\", \"request_id\"}}`."
    ),
    paths(
        health::health,
        health::ready,
        health::info,
        document,
        projects::create,
        projects::list,
        projects::get,
        projects::update,
        projects::remove,
        canvases::create,
        canvases::list,
        canvases::get,
        canvases::update,
        canvases::remove,
        canvases::revisions,
        canvases::revision,
        assets::upload,
        assets::list,
        assets::get,
        assets::remove,
        assets::content,
        assets::thumbnail,
        assets::blob,
        embeddings::embeddings,
        search::search,
        admin::status,
        admin::integrity,
        admin::reload_config,
        admin::request_snapshot,
        search::reindex,
        metrics::metrics,
    ),
    components(schemas(ErrorBody)),
    modifiers(&CommonResponses),
    tags(
        (name = "service", description = "Liveness, readiness, build information, this document"),
        (name = "projects", description = "Projects: the containers of canvases"),
        (name = "canvases", description = "Canvases (JSON documents) and their revisions"),
        (name = "assets", description = "Brand assets: uploaded files, stored once per content, \
            with thumbnails of images"),
        (name = "embeddings", description = "Text embeddings, compatible with OpenAI's API"),
        (name = "search", description = "Semantic search over canvases and assets"),
        (name = "admin", description = "Operator routes, for `admin` keys"),
    )
)]
pub struct ApiDoc;

/// The name of the security scheme the routes' `security(...)` refer to.
const API_KEY: &str = "api_key";

/// This document
///
/// Served without authentication, so that tools can discover the API. The `limit` parameters
/// carry this daemon's configured page sizes.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi_document",
    tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
#[get("/openapi.json")]
fn document(state: &State<AppState>) -> Json<Document> {
    let mut document = ApiDoc::openapi();
    describe_page_limits(&mut document, &state.limits);
    Json(document)
}

/// Registers the bearer scheme, adds the answers every authenticated route can give, and the
/// `X-Request-Id` header that the request fairing puts on every answer.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key, created with `nexus-canvasd keys create`, sent as \
                         `Authorization: Bearer <key>`",
                    ))
                    .build(),
            ),
        );

        for item in document.paths.paths.values_mut() {
            for operation in operations(item) {
                let authenticated = operation
                    .security
                    .as_ref()
                    .is_some_and(|requirements| !requirements.is_empty());
                if authenticated {
                    add_auth_responses(&mut operation.responses.responses);
                }
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .insert("X-Request-Id".into(), RefOr::T(request_id_header()));
                    }
                }
            }
        }
    }
}

fn add_auth_responses(responses: &mut BTreeMap<String, RefOr<Response>>) {
    let unauthorized = error_response(
        "No usable API key: none sent (`missing_api_key`), or one that is unknown, revoked, \
         expired or malformed (`invalid_api_key`)",
    )
    .header(
        "WWW-Authenticate",
        Header::builder()
            .schema(Some(Object::with_type(Type::String)))
            .description(Some("`Bearer`"))
            .build(),
    );
    responses.insert("401".into(), unauthorized.build().into());
    responses.insert(
        "403".into(),
        error_response(
            "The key's scope does not allow this route (`forbidden`), or a key limited to \
             some projects tried to create one (`key_limited_to_projects`)",
        )
        .build()
        .into(),
    );
    // A route may describe its own 503 (e.g. a model not ready); the store one still applies.
    responses.entry("503".into()).or_insert_with(|| {
        error_response("The store is busy (`store_busy`); retry after `Retry-After` seconds")
            .header("Retry-After", retry_after_header())
            .build()
            .into()
    });
}

fn error_response(description: &str) -> utoipa::openapi::ResponseBuilder {
    Response::builder().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name(ErrorBody::name()))),
    )
}

fn retry_after_header() -> Header {
    Header::builder()
        .schema(Some(Object::with_type(Type::Integer)))
        .description(Some("Seconds to wait before retrying"))
        .build()
}

fn request_id_header() -> Header {
    Header::builder()
        .schema(Some(Object::with_type(Type::String)))
        .description(Some(
            "The request's id, to find its log lines: the client's own `X-Request-Id` when it \
             was at most 128 safe characters, else a new one",
        ))
        .build()
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Sets the `limit` query parameters' maximum and default to this daemon's configuration.
fn describe_page_limits(document: &mut Document, limits: &LimitsConfig) {
    for item in document.paths.paths.values_mut() {
        for operation in operations(item) {
            let parameters = operation.parameters.iter_mut().flatten();
            for parameter in parameters {
                let RefOr::T(parameter) = parameter else {
                    continue;
                };
                if parameter.name != "limit" || parameter.parameter_in != ParameterIn::Query {
                    continue;
                }
                if let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema {
                    set_page_limits(schema, limits);
                }
            }
        }
    }
}

fn set_page_limits(schema: &mut Object, limits: &LimitsConfig) {
    schema.maximum = Some(limits.max_page_size.into());
    schema.default = Some(limits.default_page_size.into());
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::config::Config;
    use crate::infer::Inference;
    use crate::store::{Store, StoreOptions};
    use crate::telemetry::Telemetry;

    /// Every route `build` mounts, as (method, OpenAPI path): `<id>` becomes `{id}` and the
    /// query part goes. The CORS preflight answers OPTIONS on every path; it is protocol, not
    /// API, so it is left out.
    fn mounted_routes() -> BTreeSet<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None).unwrap();
        config.inference.enabled = false;
        config.store.data_dir = dir.path().to_path_buf();
        let store = Store::open(&StoreOptions {
            path: config.database_path(),
            readers: 1,
            busy_timeout: Duration::from_secs(1),
        })
        .unwrap();
        let telemetry = Arc::new(Telemetry::new(&config.alerts));
        let inference = Inference::start(
            &config.inference,
            telemetry.metrics.inference.clone(),
            || {},
        );

        let replicator =
            crate::replicate::Replicator::new(&config.replication, store.clone()).unwrap();
        let rocket = super::super::build(&config, store, inference, telemetry, replicator);
        rocket
            .routes()
            .filter(|route| route.method != rocket::http::Method::Options)
            .map(|route| {
                let path: Vec<String> = route
                    .uri
                    .path()
                    .split('/')
                    .map(|segment| match segment.strip_prefix('<') {
                        Some(name) => format!("{{{}}}", name.trim_end_matches('>')),
                        None => segment.to_string(),
                    })
                    .collect();
                (route.method.as_str().to_lowercase(), path.join("/"))
            })
            .collect()
    }

    fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
        const METHODS: [&str; 8] = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|key| METHODS.contains(&key.as_str()))
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect()
    }

    #[test]
    fn every_mounted_route_is_documented_and_every_documented_one_is_mounted() {
        let mounted = mounted_routes();
        let documented = documented_routes(&serde_json::to_value(ApiDoc::openapi()).unwrap());

        let undocumented: Vec<_> = mounted.difference(&documented).collect();
        let unmounted: Vec<_> = documented.difference(&mounted).collect();
        assert!(
            undocumented.is_empty(),
            "routes without #[utoipa::path] (or missing from ApiDoc's paths): {undocumented:?}"
        );
        assert!(
            unmounted.is_empty(),
            "documented routes that are not mounted: {unmounted:?}"
        );
    }

    #[test]
    fn operation_ids_are_unique() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut seen = BTreeSet::new();
        for (method, path) in documented_routes(&document) {
            let id = document["paths"][&path][&method]["operationId"]
                .as_str()
                .unwrap();
            assert!(seen.insert(id.to_string()), "{method} {path}: `{id}` again");
        }
    }

    #[test]
    fn every_error_answer_has_the_error_body() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let error_body = json!({ "$ref": "#/components/schemas/ErrorBody" });
        for (method, path) in documented_routes(&document) {
            let responses = document["paths"][&path][&method]["responses"]
                .as_object()
                .unwrap();
            for (status, response) in responses {
                assert!(
                    response["headers"]["X-Request-Id"].is_object(),
                    "{method} {path} {status}: no X-Request-Id header"
                );
                // `/ready` answers 503 with its readiness report, not an error; a 304 has no
                // body at all.
                if status.starts_with('2') || status == "304" || path == "/ready" {
                    continue;
                }
                assert_eq!(
                    response["content"]["application/json"]["schema"], error_body,
                    "{method} {path} {status}"
                );
            }
        }
    }

    #[test]
    fn authenticated_routes_name_the_scheme_and_answer_401() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let scheme = &document["components"]["securitySchemes"][API_KEY];
        assert_eq!(
            (&scheme["type"], &scheme["scheme"]),
            (&json!("http"), &json!("bearer"))
        );
        let public = ["/health", "/ready", "/api/v1/openapi.json"];
        for (method, path) in documented_routes(&document) {
            let operation = &document["paths"][&path][&method];
            let secured = operation["security"][0].get(API_KEY).is_some();
            assert_eq!(secured, !public.contains(&path.as_str()), "{method} {path}");
            assert_eq!(
                operation["responses"].get("401").is_some(),
                secured,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn limits_follow_the_configuration() {
        let mut document = ApiDoc::openapi();
        let limits = Config::load(None).unwrap().limits;
        describe_page_limits(&mut document, &limits);
        let document = serde_json::to_value(document).unwrap();

        let parameters = document["paths"]["/api/v1/projects"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let limit = parameters
            .iter()
            .find(|parameter| parameter["name"] == "limit")
            .unwrap();
        assert_eq!(limit["schema"]["maximum"], limits.max_page_size);
        assert_eq!(limit["schema"]["default"], limits.default_page_size);
        assert_eq!(limit["schema"]["minimum"], 1);
    }
}
