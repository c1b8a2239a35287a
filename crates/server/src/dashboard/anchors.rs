//! Anchors: the tree heads on chain, newest first, with their transactions, blocks, gas, the
//! records each covers, its confirmations and the times its transaction was replaced; the
//! reorganisations that dropped anchors are counted above (a dropped anchor's records go into a
//! later head, so there is no row left to count them on).

use axum::extract::{Query, State};
use maud::{Markup, html};
use twinledger_ledger::Scope;

use super::layout;
use crate::auth::{MaybeCaller, check};
use crate::{ApiError, AppState};

/// Anchors on a page.
const PAGE: usize = 50;

#[derive(serde::Deserialize)]
pub(super) struct AnchorsQuery {
    /// Anchors of sizes below this (the next page of older ones).
    below: Option<u64>,
}

/// `GET /dashboard/anchors[?below=SIZE]`.
pub(super) async fn page(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Query(q): Query<AnchorsQuery>,
) -> Result<Markup, ApiError> {
    check(&caller, Scope::Read, None)?;
    let health = app.ledger.health().await;
    let head = health.chain.as_ref().ok().map(|c| c.block_number);
    let store = app.ledger.store();
    let mut anchors = store
        .anchors_below(q.below.unwrap_or(u64::MAX), PAGE + 1)
        .await?;
    let older = anchors.len() > PAGE;
    anchors.truncate(PAGE);
    let a = &health.anchoring;
    let body = html! {
        h1 { "Anchors" }
        p.summary {
            "Contract " code { (health.contract) }
            @if let Some(h) = head { ", chain head at block " (h) }
            ". Since this service started: " (a.replacements) " replacements (fee bumps), "
            (a.reorganisations) " reorganisations that dropped anchors (their records are anchored again in a later head)."
            @if let Some(e) = &a.last_error { " " span.bad { "Anchoring fails: " (e) } }
        }
        table #anchors {
            thead { tr {
                th { "Tree size" } th { "Records" } th { "Root" } th { "Transaction" } th { "Block" }
                th { "Time (UTC)" } th { "Gas" } th { "Confirmations" } th title="Times the transaction was replaced with higher fees" { "Replaced" } th { "Status" }
            } }
            tbody {
                @for x in &anchors {
                    tr id={ "anchor-" (x.size) } data-size=(x.size) {
                        td.num { (x.size) }
                        td.num { (x.size - x.prev_size) }
                        td { code title=(x.root.to_hex()) { (short(&x.root.to_hex())) } }
                        td { code title=(x.tx_hash) { (short(&x.tx_hash)) } }
                        td.num { @if let Some(b) = x.block_number { (b) } }
                        td { @if let Some(t) = x.block_time { (layout::time(t as i64 * 1000)) } }
                        td.num { @if let Some(g) = x.gas_used { (g) } }
                        td.num { @if let (Some(b), Some(h)) = (x.block_number, head) { (h.saturating_sub(b) + 1) } }
                        td.num { (x.replacements) }
                        td { span class={ "status status-" (x.status) } { (x.status) } }
                    }
                }
            }
        }
        @if anchors.is_empty() { p.empty { "Nothing anchored yet." } }
        @if let (true, Some(last)) = (older, anchors.last()) {
            nav.pages { a rel="next" href={ (super::ROOT) "/anchors?below=" (last.size) } { "Older anchors" } }
        }
    };
    Ok(layout::page(
        "Anchors",
        "Anchors",
        layout::key_id(&caller),
        body,
    ))
}

/// The anchors page showing the anchor of tree size `size` first, scrolled to it.
pub(super) fn link(size: u64) -> String {
    format!(
        "{}/anchors?below={}#anchor-{size}",
        super::ROOT,
        size.saturating_add(1)
    )
}

fn short(hex: &str) -> String {
    match hex.char_indices().nth(14) {
        Some((cut, _)) => format!("{}…", &hex[..cut]),
        None => hex.to_owned(),
    }
}
