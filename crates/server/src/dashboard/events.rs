//! Events: the live stream of `/v1/events` (records, shifts, corrections, anchors,
//! confirmations, finalizations, reorganisations), filtered by twin and type in the URL. The
//! browser's EventSource resumes after a dropped connection from the last event's id, so
//! nothing is lost or shown twice; the page starts a little before now, to show some context.

use axum::extract::{Query, State};
use maud::{Markup, html};
use twinledger_ledger::Scope;

use super::layout;
use crate::auth::{MaybeCaller, check};
use crate::{ApiError, AppState};

/// Records shown from before the page was opened.
const CONTEXT: u64 = 50;

/// The types of event the stream carries.
const TYPES: [&str; 7] = [
    "record",
    "shift",
    "correction",
    "anchor",
    "confirmation",
    "finalization",
    "reorganisation",
];

/// `GET /dashboard/events[?twin=ID][&type=T…]` (the page filters what the stream brings).
pub(super) async fn page(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Markup, ApiError> {
    check(&caller, Scope::Read, None)?;
    let from = app.ledger.tree_size().saturating_sub(CONTEXT);
    let mut twin = String::new();
    let mut chosen = Vec::new();
    for (key, value) in &q {
        match key.as_str() {
            "twin" => twin.clone_from(value),
            "type" if TYPES.contains(&value.as_str()) => chosen.push(value.as_str()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {key}={value:?}"
                )));
            }
        }
    }
    let body = html! {
        h1 { "Events" }
        form.search #event-filter method="get" {
            label for="twin" { "Twin" }
            input #twin name="twin" type="search" value=(twin) autocomplete="off";
            @for t in TYPES {
                label.check { input type="checkbox" name="type" value=(t) checked[chosen.is_empty() || chosen.contains(&t)]; (t) }
            }
            button type="submit" { "Filter" }
        }
        p.muted { "From log index " (from) " on, as they happen." }
        table #events data-stream={ "/v1/events?from=" (from) } {
            thead { tr { th { "Id" } th { "Type" } th { "Twin" } th { "Version" } th { "What" } } }
            tbody {}
        }
        script type="module" src={ (super::ASSETS) "events.mjs" } {}
    };
    Ok(layout::page(
        "Events",
        "Events",
        layout::key_id(&caller),
        body,
    ))
}
