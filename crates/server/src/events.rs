//! `GET /v1/events`: a Server-Sent Events stream of new records (shift and correction events
//! among them), anchors, confirmations and reorganisations, as they happen.
//!
//! The stream tails the database rather than a broadcast: a slow reader never loses events,
//! and the write path does no work for readers. Each event's id is the stream position after
//! it, `NEXT_INDEX.ANCHORED_SIZE.CONFIRMED_SIZE`; a client that reconnects with it in
//! `Last-Event-ID` continues exactly after the last event it saw.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use tokio::sync::watch;
use twinledger_core::TwinId;
use twinledger_ledger::{AnchoredSizes, Scope};
use twinledger_store::StoredRecord;

use crate::auth::{MaybeCaller, check};
use crate::openapi::ErrorBody;
use crate::v1::{Params, params, record_json, twin_id};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(events))
}

/// Records read per database query.
const PAGE: usize = 256;

/// Where a stream is: the next log index to show, and the anchored, confirmed and finalized
/// sizes shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    next: u64,
    anchored: u64,
    confirmed: u64,
    finalized: u64,
}

impl Position {
    fn id(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.next, self.anchored, self.confirmed, self.finalized
        )
    }

    /// An id this stream sent; one of three parts (sent before finality was shown) resumes
    /// with nothing finalized shown yet.
    fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.').map(|p| p.parse::<u64>().ok());
        let p = Position {
            next: parts.next()??,
            anchored: parts.next()??,
            confirmed: parts.next()??,
            finalized: parts.next().unwrap_or(Some(0))?,
        };
        parts.next().is_none().then_some(p)
    }
}

/// One event of the stream, as an SSE client parses it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the stream; the handler writes it with axum's `Event`.
struct StreamEvent {
    /// `record`, `shift` or `correction` (records; shifts and corrections are the ledger's
    /// own events), `anchor`, `confirmation`, `finalization` or `reorganisation`.
    #[schema(
        pattern = "^(record|shift|correction|anchor|confirmation|finalization|reorganisation)$"
    )]
    event: String,
    /// The stream position after this event, for `Last-Event-ID`.
    id: String,
    /// The event as JSON: a record as `GET /v1/twins/{id}/versions/{v}` shows it, or the
    /// anchor or sizes.
    #[schema(content_media_type = "application/json")]
    data: String,
}

/// A Server-Sent Events stream of new records (`record`, and `shift` and `correction` for the
/// ledger's congruence events), `anchor`, `confirmation`, `finalization` and `reorganisation`
/// events, as they happen. Each event's `data` is JSON; its `id` resumes the stream after it when sent back as
/// `Last-Event-ID` (browsers' EventSource does so by itself). Without `Last-Event-ID` the
/// stream starts at log index `from` (default: now). With `follow=false` the stream ends once
/// it has caught up, instead of waiting for new events.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "log",
    params(
        ("twin" = Option<crate::openapi::TwinIdParam>, Query, nullable = false, description = "Only this twin's records (anchor events are always sent)."),
        ("from" = Option<u64>, Query, nullable = false, description = "The log index to start at."),
        ("follow" = Option<bool>, Query, nullable = false, description = "`false`: end the stream once caught up (default `true`)."),
        ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = "^[0-9]{1,19}\\.[0-9]{1,19}\\.[0-9]{1,19}(\\.[0-9]{1,19})?$", description = "The id of the last event seen, to resume after it."),
    ),
    responses(
        (status = 200, description = "The stream.", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "A bad parameter or Last-Event-ID.", body = ErrorBody),
    )
)]
async fn events(
    State(app): State<AppState>,
    caller: MaybeCaller,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q, &["twin", "from", "follow"])?;
    let follow = match p.get("follow").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "follow must be true or false, not {other:?}"
            )));
        }
    };
    let twin = p.get("twin").cloned().map(twin_id).transpose()?;
    check(&caller, Scope::Read, twin.as_ref())?;
    let (tree, sizes) = app.ledger.progress();
    let start =
        match headers.get("last-event-id") {
            Some(v) => v.to_str().ok().and_then(Position::parse).ok_or_else(|| {
                ApiError::bad_request("Last-Event-ID must be an id this stream sent")
            })?,
            None => {
                let now = *sizes.borrow();
                let next = match p.get("from") {
                    None => *tree.borrow(),
                    Some(s) => s.parse::<u64>().map_err(|_| {
                        ApiError::bad_request(format!("from must be a log index, not {s:?}"))
                    })?,
                };
                Position {
                    next,
                    anchored: now.anchored,
                    confirmed: now.confirmed,
                    finalized: now.finalized,
                }
            }
        };
    let tail = Tail {
        app: app.clone(),
        twin,
        at: start,
        tree,
        sizes,
        closing: app.closing.clone(),
        follow,
        _client: app.config.metrics.sse_client(),
    };
    let events = stream::unfold(tail, |mut tail| async move {
        let batch = tail.next_events().await?;
        Some((stream::iter(batch), tail))
    })
    .flatten()
    .map(Ok::<_, Infallible>);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// One stream's reading state.
struct Tail {
    app: AppState,
    twin: Option<TwinId>,
    at: Position,
    tree: watch::Receiver<u64>,
    sizes: watch::Receiver<AnchoredSizes>,
    closing: watch::Receiver<bool>,
    /// Keep waiting for new events once caught up.
    follow: bool,
    /// Counts the client while its stream lives.
    _client: crate::metrics::SseClient,
}

impl Tail {
    /// The next events, waiting until there are some; `None` ends the stream (the service is
    /// stopping, or the database failed: the client reconnects with its last id; or caught up
    /// without `follow`).
    async fn next_events(&mut self) -> Option<Vec<Event>> {
        loop {
            if *self.closing.borrow() {
                return None;
            }
            let size = *self.tree.borrow_and_update();
            let sizes = *self.sizes.borrow_and_update();
            let mut out = Vec::new();
            if self.at.next < size {
                self.records(size, &mut out).await?;
            }
            if sizes.anchored < self.at.anchored
                || sizes.confirmed < self.at.confirmed
                || sizes.finalized < self.at.finalized
            {
                // A reorganisation took anchors back.
                self.at.anchored = sizes.anchored;
                self.at.confirmed = sizes.confirmed;
                self.at.finalized = sizes.finalized;
                out.push(self.event(
                    "reorganisation",
                    &json!({
                        "anchored_size": sizes.anchored,
                        "confirmed_size": sizes.confirmed,
                        "finalized_size": sizes.finalized,
                    }),
                ));
            }
            if sizes.anchored > self.at.anchored {
                self.anchors(sizes.anchored, &mut out).await?;
            }
            if sizes.confirmed > self.at.confirmed {
                self.at.confirmed = sizes.confirmed;
                out.push(self.event(
                    "confirmation",
                    &json!({ "confirmed_size": sizes.confirmed }),
                ));
            }
            if sizes.finalized > self.at.finalized {
                self.at.finalized = sizes.finalized;
                out.push(self.event(
                    "finalization",
                    &json!({ "finalized_size": sizes.finalized }),
                ));
            }
            if !out.is_empty() {
                return Some(out);
            }
            if !self.follow {
                return None;
            }
            tokio::select! {
                r = self.tree.changed() => r.ok()?,
                r = self.sizes.changed() => r.ok()?,
                _ = self.closing.changed() => return None,
            }
        }
    }

    /// Records from `self.at.next` (one page at most), up to the log size `size`.
    async fn records(&mut self, size: u64, out: &mut Vec<Event>) -> Option<()> {
        let (from, twin) = (self.at.next, self.twin.clone());
        let rows = self
            .app
            .ledger
            .store()
            .records_from(from, twin.as_ref(), PAGE)
            .await
            .ok()?;
        let sizes = *self.sizes.borrow();
        for row in &rows {
            self.at.next = row.index + 1;
            let status = sizes.status_of(row.index);
            out.push(self.event(kind_of(row), &record_json(row, status, None)));
        }
        // Filtered by twin, a short page means no more of its records below `size`.
        if rows.len() < PAGE {
            self.at.next = self.at.next.max(size);
        }
        Some(())
    }

    /// One event per anchor mined above `self.at.anchored`, up to `anchored`.
    async fn anchors(&mut self, anchored: u64, out: &mut Vec<Event>) -> Option<()> {
        let from = self.at.anchored + 1;
        let anchors = self.app.ledger.store().anchors(from, PAGE).await.ok()?;
        for a in anchors
            .iter()
            .filter(|a| a.status != "sent" && a.size <= anchored)
        {
            self.at.anchored = a.size;
            out.push(self.event(
                "anchor",
                &json!({
                    "size": a.size,
                    "root": a.root,
                    "tx_hash": a.tx_hash,
                    "block_number": a.block_number,
                    "block_timestamp": a.block_time,
                }),
            ));
        }
        // Sizes the anchors table does not list (forgotten after a reorganisation) are
        // passed over rather than waited for.
        if anchors.len() < PAGE {
            self.at.anchored = self.at.anchored.max(anchored);
        }
        Some(())
    }

    fn event(&self, name: &str, data: &impl serde::Serialize) -> Event {
        let event = Event::default().event(name).id(self.at.id());
        match event.json_data(data) {
            Ok(e) => e,
            // Our views always serialise; an event without data still moves the position.
            Err(_) => Event::default().event(name).id(self.at.id()),
        }
    }
}

/// The event name of a record: shifts and corrections by their state's `type`.
fn kind_of(row: &StoredRecord) -> &'static str {
    if row.kind != "event" {
        return "record";
    }
    match serde_json::from_str::<serde_json::Value>(&row.state)
        .ok()
        .as_ref()
        .and_then(|s| s.get("type"))
        .and_then(|t| t.as_str())
    {
        Some(twinledger_core::congruence::SHIFT_EVENT) => "shift",
        Some(twinledger_core::congruence::CORRECTION_EVENT) => "correction",
        _ => "record",
    }
}
