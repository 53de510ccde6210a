//! The OpenAPI 3.1 documents: `GET /openapi.json` for the API, `GET /admin/openapi.json` for the
//! admin listener. They are generated from the handlers' `#[utoipa::path]` annotations and the
//! wire types' `ToSchema` derives, and the routers themselves are built from the same annotations
//! (`utoipa_axum::routes!` takes each route's path and method from them), so a route cannot be
//! served undocumented and the document cannot name a route that is not served.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::Modify;

use crate::anthropic::error::AnthropicErrorResponse;
use crate::openai::error::ErrorResponse;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "rill",
        description = "An OpenAI-compatible LLM server: chat completions, completions, the Responses API, \
            Anthropic's Messages API, files and batches, tokenization, health and metrics.\n\n\
            When the server runs with API keys, send one as `Authorization: Bearer KEY` \
            (or `x-api-key: KEY` on `/v1/messages`)."
    ),
    components(schemas(ErrorResponse, AnthropicErrorResponse)),
    modifiers(&Conventions),
    tags(
        (name = "inference", description = "Generation and the models it can use."),
        (name = "batch", description = "Files and the Batch API (with `--data-dir`)."),
        (name = "operations", description = "Health, readiness, metrics, this document and the web UI."),
    )
)]
pub struct PublicApi;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "rill admin",
        description = "Loading, unloading, versioning and routing models, drift and usage. Served on the \
            admin listener (`--admin-port`) only; with keys, an `admin`-scoped key is required."
    ),
    components(schemas(ErrorResponse)),
    modifiers(&Conventions),
    tags((name = "admin", description = "Model lifecycle."))
)]
pub struct AdminApi;

/// What every operation shares, added once here rather than on each handler: errors in the
/// endpoint's own shape (Anthropic's on `/v1/messages`, OpenAI's elsewhere) and the optional
/// bearer key.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("An API key from `--api-keys` / `--api-key-file`.")).build();
        components.add_security_scheme("api_key", SecurityScheme::Http(bearer));
        // A server without keys takes requests without one: the empty requirement says so.
        doc.security = Some(vec![SecurityRequirement::new("api_key", Vec::<String>::new()), SecurityRequirement::default()]);
    }
}

/// Adds the error responses to every operation of `doc` (called once the routes are in it).
pub fn add_error_responses(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let schema = if path == "/v1/messages" { "AnthropicErrorResponse" } else { "ErrorResponse" };
        let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
        for op in operations.into_iter().flatten() {
            add_errors(op, schema);
        }
    }
}

fn add_errors(op: &mut Operation, schema: &str) {
    for (status, description) in [("4XX", "The request was refused: bad input, no such model or object, a missing key, a limit."), ("5XX", "The server could not serve it (overloaded: retry after `Retry-After`).")] {
        let content = ContentBuilder::new().schema(Some(RefOr::Ref(Ref::from_schema_name(schema)))).build();
        let response = ResponseBuilder::new().description(description).content("application/json", content).build();
        op.responses.responses.entry(status.to_string()).or_insert(RefOr::T(response));
    }
}

/// The document as served, rendered once.
#[derive(Clone)]
pub struct Document(Arc<str>);

impl Document {
    /// From a router's collected document (`OpenApiRouter::with_openapi(PublicApi::openapi())`).
    pub fn new(mut doc: OpenApi) -> Document {
        add_error_responses(&mut doc);
        Document(doc.to_pretty_json().unwrap_or_default().into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn response(&self) -> impl IntoResponse {
        ([(header::CONTENT_TYPE, "application/json")], self.0.to_string())
    }
}

#[utoipa::path(get, path = "/openapi.json", operation_id = "getOpenApiDocument", tag = "operations", security(()),
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object)))]
pub async fn public_document(Extension(doc): Extension<Document>) -> impl IntoResponse {
    doc.response()
}

#[utoipa::path(get, path = "/admin/openapi.json", operation_id = "getAdminOpenApiDocument", tag = "admin",
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object)))]
pub async fn admin_document(Extension(doc): Extension<Document>) -> impl IntoResponse {
    doc.response()
}

#[cfg(test)]
mod tests {
    /// The routers add routes only through `routes!` over annotated handlers: a plain
    /// `.route(...)` would serve a path the document does not list.
    #[test]
    fn routes_are_registered_only_through_their_annotations() {
        for (file, source) in [("routes/mod.rs", include_str!("routes/mod.rs")), ("admin.rs", include_str!("admin.rs"))] {
            for forbidden in [".route(", ".route_service(", ".nest("] {
                assert!(!source.contains(forbidden), "{file} registers a route with {forbidden}, outside the OpenAPI document");
            }
        }
    }
}
