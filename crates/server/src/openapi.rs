//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! types they answer with, so that the document and the routes cannot drift apart; `/docs` is a
//! Swagger UI whose files are inside the binary (machines on closed networks reach no CDN).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, HttpMethod, OpenApi as Document, Ref, Required};
use utoipa::{Modify, OpenApi, ToSchema};

/// The path of the document.
pub(crate) const DOCUMENT_PATH: &str = "/openapi.json";
/// The path of the interactive reference.
pub(crate) const UI_PATH: &str = "/docs";

/// Every error answer: a status and this body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "twinledger",
        description = "Tamper-evident records of digital twins: every state change is stored, \
chained into an RFC 9162 Merkle log and anchored on an Ethereum chain.\n\n\
Every error is answered with a 4xx or 5xx status and `{\"error\": \"...\"}`. \
Writes need an API key (`Authorization: Bearer tl_...`) unless the service runs without keys; \
reads need one when `auth.reads` is set. Each answer carries `X-Request-Id` (the one sent, or a \
new one), which every log line of the request carries too.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(crate::metrics::scrape),
    components(schemas(
        ErrorBody,
        TwinIdParam,
        VersionParam,
        crate::v1::WaitParam,
        crate::v1::SchemeParam
    )),
    tags(
        (name = "seed", description = "The two endpoints of the original service, unchanged."),
        (name = "twins", description = "Twins, their records, history and proofs."),
        (name = "congruence", description = "Desired states, congruence and device keys."),
        (name = "log", description = "The Merkle log, its anchors and its event stream."),
        (name = "service", description = "Health and this document."),
    )
)]
pub(crate) struct ApiDoc;

/// What every operation shares, added once rather than on each handler: the bearer-key
/// scheme, the request-id header, and the error answers that the middleware and extractors
/// give on any route (a key refused, a body refused, the store unavailable).
pub(crate) struct Conventions;

use crate::auth::is_public;

/// A twin id in a path: 1 to 128 characters; no whitespace, control characters, `/ \ + #`;
/// not `.` or `..` (`twinledger_core::TwinId`).
pub(crate) struct TwinIdParam;

impl utoipa::PartialSchema for TwinIdParam {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(twinledger_core::MAX_TWIN_ID_CHARS))
            .pattern(Some(r"^(?!\.\.?$)[^\s\x00-\x1f\x7f-\x9f/\\+#]+$"))
            .into()
    }
}

impl ToSchema for TwinIdParam {
    fn name() -> std::borrow::Cow<'static, str> {
        "TwinId".into()
    }
}

/// A version number: 1 for a twin's first record.
pub(crate) struct VersionParam;

impl utoipa::PartialSchema for VersionParam {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(1))
            .into()
    }
}

impl ToSchema for VersionParam {
    fn name() -> std::borrow::Cow<'static, str> {
        "Version".into()
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    responses((status = 200, description = "The OpenAPI document of this service.", content_type = "application/json", body = Object))
)]
pub(crate) async fn document_route(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        app.document.clone(),
    )
        .into_response()
}

impl Modify for Conventions {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key made by `twinledger keys create`."))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = is_public(path);
            for (method, op) in operations(item) {
                let has_body = matches!(method, HttpMethod::Post | HttpMethod::Put);
                conventions(op, public, has_body);
            }
        }
    }
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
}

fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
}

fn conventions(op: &mut Operation, public: bool, has_body: bool) {
    let params = op.parameters.get_or_insert_with(Vec::new);
    params.push(
        ParameterBuilder::new()
            .name("X-Request-Id")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "An id for this request, carried in its log lines and answered back; \
                 1 to 200 visible ASCII characters. One is made when absent or unusable.",
            ))
            .schema(Some(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .min_length(Some(1))
                    .max_length(Some(200))
                    .pattern(Some("^[\\x21-\\x7e]+$")),
            ))
            .build()
            .into(),
    );
    let mut common: BTreeMap<&str, Response> = BTreeMap::new();
    if !public {
        op.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::default(),
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]);
        common.insert(
            "401",
            error("An API key is needed, or the one sent is not valid."),
        );
        common.insert(
            "403",
            error("The API key does not reach this twin or operation."),
        );
    }
    if has_body {
        common.insert(
            "400",
            error("The request is malformed: invalid JSON, header or parameter."),
        );
        common.insert("413", error("The body is larger than `http.body_limit`."));
        common.insert("415", error("The body is not `application/json`."));
        common.insert("422", error("Well-formed JSON of the wrong shape."));
    }
    common.insert(
        "503",
        error("The database or the chain is unavailable, or the service is stopping."),
    );
    for (status, response) in common {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert(response.into());
    }
}

/// The document, as the service serves it.
pub fn document() -> Document {
    crate::routes::documented().1
}

/// The document as served and as committed in `docs/openapi.json`: pretty JSON with a final
/// newline.
pub fn document_json() -> Result<String, serde_json::Error> {
    pretty(&document())
}

pub(crate) fn pretty(doc: &Document) -> Result<String, serde_json::Error> {
    let mut text = doc.to_pretty_json()?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is what the code generates; `TWINLEDGER_WRITE_OPENAPI=1 cargo test
    /// -p twinledger-server openapi` rewrites it after a change to the API.
    #[test]
    fn the_committed_document_is_what_the_code_generates() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let generated = document_json().expect("document serializes");
        if std::env::var_os("TWINLEDGER_WRITE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the document the code generates; if the API change \
             is meant, run `TWINLEDGER_WRITE_OPENAPI=1 cargo test -p twinledger-server openapi` \
             and commit the file"
        );
    }

    #[test]
    fn every_route_is_documented_with_its_errors_and_the_key_scheme() {
        let doc = document();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in [
            "/update_twin_on_blockchain/",
            "/get_twin_from_blockchain/{twin_id}",
            "/health",
            "/openapi.json",
            "/metrics",
            "/v1/twins",
            "/v1/twins/{id}",
            "/v1/twins/{id}/states",
            "/v1/twins/{id}/history",
            "/v1/twins/{id}/versions/{v}",
            "/v1/twins/{id}/versions/{v}/proof",
            "/v1/twins/{id}/verify",
            "/v1/twins/{id}/desired",
            "/v1/twins/{id}/congruence",
            "/v1/twins/{id}/device-key",
            "/v1/tree-heads",
            "/v1/events",
        ] {
            assert!(paths.contains(&p), "{p} is not in the document: {paths:?}");
        }
        let json = serde_json::to_value(&doc).expect("json");
        assert_eq!(json["openapi"], "3.1.0");
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let write = &json["paths"]["/v1/twins/{id}/states"]["post"]["responses"];
        for status in ["201", "400", "401", "403", "413", "415", "422", "503"] {
            assert!(write[status].is_object(), "POST states lacks {status}");
        }
        assert_eq!(
            write["422"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        // The stream's answer describes its events (Schemathesis checks each against it).
        assert_eq!(
            json["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
                ["schema"]["$ref"],
            "#/components/schemas/StreamEvent"
        );
        assert!(write["202"].is_object(), "POST states lacks 202");
        // Public routes ask for no key.
        assert!(json["paths"]["/health"]["get"]["security"].is_null());
        assert!(json["paths"]["/health"]["get"]["responses"]["401"].is_null());
    }
}
