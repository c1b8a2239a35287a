//! Verify: a twin checked by the service (`/v1/twins/{id}/verify`, the same verdict), and a proof
//! bundle checked in the browser by the verifier module (`verifier/`), against a chain and a
//! contract the reader types in, trusting neither this server nor the bundle.

use axum::extract::{Query, State};
use maud::{Markup, PreEscaped, html};
use twinledger_ledger::{Integrity, Scope, TwinVerdict};

use super::layout;
use crate::auth::{MaybeCaller, check};
use crate::{ApiError, AppState};

#[derive(serde::Deserialize)]
pub(super) struct VerifyQuery {
    twin: Option<String>,
}

/// Where the verifier's imports of its two pure-JavaScript libraries are found: their copies
/// inside the binary (`assets/vendor`). noble imports two of its own modules without `.js`.
const IMPORT_MAP: &str = r#"{"imports": {
  "@noble/hashes/crypto": "/dashboard/assets/vendor/@noble/hashes/esm/crypto.js",
  "@noble/hashes/utils": "/dashboard/assets/vendor/@noble/hashes/esm/utils.js",
  "@noble/hashes/": "/dashboard/assets/vendor/@noble/hashes/esm/",
  "@noble/curves/": "/dashboard/assets/vendor/@noble/curves/esm/"
}}"#;

/// `GET /dashboard/verify[?twin=ID]`.
pub(super) async fn page(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Query(q): Query<VerifyQuery>,
) -> Result<Markup, ApiError> {
    let twin = q.twin.filter(|t| !t.is_empty());
    let verdict = match &twin {
        Some(t) => {
            let id = crate::v1::twin_id(t.clone())?;
            check(&caller, Scope::Read, Some(&id))?;
            Some(app.ledger.verify_twin(&id).await?)
        }
        None => None,
    };
    let body = html! {
        h1 { "Verify" }
        section {
            h2 { "A twin, checked by this service" }
            p.muted {
                "Every stored version is hashed again, its chain link to the previous one checked, \
                 and each anchored version proven included in a tree head read from the chain."
            }
            form.search method="get" action={ (super::ROOT) "/verify" } {
                label for="twin" { "Twin id" }
                input #twin name="twin" type="search" value=[twin.as_deref()] autocomplete="off";
                button type="submit" { "Verify" }
            }
            @if let Some(v) = &verdict { (verdict_markup(v)) }
        }
        section #bundle {
            h2 { "A proof bundle, checked in this browser" }
            p.muted {
                "The steps of docs/proof-format.md run here: the hash math in JavaScript, the \
                 chain checks as calls to the RPC you name, against the contract you trust. \
                 Neither this server nor the bundle's own chain and contract are trusted."
            }
            div.fields {
                label { "Bundle file " input #bundle-file type="file" accept=".json,application/json"; }
                label { "RPC URL " input #rpc type="url" placeholder="http://127.0.0.1:8545" size="40"; }
                label { "Trusted contract " input #contract placeholder="0x…" size="44"; }
                label { "Chain id (optional) " input #chain-id inputmode="numeric" size="8"; }
            }
            p.drop #drop { "…or drop a bundle file here." }
            button #check type="button" { "Check in this browser" }
            output #bundle-result {}
        }
        script type="importmap" { (PreEscaped(IMPORT_MAP)) }
        script type="module" src={ (super::ASSETS) "verify.mjs" } {}
    };
    Ok(layout::page(
        "Verify",
        "Verify",
        layout::key_id(&caller),
        body,
    ))
}

fn verdict_markup(v: &TwinVerdict) -> Markup {
    let (word, class) = match v.integrity {
        Integrity::Valid => ("Valid", "ok"),
        Integrity::Tampered => ("Tampered", "bad"),
        Integrity::Pending => ("Pending", "warn"),
    };
    html! {
        div #verdict class={ "verdict " (class) } {
            p {
                strong.word { (word) } ": " (v.twin_id) ", " (v.versions) " versions checked"
                @if !v.pending.is_empty() { ", " (v.pending.len()) " not anchored yet" }
                "."
            }
            @if !v.problems.is_empty() {
                ul.problems {
                    @for p in &v.problems {
                        li {
                            @if let Some(version) = p.version {
                                a href={ (super::ROOT) "/twins/" (super::encode(&v.twin_id)) "?version=" (version) } {
                                    "version " (version)
                                }
                                ": "
                            }
                            (p.reason)
                        }
                    }
                }
            }
        }
    }
}
