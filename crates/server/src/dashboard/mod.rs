//! The dashboard: pages for operators and auditors, rendered here (maud) from what the API
//! reads, with its scripts and styles inside the binary, so that it works with no internet.
//! Each page keeps itself current from one `EventSource` on `/v1/events` per tab
//! (`assets/live.mjs`), asking the server for the fragments that changed.

mod anchors;
mod assets;
mod events;
mod fleet;
mod layout;
pub(crate) mod session;
mod twin;
mod verify;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};

use crate::AppState;

/// Where the dashboard lives.
pub(crate) const ROOT: &str = "/dashboard";

/// Where its scripts and styles are served from (public: they hold nothing of the ledger).
pub(crate) const ASSETS: &str = "/dashboard/assets/";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to(ROOT) }))
        .route(ROOT, get(fleet::page))
        .route("/dashboard/fleet/rows", get(fleet::rows))
        .route("/dashboard/twins/{id}", get(twin::page))
        .route("/dashboard/verify", get(verify::page))
        .route("/dashboard/events", get(events::page))
        .route("/dashboard/anchors", get(anchors::page))
        .route("/dashboard/assets/{*path}", get(assets::serve))
        .route(session::PATH, post(session::start))
        .route(session::END_PATH, post(session::end))
}

/// `s` as a query string value.
fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
