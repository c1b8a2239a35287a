//! The dashboard's scripts and styles, embedded at build time: `crates/server/assets` (ours, and
//! in `vendor/` copies of npm packages at the versions `package-lock.json` pins) and the
//! proof-bundle verifier's modules (`verifier/`), which the verify page runs.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::ApiError;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The verifier's browser modules: not its command line or its tests.
#[derive(RustEmbed)]
#[folder = "../../verifier/"]
#[include = "*.mjs"]
#[exclude = "cli.mjs"]
#[exclude = "test/*"]
struct Verifier;

/// Content types of what the dashboard serves; anything else is not served.
fn content_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.')?.1;
    Some(match ext {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => return None,
    })
}

pub(super) async fn serve(Path(path): Path<String>) -> Response {
    let file = match path.strip_prefix("verifier/") {
        Some(module) => Verifier::get(module),
        None => Assets::get(&path),
    };
    let (Some(kind), Some(file)) = (content_type(&path), file) else {
        return ApiError::new(StatusCode::NOT_FOUND, format!("no asset {path:?}")).into_response();
    };
    let mut response = file.data.into_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // They change only with the binary: a short lifetime lets browsers pick up an upgrade.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
