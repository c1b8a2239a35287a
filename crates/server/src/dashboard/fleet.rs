//! The fleet: every twin with its latest version and time, congruence band and score, and how
//! far its latest record is on the chain; found by id prefix (kept in the URL) and paged through
//! the twins' index, so a page costs the same at 100,000 twins as at ten.

use axum::extract::{Query, State};
use maud::{Markup, html};
use twinledger_core::TwinId;
use twinledger_ledger::{Scope, Status};
use twinledger_store::TwinSummary;

use super::layout;
use crate::auth::{MaybeCaller, check};
use crate::{ApiError, AppState};

/// Twins on a page.
const PAGE: usize = 50;

/// One twin's row: the summary the store keeps, with what its latest record says.
struct Row {
    twin: TwinSummary,
    score: Option<f64>,
    status: Status,
}

async fn row(app: &AppState, twin: TwinSummary) -> Result<Row, ApiError> {
    let id = crate::v1::twin_id(twin.twin_id.clone())?;
    let store = app.ledger.store();
    // The score of the latest assessed report: the latest record may be a desired state or
    // the shift event a report brought.
    let (latest, assessed) = tokio::try_join!(
        store.record(&id, twin.latest_version),
        store.latest_assessed(&id),
    )?;
    let score = assessed
        .as_ref()
        .and_then(crate::congruence::assessment)
        .and_then(|a| a.congruence.get("score").and_then(|s| s.as_f64()));
    let status = match &latest {
        Some(r) => app.ledger.status(r).await?.0,
        None => Status::Pending,
    };
    Ok(Row {
        twin,
        score,
        status,
    })
}

fn status_text(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Anchored => "anchored",
        Status::Confirmed => "confirmed",
        Status::Finalized => "finalized",
    }
}

fn row_markup(r: &Row) -> Markup {
    let t = &r.twin;
    let status = status_text(r.status);
    html! {
        tr id={ "twin-" (t.twin_id) } data-twin=(t.twin_id) data-status=(status) {
            td { a href={ (super::ROOT) "/twins/" (super::encode(&t.twin_id)) } { (t.twin_id) } }
            td.num { (t.latest_version) }
            td { (layout::time(t.updated_at_ms)) }
            td {
                @if let Some(band) = &t.band {
                    span class={ "band band-" (band) } { (band) }
                } @else {
                    span.muted { "—" }
                }
            }
            td.num {
                @if let Some(score) = r.score { (format!("{score:.2}")) } @else { span.muted { "—" } }
            }
            td { span class={ "status status-" (status) } { (status) } }
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct FleetQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
}

/// `GET /dashboard`: a page of the fleet.
pub(super) async fn page(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Query(q): Query<FleetQuery>,
) -> Result<Markup, ApiError> {
    check(&caller, Scope::Read, None)?;
    let (prefix, after) = crate::v1::twin_listing(Some(&q.prefix), q.after.as_ref())?;
    let twins = app
        .ledger
        .store()
        .twins(prefix, after.as_ref().map(TwinId::as_str), PAGE)
        .await?;
    let next = (twins.len() == PAGE)
        .then(|| twins.last().map(|t| t.twin_id.clone()))
        .flatten();
    let mut rows = Vec::with_capacity(twins.len());
    for t in twins {
        rows.push(row(&app, t).await?);
    }
    let stats = app.ledger.store().stats().await?;
    let body = html! {
        h1 { "Fleet" }
        p.summary {
            (stats.twins) " twins, " (stats.records) " records; the log is anchored up to "
            (app.ledger.anchored_sizes().anchored) "."
        }
        form.search method="get" action=(super::ROOT) role="search" {
            label for="prefix" { "Twin id starts with" }
            input #prefix name="prefix" type="search" value=(q.prefix) autocomplete="off";
            button type="submit" { "Search" }
        }
        // What a twin new to the ledger needs to belong on this page, for the live script.
        table #fleet data-prefix=(q.prefix) data-after=(q.after.as_ref().map_or("", |a| a.as_str()))
            data-page=(PAGE) {
            thead { tr {
                th { "Twin" } th { "Version" } th { "Updated (UTC)" } th { "Band" }
                th { "Score" } th { "Chain" }
            } }
            tbody {
                @for r in &rows { (row_markup(r)) }
            }
        }
        @if rows.is_empty() {
            p.empty { "No twin" @if !q.prefix.is_empty() { " starts with " code { (q.prefix) } } "." }
        }
        nav.pages {
            @if q.after.is_some() {
                a href={ (super::ROOT) "?prefix=" (super::encode(&q.prefix)) } { "First page" }
            }
            @if let Some(next) = &next {
                a rel="next" href={ (super::ROOT) "?prefix=" (super::encode(&q.prefix)) "&after=" (super::encode(next)) } { "Next page" }
            }
        }
    };
    Ok(layout::page(
        "Fleet",
        "Fleet",
        layout::key_id(&caller),
        body,
    ))
}

/// `GET /dashboard/fleet/rows?id=…&id=…`: the rows of these twins, for the live page to swap
/// in when their records, bands or anchors change.
pub(super) async fn rows(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Markup, ApiError> {
    let mut rows = Vec::new();
    for (key, value) in q.into_iter().take(PAGE) {
        if key != "id" {
            return Err(ApiError::bad_request(format!("unknown parameter {key:?}")));
        }
        let id = crate::v1::twin_id(value)?;
        check(&caller, Scope::Read, Some(&id))?;
        if let Some(twin) = app.ledger.store().twin(&id).await? {
            rows.push(row(&app, twin).await?);
        }
    }
    Ok(html! { @for r in &rows { (row_markup(r)) } })
}
