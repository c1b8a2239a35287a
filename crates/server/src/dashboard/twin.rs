//! A twin: desired and reported side by side with the diverging fields marked, the congruence
//! score over time (drawn in the browser from `/v1/twins/{id}/congruence`, growing live), the
//! history with any version shown and any two compared, the device key, and a form that sets a
//! new desired state through `/v1` with a write key.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde_json::Value;
use twinledger_ledger::Scope;
use twinledger_store::{Anchor, StoredRecord};

use super::layout;
use crate::auth::{MaybeCaller, check};
use crate::{ApiError, AppState};

/// Versions listed in the history.
const HISTORY: usize = 20;

/// The query: `version` to show, `compare` to set beside it (an empty field is none).
#[derive(serde::Deserialize)]
pub(super) struct TwinQuery {
    #[serde(default)]
    version: String,
    #[serde(default)]
    compare: String,
}

fn version_param(name: &str, value: &str) -> Result<Option<u64>, ApiError> {
    match value.trim() {
        "" => Ok(None),
        v => v.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!("{name} must be a version number, not {v:?}"))
        }),
    }
}

/// `GET /dashboard/twins/{id}[?version=V[&compare=W]]`.
pub(super) async fn page(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    Query(q): Query<TwinQuery>,
) -> Result<Markup, ApiError> {
    let id = crate::v1::twin_id(id)?;
    check(&caller, Scope::Read, Some(&id))?;
    let (version, compare) = (
        version_param("version", &q.version)?,
        version_param("compare", &q.compare)?,
    );
    let twin = app.ledger.twin(&id).await?;
    let store = app.ledger.store();
    let desired = match twin.desired_index {
        Some(i) => store.record_at(i).await?,
        None => None,
    };
    let from = twin
        .latest_version
        .saturating_sub(HISTORY as u64 - 1)
        .max(1);
    let (assessed, history, device_key) = tokio::try_join!(
        store.latest_assessed(&id),
        store.history(&id, from, HISTORY),
        store.device_key(id.as_str()),
    )?;
    let diverging: Vec<String> = assessed
        .as_ref()
        .and_then(crate::congruence::assessment)
        .and_then(|a| a.congruence.get("diverging").cloned())
        .and_then(|d| serde_json::from_value(d).ok())
        .unwrap_or_default();
    let shown = match version {
        Some(v) => Some(store.record(&id, v).await?.ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("twin {id} has no version {v}"),
            )
        })?),
        None => None,
    };
    let anchor = match &shown {
        Some(r) if compare.is_none() => store.anchor_covering(r.index).await?,
        _ => None,
    };
    let compared = match compare {
        Some(v) => store.record(&id, v).await?,
        None => None,
    };
    let body = html! {
        h1 { "Twin " code { (id) } }
        p.summary {
            "Version " (twin.latest_version) ", updated " (layout::time(twin.updated_at_ms)) " UTC"
            @if let Some(band) = &twin.band { ", " span class={ "band band-" (band) } { (band) } }
            ". " a href={ (super::ROOT) "/verify?twin=" (super::encode(id.as_str())) } { "Verify this twin" }
        }
        section.columns {
            div {
                h2 { "Desired" @if let Some(d) = &desired { " (version " (d.version) ")" } }
                @if let Some(d) = &desired { (state_table(d, &[], "desired")) }
                @else { p.muted { "No desired state." } }
            }
            div {
                h2 { "Reported" @if let Some(r) = &assessed { " (version " (r.version) ")" } }
                @if let Some(r) = &assessed { (state_table(r, &diverging, "reported")) }
                @else { p.muted { "No report compared with a desired state yet." } }
            }
        }
        section {
            h2 { "Congruence score" }
            div #score-chart data-twin=(id) {}
            p.muted #score-empty { "Scores appear here as reports are compared with the desired state; band changes are marked." }
        }
        section #history {
            h2 { "History" }
            form.search method="get" {
                label for="version" { "Show version" }
                // Numbers, not lists: a twin may have millions of versions.
                input #version name="version" type="number" min="1" max=(twin.latest_version)
                    value=(version.unwrap_or(twin.latest_version)) required;
                label for="compare" { "compared with" }
                input #compare name="compare" type="number" min="1" max=(twin.latest_version)
                    value=[compare] placeholder="version";
                button type="submit" { "Show" }
            }
            @if let Some(s) = &shown { (version_view(s, compared.as_ref(), anchor.as_ref())) }
            table {
                thead { tr { th { "Version" } th { "Kind" } th { "Recorded (UTC)" } th { "State" } } }
                tbody #versions {
                    @for r in history.iter().rev() {
                        tr data-version=(r.version) {
                            td.num { a href={ "?version=" (r.version) } { (r.version) } }
                            td { (r.kind) }
                            td { (layout::time(r.recorded_at_ms)) }
                            td { code.state { (r.state) } }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Device key" }
            @if let Some(k) = &device_key {
                p { "Ed25519 public key " code { (k.public_key) } ", registered " (layout::time(k.registered_at_ms)) " UTC. "
                    @if k.require_signature { strong { "Reports must be signed." } } @else { "Unsigned reports are accepted." } }
            } @else {
                p.muted { "No device key: reports are not signed." }
            }
        }
        section #set-desired {
            h2 { "Set a new desired state" }
            p.muted { "Recorded through PUT /v1/twins/" (id) "/desired with the write key you give (it stays in this tab), or else with this session's key." }
            textarea #desired-state rows="4" cols="60" placeholder=r#"{"state": {"rpm": 1500}, "tolerances": {"/rpm": {"absolute": 50}}}"# {}
            div.fields { label { "Write key " input #write-key type="password" size="40" autocomplete="off"; } }
            button #set type="button" { "Record" }
            output #set-result {}
        }
        link rel="stylesheet" href={ (super::ASSETS) "vendor/uplot/dist/uPlot.min.css" };
        script src={ (super::ASSETS) "vendor/uplot/dist/uPlot.iife.min.js" } {}
        script type="module" src={ (super::ASSETS) "twin.mjs" } {}
    };
    Ok(layout::page(
        &format!("Twin {id}"),
        "",
        layout::key_id(&caller),
        body,
    ))
}

/// The leaves of a JSON value by JSON Pointer, in document order (arrays count as one leaf).
fn leaves(v: &Value, at: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(members) if !members.is_empty() => {
            for (k, v) in members {
                let key = k.replace('~', "~0").replace('/', "~1");
                leaves(v, format!("{at}/{key}"), out);
            }
        }
        other => out.push((at, other.to_string())),
    }
}

fn state_leaves(r: &StoredRecord) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match serde_json::from_str::<Value>(&r.state) {
        Ok(v) => leaves(&v, String::new(), &mut out),
        Err(_) => out.push(("(unreadable)".into(), r.state.clone())),
    }
    out
}

/// A state as a table of its fields; those under a pointer in `marked` are highlighted.
fn state_table(r: &StoredRecord, marked: &[String], name: &str) -> Markup {
    html! {
        table class={ "state " (name) } {
            @for (pointer, value) in state_leaves(r) {
                @let diverges = marked.iter().any(|m| pointer == *m || pointer.starts_with(&format!("{m}/")));
                tr class=[diverges.then_some("diverging")] {
                    td { code { (pointer) } } td { code { (value) } }
                }
            }
        }
    }
}

/// One version's state; with another, the two side by side with the differing fields marked.
fn version_view(a: &StoredRecord, b: Option<&StoredRecord>, anchor: Option<&Anchor>) -> Markup {
    let Some(b) = b else {
        return html! {
            div #version-view {
                h3 { "Version " (a.version) " (" (a.kind) ")" }
                p.muted #version-anchor {
                    "Log index " (a.index) ". "
                    @if let Some(x) = anchor {
                        "Anchored in the tree head of size "
                        a href=(super::anchors::link(x.size)) { (x.size) } " (" (x.status) ")."
                    } @else { "Not anchored yet." }
                }
                (state_table(a, &[], "shown"))
            }
        };
    };
    let (la, lb) = (state_leaves(a), state_leaves(b));
    let differs = |p: &String, set: &[(String, String)], other: &[(String, String)]| {
        let mine = set.iter().find(|(q, _)| q == p).map(|(_, v)| v);
        let theirs = other.iter().find(|(q, _)| q == p).map(|(_, v)| v);
        mine != theirs
    };
    let marked_a: Vec<String> = la
        .iter()
        .filter(|(p, _)| differs(p, &la, &lb))
        .map(|(p, _)| p.clone())
        .collect();
    let marked_b: Vec<String> = lb
        .iter()
        .filter(|(p, _)| differs(p, &lb, &la))
        .map(|(p, _)| p.clone())
        .collect();
    html! {
        div #version-view .columns {
            div { h3 { "Version " (a.version) } (state_table(a, &marked_a, "shown")) }
            div { h3 { "Version " (b.version) } (state_table(b, &marked_b, "compared")) }
        }
    }
}
